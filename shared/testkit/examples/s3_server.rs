//! The test S3 server as a process, for scripts that run the real workers outside
//! `cargo test` (`scripts/chaos.sh`): s3s-fs over a directory, with the test
//! credentials (access key `mono2mesh-test`, secret `mono2mesh-test-secret`).
//!
//! `cargo run -p mono2mesh-testkit --example s3_server -- DIR [PORT]` prints
//! `listening on 127.0.0.1:PORT` and serves until killed.

use mono2mesh_testkit::services::serve_s3_dir;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next() else {
        eprintln!("usage: s3_server DIR [PORT]");
        std::process::exit(2);
    };
    let port: u16 = match args.next().map(|p| p.parse()) {
        None => 0,
        Some(Ok(port)) => port,
        Some(Err(e)) => {
            eprintln!("bad port: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&root) {
        eprintln!("cannot create {root}: {e}");
        std::process::exit(1);
    }
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on {addr}"),
        Err(e) => eprintln!("local address: {e}"),
    }
    serve_s3_dir(listener, std::path::Path::new(&root)).await;
}
