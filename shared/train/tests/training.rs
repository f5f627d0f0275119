//! Training and evaluation on a tiny synthetic catalog, on CPU: a short run must lower the
//! loss and raise IoU, checkpoints must resume where they stopped, and the evaluation must
//! weight categories by their sample counts as the official code does.

use std::path::Path;

use mono2mesh_catalog::dataset::{synthesize, Dataset, Split, SynthConfig};
use mono2mesh_core::Category;
use mono2mesh_vision::pix2vox::Variant;
use mono2mesh_vision::pix2vox_model::{ModelMetadata, Pix2VoxModel, Provenance};
use mono2mesh_vision::precision::Precision;
use mono2mesh_train::trainer::{Quiet, TrainObserver, BEST_EVAL_FILE, BEST_FILE, CHECKPOINT_FILE, METRICS_FILE};
use mono2mesh_train::eval::evaluate_with;
use mono2mesh_train::{
    evaluate, AugmentConfig, DataError, DatasetLocation, EpochMetrics, EvalConfig, Init, PairSet, SurfaceConfig, TrainConfig, Trainer,
    TrunkMode,
};
use tch::Device;

/// libtorch's random generator is process-global and initialisation draws from it: the
/// tests take turns so each run's weights, and so its outcome, are the same every time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn catalog(dir: &Path, categories: Vec<Category>, models: usize) -> Dataset {
    let cfg = SynthConfig { categories, models_per_category: models, views: 3, seed: 21, ..SynthConfig::default() };
    synthesize(dir, &cfg, &|_| {}).unwrap();
    Dataset::open(dir).unwrap()
}

fn all_samples(ds: &Dataset) -> Vec<mono2mesh_catalog::dataset::Sample> {
    [Split::Train, Split::Val, Split::Test].iter().flat_map(|&s| ds.samples(s, None)).collect()
}

fn quick_config(root: &Path, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 2,
        seed: 7,
        // The official augmentations work against memorising six models in a few steps;
        // this test is about the loop, so it trains on the test transform.
        augment: AugmentConfig::none(),
        eval: EvalConfig { batch_size: 4, ..EvalConfig::default() },
        ..TrainConfig::official(Variant::F, DatasetLocation::root(root))
    }
}

#[test]
fn a_short_run_lowers_the_loss_and_raises_iou() {
    let _turn = serial();
    let data = tempfile::tempdir().unwrap();
    let ds = catalog(data.path(), vec![Category::Chair], 6);
    // Train and validate on the same six models: the claim is that the loop learns.
    let pairs = PairSet::load(&ds, all_samples(&ds)).unwrap();
    let run = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::start(quick_config(data.path(), 6), run.path(), Device::Cpu).unwrap();
    assert_eq!(trainer.trainable_parameters(), 4_517_331, "the trunk stays frozen");
    let before = evaluate(&trainer.model.net, &pairs, &trainer.config.eval, Device::Cpu, &mut |_| {}).unwrap();
    let summary = trainer.run(&pairs, &pairs, &mut Quiet).unwrap();
    assert_eq!(summary.epochs_done, 6);

    let metrics: Vec<EpochMetrics> = std::fs::read_to_string(run.path().join(METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 6);
    let (first, last) = (&metrics[0], &metrics[5]);
    assert!(last.train_loss < first.train_loss * 0.8, "loss {} -> {}", first.train_loss, last.train_loss);
    assert!(
        summary.best_iou > before.best_iou + 0.05,
        "IoU {:.3} before training, best {:.3} after",
        before.best_iou,
        summary.best_iou
    );

    // The best model is an ordinary model file with its provenance and its evaluation.
    let best = Pix2VoxModel::load(run.path().join(BEST_FILE), Device::Cpu, Some(Variant::F)).unwrap();
    assert_eq!(best.metadata.provenance.kind, "train");
    assert_eq!(best.metadata.provenance.details["epoch"], serde_json::json!(summary.best_epoch.unwrap()));
    let report = evaluate(&best.net, &pairs, &trainer.config.eval, Device::Cpu, &mut |_| {}).unwrap();
    assert!((report.best_iou - summary.best_iou).abs() < 1e-6, "{} vs {}", report.best_iou, summary.best_iou);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(run.path().join(BEST_EVAL_FILE)).unwrap()).unwrap();
    assert!((saved["best_iou"].as_f64().unwrap() - summary.best_iou).abs() < 1e-9);
    // Starting over in the same directory is refused rather than overwriting the run.
    assert!(Trainer::start(quick_config(data.path(), 1), run.path(), Device::Cpu).is_err());
}

