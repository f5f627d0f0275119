//! `mono2mesh serve [--listen ADDR]`: the HTTP API (docs/openapi.yaml) and status page,
//! and next to them the webhook dispatcher (`mono2mesh_api::webhook`) and the outbox
//! relay (`mono2mesh_infra::outbox`), which publishes gate messages the broker did not
//! confirm at submission.

use anyhow::{bail, Context};
use clap::Args;
use mono2mesh_api::server::{self, check_token_strength, AmqpProbe, ApiConfig, AppState, QueueProbe, MAKE_A_TOKEN};
use mono2mesh_api::webhook::Dispatcher;
use mono2mesh_infra::config::QueueBackend;
use mono2mesh_infra::outbox;
use mono2mesh_infra::queue::{topology, Lane};
use mono2mesh_infra::runtime::shutdown_signal;
use mono2mesh_infra::secret::SecretString;
use mono2mesh_infra::telemetry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::services::{block_on, connect, ingest, max_photo_bytes, SettingsArgs};

/// Room for multipart framing and text fields on top of the largest photo.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// Flags win over the `[api]` settings (config file, `MONO2MESH__API__*`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: api.listen, 127.0.0.1:8080]
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Bearer token with write scope: every route (repeatable; comma-separated in the
    /// env). At least 24 random characters: `openssl rand -hex 32` [default: api.tokens]
    #[arg(long = "token", env = "MONO2MESH_API_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub tokens: Vec<String>,
    /// Bearer token with read scope: every GET, no POST; for dashboards (repeatable;
    /// comma-separated in the env) [default: api.read_tokens]
    #[arg(long = "read-token", env = "MONO2MESH_API_READ_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub read_tokens: Vec<String>,
    /// Serve every route without a token (local experiments only).
    #[arg(long)]
    pub no_auth: bool,
    /// Send webhook calls without a signature when webhook.secret is empty (implied by
    /// --no-auth); otherwise an empty secret stops the server from starting.
    #[arg(long)]
    pub unsigned_webhooks: bool,
    /// Lifetime of presigned download links, in seconds [default: api.presign_expiry_secs]
    #[arg(long)]
    pub presign_expiry_secs: Option<u64>,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings.load()?;
    let usable = |tokens: Vec<&str>| -> Vec<SecretString> {
        tokens.into_iter().map(str::trim).filter(|t| !t.is_empty()).map(SecretString::new).collect()
    };
    let mut tokens = usable(args.tokens.iter().map(String::as_str).collect());
    if tokens.is_empty() {
        tokens = usable(settings.api.tokens.iter().map(SecretString::expose).collect());
    }
    let mut read_tokens = usable(args.read_tokens.iter().map(String::as_str).collect());
    if read_tokens.is_empty() {
        read_tokens = usable(settings.api.read_tokens.iter().map(SecretString::expose).collect());
    }
    let listen = args.listen.unwrap_or(settings.api.listen);
    if tokens.is_empty() && !args.no_auth {
        bail!(
            "no API token: pass --token (or MONO2MESH_API_TOKENS, or set api.tokens; {MAKE_A_TOKEN}), \
             or --no-auth to serve every route without one"
        );
    }
    // A guessable token opens job data, photos, outputs and webhook URLs to anyone.
    for (kind, flag, list) in [("write", "--token", &tokens), ("read", "--read-token", &read_tokens)] {
        for (i, token) in list.iter().enumerate() {
            if let Err(weakness) = check_token_strength(token.expose()) {
                bail!("refusing to start: {kind} token #{} ({flag}) is too weak: {weakness}; {MAKE_A_TOKEN}", i + 1);
            }
        }
    }
    // Receivers act on these calls (publish a product's 3D asset); unsigned, anyone who
    // learns the URL could forge one.
    if settings.webhook.secret.expose().is_empty() && !args.no_auth && !args.unsigned_webhooks {
        bail!(
            "webhook.secret is empty, so receivers could not verify webhook calls: set MONO2MESH__WEBHOOK__SECRET \
             (or [webhook] secret), or pass --unsigned-webhooks"
        );
    }
    block_on(async move {
        let _metrics = telemetry::init(&settings.telemetry).context("starting telemetry")?;
        let probe = match settings.queue.backend {
            QueueBackend::Amqp => QueueProbe::Amqp(Arc::new(AmqpProbe::new(
                settings.queue.url.clone(),
                topology(&settings.queue, Lane::all())?,
                AmqpProbe::DEFAULT_TTL,
            ))),
            QueueBackend::Memory => QueueProbe::None,
        };
        let max_body = max_photo_bytes(&settings)?.saturating_add(MULTIPART_OVERHEAD);
        let api = settings.api.clone();
        let webhook_settings = settings.webhook.clone();
        let services = connect(settings).await?;
        let dispatcher = Dispatcher::new(services.jobs.clone(), &webhook_settings).context("webhook settings")?;
        let (stop_dispatcher, dispatcher_stopped) = tokio::sync::oneshot::channel::<()>();
        let dispatching = tokio::spawn(dispatcher.run(async move {
            let _ = dispatcher_stopped.await;
        }));
        let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
        let relaying = tokio::spawn(outbox::run_outbox_relay(
            services.jobs.clone(),
            services.queue.clone(),
            outbox::DEFAULT_INTERVAL,
            async move {
                let _ = relay_stopped.await;
            },
        ));
        let config = ApiConfig {
            tokens,
            read_tokens,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            request_timeout: Duration::from_secs(api.request_timeout_secs.max(1)),
            max_in_flight: api.max_in_flight.max(1),
            presign_expiry: Duration::from_secs(args.presign_expiry_secs.unwrap_or(api.presign_expiry_secs)),
            max_batch_items: api.max_batch_items.max(1),
            spool_dir: api.spool_dir(),
            default_batch: api.default_batch,
        };
        let state = AppState { ingest: ingest(&services)?, config: Arc::new(config), probe: Arc::new(probe) };
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(listen = %bound, "mono2mesh API serving");
        // On stdout, for whoever started us with port 0 (the tests) to learn the port.
        println!("listening on http://{bound}");
        let served = server::serve(listener, state, shutdown_signal()).await.context("serving HTTP");
        // A call in flight finishes (bounded by webhook.timeout_ms); the rest stays owed
        // in the outbox for the next start.
        let _ = stop_dispatcher.send(());
        // A publish in flight finishes (bounded by its confirm time-out); the rest stays
        // in the outbox for the next relay.
        let _ = stop_relay.send(());
        let _ = dispatching.await;
        let _ = relaying.await;
        let _ = services.queue.close().await;
        let _ = tokio::task::spawn_blocking(mono2mesh_infra::telemetry::shutdown).await;
        served
    })
}
