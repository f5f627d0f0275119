//! Layered settings for every binary: compiled defaults, then an optional TOML file
//! (`--config FILE` or `MONO2MESH_CONFIG`), then environment variables
//! `MONO2MESH__SECTION__KEY` (nested sections continue the pattern:
//! `MONO2MESH__BLOB__S3__ENDPOINT`), then overrides a binary applies from its flags.
//!
//! Secrets are `SecretString`/`SecretUrl`, so printing `Settings` never leaks them.

use crate::secret::{SecretString, SecretUrl};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prefix of environment overrides; the separator between sections is `__`.
pub const ENV_PREFIX: &str = "MONO2MESH";
pub const ENV_SEPARATOR: &str = "__";
/// Environment variable naming the config file when no `--config` flag is given.
pub const CONFIG_FILE_ENV: &str = "MONO2MESH_CONFIG";

/// Keys whose environment or flag value is a comma-separated list.
pub const LIST_KEYS: [&str; 6] = [
    "queue.retry_delays_ms",
    "reconstruct.categories",
    "refine.formats",
    "webhook.retry_delays_ms",
    "api.tokens",
    "api.read_tokens",
];

/// The compiled defaults, as TOML so that the file format is documented by example.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    File { path: PathBuf, source: config::ConfigError },
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid setting: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("override {0:?} is not of the form section.key=value")]
    BadOverride(String),
    #[error("invalid [{section}] setting: {message}")]
    Section { section: &'static str, message: String },
}

/// Everything a mono2mesh process can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub blob: BlobSettings,
    pub queue: QueueSettings,
    pub models: ModelSettings,
    /// The four stages' sections, typed by their crates (see [`StageSection`]).
    #[serde(default)]
    pub gate: StageSection,
    #[serde(default)]
    pub classify: StageSection,
    #[serde(default)]
    pub reconstruct: StageSection,
    #[serde(default)]
    pub refine: StageSection,
    pub telemetry: TelemetrySettings,
    pub recovery: RecoverySettings,
    pub webhook: WebhookSettings,
    pub api: ApiSettings,
}

/// `mono2mesh serve` (its flags, where given, win).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Bearer tokens with write scope (every route); with no token at all `serve`
    /// needs `--no-auth`.
    pub tokens: Vec<SecretString>,
    /// Bearer tokens with read scope only (every GET route, no POST): for dashboards.
    pub read_tokens: Vec<SecretString>,
    /// Longest a request may take, body upload included, before it is answered 503.
    pub request_timeout_secs: u64,
    /// Requests served at once; more are refused at once with 503 and `Retry-After`.
    pub max_in_flight: usize,
    /// Lifetime of presigned download links.
    pub presign_expiry_secs: u64,
    /// Most items in one `POST /v1/batches`.
    pub max_batch_items: usize,
    /// Batch of a photo posted without one.
    pub default_batch: String,
    /// Directory photo uploads are spooled to while they arrive (each file removed once
    /// its request is handled); empty means the system's temporary directory. At most
    /// `max_in_flight` uploads of up to the gate's `max_input_bytes` each are there at once.
    pub spool_dir: String,
}