#[test]
fn a_resumed_run_continues_where_it_stopped_and_finetuning_starts_from_the_base() {
    let _turn = serial();
    let data = tempfile::tempdir().unwrap();
    let ds = catalog(data.path(), vec![Category::Sofa], 4);
    let pairs = PairSet::load(&ds, all_samples(&ds)).unwrap();
    // Both runs start from the same saved weights: libtorch's seed is process-global and
    // the other tests in this binary draw from it concurrently.
    let init = tempfile::tempdir().unwrap();
    let init_path = init.path().join("init.safetensors");
    let metadata = ModelMetadata::official(Variant::F, None, Provenance::of_kind("test"));
    Pix2VoxModel::new(metadata, Device::Cpu).save(&init_path).unwrap();
    let config = TrainConfig {
        max_batches_per_epoch: Some(1),
        init: Init::From(init_path),
        ..quick_config(data.path(), 2)
    };

    let straight = tempfile::tempdir().unwrap();
    let mut a = Trainer::start(config.clone(), straight.path(), Device::Cpu).unwrap();
    a.run(&pairs, &pairs, &mut Quiet).unwrap();

    let split = tempfile::tempdir().unwrap();
    let mut b = Trainer::start(TrainConfig { epochs: 1, ..config.clone() }, split.path(), Device::Cpu).unwrap();
    b.run(&pairs, &pairs, &mut Quiet).unwrap();
    drop(b);
    let mut b = Trainer::resume(split.path(), Device::Cpu, Some(2)).unwrap();
    assert_eq!(b.state.epochs_done, 1);
    b.run(&pairs, &pairs, &mut Quiet).unwrap();

    let va = a.model.vs.variables();
    let vb = b.model.vs.variables();
    let mut worst = 0f64;
    for (name, t) in &va {
        worst = worst.max((t - &vb[name]).abs().max().double_value(&[]));
    }
    assert!(worst < 1e-4, "resumed weights differ from an uninterrupted run by {worst}");
    assert_eq!(std::fs::read_to_string(split.path().join(METRICS_FILE)).unwrap().lines().count(), 2);

    // Fine-tuning: starts from the base weights, frozen head leaves the encoder untouched.
    let tuned = tempfile::tempdir().unwrap();
    let base = straight.path().join(CHECKPOINT_FILE);
    let ft = TrainConfig {
        freeze_encoder_head: true,
        epochs: 1,
        ..TrainConfig { init: Init::From(base.clone()), category: Some(Category::Sofa), ..config }
    };
    let mut c = Trainer::start(ft, tuned.path(), Device::Cpu).unwrap();
    assert!(c.trainable_parameters() < 4_517_331);
    c.run(&pairs, &pairs, &mut Quiet).unwrap();
    let base_vars = a.model.vs.variables();
    for (name, t) in c.model.vs.variables() {
        let same = t.equal(&base_vars[&name]);
        if name.starts_with("encoder.") && !name.contains("running_") {
            assert!(same, "{name} changed although the encoder is frozen");
        }
        if name.starts_with("decoder.layer1.0.weight") {
            assert!(!same, "the decoder did not learn");
        }
    }
    let model = Pix2VoxModel::load(tuned.path().join(BEST_FILE), Device::Cpu, None).unwrap();
    assert_eq!(model.metadata.category, Some(Category::Sofa));
    assert_eq!(model.metadata.provenance.kind, "finetune");
}

