//! The HTTPS webhook server: `POST /mutate`, `GET /healthz`, `GET /readyz`,
//! `GET /metrics`.
//!
//! [`app`] builds the axum router over an [`AppState`] (tests drive it with
//! `oneshot`, no socket). [`serve`] runs it behind rustls on a listener:
//! TLS 1.2/1.3, and HTTP/2 only when ALPN chose `h2` (HTTP/1.1 otherwise,
//! so there is no protocol sniffing to stall on). Every stage of a
//! connection is bounded: the handshake, the first request (a silent
//! connection or a partial HTTP/2 preface), each request's head (at most
//! [`MAX_HEAD_BYTES`]) and body ([`limits`]), idleness afterwards (HTTP/2:
//! keep-alive PINGs find dead peers, GOAWAY closes idle ones), and the
//! connection's age, so that a client sending a probe now and then cannot
//! keep one open forever. HTTP/2 flow-control windows are small, so a
//! stream holds little unread data. Connections are capped in number per
//! listener: at the cap, a new connection takes the slot of the one idle
//! longest, and accepting waits only while every connection has a request
//! in flight. HTTP/2 streams are capped per connection too. On shutdown,
//! readiness goes false first, the listener closes, in-flight requests
//! finish, and connections still open after the drain bound are dropped.

pub mod cluster;
mod extract;
pub mod handlers;
pub mod kubevirt_cr;
pub mod limits;
pub mod policy_checks;
pub mod policy_store;
pub mod reload;
pub mod tls;
pub mod vmi_source;
pub mod watch;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::sizing::policy::ValidPolicy;
use policy_store::PolicyStore;
use reload::Reload;
use tls::CertStore;
use vmi_source::VmiSource;

pub use limits::{MAX_BODY_BYTES, MAX_HEAD_BYTES, RequestLimits};

/// Namespace labels for `namespaceSelector` rules.
pub trait NamespaceSource: Send + Sync + 'static {
    /// The labels of `namespace`; an error when they cannot be known (the
    /// policy's `onError` then applies, rather than "no labels").
    fn labels<'a>(
        &'a self,
        namespace: &'a str,
    ) -> vmi_source::BoxFuture<'a, Result<Arc<BTreeMap<String, String>>, String>>;
    /// Whether the source has synced (readiness).
    fn is_ready(&self) -> bool;
    /// The watch cache's health, in cluster mode.
    fn health(&self) -> Option<&cluster::CacheHealth> {
        None
    }
    /// Hands the source its metric handles.
    fn attach_metrics(&self, _metrics: &Metrics) {}
}

