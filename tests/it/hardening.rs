//! Issue 11, the adversarial review: each weakness it found has a test
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
use std::sync::{Arc, Once};
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

const EXAMPLE_REVIEW: &str = include_str!("../../examples/launcher-pod-dev.json");

fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pair() -> SelfSigned {
    tls::generate_self_signed(&["localhost", "127.0.0.1"]).expect("certificates")
}

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
            Arc::new(NoVmis),
            Arc::new(StaticNamespaces::default()),
            Duration::from_secs(1),
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
    let stream = tls_connect(running.address, &running.pem.ca_pem, &[b"h2"]).await;
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

// === 1. Memory amplification ===

/// A review whose kept field is a huge list of zeros, `length` bytes long.
fn amplification_body(length: usize) -> Vec<u8> {
    let head = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"apiVersion":"v1","kind":"Pod","metadata":{"ownerReferences":[0"#;
    let tail = br"]}}}}";
    let mut body = head.to_vec();
    while body.len() + 2 + tail.len() <= length {
        body.extend_from_slice(b",0");
    }
    body.resize(length - tail.len(), b' ');
    body.extend_from_slice(tail);
    body
}

#[test]
fn issue_11_memory_amplification_16_concurrent_max_size_bodies_stay_under_200_mib() {
    let binary = Binary::spawn(&[], Stdio::null(), None);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = binary.http1_client();
    runtime.block_on(async {
        let response = binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()).await;
        assert_eq!(response.status(), StatusCode::OK);
    });
    let baseline = binary.memory_kib("VmRSS");
    let body = amplification_body(server::MAX_BODY_BYTES);
    assert_eq!(body.len(), server::MAX_BODY_BYTES);
    runtime.block_on(async {
        let mut sends = Vec::new();
        for _ in 0..16 {
            let (http, body, url) = (http.clone(), body.clone(), binary.url("/mutate"));
            sends.push(tokio::spawn(async move {
                http.post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("answered")
            }));
        }
        for send in sends {
            let response = send.await.expect("task");
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            let text = response.text().await.expect("text");
            assert!(text.contains("more than 64 entries"), "{text}");
        }
    });
    let peak = binary.memory_kib("VmHWM");
    assert!(
        peak < 200 * 1024,
        "peak RSS {} MiB (baseline {} MiB)",
        peak / 1024,
        baseline / 1024
    );
    // mimalloc hands freed pages back to the system when the threads that
    // own them allocate again, so the wait carries the trickle of ordinary
    // reviews a webhook always sees.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = binary.memory_kib("VmRSS");
    while now > 2 * baseline && Instant::now() < deadline {
        runtime.block_on(async {
            for _ in 0..5 {
                let response = binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()).await;
                assert_eq!(response.status(), StatusCode::OK);
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        now = binary.memory_kib("VmRSS");
    }
    eprintln!("RSS: baseline {baseline} KiB, peak {peak} KiB, after {now} KiB");
    assert!(
        now <= 2 * baseline,
        "RSS {now} KiB did not return within 2x the baseline {baseline} KiB"
    );
}

// === 2. Stalled bodies ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_stalled_body_http1_is_answered_408_within_the_body_timeout() {
    let timeout = Duration::from_millis(700);
    let running = Running::start(
        ServeOptions::default(),
        RequestLimits::new(server::MAX_BODY_BYTES, timeout),
    )
    .await;
    let mut stream = tls_connect(running.address, &running.pem.ca_pem, &[b"http/1.1"]).await;
    let began = Instant::now();
    stream
        .write_all(
            b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"apiVersion\"",
        )
        .await
        .expect("write");
    let (answer, ended) = read_until_closed(&mut stream, Duration::from_secs(8)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_closed_within("stalled HTTP/1.1 body", ended - began, timeout);
    assert!(
        running
            .state
            .metrics()
            .render()
            .contains("virt_sizer_admission_errors_total{reason=\"body_timeout\"} 1")
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_stalled_body_http2_stream_is_reset_within_the_body_timeout() {
    let timeout = Duration::from_millis(700);
    let running = Running::start(
        ServeOptions::default(),
        RequestLimits::new(server::MAX_BODY_BYTES, timeout),
    )
    .await;
    let (mut sender, _driver) = h2_client(&running).await;
    // A first frame of the body, then nothing.
    let stalled = http_body_util::StreamBody::new(futures::StreamExt::chain(
        futures::stream::once(async {
            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from_static(
                b"{\"apiVersion\"",
            )))
        }),
        futures::stream::pending(),
    ))
    .boxed();
    let began = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(8),
        sender.send_request(mutate_request(stalled)),
    )
    .await
    .expect("answered within the bound");
    let elapsed = began.elapsed();
    match response {
        Ok(response) => assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT),
        Err(error) => assert!(error.to_string().contains("reset"), "{error}"),
    }
    assert_closed_within("stalled HTTP/2 stream", elapsed, timeout);
    // The connection itself still serves.
    let response = sender
        .send_request(mutate_request(full(EXAMPLE_REVIEW)))
        .await
        .expect("a second stream");
    assert_eq!(response.status(), StatusCode::OK);
    running.stop().await;
}

// === 3. Idle connections, connection count, NOFILE ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_silent_tls_connection_is_closed_within_the_header_timeout() {
    let options = short_options();
    let running = Running::start(options, RequestLimits::default()).await;
    for alpn in [&[b"http/1.1".as_slice()][..], &[b"h2"], &[]] {
        let mut stream = tls_connect(running.address, &running.pem.ca_pem, alpn).await;
        let began = Instant::now();
        let (received, ended) = read_until_closed(&mut stream, Duration::from_secs(6)).await;
        assert!(
            received.is_empty() || !received.starts_with(b"HTTP/1.1 2"),
            "{alpn:?}: {received:?}"
        );
        assert_closed_within(
            &format!("silent TLS, ALPN {alpn:?}"),
            ended - began,
            options.header_read_timeout,
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_partial_http2_preface_is_closed_within_the_header_timeout() {
    let options = short_options();
    let running = Running::start(options, RequestLimits::default()).await;
    let mut stream = tls_connect(running.address, &running.pem.ca_pem, &[b"h2"]).await;
    let began = Instant::now();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    let (_, ended) = read_until_closed(&mut stream, Duration::from_secs(6)).await;
    assert_closed_within(
        "partial preface",
        ended - began,
        options.header_read_timeout,
    );
    // Without ALPN the connection is HTTP/1.1: the preface is a bad request
    // line, refused at once.
    let mut stream = tls_connect(running.address, &running.pem.ca_pem, &[]).await;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    read_until_closed(&mut stream, Duration::from_secs(6)).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_idle_http2_connection_gets_goaway_after_the_idle_timeout() {
    let options = short_options();
    let running = Running::start(options, RequestLimits::default()).await;
    let (mut sender, driver) = h2_client(&running).await;
    let response = sender
        .send_request(mutate_request(full(EXAMPLE_REVIEW)))
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.into_body().collect().await;
    let began = Instant::now();
    tokio::time::timeout(Duration::from_secs(8), driver)
        .await
        .expect("the server closed the idle connection")
        .expect("driver");
    assert_closed_within("idle HTTP/2", began.elapsed(), options.idle_timeout);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_connections_over_the_maximum_wait_for_a_free_slot() {
    let options = ServeOptions {
        max_connections: 2,
        ..ServeOptions::default()
    };
    let running = Running::start(options, RequestLimits::default()).await;
    let first = tls_connect(running.address, &running.pem.ca_pem, &[b"http/1.1"]).await;
    let _second = tls_connect(running.address, &running.pem.ca_pem, &[b"http/1.1"]).await;
    let third = tokio::spawn({
        let (address, ca) = (running.address, running.pem.ca_pem.clone());
        async move { tls_connect(address, &ca, &[b"http/1.1"]).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served past the maximum of 2"
    );
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("a slot was freed")
        .expect("task");
    drop(third);
    running.stop().await;
}

#[test]
fn issue_11_open_files_soft_limit_is_raised_to_the_hard_limit() {
    let binary = Binary::spawn(&[], Stdio::null(), Some("ulimit -Sn 256"));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", binary.pid())).expect("limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("NOFILE line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    assert_ne!(soft, "256", "{line}");
}

// === 4. Early 413, ALPN ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_oversized_content_length_gets_413_before_the_body_and_never_100_continue() {
    let running = Running::start(ServeOptions::default(), RequestLimits::default()).await;
    for expect in ["Expect: 100-continue\r\n", ""] {
        let mut stream = tls_connect(running.address, &running.pem.ca_pem, &[b"http/1.1"]).await;
        let head = format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{expect}\r\n",
            server::MAX_BODY_BYTES + 1
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{expect:?}: answered {answer:?}"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_alpn_http1_connection_is_not_served_http2() {
    let running = Running::start(ServeOptions::default(), RequestLimits::default()).await;
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let mut stream = tls_connect(running.address, &running.pem.ca_pem, alpn).await;
        // The HTTP/2 preface and an empty SETTINGS frame.
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        stream.write_all(&hello).await.expect("write");
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
            "ALPN {alpn:?} was answered in HTTP/2: {answer:?}"
        );
    }
    running.stop().await;
}

// === 5. Labels from closed sets ===

#[tokio::test]
async fn issue_11_distinct_operation_values_add_no_metric_series() {
    let state = AppState::new(
        PolicyStore::builtin(),
        None,
        Arc::new(NoVmis),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(1),
    );
    let router = server::app(state.clone());
    let review = |operation: String| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": operation, "namespace": "n",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}}})
        .to_string()
    };
    let send = |body: String| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(
                    Request::post("/mutate")
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .expect("request"),
                )
                .await
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK);
        }
    };
    let series = || {
        state
            .metrics()
            .render()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .count()
    };
    send(review("WARM-UP".into())).await;
    let before = series();
    for index in 0..10_000 {
        send(review(format!("OPERATION-{index}-{}", "x".repeat(64)))).await;
    }
    assert_eq!(series(), before, "client operations became series");
    assert!(
        state
            .metrics()
            .render()
            .contains("operation=\"other\",outcome=\"skipped\"} 10001")
    );
}

#[test]
fn issue_11_shadow_figures_by_namespace_are_bounded() {
    let metrics = virt_sizer::metrics::Metrics::new();
    let labels: std::collections::BTreeSet<String> = (0..1000)
        .map(|index| metrics.shadow_namespace(&format!("tenant-{index}")))
        .chain([metrics.shadow_namespace(&"x".repeat(3_000_000))])
        .collect();
    assert_eq!(
        labels.len(),
        virt_sizer::metrics::MAX_SHADOW_NAMESPACES + 1,
        "{labels:?}"
    );
    assert!(labels.contains(virt_sizer::metrics::OTHER_NAMESPACES));
    assert_eq!(metrics.shadow_namespace("tenant-0"), "tenant-0");
}

// === 6. Logging never blocks or panics the request path ===

/// 1,000 reviews, each answered 200, within a bound; returns the metrics
/// text after them.
fn thousand_reviews(binary: &Binary) -> String {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = binary.client();
    runtime.block_on(async {
        let began = Instant::now();
        for index in 0..1000 {
            let response = tokio::time::timeout(
                Duration::from_secs(10),
                binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()),
            )
            .await
            .unwrap_or_else(|_| panic!("request {index} was not answered"));
            assert_eq!(response.status(), StatusCode::OK, "request {index}");
            assert!(began.elapsed() < Duration::from_secs(120));
        }
        http.get(binary.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    })
}

#[test]
fn issue_11_stderr_pipe_nobody_reads_does_not_stop_answers() {
    let binary = Binary::spawn(&[], Stdio::piped(), None);
    // The pipe fills (64 KiB) and stays full: nobody reads it.
    let metrics = thousand_reviews(&binary);
    // The lines wait in the writer's bounded buffer (or are dropped, counted).
    assert!(metric_value(&metrics, "virt_sizer_log_lines_dropped_total") >= 0.0);
}

#[test]
fn issue_11_stderr_on_a_full_device_does_not_stop_answers() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let binary = Binary::spawn(&[], Stdio::from(full), None);
    let metrics = thousand_reviews(&binary);
    assert!(metric_value(&metrics, "virt_sizer_log_lines_dropped_total") >= 1000.0);
}

#[test]
fn issue_11_stderr_closed_or_broken_at_start_does_not_exit_101() {
    // Closed: the shell closes fd 2 before exec.
    let closed = Binary::spawn(&[], Stdio::null(), Some("exec 2>&-"));
    // Broken: a pipe whose reader is gone (every write fails with EPIPE).
    let mut broken = Binary::spawn(&[], Stdio::piped(), None);
    drop(broken.child().stderr.take());
    for binary in [closed, broken] {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let http = binary.client();
        runtime.block_on(async {
            let response = binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()).await;
            assert_eq!(response.status(), StatusCode::OK);
        });
        let status = binary.terminate();
        assert!(status.success(), "exit status {status}");
    }
}