#[test]
fn evaluation_is_sample_weighted_across_categories() {
    let _turn = serial();
    let data = tempfile::tempdir().unwrap();
    let cfg = SynthConfig { categories: vec![Category::Chair, Category::Car], models_per_category: 3, views: 1, seed: 5, ..SynthConfig::default() };
    synthesize(data.path(), &cfg, &|_| {}).unwrap();
    let ds = Dataset::open(data.path()).unwrap();
    // 3 chairs and 1 car: a mean of category means would weight the car 3x too much.
    let mut samples = ds.samples(Split::Train, Some(&[Category::Chair]));
    samples.extend(ds.samples(Split::Val, Some(&[Category::Chair])));
    samples.extend(ds.samples(Split::Test, Some(&[Category::Chair])));
    samples.extend(ds.samples(Split::Test, Some(&[Category::Car])).into_iter().take(1));
    let pairs = PairSet::load(&ds, samples).unwrap();
    let vs = tch::nn::VarStore::new(Device::Cpu);
    tch::manual_seed(3);
    let net = mono2mesh_vision::pix2vox::Pix2Vox::new(&vs.root(), Variant::F);
    let mut seen = Vec::new();
    let report = evaluate(&net, &pairs, &EvalConfig { batch_size: 3, ..EvalConfig::default() }, Device::Cpu, &mut |n| seen.push(n)).unwrap();
    assert_eq!(seen, vec![3, 4]);
    assert_eq!(report.samples, 4);
    let chair = &report.per_category["chair"];
    let car = &report.per_category["car"];
    assert_eq!((chair.samples, car.samples), (3, 1));
    for t in 0..4 {
        let weighted = (3.0 * chair.iou[t] + car.iou[t]) / 4.0;
        assert!((report.overall[t] - weighted).abs() < 1e-12);
        assert!((0.0..=1.0).contains(&report.overall[t]));
    }
    assert_eq!(report.best_iou, report.overall.iter().cloned().fold(f64::MIN, f64::max));
    let table = report.table();
    assert!(table.contains("chair") && table.contains("overall") && table.contains("t=0.3"), "{table}");
}