/// Namespace labels given up front (none, without a cluster): a namespace
/// not listed has no labels.
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
    fn labels<'a>(
        &'a self,
        namespace: &'a str,
    ) -> vmi_source::BoxFuture<'a, Result<Arc<BTreeMap<String, String>>, String>> {
        let labels = self
            .labels
            .get(namespace)
            .cloned()
            .unwrap_or_else(|| self.empty.clone());
        Box::pin(async move { Ok(labels) })
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
    /// Decodes in flight: twice the cores; more requests wait their turn.
    decodes: Semaphore,
    /// Policy checks (`/validate-policy`), off the runtime workers.
    policy_checks: policy_checks::PolicyChecks,
    /// Requests waiting for the body budget or a decode slot (readiness).
    waits: Arc<limits::Waits>,
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
        let metrics = Metrics::new();
        if let Some(certs) = &certs {
            metrics.certificate_expiry.set(certs.validity().not_after);
        }
        vmis.attach_metrics(&metrics);
        namespaces.attach_metrics(&metrics);
        AppState {
            inner: Arc::new(Inner {
                policy,
                certs,
                vmis,
                namespaces,
                metrics,
                shutting_down: AtomicBool::new(false),
                vmi_lookup_timeout,
                kubevirt: OnceLock::new(),
                no_vmi_source: OnceLock::new(),
                decodes: Semaphore::new(
                    2 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
                ),
                policy_checks: policy_checks::PolicyChecks::default(),
                waits: Arc::default(),
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

    /// Requests waiting for the server's own capacity.
    pub(crate) fn waits(&self) -> &Arc<limits::Waits> {
        &self.inner.waits
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

    /// Records, once at start, that the policy file did not load and the
    /// built-in policy serves instead (logs, metrics; `/readyz` shows why).
    pub fn record_policy_at_start(&self) {
        let policy = &self.inner.policy;
        let Some(problems) = policy.last_error() else {
            return;
        };
        let metrics = &self.inner.metrics;
        Metrics::reload(&metrics.policy_reloads, false);
        metrics.policy_builtin_fallback.set(1);
        tracing::error!(%problems, file = ?policy.path(), digest = %policy.current().digest,
            "policy file did not load at start; the built-in policy serves until it loads");
    }

    /// Re-reads the policy file and records the result (logs, metrics).
    pub fn reload_policy(&self) {
        let metrics = &self.inner.metrics;
        match self.inner.policy.reload() {
            Reload::Unchanged => {}
            Reload::Reloaded => {
                Metrics::reload(&metrics.policy_reloads, true);
                metrics.policy_builtin_fallback.set(0);
                let policy = self.inner.policy.current();
                tracing::info!(digest = %policy.digest, "policy reloaded");
                self.record_policy_warnings(&policy);
            }
            Reload::Failed(problems) => {
                Metrics::reload(&metrics.policy_reloads, false);
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
        let reloads = &self.inner.metrics.certificate_reloads;
        match certs.reload() {
            Reload::Unchanged => {}
            Reload::Reloaded => {
                Metrics::reload(reloads, true);
                let validity = certs.validity();
                self.inner
                    .metrics
                    .certificate_expiry
                    .set(validity.not_after);
                tracing::info!(validity = %validity.text, "serving certificate reloaded");
            }
            Reload::Failed(error) => {
                Metrics::reload(reloads, false);
                tracing::warn!(%error, "new certificate not loaded; the previous one keeps serving");
            }
        }
        match certs.reload_client_ca() {
            Reload::Unchanged => {}
            Reload::Reloaded => {
                Metrics::reload(reloads, true);
                tracing::info!("client CA reloaded");
            }
            Reload::Failed(error) => {
                Metrics::reload(reloads, false);
                tracing::warn!(%error, "new client CA not loaded; the previous one keeps verifying");
            }
        }
    }
}

/// The router of the TLS port with the default [`RequestLimits`].
pub fn app(state: AppState) -> Router {
    app_with(state, &RequestLimits::default())
}

/// The router of the TLS port: every endpoint, behind the request bounds.
pub fn app_with(state: AppState, limits: &RequestLimits) -> Router {
    Router::new()
        .route("/mutate", post(handlers::mutate))
        .route("/validate-policy", post(handlers::validate_policy))
        .merge(probe_routes())
        .layer(DefaultBodyLimit::max(limits.max_body_bytes()))
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), limits.clone()),
            limits::guard,
        ))
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
    /// How long a client may take to send request headers (HTTP/1.1), and
    /// to send its first request after the handshake (both protocols: a
    /// silent connection, a partial HTTP/2 preface).
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    /// HTTP/2 gets a GOAWAY; HTTP/1.1 keep-alive is also closed by the
    /// header timeout, whichever is first.
    pub idle_timeout: Duration,
    /// How long a connection may stay open whatever it does: then it is
    /// closed gracefully (HTTP/2: GOAWAY; requests in flight get the drain
    /// timeout to finish) and the client connects anew. Requests now and
    /// then (a probe a minute) reset the idle timeout, never this.
    pub max_connection_age: Duration,
    /// HTTP/2: a PING after this long without frames from the peer…
    pub keep_alive_interval: Duration,
    /// …and the connection closes if it is not answered within this.
    pub keep_alive_timeout: Duration,
    /// HTTP/2: streams open at once per connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2: the initial flow-control window of a stream, in bytes: the
    /// most request data one stream can hold unread.
    pub stream_window: u32,
    /// HTTP/2: the initial flow-control window of a connection, in bytes:
    /// the most request data one connection can hold unread.
    pub connection_window: u32,
    /// Connections open at once. At the cap, a new connection takes the
    /// slot of the connection idle longest, which is closed at once;
    /// accepting waits only while every connection has a request in flight.
    pub max_connections: usize,
    /// How long in-flight requests may take to finish on shutdown.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_connection_age: Duration::from_secs(300),
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 32,
            stream_window: 64 * 1024,
            connection_window: 256 * 1024,
            max_connections: 1024,
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

/// Serves `router` over plain HTTP/1.1 on `listener` (the probe port: the
/// kubelet and Prometheus speak HTTP/1.1) until `shutdown` completes, with
/// the same connection bounds as [`serve`].
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, None, router, options, shutdown).await;
}

