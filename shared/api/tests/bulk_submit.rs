//! `mono2mesh submit`, `status` and `fetch` as library calls, against real Postgres and
//! a real S3 server: a manifest submission, its resumption, and the download by SKU.

mod support;

use mono2mesh_api::bulk::{fetch_batch, submit_all};
use mono2mesh_api::ingest::{Ingest, PhotoMeta};
use mono2mesh_api::manifest::read_source;
use mono2mesh_core::{Category, JobId, JobState, RealSize};
use mono2mesh_infra::blob::{keys, BlobStore};
use mono2mesh_infra::jobs::NewJob;
use mono2mesh_testkit::services::{TestDatabase, TestS3};
use std::sync::Arc;
use support::{complete_job, memory_queue, png, OCTAHEDRON_OBJ};

#[tokio::test]
async fn manifest_submission_resumes_and_fetch_names_meshes_by_sku() {
    let db = TestDatabase::create().await;
    let s3 = TestS3::on_port("bulk-test").await;
    let blobs: Arc<dyn BlobStore> = Arc::new(s3.store.clone());
    let queue = memory_queue();
    let ingest = Ingest { jobs: db.store.clone(), blobs: blobs.clone(), queue: queue.clone(), max_photo_bytes: 1 << 20, default_webhook: None, allow_private_webhooks: true };

    let dir = tempfile::tempdir().unwrap();
    for i in 0..4u8 {
        std::fs::write(dir.path().join(format!("p{i}.png")), png(40 + i, 32)).unwrap();
    }
    std::fs::write(dir.path().join("broken.png"), b"not really a png").unwrap();
    let manifest = dir.path().join("catalog.csv");
    std::fs::write(
        &manifest,
        "path,sku,category,height_mm\np0.png,SKU-0,chair,910\np1.png,SKU-1,,\np2.png,SKU/2,sofa,\np3.png,SKU-3,,\nbroken.png,SKU-X,,\n",
    )
    .unwrap();

    // A previous run was cut off after recording p3's job but before publishing it.
    let p3 = std::fs::read(dir.path().join("p3.png")).unwrap();
    let orphan_id = JobId::new();
    let orphan_key = keys::input(orphan_id, "photo.png").unwrap();
    blobs.put(&orphan_key, p3.clone().into()).await.unwrap();
    let recorded = db
        .store
        .submit(&NewJob {
            id: orphan_id,
            batch: "cat".into(),
            input_key: orphan_key,
            content_hash: mono2mesh_api::ingest::content_hash(&p3),
            external_id: Some("SKU-3".into()),
            category: None,
            size: None,
        })
        .await
        .unwrap();
    assert!(recorded.created);

    let entries = read_source(&manifest).unwrap();
    let mut progress_calls = 0;
    let report = submit_all(&ingest, entries.clone(), "cat", 3, |_| progress_calls += 1).await.unwrap();
    assert_eq!(progress_calls, 5);
    assert_eq!((report.created, report.resumed, report.skipped), (3, 1, 0), "{report:?}");
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].0.ends_with("broken.png") && report.failed[0].1.contains("not a supported image"));
    let messages = support::take_messages(&queue).await;
    assert_eq!(messages.len(), 4, "three new jobs and the cut-off one");
    assert!(messages.iter().any(|m| m.job_id == orphan_id));
    let chair = messages.iter().filter(|m| m.category == Some(Category::Chair)).count();
    assert_eq!(chair, 1, "the manifest's category travels with the message");
    let sized: Vec<_> = db
        .store
        .list_batch_jobs("cat", mono2mesh_infra::jobs::Page { after: None, limit: 10 })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|j| j.size.map(|size| (j.external_id, size)))
        .collect();
    assert_eq!(sized, vec![(Some("SKU-0".to_string()), RealSize::Height { height_mm: 910.0 })], "the manifest's size is the job's");

    // Re-running the same submission changes nothing.
    let again = submit_all(&ingest, entries, "cat", 3, |_| {}).await.unwrap();
    assert_eq!((again.created, again.resumed, again.skipped, again.failed.len()), (0, 0, 4, 1));
    assert!(support::take_messages(&queue).await.is_empty(), "nothing is published twice");
    let summary = db.store.batch_summary("cat").await.unwrap().unwrap();
    assert_eq!((summary.total, summary.count(JobState::Submitted)), (4, 4));

    // Two jobs finish; fetch writes their outputs named by SKU (made file-safe).
    let jobs = mono2mesh_api::bulk::all_batch_jobs(&db.store, "cat").await.unwrap();
    let by_sku = |sku: &str| jobs.iter().find(|j| j.external_id.as_deref() == Some(sku)).unwrap().id;
    let voxels = b"voxels of SKU/2".to_vec();
    complete_job(&db.store, blobs.as_ref(), by_sku("SKU-0"), &[("mesh_obj", "mesh.obj", OCTAHEDRON_OBJ.as_bytes())]).await;
    complete_job(
        &db.store,
        blobs.as_ref(),
        by_sku("SKU/2"),
        &[("mesh_obj", "mesh.obj", b"o other\n".as_slice()), ("voxels", "voxels.binvox", voxels.as_slice())],
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let fetched = fetch_batch(&db.store, blobs.as_ref(), "cat", out.path()).await.unwrap();
    assert_eq!(fetched.not_done, 2);
    let mut names: Vec<String> =
        fetched.written.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_string()).collect();
    names.sort();
    assert_eq!(names, ["SKU-0.obj", "SKU_2.binvox", "SKU_2.obj"]);
    assert_eq!(std::fs::read(out.path().join("SKU-0.obj")).unwrap(), OCTAHEDRON_OBJ.as_bytes());
    assert_eq!(std::fs::read(out.path().join("SKU_2.binvox")).unwrap(), voxels);
    assert!(fetch_batch(&db.store, blobs.as_ref(), "nope", out.path()).await.is_err());

    // A bad batch name is refused before anything is read.
    let err = ingest.submit_photo(png(1, 8).into(), &PhotoMeta { batch: String::new(), ..PhotoMeta::default() }).await;
    assert!(err.is_err_and(|e| e.is_bad_input()));
    drop(s3);
    db.drop_database().await;
}
