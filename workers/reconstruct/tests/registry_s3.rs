//! A model registry under an S3 prefix, on a real S3 server (s3s-fs on a local port, as a
//! worker reaches MinIO): a reconstruct shard mirrors only the models it serves and loads
//! them.

use bytes::Bytes;
use mono2mesh_core::Category;
use mono2mesh_infra::blob::{BlobKey, BlobStore};
use mono2mesh_testkit::services::TestS3;
use mono2mesh_reconstruct::registry::{open_registry, ModelRole};
use mono2mesh_reconstruct::Reconstructor;
use mono2mesh_vision::pix2vox::Variant;
use mono2mesh_vision::pix2vox_model::{ModelMetadata, Pix2VoxModel, Provenance};
use tch::Device;

fn model_bytes(category: Option<Category>) -> Bytes {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let metadata = ModelMetadata::official(Variant::F, category, Provenance::of_kind("test"));
    Pix2VoxModel::new(metadata, Device::Cpu).save(&path).unwrap();
    Bytes::from(std::fs::read(&path).unwrap())
}

#[tokio::test]
async fn a_shard_mirrors_only_its_models_from_an_s3_prefix() {
    let s3 = TestS3::on_port("models").await;
    let put = |key: &str, body: Bytes| {
        let store = s3.store.clone();
        let key = BlobKey::parse(key).unwrap();
        async move { store.put(&key, body).await.unwrap() }
    };
    put("packs/v2/pix2vox/chair.safetensors", model_bytes(Some(Category::Chair))).await;
    put("packs/v2/pix2vox/sofa.safetensors", model_bytes(Some(Category::Sofa))).await;
    put("packs/v2/pix2vox/general.safetensors", model_bytes(None)).await;
    put("packs/v2/pix2vox/chair.eval.json", Bytes::from_static(br#"{"best_iou": 0.61}"#)).await;

    let cache = tempfile::tempdir().unwrap();
    // The settings point at another bucket (the jobs' one): the registry names its own.
    let mut settings = s3.settings.clone();
    settings.bucket = "jobs-bucket-not-created".into();
    let stems = vec!["chair".to_string(), "car".to_string(), "general".to_string()];
    let registry = open_registry("s3://models/packs/v2", &settings, &stems, Some(cache.path().to_path_buf()))
        .await
        .unwrap();

    let chair = registry.resolve(Some(Category::Chair)).unwrap();
    assert_eq!(chair.role, ModelRole::Specialist);
    assert_eq!(registry.resolve(Some(Category::Car)).unwrap().role, ModelRole::General);
    assert!(!registry.specialist_path(Category::Sofa).exists(), "a model this shard does not serve was fetched");
    assert_eq!(registry.entries().iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), vec!["general", "chair"]);
    assert_eq!(registry.entries()[1].eval.as_ref().unwrap()["best_iou"], 0.61);
    let reconstructor = Reconstructor::load(&chair.path, Device::Cpu).unwrap();
    assert_eq!(reconstructor.metadata().category, Some(Category::Chair));

    // A missing bucket is a clear error.
    let err = open_registry("s3://no-such-bucket/x", &settings, &stems, Some(cache.path().join("other"))).await.unwrap_err();
    assert!(err.to_string().contains("model registry"), "{err}");
}
