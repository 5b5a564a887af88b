//! Wiring: builds the shared state and the HTTP router, serves with TCP_NODELAY and a
//! graceful shutdown that drains requests and flushes spend. The only file that knows
//! every module.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tracing::info;

use crate::auth::secret_box::SecretBox;
use crate::config::Config;
use crate::governance::Governance;
use crate::router::{DeploymentState, Router};
use crate::spend::prices::PriceTable;
use crate::spend::{RowPolicy, SpendWriter};
use crate::store::Store;

pub use crate::state::{App, AppState};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Prices(#[from] crate::spend::prices::PriceError),
    #[error("{0}")]
    Store(#[from] crate::store::Error),
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot load runtime models: {0}")]
    Models(String),
    #[error("upstream TLS: {0} (fix litellm_settings.ssl_verify or SSL_CERT_FILE)")]
    Tls(String),
}

/// The price table: built-in, then the config's or `--prices` LiteLLM JSON file over it.
pub fn load_prices(config: &Config, extra: Option<&Path>) -> Result<PriceTable, StartupError> {
    let mut prices = PriceTable::builtin()?;
    for file in config
        .prices_file
        .iter()
        .map(PathBuf::from)
        .chain(extra.map(Path::to_path_buf))
    {
        prices.extend(PriceTable::load_litellm_json(&file)?);
    }
    Ok(prices)
}

/// Builds the state. Must run inside a Tokio runtime (starts the spend writer).
pub fn build(
    config: Config,
    store: Store,
    prices: PriceTable,
) -> Result<(AppState, JoinHandle<()>), StartupError> {
    let http = crate::providers::HttpClient::with_tls(&config.tls).map_err(StartupError::Tls)?;
    if config.tls.insecure {
        tracing::warn!(
            "upstream TLS certificates are NOT verified (ssl_verify: false / SSL_VERIFY=false)"
        );
    }
    let secrets = SecretBox::from_env(config.general.master_key.as_deref());
    let runtime = crate::admin::models::load_runtime(&store, &secrets)
        .map_err(|e| StartupError::Models(e.to_string()))?;
    let deployments = config
        .deployments
        .iter()
        .chain(runtime.iter())
        .map(|d| DeploymentState::new(d.clone(), prices.for_deployment(d)))
        .collect();
    let router = Router::new(config.router.clone(), deployments);
    let governance = Governance::load(&store, config.general.master_key.clone())?;
    let (spend, writer) = SpendWriter::start(
        store.clone(),
        RowPolicy {
            keep_rows: !config.general.disable_spend_logs,
            retention: config.general.spend_logs_retention,
        },
        config.general.spend_flush_interval,
        governance.counter_source(),
    );
    let app = App {
        http,
        store,
        router,
        governance,
        spend,
        prices,
        secrets,
        config,
        busy_poll: Default::default(),
        started: Instant::now(),
        started_at: chrono::Utc::now(),
    };
    Ok((Arc::new(app), writer))
}

/// The whole HTTP surface.
pub fn http_router(state: AppState) -> axum::Router {
    let limit = state.config.general.max_request_size_bytes;
    axum::Router::new()
        .merge(crate::proxy::routes::routes())
        .merge(crate::admin::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A server running in this process.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, waits for open requests, flushes spend and counters.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        finish(&self.state).await;
        // Wait until the writer task (and its store handle) is gone so the same data
        // dir can be reopened at once.
        let _ = (&mut self.writer).await;
    }
}

async fn finish(state: &AppState) {
    state.spend.flush().await;
    state.spend.close();
    info!("spend flushed");
}

/// Serves `state` on `listener` until `shutdown` resolves, then waits for open
/// connections to finish their requests.
///
/// Our own accept loop rather than `axum::serve`: the three proxied POST endpoints go
/// straight to their handler (`proxy::routes::hot_route`), everything else to the axum
/// router; and every accepted socket gets TCP_NODELAY (without it each response written
/// in more than one piece waits ~40 ms for the client's delayed ACK).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let router = http_router(state.clone());
    let poller = tokio::spawn({
        let state = state.clone();
        async move {
            let window = state.config.general.busy_poll;
            state.busy_poll.run(window).await
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Tells connections still in the gateway's own loop (`proxy::server`) to close once
    // idle; those handed to hyper hear it through `graceful`.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let router = router.clone();
        let builder = builder.clone();
        // Taken now, so that `graceful.shutdown` also waits for this connection while it
        // is still in the gateway's own loop.
        let watcher = graceful.watcher();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let mut tcp = tcp;
            let pre = match crate::proxy::server::serve(&mut tcp, &state, &mut stopping).await {
                crate::proxy::server::Next::Close => return,
                crate::proxy::server::Next::Handover(pre) => pre,
            };
            let io = crate::proxy::server::Rewind::new(pre, tcp);
            let service = hyper_service(state, router);
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            let _ = watcher.watch(conn).await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    graceful.shutdown().await;
    poller.abort();
}

/// hyper's service for a connection: the proxied routes straight to their handler, the
/// rest to axum's router.
fn hyper_service(
    state: AppState,
    router: axum::Router,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let state = state.clone();
        let router = router.clone();
        state.busy_poll.touch();
        async move {
            Ok::<_, Infallible>(
                match crate::proxy::routes::hot_route(req.method(), req.uri().path()) {
                    Some(call) => crate::proxy::completions::serve_hot(state, call, req).await,
                    None => match router.oneshot(req).await {
                        Ok(resp) => resp,
                        Err(never) => match never {},
                    },
                },
            )
        }
    })
}

/// Per-connection accept errors (the peer gave up) are retried at once; others (out of
/// file descriptors) get a pause so the loop does not spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

/// Starts a server in the background on `listener` (tests and embedding).
pub async fn start(
    config: Config,
    store: Store,
    prices: PriceTable,
    listener: TcpListener,
) -> Result<Running, StartupError> {
    let addr = listener
        .local_addr()
        .map_err(|source| StartupError::Listen {
            addr: "(listener)".into(),
            source,
        })?;
    let (state, writer) = build(config, store, prices)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    Ok(Running {
        addr,
        state,
        shutdown: Some(tx),
        server,
        writer,
    })
}

/// Command-line options for `run`.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub prices: Option<PathBuf>,
}

/// The binary's main loop: load, open, serve until Ctrl-C or SIGTERM, flush.
pub async fn run(opts: Options) -> Result<(), StartupError> {
    let t0 = Instant::now();
    let config = Config::load(&opts.config)?;
    for field in &config.ignored {
        info!(field = %field, "config: ignored (not used by switchyard)");
    }
    let prices = load_prices(&config, opts.prices.as_deref())?;
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| StartupError::DataDir {
        path: opts.data_dir.display().to_string(),
        source,
    })?;
    let store = Store::open(&opts.data_dir.join("switchyard.redb"))?;
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| StartupError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let (state, writer) = build(config, store, prices)?;
    info!(
        addr = %addr,
        models = state.router.deployments().len(),
        groups = ?state.router.group_names(),
        ready_ms = t0.elapsed().as_millis() as u64,
        "switchyard listening"
    );
    serve(listener, state.clone(), shutdown_signal()).await;
    finish(&state).await;
    let _ = writer.await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutting down: draining requests");
}