impl ApiSettings {
    /// `spool_dir`, or the system's temporary directory when it is empty.
    pub fn spool_dir(&self) -> std::path::PathBuf {
        if self.spool_dir.trim().is_empty() {
            std::env::temp_dir()
        } else {
            std::path::PathBuf::from(&self.spool_dir)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretUrl,
    /// Pool size per process.
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_secs(self.acquire_timeout_secs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    Local,
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSettings {
    pub backend: BlobBackend,
    /// Root directory of the local backend.
    pub local_root: PathBuf,
    pub s3: S3Settings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Custom endpoint (MinIO, s3s-fs, Garage); empty means AWS's own.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: SecretString,
    /// Path-style addressing (`endpoint/bucket/key`), which local S3 servers need.
    pub path_style: bool,
    /// Create the bucket at start-up when it is missing.
    pub create_bucket: bool,
    /// Send checksums only where S3 requires them, for older S3-compatible servers.
    pub checksums_when_required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    Amqp,
    Memory,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub backend: QueueBackend,
    pub url: SecretUrl,
    /// Unacknowledged deliveries per consumer.
    pub prefetch: u16,
    /// Prefix of every exchange and queue name, so test runs and deployments can share a broker.
    pub exchange_prefix: String,
    /// Deliveries of one message before it is dead-lettered.
    pub delivery_limit: u32,
    /// Deaths of a worker while handling one job's stage (abort, kill, out of memory)
    /// before the job is failed instead of run again; see `runtime`.
    pub max_crashes: u32,
    /// Back-off before the n-th retry of a retryable failure; the last entry repeats.
    pub retry_delays_ms: Vec<u64>,
    /// Unused queues expire after this long (RabbitMQ `x-expires`): for tests and
    /// throw-away deployments only. Unset: queues live until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

impl QueueSettings {
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays_ms.iter().map(|ms| Duration::from_millis(*ms)).collect()
    }
}

/// `[recovery]`: how often the janitor looks, and when a job counts as stuck.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySettings {
    /// Pause between two looks at the dead-letter queue.
    pub dead_letter_poll_ms: u64,
    /// Pause between two sweeps for stuck jobs.
    pub sweep_interval_secs: u64,
    /// Sweeps of one job in one state before it is failed as stuck.
    pub max_republish: u32,
    /// Most jobs one sweep claims per lane.
    pub sweep_batch: u32,
    /// How long a job may wait for each stage, without moving, before it is swept.
    pub stuck_after_secs: StageDeadlines,
}

/// Seconds per stage. Each must exceed the longest time a job can wait for the stage
/// without its row changing while its message is out of the queue: the handler time-out
/// (600 s by default) plus the longest back-off (60 s); a failed attempt updates the row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageDeadlines {
    pub gate: u64,
    pub classify: u64,
    pub reconstruct: u64,
    pub refine: u64,
}

impl StageDeadlines {
    pub fn of(&self, stage: mono2mesh_core::Stage) -> Duration {
        Duration::from_secs(match stage {
            mono2mesh_core::Stage::Gate => self.gate,
            mono2mesh_core::Stage::Classify => self.classify,
            mono2mesh_core::Stage::Reconstruct => self.reconstruct,
            mono2mesh_core::Stage::Refine => self.refine,
        })
    }
}

impl Default for RecoverySettings {
    fn default() -> Self {
        RecoverySettings {
            dead_letter_poll_ms: 5000,
            sweep_interval_secs: 60,
            max_republish: 3,
            sweep_batch: 100,
            stuck_after_secs: StageDeadlines { gate: 900, classify: 900, reconstruct: 900, refine: 900 },
        }
    }
}

impl RecoverySettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.dead_letter_poll_ms == 0 || self.sweep_interval_secs == 0 || self.sweep_batch == 0 {
            return Err("dead_letter_poll_ms, sweep_interval_secs and sweep_batch must be at least 1".into());
        }
        if mono2mesh_core::Stage::ALL.into_iter().any(|s| self.stuck_after_secs.of(s).is_zero()) {
            return Err("stuck_after_secs: every stage needs a deadline of at least 1 s".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Model registry: a local directory, or `s3://bucket/prefix`.
    pub registry: String,
}

/// A pipeline stage's section (`[gate]`, `[classify]`, `[reconstruct]`, `[refine]`),
/// layered like every other setting but typed by the stage that owns it: each worker
/// crate defines its settings struct (with defaults and checks) and reads it with
/// [`StageSection::parse`], in the workers and in `mono2mesh run` alike. This crate
/// only carries the values, so it does not depend on the stages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageSection(serde_json::Value);

impl StageSection {
    /// The section as the stage's settings type; keys it does not name keep the
    /// type's defaults, unknown keys are an error naming the section.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, section: &'static str) -> Result<T, ConfigError> {
        let value = match &self.0 {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            other => other.clone(),
        };
        // Through the config crate's own deserializer, so a `--set` value (a string)
        // becomes the number or flag the field wants, exactly as for infra's sections.
        config_value(&value)
            .try_deserialize()
            .map_err(|e| ConfigError::Section { section, message: e.to_string() })
    }

    /// The section's raw values (what a settings dump shows).
    pub fn raw(&self) -> &serde_json::Value {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `tracing` filter directive (`RUST_LOG` wins when set).
    pub log_filter: String,
    pub log_format: LogFormat,
    /// OTLP/HTTP collector endpoint; traces and metrics are exported only when set.
    pub otlp_endpoint: Option<String>,
    /// Address of the Prometheus `/metrics` listener; none means no listener.
    pub prometheus_listen: Option<SocketAddr>,
    /// Address of a worker's `/livez` and `/readyz` listener (see `health`); none means
    /// no listener. Port 0 picks a free port, logged at start.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// How often metrics are pushed over OTLP (and once more at shutdown).
    #[serde(default = "default_metrics_interval_ms")]
    pub metrics_interval_ms: u64,
}

fn default_metrics_interval_ms() -> u64 {
    10_000
}

impl TelemetrySettings {
    pub fn metrics_interval(&self) -> Duration {
        Duration::from_millis(self.metrics_interval_ms.max(100))
    }
}

/// Notifications of finished jobs (see `mono2mesh_api::webhook`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Called for every job submitted without a `webhook_url` of its own; none means
    /// only jobs that name one are notified. Applied at submission.
    pub url: Option<String>,
    /// Key of the `X-Mono2mesh-Signature` HMAC-SHA256; empty sends calls unsigned.
    pub secret: SecretString,
    /// Prefix of the links in a notification (the API's public URL); none gives paths.
    pub public_url: Option<String>,
    /// One call's deadline.
    pub timeout_ms: u64,
    /// Calls per notification, the first included, before it is marked failed.
    pub max_attempts: u32,
    /// Back-off before the n-th retry; the last entry repeats.
    pub retry_delays_ms: Vec<u64>,
    /// How often the dispatcher looks for due notifications when idle.
    pub poll_interval_ms: u64,
    /// Call URLs on loopback, private and link-local addresses too. Off by default:
    /// API callers choose webhook URLs, and the dispatcher must not be their way into
    /// the network it runs in. Turn on for receivers inside that network.
    #[serde(default)]
    pub allow_private_networks: bool,
}

impl WebhookSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays_ms.iter().map(|ms| Duration::from_millis(*ms)).collect()
    }
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

impl Settings {
    /// Loads the layered settings from the process environment. `config_file` is the
    /// value of a `--config` flag, if the binary has one.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        SettingsLoader::from_process_env().file(config_file.map(Path::to_path_buf)).load()
    }

