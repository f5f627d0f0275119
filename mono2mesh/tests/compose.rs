//! compose.yaml cannot be run here (no Docker engine), so its structure is checked:
//! every service has an image or a build, every file it mounts exists, every
//! MONO2MESH__ variable is a real settings key with a valid value, every program it
//! starts is one of our binaries, the `mono2mesh` subcommands take the flags given,
//! reconstruct shards name real categories, and the dashboard queries our metrics.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use mono2mesh_core::Category;
use mono2mesh_infra::config::SettingsLoader;
use mono2mesh_infra::telemetry::names;
use serde_norway::Value;

mod support;
use support::{repo, workspace_binaries};

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("compose.yaml")).unwrap();
    let mut value: Value = serde_norway::from_str(&text).unwrap();
    // compose.yaml shares worker settings through YAML anchors and `<<` merge keys.
    value.apply_merge().unwrap();
    value
}

fn services(compose: &Value) -> Vec<(String, Value)> {
    compose["services"]
        .as_mapping()
        .expect("services mapping")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
        .collect()
}

fn command(service: &Value) -> Vec<String> {
    service["command"]
        .as_sequence()
        .map(|s| s.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn every_service_is_runnable_and_every_mounted_file_exists() {
    let compose = compose();
    let services = services(&compose);
    let names: BTreeSet<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    for required in ["rabbitmq", "postgres", "minio", "minio-init", "otel-collector", "jaeger", "prometheus", "grafana", "gate", "classify", "refine", "api"] {
        assert!(names.contains(required), "compose.yaml lacks service {required}");
    }
    assert!(names.iter().any(|n| n.starts_with("reconstruct-")), "no reconstruct shard");
    for (name, service) in &services {
        assert!(
            service.get("image").is_some() || service.get("build").is_some(),
            "{name}: neither image nor build"
        );
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let spec = volume.as_str().unwrap();
            if let Some(local) = spec.strip_prefix("./") {
                let path = local.split(':').next().unwrap();
                assert!(repo().join(path).exists(), "{name}: mounts missing {path}");
            }
        }
        for dependency in service["depends_on"].as_mapping().into_iter().flatten().map(|(k, _)| k.as_str().unwrap()) {
            assert!(names.contains(dependency), "{name} depends on unknown service {dependency}");
        }
    }
    assert!(repo().join("Dockerfile").is_file());
}

#[test]
fn mono2mesh_environment_is_valid_settings() {
    let compose = compose();
    let mut checked = 0;
    for (name, service) in services(&compose) {
        let Some(environment) = service["environment"].as_mapping() else { continue };
        let env: HashMap<String, String> = environment
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => serde_norway::to_string(other).unwrap().trim().to_string(),
                };
                (k.as_str().unwrap().to_string(), value)
            })
            .collect();
        if !env.keys().any(|k| k.starts_with("MONO2MESH__")) {
            continue;
        }
        let settings = SettingsLoader::with_env(env)
            .load()
            .unwrap_or_else(|e| panic!("{name}: its MONO2MESH__ environment is not valid settings: {e}"));
        let dump = settings.redacted_json();
        for secret in ["mono2mesh-secret", "change-me"] {
            assert!(!dump.to_string().contains(secret), "{name}: secrets ({secret}) must be redacted");
        }
        checked += 1;
    }
    assert!(checked >= 5, "expected the workers and the API to be configured by env, checked {checked}");
}