#[test]
fn surface_metrics_score_the_truth_near_perfect_and_an_empty_prediction_zero() {
    let _turn = serial();
    let data = tempfile::tempdir().unwrap();
    let ds = catalog(data.path(), vec![Category::Chair, Category::Bottle], 3);
    let pairs = PairSet::load(&ds, all_samples(&ds)).unwrap();
    let config = EvalConfig {
        batch_size: 4,
        surface: Some(SurfaceConfig { iso: 0.5, samples: 10_000 }),
        ..EvalConfig::default()
    };
    let volumes = |chunk: &[usize], f: &dyn Fn(&[f32]) -> Vec<f32>| {
        let values: Vec<f32> = chunk.iter().flat_map(|&i| f(pairs.voxels(i))).collect();
        Ok::<_, DataError>(tch::Tensor::from_slice(&values).reshape([chunk.len() as i64, 32, 32, 32]))
    };
    // The ground truth as the prediction: its own surface, up to sampling.
    let truth = evaluate_with(&pairs, &config, &mut |_| {}, &mut |chunk| volumes(chunk, &|v| v.to_vec())).unwrap();
    let surface = truth.surface.clone().expect("asked for surface metrics");
    assert_eq!((surface.overall.samples, surface.overall.empty), (pairs.len(), 0));
    assert!(surface.overall.fscore_1 > 0.9 && surface.overall.fscore_2 > 0.99, "{surface:?}");
    assert!(surface.overall.chamfer_l1 < 0.01 && surface.overall.normal_consistency > 0.9, "{surface:?}");
    assert_eq!(surface.per_category.len(), 2);
    // The truth one voxel thinner everywhere it can be (an eroded grid): worse on every metric.
    let eroded = evaluate_with(&pairs, &config, &mut |_| {}, &mut |chunk| {
        volumes(chunk, &|v| {
            let at = |x: i64, y: i64, z: i64| {
                let inside = (0..32).contains(&x) && (0..32).contains(&y) && (0..32).contains(&z);
                inside && v[(x * 32 * 32 + y * 32 + z) as usize] >= 0.5
            };
            (0..32 * 32 * 32i64)
                .map(|i| {
                    let (x, y, z) = (i / 1024, i / 32 % 32, i % 32);
                    let keep = at(x, y, z)
                        && [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
                            .iter()
                            .all(|(dx, dy, dz)| at(x + dx, y + dy, z + dz));
                    if keep { 1.0 } else { 0.0 }
                })
                .collect()
        })
    })
    .unwrap();
    let worse = eroded.surface.unwrap().overall;
    assert!(worse.fscore_1 < surface.overall.fscore_1 && worse.chamfer_l1 > surface.overall.chamfer_l1, "{worse:?}");
    // Nothing predicted: every sample empty, F = 0, and the table says so.
    let empty = evaluate_with(&pairs, &config, &mut |_| {}, &mut |chunk| volumes(chunk, &|v| vec![0.0; v.len()])).unwrap();
    let none = empty.surface.as_ref().unwrap().overall.clone();
    assert_eq!((none.empty, none.fscore_1, none.fscore_2), (pairs.len(), 0.0, 0.0));
    let table = empty.table();
    assert!(table.contains("F@1%") && table.contains("empty"), "{table}");
    // Reports without surfaces (older eval.json files) still read.
    let mut json = serde_json::to_value(&truth).unwrap_or_default();
    json.as_object_mut().map(|o| o.remove("surface"));
    let old: mono2mesh_train::EvalReport = serde_json::from_value(json).unwrap();
    assert!(old.surface.is_none());
}

#[test]
fn retrieval_returns_the_nearest_training_shape() {
    let _turn = serial();
    let data = tempfile::tempdir().unwrap();
    let ds = catalog(data.path(), vec![Category::Chair, Category::Bottle], 3);
    let pairs = PairSet::load(&ds, all_samples(&ds)).unwrap();
    let vs = tch::nn::VarStore::new(Device::Cpu);
    tch::manual_seed(11);
    let net = mono2mesh_vision::pix2vox::Pix2Vox::new(&vs.root(), Variant::F);
    let config = EvalConfig { batch_size: 4, surface: Some(SurfaceConfig::default()), ..EvalConfig::default() };
    // Every test image is in the gallery: its nearest image is itself, so the retrieved
    // shape is its own and IoU is exactly 1 at every threshold.
    let itself = mono2mesh_train::evaluate_retrieval(&net, &pairs, &pairs, &config, Device::Cpu, &mut |_| {}).unwrap();
    assert!(itself.overall.iter().all(|&iou| (iou - 1.0).abs() < 1e-9), "{:?}", itself.overall);
    assert!(itself.surface.unwrap().overall.fscore_1 > 0.9);
    // A gallery of bottles only: chairs get a bottle's shape and score far lower.
    let bottles: Vec<usize> = (0..pairs.len()).filter(|&i| pairs.samples()[i].taxonomy_name == "bottle").collect();
    let chairs: Vec<usize> = (0..pairs.len()).filter(|&i| pairs.samples()[i].taxonomy_name == "chair").collect();
    let other = mono2mesh_train::evaluate_retrieval(&net, &pairs.subset(&bottles), &pairs.subset(&chairs), &config, Device::Cpu, &mut |_| {}).unwrap();
    assert!(other.best_iou < 0.5, "{:?}", other.overall);
    let empty = pairs.subset(&[]);
    assert!(mono2mesh_train::evaluate_retrieval(&net, &empty, &pairs, &config, Device::Cpu, &mut |_| {}).is_err());
}

#[test]
fn early_stopping_ends_a_run_that_stops_improving() {
    let _turn = serial();
    let data = tempfile::tempdir().unwrap();
    let ds = catalog(data.path(), vec![Category::Bottle], 3);
    let pairs = PairSet::load(&ds, all_samples(&ds)).unwrap();
    // With every learning rate at zero the weights never change, and at threshold 0.2 an
    // untrained network marks every voxel occupied, so validation IoU is flat from epoch 1.
    let config = TrainConfig {
        lr: mono2mesh_train::LearningRates { encoder: 0.0, decoder: 0.0, merger: 0.0, refiner: 0.0 },
        patience: Some(2),
        max_batches_per_epoch: Some(1),
        eval: EvalConfig { thresholds: vec![0.2], ..EvalConfig::default() },
        ..quick_config(data.path(), 10)
    };
    let run = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::start(config, run.path(), Device::Cpu).unwrap();
    let summary = trainer.run(&pairs, &pairs, &mut Quiet).unwrap();
    assert!(summary.stopped_early);
    assert_eq!((summary.epochs_done, summary.best_epoch), (3, Some(1)));
    // A resumed run that had stopped early stays stopped.
    let mut resumed = Trainer::resume(run.path(), Device::Cpu, None).unwrap();
    assert_eq!(resumed.run(&pairs, &pairs, &mut Quiet).unwrap().epochs_done, 3);
}

#[test]
fn pix2vox_a_trains_its_refiner_too() {
    let _turn = serial();
    let data = tempfile::tempdir().unwrap();
    let ds = catalog(data.path(), vec![Category::Tvmonitor], 2);
    let pairs = PairSet::load(&ds, all_samples(&ds)).unwrap();
    let config = TrainConfig {
        variant: Variant::A,
        batch_size: 2,
        max_batches_per_epoch: Some(1),
        ..quick_config(data.path(), 1)
    };
    let run = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::start(config, run.path(), Device::Cpu).unwrap();
    let before: Vec<(String, tch::Tensor)> =
        trainer.model.vs.variables().into_iter().filter(|(n, _)| n.starts_with("refiner.")).map(|(n, t)| (n, t.copy())).collect();
    let batch = pairs.eval_batch(&[0, 1], 1, Device::Cpu).unwrap();
    let loss_before = trainer.batch_loss(&batch);
    // The loss is 10 x BCE of the merged volume plus 10 x BCE of the refined one.
    let out = tch::no_grad(|| trainer.model.net.forward_t(&batch.images, false, mono2mesh_vision::pix2vox::Stages::default()));
    let bce = |p: &tch::Tensor| p.binary_cross_entropy::<tch::Tensor>(&batch.voxels, None, tch::Reduction::Mean).double_value(&[]);
    let expected = 10.0 * (bce(&out.merged) + bce(out.refined.as_ref().unwrap()));
    assert!((loss_before - expected).abs() < 1e-4 * expected, "{loss_before} vs {expected}");
    trainer.run(&pairs, &pairs, &mut Quiet).unwrap();
    let after = trainer.model.vs.variables();
    let changed = before.iter().filter(|(n, t)| !t.equal(&after[n])).count();
    assert!(changed > before.len() / 2, "only {changed} of {} refiner variables moved", before.len());
    assert!(Pix2VoxModel::load(run.path().join(BEST_FILE), Device::Cpu, Some(Variant::A)).is_ok());
}

#[test]
fn cached_trunk_training_learns_reuses_its_cache_and_skips_broken_renderings() {
    let _turn = serial();
    let data = tempfile::tempdir().unwrap();
    let ds = catalog(data.path(), vec![Category::Chair], 6);
    let pairs = PairSet::load(&ds, all_samples(&ds)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        trunk: TrunkMode::Cached,
        precision: Precision::Auto,
        feature_cache: Some(cache.path().to_path_buf()),
        ..quick_config(data.path(), 6)
    };
    let run = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::start(config.clone(), run.path(), Device::Cpu).unwrap();
    let before = evaluate(&trainer.model.net, &pairs, &trainer.config.eval, Device::Cpu, &mut |_| {}).unwrap();
    let mut seen = Recorder::default();
    let summary = trainer.run(&pairs, &pairs, &mut seen).unwrap();
    assert_eq!(summary.epochs_done, 6);
    // 6 models x 3 renderings for training (the validation views are among them)
    assert_eq!(seen.cache_totals, vec![18, 0], "first fill computes all, the val fill finds them cached");
    assert!(seen.warnings.is_empty(), "{:?}", seen.warnings);
    assert!(trainer.state.trunk_calibrated);
    let metrics: Vec<EpochMetrics> =
        std::fs::read_to_string(run.path().join(METRICS_FILE)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(metrics[5].train_loss < metrics[0].train_loss * 0.8, "loss {} -> {}", metrics[0].train_loss, metrics[5].train_loss);
    assert!(metrics.iter().all(|m| m.peak_rss_mib > 0.0));
    // The best model, run through the whole network on the images (the trunk in eval mode
    // with its calibrated statistics), scores what training validated from the cache:
    // the cache holds exactly the trunk's output (to bf16's precision when bf16 is on).
    let best = Pix2VoxModel::load(run.path().join(BEST_FILE), Device::Cpu, Some(Variant::F)).unwrap();
    let report = evaluate(&best.net, &pairs, &trainer.config.eval, Device::Cpu, &mut |_| {}).unwrap();
    assert!((report.best_iou - summary.best_iou).abs() < 0.02, "{} from images vs {} from the cache", report.best_iou, summary.best_iou);
    assert!(summary.best_iou > before.best_iou + 0.05, "IoU {:.3} before, {:.3} after", before.best_iou, summary.best_iou);
    assert!(best.metadata.provenance.details["trunk"].as_str().unwrap().contains("calibrated"));

    // A fine-tune from that model has the same trunk, so it finds every feature cached.
    let tune = TrainConfig { init: Init::From(run.path().join(BEST_FILE)), epochs: 1, ..config.clone() };
    let tuned = tempfile::tempdir().unwrap();
    let mut seen = Recorder::default();
    Trainer::start(tune.clone(), tuned.path(), Device::Cpu).unwrap().run(&pairs, &pairs, &mut seen).unwrap();
    assert_eq!(seen.cache_totals, vec![0, 0]);

    // A rendering that does not decode is left out with a warning, not a failed run, and
    // is tried again by the next run over the same cache.
    let broken = ds.view_files(&all_samples(&ds)[0]).unwrap()[2].clone();
    std::fs::write(&broken, b"not a png").unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let tune = TrainConfig { feature_cache: Some(fresh.path().to_path_buf()), ..tune };
    for expected_total in [18, 1] {
        let out = tempfile::tempdir().unwrap();
        let mut seen = Recorder::default();
        Trainer::start(tune.clone(), out.path(), Device::Cpu).unwrap().run(&pairs, &pairs, &mut seen).unwrap();
        assert_eq!(seen.cache_totals, vec![expected_total, 0]);
        assert_eq!(seen.warnings.len(), 1, "{:?}", seen.warnings);
        assert!(seen.warnings[0].contains(&broken.display().to_string()), "{:?}", seen.warnings);
    }
}

#[derive(Default)]
struct Recorder {
    cache_totals: Vec<usize>,
    warnings: Vec<String>,
}

impl TrainObserver for Recorder {
    fn caching(&mut self, done: usize, total: usize) {
        if done == 0 {
            self.cache_totals.push(total);
        }
    }
    fn warning(&mut self, message: &str) {
        self.warnings.push(message.to_string());
    }
}