/// The two protocol stacks, one chosen per connection.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(options: &ServeOptions) -> Protocols {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .max_buf_size(MAX_HEAD_BYTES);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(options.max_concurrent_streams)
            .initial_stream_window_size(options.stream_window)
            .initial_connection_window_size(options.connection_window.max(options.stream_window))
            .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX))
            .keep_alive_interval(options.keep_alive_interval)
            .keep_alive_timeout(options.keep_alive_timeout);
        Protocols { http1, http2 }
    }
}

/// What serves each connection's requests: the router, counted.
type ConnectionService = Tracked<TowerToHyperService<Router>>;

/// A connection served by one of the two stacks.
enum Served<I> {
    Http1(Pin<Box<http1::Connection<I, ConnectionService>>>),
    Http2(Pin<Box<http2::Connection<I, ConnectionService, TokioExecutor>>>),
}

impl<I> Served<I>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    /// Finishes the requests in flight, takes no new ones (HTTP/2: GOAWAY).
    fn graceful_shutdown(&mut self) {
        match self {
            Served::Http1(connection) => connection.as_mut().graceful_shutdown(),
            Served::Http2(connection) => connection.as_mut().graceful_shutdown(),
        }
    }
}

impl<I> Future for Served<I>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    type Output = Result<(), hyper::Error>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut *self {
            Served::Http1(connection) => connection.as_mut().poll(cx),
            Served::Http2(connection) => connection.as_mut().poll(cx),
        }
    }
}

async fn serve_with(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let protocols = Arc::new(Protocols::new(&options));
    let slots = Arc::new(Slots::new(options.max_connections));
    let draining = CancellationToken::new();
    let dropping = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    while let Some((slot, tcp, peer)) = accept(&listener, &slots, shutdown.as_mut()).await {
        let connection = Connection {
            protocols: protocols.clone(),
            router: router.clone(),
            options,
            draining: draining.clone(),
            dropping: dropping.clone(),
            peer,
        };
        connections.spawn(connection.start(slot, tcp, acceptor.clone()));
    }
    drop(listener);
    draining.cancel();
    connections.close();
    tokio::select! {
        () = connections.wait() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!(timeout = ?options.drain_timeout, "drain timed out; closing the remaining connections");
            dropping.cancel();
        }
    }
}

/// How often accepting looks again for a slot while every connection has a
/// request in flight.
const SLOT_RETRY: Duration = Duration::from_millis(20);

/// The next connection and its slot (the idlest connection's at the cap);
/// `None` once `shutdown` completes.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Slots>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<(Slot, TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return None,
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
        let mut logged = false;
        loop {
            if let Some(slot) = slots.take() {
                return Some((slot, tcp, peer));
            }
            if !logged {
                tracing::debug!(
                    max = slots.max,
                    "connection limit reached with a request in flight on every connection; accepting waits"
                );
                logged = true;
            }
            tokio::select! {
                () = tokio::time::sleep(SLOT_RETRY) => {}
                () = &mut shutdown => return None,
            }
        }
    }
}

