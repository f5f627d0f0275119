//! Worker shell for the classify stage. The queue runtime that feeds it is not wired yet:
//! this binary refuses to start rather than pretend to consume work.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("mono2mesh-classify: the queue runtime is not wired into this worker yet")
}