#[test]
fn issue_11_text_logs_escape_control_characters_and_cap_fields() {
    let mut binary = Binary::spawn(&["--log-format", "text"], Stdio::piped(), None);
    let stderr = binary.child().stderr.take().expect("stderr");
    let (lines, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .split(b'\n')
            .map_while(Result::ok)
        {
            let _ = lines.send(String::from_utf8_lossy(&line).into_owned());
        }
    });
    let mut review: Value = serde_json::from_str(EXAMPLE_REVIEW).expect("json");
    let forged = format!(
        "dev-a\r\nFORGED admission decision\u{1b}[31m{}",
        "y".repeat(2_000_000)
    );
    review["request"]["namespace"] = json!(forged);
    review["request"]["uid"] = json!("uid\nFORGED-uid");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = binary.client();
    runtime.block_on(async {
        let response = binary
            .post(&http, serde_json::to_vec(&review).expect("json"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut decision = None;
    while decision.is_none() && Instant::now() < deadline {
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            assert!(!line.starts_with("FORGED"), "a forged line: {line}");
            assert!(!line.contains('\u{1b}') && !line.contains('\r'), "{line:?}");
            assert!(line.len() < 32 * 1024, "a {}-byte line", line.len());
            if line.contains("admission decision") {
                decision = Some(line);
            }
        }
    }
    let decision = decision.expect("a decision line");
    assert!(
        decision.contains("FORGED admission decision\\u{1b}[31m"),
        "{decision}"
    );
    assert!(decision.contains("more bytes]"), "{decision}");
}

// === 7. Certificates ===

/// A CA and a client certificate it signed, as PEM (CA, cert + key).
fn client_identity(name: &str) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca_key = KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
        .expect("leaf");
    (
        ca.pem(),
        format!("{}{}", leaf.pem(), leaf_key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_client_ca_reloads_like_the_serving_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old_ca, old_client) = client_identity("old-apiserver");
    let (new_ca, new_client) = client_identity("new-apiserver");
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &old_ca).expect("write");
    let running = Running::start_with(
        ServeOptions::default(),
        RequestLimits::default(),
        Some(&ca_file),
    )
    .await;
    let with = |identity: &str| {
        reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(running.pem.ca_pem.as_bytes()).expect("CA"),
            ])
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).expect("identity"))
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    };
    let url = format!("https://localhost:{}/healthz", running.address.port());
    assert!(with(&old_client).get(&url).send().await.is_ok());
    assert!(with(&new_client).get(&url).send().await.is_err());

    let staged = dir.path().join("client-ca.staged");
    std::fs::write(&staged, &new_ca).expect("write");
    std::fs::rename(&staged, &ca_file).expect("rename");
    running.state.reload_certificate();
    assert!(
        with(&new_client).get(&url).send().await.is_ok(),
        "the new client CA is trusted after the reload"
    );
    assert!(
        with(&old_client).get(&url).send().await.is_err(),
        "the old client CA is no longer trusted"
    );
    let metrics = running.state.metrics().render();
    assert!(
        metrics.contains("virt_sizer_certificate_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    running.stop().await;
}

/// A self-signed serving pair valid from the start of `from_year` to the
/// start of `until_year`.
fn pair_valid(from_year: i32, until_year: i32) -> (String, String) {
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_before = date_time_ymd(from_year, 1, 1);
    params.not_after = date_time_ymd(until_year, 1, 1);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn issue_11_serving_pair_outside_its_validity_window_is_refused_and_the_old_one_kept() {
    install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (good_cert, good_key) = pair_valid(2020, 2100);
    std::fs::write(&cert, &good_cert).expect("write");
    std::fs::write(&key, &good_key).expect("write");
    let certs = Arc::new(CertStore::from_files(&cert, &key, provider()).expect("pair"));
    let state = AppState::new(
        PolicyStore::builtin(),
        Some(certs.clone()),
        Arc::new(NoVmis),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(1),
    );
    let good_expiry = certs.validity().not_after;
    let expiry_line = format!("virt_sizer_certificate_expiry_timestamp_seconds {good_expiry}");
    assert!(state.metrics().render().contains(&expiry_line));
    for (name, (bad_cert, bad_key)) in [
        ("expired", pair_valid(2020, 2021)),
        ("not yet valid", pair_valid(2099, 2100)),
    ] {
        std::fs::write(&cert, &bad_cert).expect("write");
        std::fs::write(&key, &bad_key).expect("write");
        state.reload_certificate();
        assert_eq!(
            certs.validity().not_after,
            good_expiry,
            "{name} pair loaded"
        );
        let error = certs.last_error().expect("a refused reload");
        assert!(error.contains("not valid now"), "{name}: {error}");
    }
    let metrics = state.metrics().render();
    assert!(metrics.contains("virt_sizer_certificate_reloads_total{result=\"failure\"} 2"));
    assert!(metrics.contains(&expiry_line), "{metrics}");
}

#[tokio::test]
async fn issue_11_readyz_is_degraded_when_the_serving_certificate_expired() {
    install_provider();
    let (cert_pem, key_pem) = pair_valid(2020, 2021);
    let certs = Arc::new(
        CertStore::from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), provider()).expect("pair"),
    );
    let state = AppState::new(
        PolicyStore::builtin(),
        Some(certs),
        Arc::new(NoVmis),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(1),
    );
    let response = server::app(state)
        .oneshot(
            Request::get("/readyz")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let detail: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(detail["certificate"]["valid"], false, "{detail}");
}

// === 8. The rest ===

#[test]
fn issue_11_second_sigterm_during_drain_exits_at_once() {
    let binary = Binary::spawn(&["--shutdown-delay-seconds", "60"], Stdio::null(), None);
    binary.signal("TERM");
    // Readiness goes false, the drain waits its 60 s delay…
    std::thread::sleep(Duration::from_millis(500));
    let mut child = binary.into_child();
    assert!(child.try_wait().expect("wait").is_none(), "still draining");
    // …and a second SIGTERM ends it now.
    let began = Instant::now();
    kill(child.id(), "TERM");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if began.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second SIGTERM did not end the process");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn issue_11_admission_warnings_never_carry_server_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vmi_dir = dir.path().join("vmis-f");
    std::fs::create_dir(&vmi_dir).expect("mkdir");
    let state = AppState::new(
        PolicyStore::builtin(),
        None,
        Arc::new(VmiDirectory::new(&vmi_dir).expect("dir")),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(5),
    );
    std::fs::remove_dir(&vmi_dir).expect("rmdir");
    let response = server::app(state)
        .oneshot(
            Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Body::from(EXAMPLE_REVIEW))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("warnings"), "{text}");
    assert!(!text.contains(&*dir.path().to_string_lossy()), "{text}");
    assert!(!text.contains("vmis-f"), "{text}");
}

