//! The status page in a real headless Chromium: given a read token (in the address's
//! fragment), the recent job shows its input photo, gate scores and category, and the
//! WebGL viewer renders its mesh; without one the page asks for a token and shows no
//! data. The screenshot's path is printed (run with `--nocapture` to see it).
//!
//! Needs Debian's `chromium` (or MONO2MESH_CHROMIUM pointing at a Chromium binary).

mod support;

use mono2mesh_core::JobId;
use std::path::PathBuf;
use std::time::Duration;
use support::{complete_job, expect_error, png, Harness, OCTAHEDRON_OBJ, READ_TOKEN, TOKEN};

fn chromium() -> PathBuf {
    let candidate = std::env::var("MONO2MESH_CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let found = if candidate.contains('/') {
        Some(PathBuf::from(&candidate)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(&candidate)).find(|p| p.is_file()))
    };
    found.unwrap_or_else(|| {
        panic!(
            "headless Chromium is required for the status page test but {candidate:?} was not found: \
             `apt-get install -y chromium`, or set MONO2MESH_CHROMIUM"
        )
    })
}

/// Runs headless Chromium on `url` with `extra` flags and returns its stdout.
async fn run_chromium(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            // Software WebGL: CI machines have no GPU.
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            // Lets the page's fetch of the mesh and the first frames run before the dump.
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .unwrap_or_else(|_| panic!("Chromium did not finish within 90 s"))
        .unwrap_or_else(|e| panic!("cannot run Chromium: {e}"));
    assert!(
        output.status.success(),
        "Chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn status_page_shows_recent_jobs_and_renders_the_mesh_in_headless_chromium() {
    let h = Harness::local().await;
    let done = h.post_photo(png(21, 96), &[("batch", "page"), ("external_id", "SKU-CHAIR")], Some(TOKEN)).await;
    let done: serde_json::Value = done.json().await.unwrap();
    let done_id: JobId = done["id"].as_str().unwrap().parse().unwrap();
    complete_job(h.jobs(), h.blobs.as_ref(), done_id, &[("mesh_obj", "mesh.obj", OCTAHEDRON_OBJ.as_bytes())]).await;
    // A coloured asset, as the refine stage writes it: a GLB with COLOR_0 and its preview.
    let coloured = h.post_photo(png(23, 96), &[("batch", "page"), ("external_id", "SKU-RED")], Some(TOKEN)).await;
    let coloured: JobId = coloured.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let glb = coloured_octahedron_glb();
    let preview = png(24, 64);
    complete_job(h.jobs(), h.blobs.as_ref(), coloured, &[("mesh_glb", "mesh.glb", &glb), ("preview", "preview.png", &preview)]).await;
    let waiting = h.post_photo(png(22, 96), &[("batch", "page"), ("external_id", "SKU-<b>")], Some(TOKEN)).await;
    assert_eq!(waiting.status(), 201);

    // The page itself is open and holds no data; the data needs a token.
    let shell = h.anon.get(h.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(shell.contains("id=\"login\"") && !shell.contains(&done_id.to_string()) && !shell.contains("SKU-"), "{shell}");
    expect_error(h.anon.get(h.url("/v1/status")).send().await.unwrap(), 401, "unauthorized").await;
    let html = h.anon.get(h.url("/v1/status")).bearer_auth(READ_TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(&format!("data-job=\"{done_id}\"")), "the finished job is listed");
    assert!(html.contains(&format!("data-src=\"/v1/jobs/{done_id}/input?stream=true\"")), "with its input photo");
    assert!(html.contains("category: chair"));
    assert!(html.contains("blur_variance 412.5"), "with its gate scores");
    assert!(html.contains(&format!("data-mesh=\"/v1/jobs/{done_id}/outputs/mesh_obj?stream=true\"")));
    assert!(html.contains("SKU-&lt;b&gt;") && !html.contains("SKU-<b>"), "external ids are escaped");
    assert_eq!(html.matches("<canvas width=").count(), 2, "only the finished jobs have a mesh to show");
    assert!(html.contains(&format!("data-src=\"/v1/jobs/{coloured}/outputs/preview?stream=true\"")), "with the coloured job's preview");

    // Without a token the page asks for one and shows nothing.
    let dom = run_chromium(&h.url("/"), &["--dump-dom".to_string()]).await;
    assert!(dom.contains("data-status=\"needs token\""), "{dom}");
    assert!(!dom.contains(&done_id.to_string()), "no job data without a token");

    // With a read token in the fragment: the panel, the photo and the mesh load.
    let with_token = h.url(&format!("/#token={READ_TOKEN}"));
    let dom = run_chromium(&with_token, &["--dump-dom".to_string()]).await;
    let statuses: Vec<String> =
        dom.split("data-status=").skip(1).map(|s| s.chars().take(40).collect::<String>()).collect();
    assert!(dom.contains("data-status=\"rendered 8 triangles\""), "the viewer rendered the octahedron in Chromium: {statuses:?}");
    assert!(dom.contains("data-status=\"rendered 8 triangles in colour\""), "and the coloured GLB with its COLOR_0: {statuses:?}");
    assert!(dom.contains("alt=\"input photo\" data-src="), "{statuses:?}");
    assert_eq!(dom.matches("data-status=\"loaded\"").count(), 1 + 3 + 1, "the panel, the three photos and the preview loaded: {statuses:?}");
    assert!(!dom.contains(READ_TOKEN), "the token is not left in the page or its address");

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    run_chromium(&with_token, &[format!("--screenshot={}", screenshot.display()), "--window-size=1280,900".to_string()]).await;
    let shot = image::open(&screenshot).unwrap_or_else(|e| panic!("screenshot {}: {e}", screenshot.display()));
    assert_eq!((shot.width(), shot.height()), (1280, 900));
    println!("SCREENSHOT: {}", screenshot.display());
    h.finish().await;
}

/// The octahedron as a GLB with one colour per vertex (what `export::encode_coloured` writes).
fn coloured_octahedron_glb() -> Vec<u8> {
    use mono2mesh_geometry::colour::Colours;
    let mesh = mono2mesh_geometry::Mesh {
        positions: vec![[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]],
        triangles: vec![[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]],
        normals: Vec::new(),
    };
    let colours = Colours { per_vertex: vec![[0.8, 0.05, 0.05, 1.0]; 6], base_colour: [0.8, 0.05, 0.05, 1.0] };
    mono2mesh_geometry::export::encode_coloured(&mesh, &colours, mono2mesh_geometry::export::MeshFormat::Glb).unwrap()
}
