//! The HTTP API driven over real HTTP against real Postgres and a real S3 server.

mod support;

use mono2mesh_api::server::{Access, Op};
use mono2mesh_core::{Category, JobId, RealSize, Stage};
use mono2mesh_infra::blob::BlobKey;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use support::{complete_job, expect_error, png, Harness, MAX_BODY, MAX_PHOTO, OCTAHEDRON_OBJ, READ_TOKEN, TOKEN};

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap_or_else(|e| panic!("response is not JSON: {e}"))
}

#[tokio::test]
async fn uploads_are_stored_recorded_published_and_deduplicated() {
    let h = Harness::s3().await;
    let photo = png(7, 64);
    let response = h
        .post_photo(photo.clone(), &[("batch", "spring"), ("external_id", "SKU-7"), ("category", "sofa")], Some(TOKEN))
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let job = json_of(response).await;
    let id: JobId = job["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_eq!(job["state"], "submitted");
    assert_eq!(job["progress"], 0);
    assert_eq!(job["batch"], "spring");
    assert_eq!(job["external_id"], "SKU-7");
    assert_eq!(job["category"], "sofa");
    assert_eq!(job["category_source"], "manifest");

    // The photo is in S3 byte for byte, under the job's input key.
    let stored = h.jobs().get_job(id).await.unwrap();
    assert_eq!(stored.input_key.as_str(), format!("jobs/{id}/input/photo.png"));
    assert_eq!(h.blobs.get(&stored.input_key).await.unwrap().as_ref(), photo.as_slice());
    assert_eq!(stored.content_hash, mono2mesh_api::ingest::content_hash(&photo));

    // One gate message, carrying the manifest's category.
    let messages = h.take_gate_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!((messages[0].job_id, messages[0].stage, messages[0].category), (id, Stage::Gate, Some(Category::Sofa)));

    // The same photo again: the same job, 200, nothing new stored or published.
    let again = h.post_photo(photo.clone(), &[("batch", "spring")], Some(TOKEN)).await;
    assert_eq!(again.status(), 200);
    assert_eq!(json_of(again).await["id"], id.to_string());
    assert!(h.take_gate_messages().await.is_empty(), "a duplicate must not be published again");
    assert_eq!(h.blobs.list("jobs/").await.unwrap().len(), 1, "no orphan upload");

    // The same photo in another batch is another job.
    let other = h.post_photo(photo, &[("batch", "autumn")], Some(TOKEN)).await;
    assert_eq!(other.status(), 201);
    assert_ne!(json_of(other).await["id"], id.to_string());

    // GET the job back.
    let fetched = json_of(h.http.get(h.url(&location)).send().await.unwrap()).await;
    assert_eq!(fetched["id"], id.to_string());
    assert_eq!(fetched["links"]["input"], format!("/v1/jobs/{id}/input"));
    let events = json_of(h.http.get(h.url(&format!("{location}/events"))).send().await.unwrap()).await;
    let names: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["submitted", "published"]);
    h.finish().await;
}

/// A request to `op` that succeeds given the right token: path parameters name a real
/// job, output and batch; POSTs carry a valid body.
fn request_for(h: &Harness, client: &reqwest::Client, op: Op, job: JobId, batch: &str, n: usize) -> reqwest::RequestBuilder {
    let path = op.path().replace("{id}", &job.to_string()).replace("{name}", if op == Op::GetOutput { "mesh_obj" } else { batch });
    let request = client.request(op.method(), h.url(&path));
    match op {
        Op::CreateJob => request.multipart(
            reqwest::multipart::Form::new()
                .part("photo", reqwest::multipart::Part::bytes(png(100 + n as u8, 16)).file_name("p.png")),
        ),
        Op::CreateBatch => request.json(&json!({ "name": format!("auth-{n}"), "items": [{ "key": "uploads/none.png" }] })),
        _ => request,
    }
}