/// The connections open on one listener, each with its [`Activity`].
struct Slots {
    max: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Activity>>>,
}

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            max: max.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// A slot for a new connection: a free one, else the slot of the
    /// connection idle longest (told to close at once); `None` while every
    /// connection has a request in flight.
    fn take(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= self.max {
            let idlest = open
                .iter()
                .filter_map(|(id, activity)| Some((*id, activity.idle_since()?)))
                .min_by_key(|(_, since)| *since)
                .map(|(id, _)| id)?;
            if let Some(activity) = open.remove(&idlest) {
                tracing::debug!(
                    max = self.max,
                    "connection limit reached; closing the connection idle longest"
                );
                activity.reclaimed.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        open.insert(id, activity.clone());
        Some(Slot {
            slots: self.clone(),
            id,
            activity,
        })
    }
}

/// A connection's place among [`Slots`]; freed when dropped.
struct Slot {
    slots: Arc<Slots>,
    id: u64,
    activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    protocols: Arc<Protocols>,
    router: Router,
    options: ServeOptions,
    draining: CancellationToken,
    dropping: CancellationToken,
    peer: SocketAddr,
}

/// How long a connection told to close (idle) may take to do so.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Connection {
    /// The TLS handshake (bounded), then [`Connection::serve`]; `slot` is
    /// held until the connection ends, or until a new connection takes it.
    async fn start(self, slot: Slot, tcp: TcpStream, acceptor: Option<TlsAcceptor>) {
        let activity = slot.activity.clone();
        let Some(acceptor) = acceptor else {
            self.serve(slot, TokioIo::new(tcp), false).await;
            return;
        };
        let handshake = tokio::time::timeout(self.options.handshake_timeout, acceptor.accept(tcp));
        let stream = tokio::select! {
            handshake = handshake => handshake,
            () = self.dropping.cancelled() => return,
            () = activity.reclaimed.cancelled() => {
                tracing::debug!(peer = %self.peer, "closed during the TLS handshake to free its slot");
                return;
            }
        };
        let peer = self.peer;
        let stream = match stream {
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
        // HTTP/2 only when ALPN chose it; no ALPN or http/1.1 is HTTP/1.1.
        let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        self.serve(slot, TokioIo::new(stream), http2).await;
    }

    async fn serve<I>(self, slot: Slot, io: I, http2: bool)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let activity = slot.activity.clone();
        let service = Tracked {
            inner: TowerToHyperService::new(self.router.clone()),
            activity: activity.clone(),
        };
        let mut connection = if http2 {
            Served::Http2(Box::pin(self.protocols.http2.serve_connection(io, service)))
        } else {
            Served::Http1(Box::pin(self.protocols.http1.serve_connection(io, service)))
        };
        let expires = activity.opened + self.options.max_connection_age;
        // Once told to close: when it is dropped if it has not closed.
        let mut close_by: Option<Instant> = None;
        loop {
            let idle_at = activity.idle_deadline(&self.options);
            tokio::select! {
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!(peer = %self.peer, %error, "connection ended with an error");
                    }
                    return;
                }
                () = sleep_until(idle_at), if close_by.is_none() => {
                    if activity.is_idle_past(&self.options) {
                        tracing::debug!(peer = %self.peer, "closing an idle connection");
                        connection.graceful_shutdown();
                        close_by = Some(Instant::now() + CLOSE_GRACE);
                    }
                }
                () = tokio::time::sleep_until(expires), if close_by.is_none() => {
                    tracing::debug!(peer = %self.peer, age = ?self.options.max_connection_age, "closing a connection at its maximum age");
                    connection.graceful_shutdown();
                    close_by = Some(Instant::now() + self.options.drain_timeout);
                }
                () = activity.changed.notified() => {}
                () = self.draining.cancelled(), if close_by.is_none() => {
                    connection.graceful_shutdown();
                    close_by = Some(Instant::now() + self.options.drain_timeout);
                }
                () = sleep_until(close_by) => {
                    tracing::debug!(peer = %self.peer, "connection did not close in time; dropped");
                    return;
                }
                () = self.dropping.cancelled() => return,
                () = activity.reclaimed.cancelled() => {
                    tracing::debug!(peer = %self.peer, "closed the connection idle longest to free its slot");
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    served: AtomicBool,
    idle_since: Mutex<Instant>,
    changed: Notify,
    /// Cancelled when a new connection takes this one's slot.
    reclaimed: CancellationToken,
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        Activity {
            opened: now,
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: Mutex::new(now),
            changed: Notify::new(),
            reclaimed: CancellationToken::new(),
        }
    }

    /// Since when the connection has had no request in flight (since it
    /// opened, before its first request); `None` while one is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(
            *self
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// When the connection counts as idle: `header_read_timeout` after it
    /// opened until a first request arrives, `idle_timeout` after the last
    /// request ended; never while a request is in flight.
    fn idle_deadline(&self, options: &ServeOptions) -> Option<Instant> {
        let since = self.idle_since()?;
        Some(
            since
                + if self.served.load(Ordering::SeqCst) {
                    options.idle_timeout
                } else {
                    options.header_read_timeout
                },
        )
    }

    fn is_idle_past(&self, options: &ServeOptions) -> bool {
        self.idle_deadline(options)
            .is_some_and(|deadline| deadline <= Instant::now())
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        InFlight(self.clone())
    }
}

/// One request in flight; its end restarts the idle clock.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// The router as a hyper service that counts requests in flight.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

type BoxedResponse<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B> hyper::service::Service<hyper::Request<B>> for Tracked<S>
where
    S: hyper::service::Service<hyper::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxedResponse<S::Response, S::Error>;

    fn call(&self, request: hyper::Request<B>) -> Self::Future {
        let in_flight = self.activity.begin();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(in_flight);
            response
        })
    }
}