#[tokio::test]
async fn issue_11_admission_warnings_echo_client_values_capped() {
    let (router, _) = crate::bad_input::router();
    let mut review: Value = serde_json::from_str(EXAMPLE_REVIEW).expect("json");
    review["request"]["object"]["metadata"]["annotations"]["virt-sizer.io/profile"] =
        json!("p".repeat(100_000));
    let (status, body) = crate::bad_input::post(
        &router,
        Some("application/json"),
        serde_json::to_vec(&review).expect("json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).expect("json");
    let warnings = answer["response"]["warnings"].as_array().expect("warnings");
    assert!(!warnings.is_empty());
    for warning in warnings {
        let warning = warning.as_str().expect("text");
        assert!(warning.len() <= 1100, "a {}-byte warning", warning.len());
    }
    assert!(body.len() < 20_000, "a {}-byte answer", body.len());
}

#[tokio::test]
async fn issue_11_deleted_vmi_file_is_no_longer_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vmi.yaml");
    std::fs::copy(repo("examples/vmi-dev.yaml"), &file).expect("copy");
    let vmis = VmiDirectory::new(dir.path()).expect("dir");
    assert!(
        vmis.get("dev-a", "ci-runner-01")
            .await
            .expect("get")
            .is_some()
    );
    std::fs::remove_file(&file).expect("rm");
    assert!(
        vmis.get("dev-a", "ci-runner-01")
            .await
            .expect("get")
            .is_none(),
        "a deleted VMI was served"
    );
}

// === The binary ===

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
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Binary {
    /// Starts it with `extra` flags and `stderr`, through `sh -c '<shell>;
    /// exec …'` when `shell` is given; waits until it answers.
    fn spawn(extra: &[&str], stderr: Stdio, shell: Option<&str>) -> Binary {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("address").port()
        };
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_virt-sizer"));
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--probe-listen",
            "127.0.0.1:0",
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
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn");
        let mut binary = Binary {
            child: Some(child),
            port,
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