    /// The compiled defaults alone.
    pub fn defaults() -> Result<Settings, ConfigError> {
        SettingsLoader::with_env(HashMap::new()).load()
    }

    /// The effective settings as TOML-like JSON with secrets redacted, for
    /// `config show` style commands and start-up logs.
    pub fn redacted_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Builds `Settings` from the four layers. The environment is passed in as a map so
/// tests never touch (and race on) the process environment.
#[derive(Debug, Clone)]
pub struct SettingsLoader {
    env: HashMap<String, String>,
    file: Option<PathBuf>,
    overrides: Vec<(String, OverrideValue)>,
}

#[derive(Debug, Clone)]
enum OverrideValue {
    Scalar(String),
    List(Vec<String>),
}

impl SettingsLoader {
    pub fn from_process_env() -> Self {
        Self::with_env(std::env::vars().collect())
    }

    pub fn with_env(env: HashMap<String, String>) -> Self {
        SettingsLoader { env, file: None, overrides: Vec::new() }
    }

    /// The config file named by a flag; when `None`, `MONO2MESH_CONFIG` is consulted.
    pub fn file(mut self, file: Option<PathBuf>) -> Self {
        self.file = file;
        self
    }

    /// A flag's value for `key` (`section.key`, e.g. `queue.prefetch`). Applied last.
    /// Comma-separated for the keys in [`LIST_KEYS`].
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        let parsed = if LIST_KEYS.contains(&key) {
            OverrideValue::List(split_list(&value))
        } else {
            OverrideValue::Scalar(value)
        };
        self.overrides.push((key.to_string(), parsed));
        self
    }

