//! Legitimate reviews while a client without credentials attacks the TLS
//! port: holding the body budget with bodies it never sends, filling
//! HTTP/2 flow-control windows with bodies it never finishes, and taking
//! every connection slot with idle connections that probe now and then.
//! Each test runs the `serve` binary with its defaults, mounts the attack,
//! sends 50 reviews while it lasts, and prints their p99 and the process's
//! peak RSS (VmHWM); the targets are p99 < 1 s and peak RSS < 200 MiB (the
//! manifests' memory limit is 256 MiB).
//!
//! The attacking client runs on a runtime of its own with one worker
//! thread, the reviews on another thread (on one machine the attacker's
//! CPU is the server's too).
//!
//! `cargo test --test it attacks_under_load -- --nocapture` prints the
//! figures.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const REVIEWS: usize = 50;
const P99_TARGET: Duration = Duration::from_secs(1);
const PEAK_RSS_TARGET_KIB: u64 = 200 * 1024;

impl Binary {
    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// An attacker's HTTP/2 connection, if the server takes it (under the
/// attack a handshake may be refused or time out: the attacker moves on).
async fn attacker_connection(
    address: SocketAddr,
    ca_pem: &str,
) -> Option<hyper::client::conn::http2::SendRequest<TestBody>> {
    let stream = tokio::time::timeout(Duration::from_secs(10), async {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).ok()?)
            .ok()?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(address).await.ok()?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").ok()?,
                tcp,
            )
            .await
            .ok()
    })
    .await
    .ok()??;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(sender)
}

/// `REVIEWS` reviews, one after the other (each on a new connection when
/// `fresh`), and how long each took; every one must be answered 200
/// within 5 s.
async fn reviews(binary: &Binary, fresh: bool) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let mut http = binary.client();
    for _ in 0..REVIEWS {
        if fresh {
            http = binary.client();
        }
        let began = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()),
        )
        .await
        .expect("a review answered within 5 s");
        assert_eq!(response.status(), StatusCode::OK);
        let _ = response.bytes().await;
        latencies.push(began.elapsed());
    }
    latencies
}

/// Prints and checks the figures of one attack.
fn report(attack: &str, binary: &Binary, baseline_kib: u64, latencies: &[Duration]) {
    let peak = binary.memory_kib("VmHWM");
    let p99 = p99(latencies);
    let p50 = {
        let mut sorted = latencies.to_vec();
        sorted.sort();
        sorted[sorted.len() / 2]
    };
    eprintln!(
        "{attack}: {REVIEWS} reviews p50 {p50:?} p99 {p99:?}; RSS baseline {} MiB, peak {} MiB",
        baseline_kib / 1024,
        peak / 1024
    );
    assert!(p99 < P99_TARGET, "{attack}: p99 {p99:?}");
    assert!(
        peak < PEAK_RSS_TARGET_KIB,
        "{attack}: peak RSS {} MiB",
        peak / 1024
    );
}

/// The attacker's runtime: one worker thread.
fn attacker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// [`reviews`] on a runtime of its own, on this thread, while the
/// attacker's tasks run on theirs.
fn reviews_beside_the_attack(binary: &Binary, fresh: bool) -> Vec<Duration> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(reviews(binary, fresh))
}

