//! The HTTPS webhook server: `POST /mutate`, `GET /healthz`, `GET /readyz`,
//! `GET /metrics`.
//!
//! [`app`] builds the axum router over an [`AppState`] (tests drive it with
//! `oneshot`, no socket). [`serve`] runs it behind rustls on a listener:
//! TLS 1.2/1.3, HTTP/1.1 and HTTP/2 by ALPN, a bound on the handshake and on
//! request headers (a slow client holds one task, nobody else), and a
//! graceful drain: on shutdown, readiness goes false first, the listener
//! closes, in-flight requests finish, and connections still open after the
//! drain bound are dropped.

pub mod cluster;
pub mod handlers;
pub mod kubevirt_cr;
pub mod policy_store;
pub mod slim;
pub mod tls;
pub mod vmi_source;
pub mod watch;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::sizing::policy::ValidPolicy;
use policy_store::PolicyStore;
use tls::CertStore;
use vmi_source::VmiSource;

/// Largest AdmissionReview accepted (a Pod with `oldObject` fits easily).
pub const MAX_BODY_BYTES: usize = 7 * 1024 * 1024;

/// Namespace labels for `namespaceSelector` rules.
pub trait NamespaceSource: Send + Sync + 'static {
    /// The labels of `namespace` (empty if unknown).
    fn labels(&self, namespace: &str) -> Arc<BTreeMap<String, String>>;
    /// Whether the source has synced (readiness).
    fn is_ready(&self) -> bool;
}

/// Namespace labels given up front (none, without a cluster).
#[derive(Debug, Default)]
pub struct StaticNamespaces {
    labels: BTreeMap<String, Arc<BTreeMap<String, String>>>,
    empty: Arc<BTreeMap<String, String>>,
}

impl StaticNamespaces {
    /// Labels per namespace name.
    #[must_use]
    pub fn new(labels: BTreeMap<String, BTreeMap<String, String>>) -> StaticNamespaces {
        StaticNamespaces {
            labels: labels
                .into_iter()
                .map(|(name, labels)| (name, Arc::new(labels)))
                .collect(),
            empty: Arc::default(),
        }
    }
}

impl NamespaceSource for StaticNamespaces {
    fn labels(&self, namespace: &str) -> Arc<BTreeMap<String, String>> {
        self.labels
            .get(namespace)
            .cloned()
            .unwrap_or_else(|| self.empty.clone())
    }
    fn is_ready(&self) -> bool {
        true
    }
}

/// Everything a request handler needs, shared by all connections.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    policy: PolicyStore,
    certs: Option<Arc<CertStore>>,
    vmis: Arc<dyn VmiSource>,
    namespaces: Arc<dyn NamespaceSource>,
    metrics: Metrics,
    shutting_down: AtomicBool,
    vmi_lookup_timeout: Duration,
    /// The KubeVirt CR watch, in cluster mode.
    kubevirt: OnceLock<Arc<kubevirt_cr::KubevirtStatus>>,
    /// Why there is no VMI source, when there is none.
    no_vmi_source: OnceLock<String>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("vmis", &self.inner.vmis.describe())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// A new state.
    #[must_use]
    pub fn new(
        policy: PolicyStore,
        certs: Option<Arc<CertStore>>,
        vmis: Arc<dyn VmiSource>,
        namespaces: Arc<dyn NamespaceSource>,
        vmi_lookup_timeout: Duration,
    ) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                policy,
                certs,
                vmis,
                namespaces,
                metrics: Metrics::new(),
                shutting_down: AtomicBool::new(false),
                vmi_lookup_timeout,
                kubevirt: OnceLock::new(),
                no_vmi_source: OnceLock::new(),
            }),
        }
    }

    /// The policy store (for reloads).
    #[must_use]
    pub fn policy(&self) -> &PolicyStore {
        &self.inner.policy
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Follows the KubeVirt CR watch: `/readyz` waits for its first list
    /// and shows what it found.
    pub fn attach_kubevirt(&self, status: Arc<kubevirt_cr::KubevirtStatus>) {
        let _ = self.inner.kubevirt.set(status);
    }

    /// Records that the server runs without a VMI source (`why`): a gauge
    /// and a `/readyz` detail, so the operator sees that launcher Pods will
    /// fall to `onError`.
    pub fn mark_no_vmi_source(&self, why: String) {
        self.inner.metrics.vmi_source_missing.set(1);
        let _ = self.inner.no_vmi_source.set(why);
    }

    /// Logs and counts the warnings of the policy now in force.
    pub fn record_policy_warnings(&self, policy: &ValidPolicy) {
        self.inner
            .metrics
            .policy_warnings
            .set(i64::try_from(policy.warnings.len()).unwrap_or(i64::MAX));
        for warning in &policy.warnings {
            tracing::warn!(%warning, digest = %policy.digest, "policy warning");
        }
    }

    /// Marks the server as draining: `/readyz` answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Re-reads the policy file and records the result (logs, metrics).
    pub fn reload_policy(&self) {
        match self.inner.policy.reload() {
            policy_store::PolicyReload::Unchanged => {}
            policy_store::PolicyReload::Reloaded(digest) => {
                Metrics::reload(&self.inner.metrics.policy_reloads, true);
                tracing::info!(%digest, "policy reloaded");
                self.record_policy_warnings(&self.inner.policy.current());
            }
            policy_store::PolicyReload::Rejected(problems) => {
                Metrics::reload(&self.inner.metrics.policy_reloads, false);
                tracing::error!(%problems, digest = %self.inner.policy.current().digest,
                    "new policy rejected; the last good policy stays in force");
            }
        }
    }

    /// Re-reads the certificate files and records the result.
    pub fn reload_certificate(&self) {
        let Some(certs) = &self.inner.certs else {
            return;
        };
        match certs.reload() {
            tls::Reload::Unchanged => {}
            tls::Reload::Reloaded => {
                Metrics::reload(&self.inner.metrics.certificate_reloads, true);
                tracing::info!("serving certificate reloaded");
            }
            tls::Reload::Failed(error) => {
                Metrics::reload(&self.inner.metrics.certificate_reloads, false);
                tracing::warn!(%error, "new certificate not loaded; the previous one keeps serving");
            }
        }
    }
}

/// The router of the TLS port: every endpoint, the 7 MiB body cap.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(handlers::mutate))
        .route("/validate-policy", post(handlers::validate_policy))
        .merge(probe_routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The router of the plain-HTTP probe port (`--probe-listen`): health,
/// readiness and metrics only, no admission endpoint.
pub fn probe_app(state: AppState) -> Router {
    probe_routes()
        .layer(DefaultBodyLimit::max(0))
        .with_state(state)
}

fn probe_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
}

/// Bounds of the connection handling.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// How long a client may take to send request headers (HTTP/1.1).
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish on shutdown.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then
/// drains.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, Some(tls), router, options, shutdown).await;
}

/// Serves `router` over plain HTTP on `listener` (the probe port) until
/// `shutdown` completes, with the same connection bounds as [`serve`].
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, None, router, options, shutdown).await;
}

async fn serve_with(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let handshake_timeout = options.handshake_timeout;
        tokio::spawn(async move {
            let Some(acceptor) = acceptor else {
                let connection = builder.serve_connection(TokioIo::new(tcp), service);
                if let Err(error) = watcher.watch(connection).await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            };
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!(timeout = ?options.drain_timeout, "drain timed out; closing the remaining connections");
        }
    }
}
