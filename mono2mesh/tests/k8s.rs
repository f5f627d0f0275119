//! deploy/k8s cannot be applied here (no cluster), so what it names is checked against the
//! project (the schemas are checked by `scripts/validate-k8s.py` in `.ci/run`): every
//! MONO2MESH__ key is a real setting with a valid value, every program is one of our
//! binaries taking its flags, every port a container declares is one the settings listen
//! on and the Dockerfile exposes, probes point at declared ports, images are the
//! Dockerfile's at the workspace version, each category has exactly one reconstruct shard,
//! and each KEDA trigger watches a queue of the shard it scales.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mono2mesh_core::Category;
use mono2mesh_infra::config::SettingsLoader;
use serde_norway::Value;

mod support;
use support::{repo, workspace_binaries};

/// Every document of the kustomization's resources, in order.
fn rendered() -> Vec<Value> {
    let dir = repo().join("deploy/k8s");
    let kustomization: Value = serde_norway::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap()).unwrap();
    let mut docs = Vec::new();
    for resource in kustomization["resources"].as_sequence().unwrap() {
        let text = std::fs::read_to_string(dir.join(resource.as_str().unwrap())).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(doc).unwrap();
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value.as_sequence().into_iter().flatten().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// The settings every pod gets: the ConfigMap plus the example Secret's keys.
fn environment(docs: &[Value]) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for map in of_kind(docs, "ConfigMap") {
        for (k, v) in map["data"].as_mapping().unwrap() {
            env.insert(k.as_str().unwrap().to_string(), v.as_str().expect("ConfigMap values are strings").to_string());
        }
    }
    let example = std::fs::read_to_string(repo().join("deploy/k8s/secret.example.yaml")).unwrap();
    let secret: Value = serde_norway::from_str(&example).unwrap();
    for (k, v) in secret["stringData"].as_mapping().unwrap() {
        env.insert(k.as_str().unwrap().to_string(), v.as_str().unwrap().to_string());
    }
    env
}

fn dockerfile_exposed() -> BTreeSet<u16> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("EXPOSE "))
        .flat_map(|ports| ports.split_whitespace().map(|p| p.parse::<u16>().unwrap()).collect::<Vec<_>>())
        .collect()
}

fn workspace_version() -> String {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let in_package = text.split("[workspace.package]").nth(1).expect("[workspace.package]");
    let line = in_package.lines().find(|l| l.trim_start().starts_with("version")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

#[test]
fn settings_in_the_config_map_and_secret_are_valid() {
    let docs = rendered();
    let env = environment(&docs);
    let settings = SettingsLoader::with_env(env.clone())
        .load()
        .unwrap_or_else(|e| panic!("deploy/k8s's MONO2MESH__ environment is not valid settings: {e}"));
    assert!(settings.telemetry.health_listen.is_some(), "workers need their probe listener");
    // Worker flags read from the environment (clap `env`), not settings keys.
    for key in env.keys().filter(|k| k.starts_with("MONO2MESH_") && !k.starts_with("MONO2MESH__")) {
        let flags = std::fs::read_to_string(repo().join("shared/infra/src/service.rs")).unwrap();
        assert!(flags.contains(&format!("env = \"{key}\"")), "{key} is no worker flag's variable");
    }
}

#[test]
fn containers_run_our_binaries_on_declared_ports_and_images() {
    let docs = rendered();
    let env = environment(&docs);
    let settings = SettingsLoader::with_env(env).load().unwrap();
    let exposed = dockerfile_exposed();
    let listens = BTreeMap::from([
        ("http", settings.api.listen.port()),
        ("metrics", settings.telemetry.prometheus_listen.unwrap().port()),
        ("health", settings.telemetry.health_listen.unwrap().port()),
    ]);
    let version = workspace_version();
    let binaries = workspace_binaries();
    let mut containers = 0;
    for deployment in of_kind(&docs, "Deployment") {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
            deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
            "{name}: the selector matches its pods"
        );
        for container in pod["containers"].as_sequence().unwrap() {
            containers += 1;
            let image = container["image"].as_str().unwrap();
            assert!(
                image == format!("mono2mesh:{version}") || image == format!("mono2mesh:{version}-gpu"),
                "{name}: image {image} is not the Dockerfile's at version {version}"
            );
            let command = strings(&container["command"]);
            let program = command.first().map(String::as_str).unwrap_or("");
            assert!(binaries.contains(program), "{name}: starts {program}, which no package builds ({binaries:?})");
            if program == "mono2mesh-reconstruct" {
                assert!(command.contains(&"--categories".to_string()), "{name}: a shard names its categories");
                assert!(image.ends_with("-gpu"), "{name}: GPU shards need the CUDA image");
            }
            let mut declared = BTreeMap::new();
            for port in container["ports"].as_sequence().unwrap() {
                let (port_name, number) = (port["name"].as_str().unwrap(), port["containerPort"].as_u64().unwrap() as u16);
                assert_eq!(listens.get(port_name), Some(&number), "{name}: port {port_name} is not where the settings listen");
                assert!(exposed.contains(&number), "{name}: port {number} is not EXPOSEd in the Dockerfile ({exposed:?})");
                declared.insert(port_name.to_string(), number);
            }
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                if let Some(get) = container[probe]["httpGet"].as_mapping() {
                    let port = get.get("port").and_then(Value::as_str).unwrap();
                    assert!(declared.contains_key(port), "{name}: {probe} uses undeclared port {port}");
                    let path = get.get("path").and_then(Value::as_str).unwrap();
                    let expected: &[&str] = if program == "mono2mesh" { &["/healthz"] } else { &["/livez", "/readyz"] };
                    assert!(expected.contains(&path), "{name}: {probe} on {path}, served: {expected:?}");
                }
            }
        }
    }
    assert!(containers >= 7, "the API, gate, classify, refine and three reconstruct shards");
}