    /// Applies a `section.key=value` assignment, the form of a generic `--set` flag.
    pub fn set_assignment(self, assignment: &str) -> Result<Self, ConfigError> {
        match assignment.split_once('=') {
            Some((key, value)) if key.contains('.') && !key.trim().is_empty() => {
                Ok(self.set(key.trim(), value.trim()))
            }
            _ => Err(ConfigError::BadOverride(assignment.to_string())),
        }
    }

    fn config_file(&self) -> Option<PathBuf> {
        self.file
            .clone()
            .or_else(|| self.env.get(CONFIG_FILE_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
    }

    pub fn load(self) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS_TOML, config::FileFormat::Toml));

        if let Some(path) = self.config_file() {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path));
            }
            // Parse the file on its own first so a syntax error names the file.
            let file = config::File::from(path.as_path()).format(config::FileFormat::Toml).required(true);
            config::Config::builder()
                .add_source(file.clone())
                .build()
                .map_err(|source| ConfigError::File { path: path.clone(), source })?;
            builder = builder.add_source(file);
        }

        let environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .try_parsing(true);
        let mut env = self.env;
        // List keys are taken out of the environment and applied as lists: the config
        // crate's own list parsing turns a one-element list ("300") into a scalar, which
        // then fails to load as a list. Splitting here also trims "chair, sofa".
        let env_lists: Vec<(&str, Vec<String>)> =
            LIST_KEYS.iter().filter_map(|key| env.remove(&env_var_for(key)).map(|v| (*key, split_list(&v)))).collect();
        builder = builder.add_source(environment.source(Some(env.into_iter().collect())));
        for (key, items) in env_lists {
            builder = builder.set_override(key, items)?;
        }

        for (key, value) in self.overrides {
            builder = match value {
                OverrideValue::Scalar(v) => builder.set_override(key, typed_scalar(v))?,
                OverrideValue::List(items) => builder.set_override(key, items)?,
            };
        }
        let settings = builder.build()?.try_deserialize::<Settings>()?;
        settings.recovery.validate().map_err(|message| ConfigError::Section { section: "recovery", message })?;
        Ok(settings)
    }
}

/// A flag's value typed as the environment's are (`try_parsing`): a flag, an integer, a
/// number, else text. Fields that want text still get it (the config crate converts back),
/// and sections read through serde's buffered paths (tagged enums) see real numbers.
fn typed_scalar(value: String) -> config::Value {
    if let Ok(flag) = value.parse::<bool>() {
        flag.into()
    } else if let Ok(integer) = value.parse::<i64>() {
        integer.into()
    } else if let Ok(number) = value.parse::<f64>().map_err(|_| ()).and_then(|n| if n.is_finite() { Ok(n) } else { Err(()) }) {
        number.into()
    } else {
        value.into()
    }
}

fn config_value(value: &serde_json::Value) -> config::Value {
    use config::ValueKind;
    use serde_json::Value as Json;
    let kind = match value {
        Json::Null => ValueKind::Nil,
        Json::Bool(b) => ValueKind::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ValueKind::I64(i),
            (None, Some(u), _) => ValueKind::U64(u),
            (_, _, f) => ValueKind::Float(f.unwrap_or(f64::NAN)),
        },
        Json::String(s) => ValueKind::String(s.clone()),
        Json::Array(items) => ValueKind::Array(items.iter().map(config_value).collect()),
        Json::Object(map) => ValueKind::Table(map.iter().map(|(k, v)| (k.clone(), config_value(v))).collect()),
    };
    config::Value::new(None, kind)
}

