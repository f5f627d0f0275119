//! Worker shell for the gate stage. The queue runtime that feeds it is not wired yet:
//! this binary refuses to start rather than pretend to consume work.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("mono2mesh-gate: the queue runtime is not wired into this worker yet")
}