#[tokio::test]
async fn every_v1_route_needs_a_token_and_only_write_tokens_post() {
    let h = Harness::s3().await;
    let created = h.post_photo(png(1, 16), &[("batch", "auth")], Some(TOKEN)).await;
    assert_eq!(created.status(), 201);
    let job: JobId = json_of(created).await["id"].as_str().unwrap().parse().unwrap();
    complete_job(h.jobs(), h.blobs.as_ref(), job, &[("mesh_obj", "mesh.obj", OCTAHEDRON_OBJ.as_bytes())]).await;
    let mut n = 0;
    for op in Op::ALL {
        n += 1;
        let open = op.access() == Access::Open;
        assert_eq!(open, !op.path().starts_with("/v1/"), "{op:?}: only the probes, the spec and the page shell are open");
        // No token, a wrong one, and a prefix of the right one.
        for token in [None, Some("x8Kp2vQx7RmZ4tLc9NbY3hJd"), Some(&TOKEN[..20])] {
            let mut request = request_for(&h, &h.anon, op, job, "auth", n);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            if open {
                assert_eq!(response.status(), 200, "{op:?} is open");
            } else {
                assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"), "{op:?}");
                expect_error(response, 401, "unauthorized").await;
            }
        }
        let as_reader = request_for(&h, &h.anon, op, job, "auth", n).bearer_auth(READ_TOKEN).send().await.unwrap();
        let as_writer = request_for(&h, &h.http, op, job, "auth", n).send().await.unwrap();
        match op.access() {
            Access::Write => {
                expect_error(as_reader, 403, "forbidden").await;
                assert!(as_writer.status().is_success(), "{op:?} with the write token: {}", as_writer.status());
            }
            _ => {
                let (r, w) = (as_reader.status(), as_writer.status());
                assert!(r.is_success() || r.is_redirection(), "{op:?} with the read token: {r}");
                assert_eq!(r, w, "{op:?}: a write token reads as a read token does");
            }
        }
    }
    // Only the write token's posts created anything: the job above, one by CreateJob,
    // and CreateBatch's batch (its item refused: no such object).
    let batches: BTreeSet<String> = h.jobs().batches().await.unwrap().into_iter().map(|b| b.name).collect();
    assert_eq!(batches, BTreeSet::from(["api".to_string(), "auth".to_string()]));
    // A presigned link is handed out to token holders only.
    let redirect = h.anon.get(h.url(&format!("/v1/jobs/{job}/outputs/mesh_obj"))).send().await.unwrap();
    assert!(redirect.headers().get("location").is_none());
    expect_error(redirect, 401, "unauthorized").await;
    h.finish().await;
}

#[tokio::test]
async fn webhook_urls_are_never_shown_in_full() {
    let h = Harness::local().await;
    let hook = "https://hooks.example.com/services/T0/B0/s3cr3t-path?sig=abc";
    let response = h.post_photo(png(2, 16), &[("webhook_url", hook)], Some(TOKEN)).await;
    assert_eq!(response.status(), 201);
    let created = response.text().await.unwrap();
    assert!(!created.contains("s3cr3t"), "{created}");
    let id = serde_json::from_str::<Value>(&created).unwrap()["id"].as_str().unwrap().to_string();
    let job = json_of(h.http.get(h.url(&format!("/v1/jobs/{id}"))).send().await.unwrap()).await;
    assert_eq!(job["webhook"]["url"], "https://hooks.example.com/…", "{job}");
    assert_eq!(job["webhook"]["state"], "pending");
    // A call recorded with the full URL in its detail and its error text (as the
    // dispatcher stores it) is shown masked in the history.
    let job_id: JobId = id.parse().unwrap();
    let detail = json!({ "url": hook, "attempt": 1, "error": format!("error sending request for url ({hook}): timed out") });
    h.jobs().append_event(job_id, None, "webhook", detail).await.unwrap();
    let events = h.http.get(h.url(&format!("/v1/jobs/{id}/events"))).send().await.unwrap().text().await.unwrap();
    assert!(!events.contains("s3cr3t") && !events.contains("sig=abc"), "{events}");
    assert!(events.contains("https://hooks.example.com/…"), "{events}");
    let listed = h.http.get(h.url("/v1/batches/api/jobs")).send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains("s3cr3t"), "{listed}");
    // A refused URL is not echoed whole either.
    let refused = h.post_photo(png(3, 16), &[("webhook_url", "ftp://files.example.com/drop/s3cr3t")], Some(TOKEN)).await;
    let message = expect_error(refused, 400, "invalid_webhook_url").await;
    assert!(!message.contains("s3cr3t"), "{message}");
    h.finish().await;
}

