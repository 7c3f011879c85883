//! Adversarial reviews of `serve`: each weakness found has a test
//! named after it, bounded in count and time, on loopback only. Timeouts are
//! configured short here, and each is checked to close its connection
//! within the configured bound (with a generous upper margin).
//!
//! In-process tests run `server::serve` over real TLS; the ones about the
//! process itself (memory, stderr, signals, limits) run the binary.

use std::convert::Infallible;
use std::io::{BufRead as _, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;
use tower::ServiceExt as _;
use virt_sizer::server::policy_store::PolicyStore;
use virt_sizer::server::tls::{self, CertStore, SelfSigned};
use virt_sizer::server::vmi_source::{NoVmis, VmiDirectory, VmiSource};
use virt_sizer::server::{self, AppState, RequestLimits, ServeOptions, StaticNamespaces};

use crate::support::repo;

mod attacks_under_load;
mod body_budget;
mod certificates;
mod connection_slots;
mod early_413_and_alpn;
mod flow_control;
mod idle_connections;
mod logging;
mod memory_amplification;
mod metric_labels;
mod others;
mod policy_at_start;
mod policy_checks;
mod readiness;
mod request_heads;
mod signals;
mod stalled_bodies;

use crate::support::{EXAMPLE_REVIEW, install_provider, pair, provider};

// === In-process server ===

/// A server on 127.0.0.1:0 with the given bounds.
struct Running {
    address: SocketAddr,
    state: AppState,
    pem: SelfSigned,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(options: ServeOptions, limits: RequestLimits) -> Running {
        Running::start_with(options, limits, None).await
    }

    async fn start_with(
        options: ServeOptions,
        limits: RequestLimits,
        client_ca: Option<&Path>,
    ) -> Running {
        Running::start_over(
            options,
            limits,
            client_ca,
            Arc::new(NoVmis),
            Duration::from_secs(1),
        )
        .await
    }

    /// A server over `vmis`, each lookup bounded by `lookup_timeout`.
    async fn start_over(
        options: ServeOptions,
        limits: RequestLimits,
        client_ca: Option<&Path>,
        vmis: Arc<dyn VmiSource>,
        lookup_timeout: Duration,
    ) -> Running {
        install_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = pair();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &pem.cert_pem).expect("write");
        std::fs::write(&key, &pem.key_pem).expect("write");
        let certs = Arc::new(CertStore::from_files(&cert, &key, provider()).expect("pair"));
        let config = tls::server_config(certs.clone(), client_ca, provider()).expect("config");
        let state = AppState::new(
            PolicyStore::builtin(),
            Some(certs),
            vmis,
            Arc::new(StaticNamespaces::default()),
            lookup_timeout,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(server::serve(
            listener,
            Arc::new(config),
            server::app_with(state.clone(), &limits),
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        Running {
            address,
            state,
            pem,
            stop: Some(stop),
            done,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("stops")
            .expect("server task");
    }
}

fn short_options() -> ServeOptions {
    ServeOptions {
        header_read_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(600),
        drain_timeout: Duration::from_secs(2),
        ..ServeOptions::default()
    }
}

/// A TLS connection to `address` offering `alpn` (none when empty).
async fn tls_connect(
    address: SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    install_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA"))
        .expect("add");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake")
}

/// Reads until the peer closes (or 8 KiB arrived); returns what was read
/// and when the read ended. Panics if nothing ends it within `bound`.
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    bound: Duration,
) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let mut chunk = [0_u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "the server neither answered nor closed within {bound:?}; got {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0) | Err(_)) => return (received, Instant::now()),
            Ok(Ok(n)) => {
                received.extend_from_slice(&chunk[..n]);
                if received.len() > 8192 {
                    return (received, Instant::now());
                }
            }
        }
    }
}

/// `elapsed` is at least most of `timeout` (it did wait) and well within a
/// generous bound.
fn assert_closed_within(what: &str, elapsed: Duration, timeout: Duration) {
    assert!(
        elapsed >= timeout.mul_f32(0.8),
        "{what}: closed after {elapsed:?}, before its timeout {timeout:?}"
    );
    assert!(
        elapsed < timeout + Duration::from_secs(4),
        "{what}: closed after {elapsed:?}, timeout {timeout:?}"
    );
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> TestBody {
    http_body_util::Full::new(bytes.into()).boxed()
}

/// An HTTP/2 client connection over TLS (ALPN `h2`), its driver spawned;
/// the join handle ends when the connection does.
async fn h2_client(
    running: &Running,
) -> (
    hyper::client::conn::http2::SendRequest<TestBody>,
    tokio::task::JoinHandle<()>,
) {
    h2_connect(running.address, &running.pem.ca_pem).await
}

/// [`h2_client`] to any address.
async fn h2_connect(
    address: SocketAddr,
    ca_pem: &str,
) -> (
    hyper::client::conn::http2::SendRequest<TestBody>,
    tokio::task::JoinHandle<()>,
) {
    let stream = tls_connect(address, ca_pem, &[b"h2"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driver)
}

fn mutate_request(body: TestBody) -> hyper::Request<TestBody> {
    hyper::Request::post("https://localhost/mutate")
        .header("content-type", "application/json")
        .body(body)
        .expect("request")
}

/// A `/mutate` request declaring `declared` bytes that sends `prefix` and
/// then nothing, ever.
fn unfinished_request(declared: usize, prefix: Bytes) -> hyper::Request<TestBody> {
    let frames = futures::stream::iter(
        (!prefix.is_empty()).then(|| Ok::<_, Infallible>(hyper::body::Frame::data(prefix))),
    );
    let body = http_body_util::StreamBody::new(futures::StreamExt::chain(
        frames,
        futures::stream::pending(),
    ))
    .boxed();
    hyper::Request::post("https://localhost/mutate")
        .header("content-type", "application/json")
        .header("content-length", declared)
        .body(body)
        .expect("request")
}

/// The 99th percentile of `samples` (nearest rank: the value at rank
/// ⌈0.99 n⌉ of the sorted samples).
fn p99(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (sorted.len() * 99).div_ceil(100);
    sorted[rank.max(1) - 1]
}

// === The binary ===

/// Held by each test that measures latency or memory under load, so that
/// no two of them load the machine at once (with two cores, one test's
/// attack would be in the other's figures).
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits until no other measuring test runs; the guard lets the next one
/// in (a failed test's poisoned lock included).
fn measuring() -> std::sync::MutexGuard<'static, ()> {
    MEASURING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

/// `virt-sizer serve` on a free loopback port with the embedded
/// certificate and the example VMIs; killed when dropped.
struct Binary {
    child: Option<Child>,
    port: u16,
    probe_port: u16,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Binary {
    /// Starts it with `extra` flags and `stderr`, through `sh -c '<shell>;
    /// exec …'` when `shell` is given; waits until it answers.
    fn spawn(extra: &[&str], stderr: Stdio, shell: Option<&str>) -> Binary {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        let free_port = || {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("address").port()
        };
        let (port, probe_port) = (free_port(), free_port());
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_virt-sizer"));
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--probe-listen",
            &format!("127.0.0.1:{probe_port}"),
            "--cluster",
            "false",
            "--vmi-dir",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        args.push(repo("examples").display().to_string());
        args.push("--ca-out".into());
        args.push(ca.display().to_string());
        args.extend(extra.iter().map(ToString::to_string));
        let mut command = match shell {
            None => {
                let mut command = Command::new(&binary);
                command.args(&args);
                command
            }
            Some(shell) => {
                let mut command = Command::new("sh");
                command
                    .arg("-c")
                    .arg(format!("{shell}; exec \"$0\" \"$@\""))
                    .arg(&binary)
                    .args(&args);
                command
            }
        };
        // Measured as the image runs it: with its allocator settings.
        let child = command
            .envs(virt_sizer::ALLOCATOR_ENV.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn");
        let mut binary = Binary {
            child: Some(child),
            port,
            probe_port,
            ca_pem: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        loop {
            assert!(
                binary.child().try_wait().expect("wait").is_none(),
                "the server exited at start"
            );
            if let Ok(pem) = std::fs::read_to_string(&ca)
                && pem.contains("END CERTIFICATE")
            {
                binary.ca_pem = pem;
                let http = binary.client();
                let up = runtime.block_on(async {
                    http.get(binary.url("/healthz"))
                        .send()
                        .await
                        .is_ok_and(|response| response.status() == StatusCode::OK)
                });
                if up {
                    return binary;
                }
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn client(&self) -> reqwest::Client {
        install_provider();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA")])
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }

    fn http1_client(&self) -> reqwest::Client {
        install_provider();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA")])
            .http1_only()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
    }

    async fn post(&self, http: &reqwest::Client, body: Vec<u8>) -> reqwest::Response {
        http.post(self.url("/mutate"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("answered")
    }

    /// A `Vm…:` figure of /proc/<pid>/status, in KiB.
    fn memory_kib(&self, field: &str) -> u64 {
        let mut status = String::new();
        std::fs::File::open(format!("/proc/{}/status", self.pid()))
            .expect("status")
            .read_to_string(&mut status)
            .expect("read");
        status
            .lines()
            .find_map(|line| {
                line.strip_prefix(field)?
                    .trim_start_matches(':')
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {field} in\n{status}"))
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("a child")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("a child").id()
    }

    fn signal(&self, signal: &str) {
        kill(self.pid(), signal);
    }

    /// SIGTERM, then the exit status (within 15 s).
    fn terminate(self) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.into_child();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The child, no longer killed on drop.
    fn into_child(mut self) -> Child {
        self.child.take().expect("a child")
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