#[test]
fn each_category_has_one_shard_and_keda_watches_its_queues() {
    let docs = rendered();
    let deployments: HashMap<&str, &Value> =
        of_kind(&docs, "Deployment").into_iter().map(|d| (d["metadata"]["name"].as_str().unwrap(), d)).collect();
    let mut served: Vec<Category> = Vec::new();
    let mut shard_queues: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (name, deployment) in &deployments {
        let command = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["command"]);
        if let Some(i) = command.iter().position(|a| a == "--categories") {
            let categories: Vec<Category> = command[i + 1].split(',').map(|c| c.parse().unwrap()).collect();
            shard_queues.insert(name.to_string(), categories.iter().map(|c| format!("mono2mesh.reconstruct.{}", c.name())).collect());
            served.extend(categories);
        }
    }
    let mut sorted = served.clone();
    sorted.sort_by_key(|c| c.name());
    sorted.dedup();
    assert_eq!(sorted.len(), served.len(), "a category served by two shards: {served:?}");
    assert_eq!(sorted.len(), Category::ALL.len(), "every category has a shard: {served:?}");

    let mut scaled = BTreeSet::new();
    for object in of_kind(&docs, "ScaledObject") {
        let target = object["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
        assert!(deployments.contains_key(target), "ScaledObject targets missing Deployment {target}");
        assert!(scaled.insert(target.to_string()), "{target} has two ScaledObjects");
        let queues: BTreeSet<String> = object["spec"]["triggers"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t["metadata"]["queueName"].as_str().unwrap().to_string())
            .collect();
        let expected = match shard_queues.get(target) {
            Some(queues) => queues.clone(),
            None => {
                let stage = target.strip_prefix("mono2mesh-").unwrap();
                BTreeSet::from([format!("mono2mesh.{stage}")])
            }
        };
        assert_eq!(queues, expected, "{target}: KEDA watches the queues it consumes");
        let auth = object["spec"]["triggers"][0]["authenticationRef"]["name"].as_str().unwrap();
        assert!(of_kind(&docs, "TriggerAuthentication").iter().any(|a| a["metadata"]["name"] == auth));
    }
    let workers: BTreeSet<String> = deployments.keys().filter(|n| **n != "mono2mesh-api").map(|n| n.to_string()).collect();
    assert_eq!(scaled, workers, "every worker Deployment scales on its queue");
    let pdbs: BTreeSet<String> =
        of_kind(&docs, "PodDisruptionBudget").iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(pdbs, deployments.keys().map(|n| n.to_string()).collect(), "one PodDisruptionBudget per Deployment");
}
