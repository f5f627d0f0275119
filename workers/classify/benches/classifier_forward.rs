//! Forward-pass cost of the classifiers (eval, no grad, fp32) at batch 1 and 8, on the CPU
//! and, when one is usable, on CUDA (batch 64 there, the reference's batch size).
//! Weights are tch's initialisation: the cost does not depend on their values.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mono2mesh_vision::classifier::{Architecture, ClassifierModel};
use mono2mesh_vision::device::DeviceChoice;
use tch::{Device, Kind, Tensor};

fn forward(c: &mut Criterion) {
    let mut targets = vec![(Device::Cpu, vec![1i64, 8])];
    if let Ok(cuda @ Device::Cuda(_)) = DeviceChoice::Auto.resolve() {
        targets.push((cuda, vec![1, 64]));
    }
    let mut group = c.benchmark_group("classifier_forward");
    group.sample_size(10);
    for (device, batches) in targets {
        for architecture in Architecture::ALL {
            let model = ClassifierModel::untrained(architecture, device);
            for &batch in &batches {
                let input = Tensor::randn([batch, 3, 224, 224], (Kind::Float, device));
                let id = BenchmarkId::new(format!("{architecture}/{device:?}"), format!("b{batch}"));
                group.bench_with_input(id, &input, |b, input| {
                    b.iter(|| {
                        let logits = model.logits(input).expect("forward pass");
                        // wait for asynchronous CUDA work so the time is the real cost
                        let _ = logits.sum(Kind::Float).double_value(&[]);
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