/// The environment variable that overrides `key` (`queue.prefetch` ->
/// `MONO2MESH__QUEUE__PREFETCH`).
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}{ENV_SEPARATOR}{}", key.replace('.', ENV_SEPARATOR).to_ascii_uppercase())
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mono2mesh_core::Category;
    use std::io::Write;

    /// A stand-in for a stage's settings type (the real ones live in the worker crates).
    #[derive(Debug, Deserialize)]
    struct Lane {
        categories: Vec<Category>,
    }

    fn lane(s: &Settings) -> Lane {
        s.reconstruct.parse("reconstruct").unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn toml_file(body: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(body.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_parse_and_are_sane() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.blob.backend, BlobBackend::Local);
        assert_eq!(s.queue.backend, QueueBackend::Amqp);
        assert_eq!(s.gate.raw()["size"], 600);
        assert_eq!(lane(&s).categories, Category::ALL.to_vec());
        assert_eq!(s.models.registry, "models");
        assert!(s.telemetry.otlp_endpoint.is_none());
        assert!(s.webhook.url.is_none() && s.webhook.secret.expose().is_empty());
        assert!(s.webhook.max_attempts >= 1 && !s.webhook.retry_delays_ms.is_empty());
        assert!(!s.queue.retry_delays_ms.is_empty());
    }

    #[test]
    fn layers_apply_in_order_defaults_file_env_flags() {
        let file = toml_file(
            "[queue]\nprefetch = 7\ndelivery_limit = 9\nexchange_prefix = \"from-file\"\n\
             [database]\nmax_connections = 3\n",
        );
        let env = env(&[
            ("MONO2MESH__QUEUE__DELIVERY_LIMIT", "11"),
            ("MONO2MESH__QUEUE__EXCHANGE_PREFIX", "from-env"),
            ("MONO2MESH__BLOB__S3__ENDPOINT", "http://127.0.0.1:8014"),
            ("MONO2MESH__RECONSTRUCT__CATEGORIES", "chair, sofa"),
            ("MONO2MESH__QUEUE__RETRY_DELAYS_MS", "10,20"),
            ("UNRELATED", "x"),
        ]);
        let s = SettingsLoader::with_env(env)
            .file(Some(file.path().to_path_buf()))
            .set("queue.exchange_prefix", "from-flag")
            .set("reconstruct.categories", "car")
            .load()
            .unwrap();
        assert_eq!(s.database.max_connections, 3, "file beats defaults");
        assert_eq!(s.queue.prefetch, 7, "file value survives when nothing overrides it");
        assert_eq!(s.queue.delivery_limit, 11, "env beats file");
        assert_eq!(s.queue.exchange_prefix, "from-flag", "flags beat env");
        assert_eq!(s.blob.s3.endpoint.as_deref(), Some("http://127.0.0.1:8014"), "nested sections via env");
        assert_eq!(s.queue.retry_delays_ms, vec![10, 20], "env lists");
        assert_eq!(lane(&s).categories, vec![Category::Car], "flag lists");
    }

    #[test]
    fn one_element_lists_from_the_environment_stay_lists() {
        let s = SettingsLoader::with_env(env(&[
            ("MONO2MESH__QUEUE__RETRY_DELAYS_MS", "300"),
            ("MONO2MESH__RECONSTRUCT__CATEGORIES", " chair "),
        ]))
        .load()
        .unwrap();
        assert_eq!(s.queue.retry_delays_ms, vec![300]);
        assert_eq!(lane(&s).categories, vec![Category::Chair]);
        // ...and a flag still beats the environment for lists.
        let s = SettingsLoader::with_env(env(&[("MONO2MESH__QUEUE__RETRY_DELAYS_MS", "300")]))
            .set("queue.retry_delays_ms", "5,6")
            .load()
            .unwrap();
        assert_eq!(s.queue.retry_delays_ms, vec![5, 6]);
    }

    #[test]
    fn config_file_from_env_variable_and_missing_file_is_an_error() {
        let file = toml_file("[gate]\nmin_blur_variance = 42.5\n");
        let s = SettingsLoader::with_env(env(&[(CONFIG_FILE_ENV, file.path().to_str().unwrap())]))
            .load()
            .unwrap();
        assert_eq!(s.gate.raw()["min_blur_variance"], 42.5);

        let err = SettingsLoader::with_env(HashMap::new())
            .file(Some(PathBuf::from("/nonexistent/mono2mesh.toml")))
            .load()
            .unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)), "{err}");
    }

    #[test]
    fn bad_values_and_unknown_keys_are_rejected_with_the_key_named() {
        let err = SettingsLoader::with_env(env(&[("MONO2MESH__QUEUE__PREFETCH", "lots")])).load().unwrap_err();
        assert!(err.to_string().contains("prefetch"), "{err}");
        // A stage section is checked by the stage's own type, and the error names it.
        let s = SettingsLoader::with_env(env(&[("MONO2MESH__RECONSTRUCT__CATEGORIES", "giraffe")])).load().unwrap();
        let err = s.reconstruct.parse::<Lane>("reconstruct").unwrap_err();
        assert!(err.to_string().contains("giraffe") && err.to_string().contains("[reconstruct]"), "{err}");
        let file = toml_file("[queue]\nprefech = 3\n");
        let err = SettingsLoader::with_env(HashMap::new()).file(Some(file.path().into())).load().unwrap_err();
        assert!(err.to_string().contains("prefech"), "{err}");
        let file = toml_file("[queue\n");
        let err = SettingsLoader::with_env(HashMap::new()).file(Some(file.path().into())).load().unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err}");
        assert!(SettingsLoader::with_env(HashMap::new()).set_assignment("noequals").is_err());
        assert!(SettingsLoader::with_env(HashMap::new()).set_assignment("nodot=1").is_err());
        let s = SettingsLoader::with_env(HashMap::new())
            .set_assignment("blob.backend=s3")
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(s.blob.backend, BlobBackend::S3);
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_dumps() {
        let s = SettingsLoader::with_env(env(&[
            ("MONO2MESH__BLOB__S3__SECRET_KEY", "very-secret-key"),
            ("MONO2MESH__QUEUE__URL", "amqp://guest:amqp-pass@127.0.0.1:5672/%2f"),
            ("MONO2MESH__DATABASE__URL", "postgres://app:db-pass@db:5432/m"),
            ("MONO2MESH__WEBHOOK__SECRET", "hook-secret"),
            ("MONO2MESH__API__TOKENS", "api-token-1,api-token-2"),
            ("MONO2MESH__API__READ_TOKENS", "api-read-token-1"),
            ("MONO2MESH__API__LISTEN", "0.0.0.0:9000"),
        ]))
        .load()
        .unwrap();
        let tokens: Vec<&str> = s.api.tokens.iter().map(|t| t.expose()).collect();
        assert_eq!(tokens, ["api-token-1", "api-token-2"]);
        assert_eq!(s.api.read_tokens.iter().map(|t| t.expose()).collect::<Vec<_>>(), ["api-read-token-1"]);
        assert_eq!(s.api.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(s.blob.s3.secret_key.expose(), "very-secret-key");
        assert_eq!(s.database.url.expose(), "postgres://app:db-pass@db:5432/m");
        let debug = format!("{s:?}");
        let dump = s.redacted_json().to_string();
        assert_eq!(s.webhook.secret.expose(), "hook-secret");
        for leaked in ["very-secret-key", "amqp-pass", "db-pass", "hook-secret", "api-token-1", "api-read-token-1"] {
            assert!(!debug.contains(leaked), "{leaked} in Debug output");
            assert!(!dump.contains(leaked), "{leaked} in dump");
        }
        assert!(dump.contains("db:5432"), "hosts stay visible: {dump}");
    }
}