#[test]
fn started_programs_exist_and_take_their_flags() {
    let compose = compose();
    let binaries = workspace_binaries();
    for (name, service) in services(&compose) {
        let command = command(&service);
        let Some(program) = command.first() else { continue };
        if !program.starts_with("mono2mesh") {
            continue;
        }
        assert!(binaries.contains(program), "{name}: starts {program}, which no package builds ({binaries:?})");
        if let Some(i) = command.iter().position(|a| a == "--categories") {
            for category in command[i + 1].split(',') {
                category.parse::<Category>().unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        if program == "mono2mesh" {
            // Our own binary is built with this test: ask it whether the flags exist.
            let subcommand = &command[1];
            let help = Command::new(env!("CARGO_BIN_EXE_mono2mesh")).args([subcommand, "--help"]).output().unwrap();
            assert!(help.status.success(), "{name}: mono2mesh {subcommand} does not exist");
            let help = String::from_utf8_lossy(&help.stdout);
            for flag in command.iter().filter(|a| a.starts_with("--")) {
                assert!(help.contains(flag.as_str()), "{name}: mono2mesh {subcommand} has no {flag}");
            }
        }
    }
}

#[test]
fn every_reconstruct_category_is_served_exactly_once() {
    let compose = compose();
    let mut served = Vec::new();
    for (_, service) in services(&compose) {
        let command = command(&service);
        if command.first().map(String::as_str) == Some("mono2mesh-reconstruct") {
            let i = command.iter().position(|a| a == "--categories").expect("reconstruct shard without --categories");
            served.extend(command[i + 1].split(',').map(|c| c.parse::<Category>().unwrap()));
        }
    }
    served.sort();
    assert_eq!(served, Category::ALL.to_vec(), "each category needs exactly one reconstruct shard");
}

#[test]
fn the_dashboard_queries_metrics_we_export() {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/dashboards/mono2mesh.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let exported = [
        names::STAGE_FINISHED,
        names::STAGE_DURATION,
        names::QUEUE_WAIT,
        names::STAGE_INFLIGHT,
        names::FAILURES,
        names::BATCH_SIZE,
        names::DEVICE_TIME,
        names::BLOB_REQUEST,
        names::DB_QUERY,
    ];
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                exported.iter().any(|metric| expr.contains(metric)),
                "panel {:?} queries no metric we export: {expr}",
                panel["title"]
            );
            // The collector re-exports the OTLP copy under another job; summing both would double.
            assert!(expr.contains(r#"job="mono2mesh""#), "panel {:?} must read the direct scrape only: {expr}", panel["title"]);
        }
    }
}

#[test]
fn otlp_traces_reach_jaeger_and_otlp_metrics_reach_prometheus() {
    let read = |path: &str| -> Value {
        serde_norway::from_str(&std::fs::read_to_string(repo().join(path)).unwrap()).unwrap()
    };
    let collector = read("deploy/otel/collector.yaml");
    let pipelines = &collector["service"]["pipelines"];
    for (signal, exporter) in [("traces", "otlp/jaeger"), ("metrics", "prometheus")] {
        let pipeline = &pipelines[signal];
        assert!(pipeline["receivers"].as_sequence().unwrap().iter().any(|r| r == "otlp"), "{signal}: no otlp receiver");
        assert!(pipeline["exporters"].as_sequence().unwrap().iter().any(|e| e == exporter), "{signal} -> {exporter}");
        assert!(collector["exporters"].get(exporter).is_some(), "exporter {exporter} is not configured");
    }
    // Our processes push OTLP/HTTP to the port the collector's http receiver listens on.
    let http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].as_str().unwrap();
    let compose = compose();
    let gate = services(&compose).into_iter().find(|(name, _)| name == "gate").unwrap().1;
    let env: HashMap<String, String> = gate["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
        .collect();
    let settings = SettingsLoader::with_env(env).load().unwrap();
    let endpoint = settings.telemetry.otlp_endpoint.expect("compose sets an OTLP endpoint");
    let port = |address: &str| address.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    assert_eq!(port(&endpoint), port(http), "{endpoint} vs {http}");
    assert!(endpoint.starts_with("http://otel-collector:"), "{endpoint}");

    // Prometheus scrapes the collector's metrics exporter.
    let exposed = collector["exporters"]["prometheus"]["endpoint"].as_str().unwrap();
    let prometheus = read("deploy/prometheus/prometheus.yml");
    let targets: Vec<String> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().into_iter().flatten())
        .flat_map(|config| config["targets"].as_sequence().unwrap().iter().map(|t| t.as_str().unwrap().to_string()))
        .collect();
    assert!(targets.contains(&format!("otel-collector:{}", port(exposed))), "{targets:?}");
}

/// compose ships no token or webhook secret of its own (a placeholder would end up in
/// production): both come from the operator's environment, and compose refuses to
/// start without them (`${VAR:?message}`).
#[test]
fn the_api_token_and_webhook_secret_must_come_from_the_operator() {
    let compose = compose();
    let api = services(&compose).into_iter().find(|(name, _)| name == "api").unwrap().1;
    for key in ["MONO2MESH__API__TOKENS", "MONO2MESH__WEBHOOK__SECRET"] {
        let value = api["environment"][key].as_str().unwrap_or_else(|| panic!("api sets no {key}"));
        assert!(value.starts_with("${") && value.contains(":?") && value.ends_with('}'), "{key}: {value}");
        assert!(value.contains("openssl rand -hex 32"), "{key}: the message says how to make one: {value}");
    }
    let text = std::fs::read_to_string(repo().join("compose.yaml")).unwrap();
    assert!(!text.contains("change-me"), "no placeholder secrets in compose.yaml");
}

/// A token `serve` accepts (at least 24 random characters).
const STRONG_TOKEN: &str = "7d3f9b1e5a2c8f4e0b6d1a9c3e7f5b2d";

/// compose gives the API a webhook secret; without one `serve` refuses to start (its
/// calls could be forged) unless told to send them unsigned.
#[test]
fn the_api_will_not_send_unsigned_webhooks_unless_told() {
    let output = Command::new(env!("CARGO_BIN_EXE_mono2mesh"))
        .args(["serve", "--token", STRONG_TOKEN, "--listen", "127.0.0.1:0"])
        .env_remove("MONO2MESH__WEBHOOK__SECRET")
        .env("MONO2MESH__DATABASE__URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("webhook.secret is empty") && stderr.contains("--unsigned-webhooks"), "{stderr}");

    // Told so, it gets past that check (and stops at the unreachable database instead).
    let output = Command::new(env!("CARGO_BIN_EXE_mono2mesh"))
        .args(["serve", "--token", STRONG_TOKEN, "--listen", "127.0.0.1:0", "--unsigned-webhooks"])
        .env_remove("MONO2MESH__WEBHOOK__SECRET")
        .env("MONO2MESH__DATABASE__URL", "postgres://nobody@127.0.0.1:1/none")
        .env("MONO2MESH__DATABASE__ACQUIRE_TIMEOUT_SECS", "2")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains("webhook.secret is empty"), "{stderr}");
}