#[tokio::test]
async fn bad_input_gets_clear_json_errors() {
    let h = Harness::s3().await;
    let post = |body: Vec<u8>, content_type: &str| {
        h.http.post(h.url("/v1/jobs")).bearer_auth(TOKEN).header("content-type", content_type.to_string()).body(body).send()
    };
    expect_error(h.post_photo(b"%PDF-1.7 not a photo".to_vec(), &[], Some(TOKEN)).await, 415, "not_an_image").await;
    expect_error(h.post_photo(Vec::new(), &[], Some(TOKEN)).await, 400, "empty_photo").await;
    let mut big = png(3, 16);
    big.resize(MAX_PHOTO as usize + 1, 0);
    expect_error(h.post_photo(big, &[], Some(TOKEN)).await, 413, "photo_too_large").await;
    let mut huge = png(3, 16);
    huge.resize(MAX_BODY + 1, 0);
    expect_error(h.post_photo(huge, &[], Some(TOKEN)).await, 413, "body_too_large").await;
    let message = expect_error(h.post_photo(png(4, 16), &[("category", "giraffe")], Some(TOKEN)).await, 400, "invalid_category").await;
    assert!(message.contains("giraffe"), "{message}");
    expect_error(h.post_photo(png(4, 16), &[("batch", "a/b")], Some(TOKEN)).await, 400, "invalid_batch").await;
    expect_error(h.post_photo(png(4, 16), &[("colour", "red")], Some(TOKEN)).await, 400, "invalid_multipart").await;
    let no_photo = reqwest::multipart::Form::new().text("batch", "x");
    let response = h.http.post(h.url("/v1/jobs")).bearer_auth(TOKEN).multipart(no_photo).send().await.unwrap();
    expect_error(response, 400, "missing_photo").await;
    expect_error(post(b"{not json".to_vec(), "application/json").await.unwrap(), 400, "invalid_json").await;
    expect_error(post(br#"{"key":"a","extra":1}"#.to_vec(), "application/json").await.unwrap(), 400, "invalid_json").await;
    expect_error(post(br#"{"key":"../etc/passwd"}"#.to_vec(), "application/json").await.unwrap(), 400, "invalid_key").await;
    expect_error(post(b"raw".to_vec(), "text/plain").await.unwrap(), 415, "unsupported_content_type").await;
    expect_error(post(b"--x".to_vec(), "multipart/form-data").await.unwrap(), 400, "invalid_multipart").await;
    let bad_key = h.http.post(h.url("/v1/jobs")).bearer_auth(TOKEN).header("idempotency-key", "has space").json(&json!({"key": "a"}));
    expect_error(bad_key.send().await.unwrap(), 400, "invalid_idempotency_key").await;

    let get = |path: &str| h.http.get(h.url(path)).send();
    // A malformed job id is 400 invalid_job_id on every job route (as documented), a
    // well-formed unknown one 404.
    for suffix in ["", "/events", "/input", "/outputs", "/outputs/mesh_obj"] {
        expect_error(get(&format!("/v1/jobs/not-a-uuid{suffix}")).await.unwrap(), 400, "invalid_job_id").await;
        expect_error(get(&format!("/v1/jobs/{}{suffix}", JobId::new())).await.unwrap(), 404, "job_not_found").await;
    }
    expect_error(get(&format!("/v1/jobs/{}", JobId::new())).await.unwrap(), 404, "job_not_found").await;
    expect_error(get(&format!("/v1/jobs/{}/outputs", JobId::new())).await.unwrap(), 404, "job_not_found").await;
    expect_error(get("/v1/batches/none").await.unwrap(), 404, "batch_not_found").await;
    expect_error(get("/v1/batches/none/jobs").await.unwrap(), 404, "batch_not_found").await;
    expect_error(get("/v1/batches/none/jobs?limit=0").await.unwrap(), 400, "invalid_query").await;
    expect_error(get("/v1/batches/none/jobs?limit=abc").await.unwrap(), 400, "invalid_query").await;
    expect_error(get("/v1/stats?since=1w").await.unwrap(), 400, "invalid_query").await;
    expect_error(get("/v2/nothing").await.unwrap(), 404, "no_route").await;
    expect_error(h.http.delete(h.url("/v1/jobs")).send().await.unwrap(), 405, "method_not_allowed").await;
    assert!(h.jobs().batches().await.unwrap().is_empty(), "no bad request created anything");
    h.finish().await;
}

#[tokio::test]
async fn objects_already_in_the_bucket_are_submitted_by_key_alone_or_in_batches() {
    let h = Harness::s3().await;
    let keys: Vec<BlobKey> = (0..3).map(|i| BlobKey::parse(format!("uploads/shop/{i}.png")).unwrap()).collect();
    for (i, key) in keys.iter().enumerate() {
        h.blobs.put(key, png(10 + i as u8, 32).into()).await.unwrap();
    }
    let response = h
        .http
        .post(h.url("/v1/jobs"))
        .bearer_auth(TOKEN)
        .json(&json!({ "key": keys[0].as_str(), "batch": "shop", "external_id": "SKU-0" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let job = json_of(response).await;
    assert_eq!(job["input_key"], keys[0].as_str(), "the object is used in place, not copied");
    assert_eq!(h.blobs.list("jobs/").await.unwrap().len(), 0);
    let missing = h.http.post(h.url("/v1/jobs")).bearer_auth(TOKEN).json(&json!({ "key": "uploads/none.png" }));
    expect_error(missing.send().await.unwrap(), 422, "object_not_found").await;

    let batch = json!({ "name": "shop", "items": [
        { "key": keys[0].as_str(), "external_id": "SKU-0" },
        { "key": keys[1].as_str(), "external_id": "SKU-1", "category": "car" },
        { "key": "uploads/none.png" },
        { "key": keys[2].as_str(), "category": "giraffe" },
    ]});
    let response = h.http.post(h.url("/v1/batches")).bearer_auth(TOKEN).json(&batch).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let result = json_of(response).await;
    assert_eq!((result["created"].as_i64(), result["existing"].as_i64(), result["refused"].as_i64()), (Some(1), Some(1), Some(2)));
    let items = result["items"].as_array().unwrap();
    assert_eq!(items[0]["job"]["id"], job["id"], "item 0 was submitted before: same job");
    assert_eq!(items[1]["job"]["category"], "car");
    assert_eq!(items[2]["error"]["code"], "object_not_found");
    assert_eq!(items[3]["error"]["code"], "invalid_category");
    // 1 (single) + 1 (batch) gate messages.
    assert_eq!(h.take_gate_messages().await.len(), 2);

    let again = h.http.post(h.url("/v1/batches")).bearer_auth(TOKEN).json(&batch).send().await.unwrap();
    assert_eq!(again.status(), 200, "nothing new the second time");
    let empty = json!({ "name": "shop", "items": [] });
    let response = h.http.post(h.url("/v1/batches")).bearer_auth(TOKEN).json(&empty).send().await.unwrap();
    expect_error(response, 400, "invalid_batch_items").await;
    let summary = json_of(h.http.get(h.url("/v1/batches/shop")).send().await.unwrap()).await;
    assert_eq!(summary["total"], 2);
    assert_eq!(summary["by_state"]["submitted"], 2);
    assert_eq!(summary["finished"], 0);
    h.finish().await;
}

#[tokio::test]
async fn a_stated_real_size_is_checked_stored_and_shown() {
    let h = Harness::local().await;
    // Height alone, as a form field.
    let job = json_of(h.post_photo(png(1, 32), &[("batch", "sized"), ("height_mm", "910")], Some(TOKEN)).await).await;
    assert_eq!(job["size"], json!({ "height_mm": 910.0 }), "{job}");
    let id: JobId = job["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(h.jobs().get_job(id).await.unwrap().size, Some(RealSize::Height { height_mm: 910.0 }));
    let events = h.jobs().events(id).await.unwrap();
    assert_eq!(events[0].detail["size"], json!({ "height_mm": 910.0 }), "the submission event records it");
    // The full box.
    let boxed = [("batch", "sized"), ("width_mm", "600"), ("height_mm", "900"), ("depth_mm", "550")];
    let job = json_of(h.post_photo(png(2, 32), &boxed, Some(TOKEN)).await).await;
    assert_eq!(job["size"], json!({ "width_mm": 600.0, "height_mm": 900.0, "depth_mm": 550.0 }));
    // None: the category's typical size applies later.
    let job = json_of(h.post_photo(png(3, 32), &[("batch", "sized")], Some(TOKEN)).await).await;
    assert_eq!(job["size"], Value::Null);
    // Absurd, partial and non-numeric sizes are refused before anything is stored.
    for (fields, expected) in [
        (vec![("height_mm", "0")], "more than 0"),
        (vec![("height_mm", "1e9")], "largest accepted size"),
        (vec![("height_mm", "NaN")], "finite"),
        (vec![("height_mm", "90cm")], "must be a number"),
        (vec![("width_mm", "600"), ("height_mm", "900")], "all of width_mm, height_mm and depth_mm"),
    ] {
        let message = expect_error(h.post_photo(png(4, 32), &fields, Some(TOKEN)).await, 400, "invalid_size").await;
        assert!(message.contains(expected), "{fields:?}: {message}");
    }
    assert_eq!(h.jobs().batch_summary("sized").await.unwrap().unwrap().total, 3);
    // By object key, alone or in a batch, as JSON numbers.
    let key = BlobKey::parse("uploads/sized/5.png").unwrap();
    h.blobs.put(&key, png(5, 32).into()).await.unwrap();
    let by_key = h.http.post(h.url("/v1/jobs")).bearer_auth(TOKEN).json(&json!({ "key": key.as_str(), "batch": "keyed", "height_mm": 280 }));
    assert_eq!(json_of(by_key.send().await.unwrap()).await["size"], json!({ "height_mm": 280.0 }));
    let bad = h.http.post(h.url("/v1/jobs")).bearer_auth(TOKEN).json(&json!({ "key": key.as_str(), "depth_mm": 5 }));
    expect_error(bad.send().await.unwrap(), 400, "invalid_size").await;
    let batch = json!({ "name": "keyed-batch", "items": [
        { "key": key.as_str(), "width_mm": 300, "height_mm": 280, "depth_mm": 90 },
        { "key": key.as_str(), "height_mm": -1 },
    ]});
    let result = json_of(h.http.post(h.url("/v1/batches")).bearer_auth(TOKEN).json(&batch).send().await.unwrap()).await;
    assert_eq!(result["items"][0]["job"]["size"], json!({ "width_mm": 300.0, "height_mm": 280.0, "depth_mm": 90.0 }), "{result}");
    assert_eq!(result["items"][1]["error"]["code"], "invalid_size", "{result}");
    h.finish().await;
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_result_and_refuse_reuse() {
    let h = Harness::s3().await;
    let post_with = |photo: Vec<u8>, key: &'static str, sku: &'static str| {
        let form = reqwest::multipart::Form::new()
            .part("photo", reqwest::multipart::Part::bytes(photo).file_name("p.png"))
            .text("batch", "idem")
            .text("external_id", sku);
        h.http.post(h.url("/v1/jobs")).bearer_auth(TOKEN).header("Idempotency-Key", key).multipart(form).send()
    };
    let post = |photo: Vec<u8>, key: &'static str| post_with(photo, key, "SKU-1");
    let first = post(png(1, 32), "req-1").await.unwrap();
    assert_eq!(first.status(), 201);
    let id = json_of(first).await["id"].clone();
    let replay = post(png(1, 32), "req-1").await.unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(json_of(replay).await["id"], id);
    expect_error(post(png(2, 32), "req-1").await.unwrap(), 422, "idempotency_key_reused").await;
    // The same photo under another SKU is another request too.
    expect_error(post_with(png(1, 32), "req-1", "SKU-2").await.unwrap(), 422, "idempotency_key_reused").await;
    assert_eq!(h.jobs().batch_summary("idem").await.unwrap().unwrap().total, 1, "the refused request created nothing");
    let other = post(png(2, 32), "req-2").await.unwrap();
    assert_eq!(other.status(), 201);
    h.finish().await;
}

#[tokio::test]
async fn batch_listing_pages_through_every_job_once() {
    let h = Harness::s3().await;
    let mut submitted = BTreeSet::new();
    for seed in 0..5 {
        let response = h.post_photo(png(seed, 24), &[("batch", "paged")], Some(TOKEN)).await;
        assert_eq!(response.status(), 201);
        submitted.insert(json_of(response).await["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = h.url("/v1/batches/paged/jobs?limit=2");
        if let Some(cursor) = &after {
            url.push_str(&format!("&after={cursor}"));
        }
        let page = json_of(h.http.get(url).send().await.unwrap()).await;
        pages += 1;
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        seen.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_string()));
        match page["next_after"].as_str() {
            Some(cursor) => after = Some(cursor.to_string()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5, "no repeats: {seen:?}");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), submitted);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "submission (UUIDv7) order");
    h.finish().await;
}

#[tokio::test]
async fn outputs_redirect_to_presigned_s3_urls() {
    let h = Harness::s3().await;
    let response = h.post_photo(png(9, 32), &[("batch", "out"), ("external_id", "SKU-9")], Some(TOKEN)).await;
    let id: JobId = json_of(response).await["id"].as_str().unwrap().parse().unwrap();
    let voxels = b"#binvox 1\ndim 32 32 32\ntranslate 0 0 0\nscale 1\ndata\n".to_vec();
    complete_job(h.jobs(), h.blobs.as_ref(), id, &[("mesh_obj", "mesh.obj", OCTAHEDRON_OBJ.as_bytes()), ("voxels", "voxels.binvox", voxels.as_slice())]).await;

    let job = json_of(h.http.get(h.url(&format!("/v1/jobs/{id}"))).send().await.unwrap()).await;
    assert_eq!(job["state"], "done");
    assert_eq!(job["progress"], 100);
    assert_eq!(job["gate_scores"]["blur_variance"], 412.5);
    assert_eq!(job["category"], "chair");
    for stage in ["gate", "classify", "reconstruct", "refine"] {
        assert!(job["timings"]["stage_ms"][stage].as_i64().is_some_and(|ms| ms >= 0), "{stage}: {job}");
    }
    assert!(job["timings"]["total_ms"].as_i64().is_some());
    assert_eq!(job["links"]["downloads"]["mesh_obj"], format!("/v1/jobs/{id}/outputs/mesh_obj"));

    let listed = json_of(h.http.get(h.url(&format!("/v1/jobs/{id}/outputs"))).send().await.unwrap()).await;
    let names: Vec<&str> = listed["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mesh_obj", "voxels"]);
    assert_eq!(listed["outputs"][0]["content_type"], "model/obj");

    for (name, expected) in [("mesh_obj", OCTAHEDRON_OBJ.as_bytes()), ("voxels", voxels.as_slice())] {
        let redirect = h.http.get(h.url(&format!("/v1/jobs/{id}/outputs/{name}"))).send().await.unwrap();
        assert_eq!(redirect.status(), 307, "{name}");
        let location = redirect.headers()["location"].to_str().unwrap().to_string();
        assert!(location.contains("X-Amz-Signature="), "a presigned URL: {location}");
        // The presigned URL works on the S3 server, without our credentials.
        let object = reqwest::get(&location).await.unwrap();
        assert_eq!(object.status(), 200, "{location}");
        assert_eq!(object.bytes().await.unwrap().as_ref(), expected);
        let streamed = h.http.get(h.url(&format!("/v1/jobs/{id}/outputs/{name}?stream=true"))).send().await.unwrap();
        assert_eq!(streamed.status(), 200);
        assert_eq!(streamed.bytes().await.unwrap().as_ref(), expected);
    }
    let message = expect_error(
        h.http.get(h.url(&format!("/v1/jobs/{id}/outputs/mesh_glb"))).send().await.unwrap(),
        404,
        "output_not_found",
    )
    .await;
    assert!(message.contains("mesh_obj"), "lists what exists: {message}");
    h.finish().await;
}

#[tokio::test]
async fn outputs_stream_from_a_local_store_that_cannot_presign() {
    let h = Harness::local().await;
    let photo = png(5, 32);
    let response = h.post_photo(photo.clone(), &[("external_id", "SKU-5")], Some(TOKEN)).await;
    let job = json_of(response).await;
    assert_eq!(job["batch"], "api", "the default batch");
    let id: JobId = job["id"].as_str().unwrap().parse().unwrap();
    complete_job(h.jobs(), h.blobs.as_ref(), id, &[("mesh_obj", "mesh.obj", OCTAHEDRON_OBJ.as_bytes())]).await;
    let mesh = h.http.get(h.url(&format!("/v1/jobs/{id}/outputs/mesh_obj"))).send().await.unwrap();
    assert_eq!(mesh.status(), 200);
    assert_eq!(mesh.headers()["content-type"], "model/obj");
    assert_eq!(mesh.headers()["content-disposition"], "inline; filename=\"SKU-5-mesh.obj\"");
    assert_eq!(mesh.bytes().await.unwrap().as_ref(), OCTAHEDRON_OBJ.as_bytes());
    let input = h.http.get(h.url(&format!("/v1/jobs/{id}/input"))).send().await.unwrap();
    assert_eq!(input.headers()["content-type"], "image/png");
    assert_eq!(input.bytes().await.unwrap().as_ref(), photo.as_slice());
    h.finish().await;
}

/// The OpenAPI document describes exactly the routes the router serves (the router is
/// built from `Op::ALL`), with the same operation ids, the same security and scope
/// (`x-scope`), and lists the statuses each route can answer.
#[tokio::test]
async fn openapi_document_lists_exactly_the_served_routes() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml")).unwrap();
    let spec: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("docs/openapi.yaml is not YAML: {e}"));
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let mut documented = BTreeSet::new();
    // Security is declared once at the top and turned off (`security: []`) per open route.
    let default_secured = spec["security"].as_array().is_some_and(|a| !a.is_empty());
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let secured = operation.get("security").map_or(default_secured, |s| s.as_array().is_some_and(|a| !a.is_empty()));
            let scope = secured.then(|| operation["x-scope"].as_str().unwrap_or("(no x-scope)").to_string());
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            documented.insert((method.to_uppercase(), path.clone(), id.to_string(), scope));
            // Every status the server can answer on this route is listed.
            let statuses = operation["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: no responses"));
            let mut needed = vec![];
            if secured {
                needed.push("401");
            }
            if method == "post" {
                needed.extend(["403", "400", "413", "415"]);
            }
            if path.contains("{id}") {
                needed.extend(["400", "404"]);
            }
            if path.starts_with("/v1/") || path == "/" {
                needed.push("503");
            }
            for status in needed {
                assert!(statuses.contains_key(status), "{method} {path} does not document {status}");
            }
        }
    }
    let served: BTreeSet<_> = Op::ALL
        .into_iter()
        .map(|op| {
            let scope = op.access().scope().map(str::to_string);
            (op.method().to_string(), op.path().to_string(), op.operation_id().to_string(), scope)
        })
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(missing.is_empty() && stale.is_empty(), "served but not documented: {missing:?}\ndocumented but not served: {stale:?}");

    // Every $ref points at something that exists.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec, &mut all);
    for r in all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(spec.pointer(pointer).is_some(), "dangling $ref {r}");
    }

    // The server hands out the same document.
    let h = Harness::local().await;
    let served_text = h.http.get(h.url("/openapi.yaml")).send().await.unwrap().text().await.unwrap();
    assert_eq!(served_text, text);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_traceparent_makes_the_submission_part_of_its_trace() {
    use mono2mesh_infra::otel::TRACEPARENT;
    use mono2mesh_infra::queue::{Lane, MessageQueue};
    let receiver = mono2mesh_testkit::otlp::traced_process();
    let h = Harness::s3().await;
    // A fresh trace id per run, so spans of an earlier run cannot satisfy this one.
    let trace_id = JobId::new().to_string().replace('-', "");
    let caller_span = "00f067aa0ba902b7";
    let form = reqwest::multipart::Form::new()
        .part("photo", reqwest::multipart::Part::bytes(png(11, 64)).file_name("photo.png"));
    let response = h
        .http
        .post(h.url("/v1/jobs"))
        .bearer_auth(TOKEN)
        .header(TRACEPARENT, format!("00-{trace_id}-{caller_span}-01"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = json_of(response).await["id"].as_str().unwrap().to_string();

    tokio::task::spawn_blocking(mono2mesh_infra::telemetry::flush).await.unwrap();
    let spans = receiver
        .wait_for_trace(&trace_id, Duration::from_secs(20), |spans| {
            spans.iter().any(|s| s.name == "submit") && spans.iter().any(|s| s.name == "POST /v1/jobs")
        })
        .await;
    let request = spans.iter().find(|s| s.name == "POST /v1/jobs").unwrap();
    assert_eq!(request.parent_span_id, caller_span, "the request span continues the caller's trace: {spans:#?}");
    assert_eq!(request.attribute("http.response.status_code"), Some("201"));
    assert_eq!(request.attribute("http.route"), Some("/v1/jobs"));
    let submit = spans.iter().find(|s| s.name == "submit").unwrap();
    assert_eq!(submit.parent_span_id, request.span_id);
    assert_eq!(submit.attribute("job_id"), Some(id.as_str()));

    // The gate message hands the same trace on to the workers.
    let mut stream = h.queue.consume(&[Lane::Gate], 10).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(delivery.trace().get(TRACEPARENT), Some(format!("00-{trace_id}-{}-01", submit.span_id).as_str()));
    delivery.ack().await.unwrap();
    let _ = stream.cancel().await;

    // Without a traceparent the request span is the root of a trace of its own.
    let alone = h.post_photo(png(12, 64), &[], Some(TOKEN)).await;
    assert_eq!(alone.status(), 201);
    let alone = json_of(alone).await["id"].as_str().unwrap().to_string();
    tokio::task::spawn_blocking(mono2mesh_infra::telemetry::flush).await.unwrap();
    let submit = receiver.spans().into_iter().find(|s| s.name == "submit" && s.attribute("job_id") == Some(alone.as_str()));
    let submit = submit.expect("the second submission's span was exported");
    assert_ne!(submit.trace_id, trace_id);
    let own = receiver
        .wait_for_trace(&submit.trace_id, Duration::from_secs(20), |spans| spans.iter().any(|s| s.name == "POST /v1/jobs"))
        .await;
    let request = own.iter().find(|s| s.name == "POST /v1/jobs").unwrap();
    assert_eq!((request.parent_span_id.as_str(), submit.parent_span_id.as_str()), ("", request.span_id.as_str()));
    h.finish().await;
}
