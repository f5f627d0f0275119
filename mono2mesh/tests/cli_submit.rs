//! `mono2mesh submit` run as a script runs it (output piped, not a terminal) against a real
//! Postgres, RabbitMQ and S3 server (`mono2mesh_testkit::rig`): good photos become jobs, and
//! every photo refused at the door is listed with its reason before the command exits 1.

use mono2mesh_testkit::rig::PipelineRig;
use std::io::Cursor;

fn photo(seed: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 3 + seed) as u8, (y * 5) as u8, ((x ^ y) + seed) as u8]));
    let mut png = Vec::new();
    image.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    png
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_submit_lists_each_refused_photo_with_its_reason() {
    let rig = PipelineRig::start("submit").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good-1.png"), photo(1)).unwrap();
    std::fs::write(dir.path().join("good-2.png"), photo(2)).unwrap();
    std::fs::write(dir.path().join("empty.jpg"), b"").unwrap();
    std::fs::write(dir.path().join("notes.png"), b"not a picture at all").unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mono2mesh"))
        .args(["submit", dir.path().to_str().unwrap(), "--batch", "cli-submit"])
        .env_clear()
        .envs(rig.worker_env())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "refused photos make the run fail: {stdout} {stderr}");
    assert!(stdout.contains("2 submitted") && stdout.contains("2 failed"), "{stdout}");
    let refused: Vec<&str> = stderr.lines().filter(|l| l.starts_with("failed: ")).collect();
    assert_eq!(refused.len(), 2, "each refused photo on its own line: {stderr}");
    assert!(refused.iter().any(|l| l.contains("empty.jpg") && l.contains("empty")), "{stderr}");
    assert!(refused.iter().any(|l| l.contains("notes.png")), "{stderr}");
    assert!(stderr.lines().last().unwrap_or("").starts_with("error: 2 photos could not be submitted"), "{stderr}");

    let jobs = rig.jobs().list_batch_jobs("cli-submit", mono2mesh_infra::jobs::Page { after: None, limit: 100 }).await.unwrap();
    let mut ids: Vec<_> = jobs.iter().filter_map(|j| j.external_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["good-1", "good-2"]);
    rig.finish().await;
}