/// Waits (up to 60 s) until `count` reaches `target`: the attack is
/// mounted in full before the reviews begin.
async fn until_mounted(count: &AtomicUsize, target: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < target {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {target} mounted within 60 s",
            count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn baseline(binary: &Binary, runtime: &tokio::runtime::Runtime) -> u64 {
    runtime.block_on(async {
        let http = binary.client();
        let response = binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()).await;
        assert_eq!(response.status(), StatusCode::OK);
    });
    binary.memory_kib("VmRSS")
}

#[test]
fn body_starvation_32_silent_http2_streams_and_12_http1_bodies() {
    let _alone = measuring();
    let binary = Binary::spawn(&[], Stdio::null(), None);
    let runtime = attacker_runtime();
    let baseline = baseline(&binary, &runtime);
    let (streams, connections) = runtime.block_on(async {
        let (sender, driver) = h2_connect(binary.address(), &binary.ca_pem).await;
        let mut streams = Vec::new();
        for _ in 0..32 {
            let mut sender = sender.clone();
            streams.push(tokio::spawn(async move {
                let _ = sender
                    .send_request(unfinished_request(server::MAX_BODY_BYTES, Bytes::new()))
                    .await;
            }));
        }
        let mut connections = Vec::new();
        for _ in 0..12 {
            let mut stream = tls_connect(binary.address(), &binary.ca_pem, &[b"http/1.1"]).await;
            let head = format!(
                "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                server::MAX_BODY_BYTES
            );
            stream.write_all(head.as_bytes()).await.expect("write");
            connections.push(stream);
        }
        streams.push(driver);
        tokio::time::sleep(Duration::from_millis(300)).await;
        (streams, connections)
    });
    let latencies = reviews_beside_the_attack(&binary, false);
    for stream in streams {
        stream.abort();
    }
    drop(connections);
    report("body starvation", &binary, baseline, &latencies);
}

#[test]
fn window_buffering_400_http2_connections_with_unfinished_bodies() {
    let _alone = measuring();
    const CONNECTIONS: usize = 400;
    let binary = Binary::spawn(&[], Stdio::null(), None);
    let runtime = attacker_runtime();
    let baseline = baseline(&binary, &runtime);
    let stop = Arc::new(AtomicBool::new(false));
    let sending = Arc::new(AtomicUsize::new(0));
    let attackers = runtime.block_on(async {
        // Each connection sends a body that declares the cap, pushes 1 MiB as
        // fast as flow control lets it and stops; when the server cuts it
        // off, it sends another. All connect first, then all send.
        let prefix = Bytes::from(vec![b' '; 1024 * 1024]);
        let (go, ready) = tokio::sync::watch::channel(false);
        let mut attackers = Vec::new();
        for _ in 0..CONNECTIONS {
            let (address, ca) = (binary.address(), binary.ca_pem.clone());
            let (stop, prefix, sending) = (stop.clone(), prefix.clone(), sending.clone());
            let mut ready = ready.clone();
            attackers.push(tokio::spawn(async move {
                let Some(mut sender) = attacker_connection(address, &ca).await else {
                    return;
                };
                sending.fetch_add(1, Ordering::SeqCst);
                if ready.wait_for(|go| *go).await.is_err() {
                    return;
                }
                while !stop.load(Ordering::SeqCst) {
                    let sent = sender
                        .send_request(unfinished_request(server::MAX_BODY_BYTES, prefix.clone()))
                        .await;
                    if sent.is_err() && sender.ready().await.is_err() {
                        return;
                    }
                }
            }));
        }
        until_mounted(&sending, CONNECTIONS, "window buffering").await;
        let _ = go.send(true);
        // Time for the bodies' bytes to arrive.
        tokio::time::sleep(Duration::from_secs(1)).await;
        attackers
    });
    let latencies = reviews_beside_the_attack(&binary, false);
    stop.store(true, Ordering::SeqCst);
    for attacker in attackers {
        attacker.abort();
    }
    report("window buffering", &binary, baseline, &latencies);
}

#[test]
fn slot_exhaustion_1024_probing_http2_connections_and_100_silent_tcp() {
    let _alone = measuring();
    const PROBING: usize = 1024;
    let binary = Binary::spawn(&[], Stdio::null(), None);
    let runtime = attacker_runtime();
    let baseline = baseline(&binary, &runtime);
    let (attackers, silent) = runtime.block_on(async {
        // Idle HTTP/2 connections sending GET /healthz every 2 s (the idle
        // timeout never fires), then silent TCP connections: every slot of
        // the TLS port taken.
        let mut attackers = Vec::new();
        for _ in 0..PROBING {
            let mut sender = attacker_connection(binary.address(), &binary.ca_pem)
                .await
                .expect("every probing connection is served: there is a slot for each");
            attackers.push(tokio::spawn(async move {
                loop {
                    let probe = hyper::Request::get("https://localhost/healthz")
                        .body(full(Bytes::new()))
                        .expect("request");
                    if sender.send_request(probe).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }));
        }
        let mut silent = Vec::new();
        for _ in 0..100 {
            silent.push(
                tokio::net::TcpStream::connect(binary.address())
                    .await
                    .expect("connect"),
            );
        }
        (attackers, silent)
    });
    // Each review on a new connection: it needs a slot.
    let latencies = reviews_beside_the_attack(&binary, true);
    for attacker in attackers {
        attacker.abort();
    }
    drop(silent);
    report("slot exhaustion", &binary, baseline, &latencies);
}
