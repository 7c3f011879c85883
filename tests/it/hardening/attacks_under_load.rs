//! Legitimate reviews while a client without credentials attacks the TLS
//! port: holding the body budget with bodies it never sends, filling
//! HTTP/2 flow-control windows with bodies it never finishes, and taking
//! every connection slot with idle connections that probe now and then.
//! Each test runs the `serve` binary with its defaults, mounts the attack,
//! sends 50 reviews while it lasts, and prints their p99 and the process's
//! peak RSS (VmHWM); the targets are p99 < 1 s and peak RSS < 200 MiB (the
//! manifests' memory limit is 256 MiB).
//!
//! `cargo test --test it attacks_under_load -- --nocapture` prints the
//! figures.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

const REVIEWS: usize = 50;
const P99_TARGET: Duration = Duration::from_secs(1);
const PEAK_RSS_TARGET_KIB: u64 = 200 * 1024;

impl Binary {
    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
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
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let baseline = baseline(&binary, &runtime);
    let latencies = runtime.block_on(async {
        let (sender, _driver) = h2_connect(binary.address(), &binary.ca_pem).await;
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
        tokio::time::sleep(Duration::from_millis(300)).await;
        let latencies = reviews(&binary, false).await;
        for stream in streams {
            stream.abort();
        }
        latencies
    });
    report("body starvation", &binary, baseline, &latencies);
}

#[test]
fn window_buffering_400_http2_connections_with_unfinished_bodies() {
    let _alone = measuring();
    const CONNECTIONS: usize = 400;
    let binary = Binary::spawn(&[], Stdio::null(), None);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let baseline = baseline(&binary, &runtime);
    let latencies = runtime.block_on(async {
        // Each connection sends a body that declares the cap, pushes 1 MiB as
        // fast as flow control lets it and stops; when the server cuts it
        // off, it sends another.
        let stop = Arc::new(AtomicBool::new(false));
        let prefix = Bytes::from(vec![b' '; 1024 * 1024]);
        let mut attackers = Vec::new();
        for _ in 0..CONNECTIONS {
            let (address, ca) = (binary.address(), binary.ca_pem.clone());
            let (stop, prefix) = (stop.clone(), prefix.clone());
            attackers.push(tokio::spawn(async move {
                let (mut sender, _driver) = h2_connect(address, &ca).await;
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
        tokio::time::sleep(Duration::from_secs(1)).await;
        let latencies = reviews(&binary, false).await;
        stop.store(true, Ordering::SeqCst);
        for attacker in attackers {
            attacker.abort();
        }
        latencies
    });
    report("window buffering", &binary, baseline, &latencies);
}

#[test]
fn slot_exhaustion_1024_probing_http2_connections_and_100_silent_tcp() {
    let _alone = measuring();
    const PROBING: usize = 1024;
    let binary = Binary::spawn(&[], Stdio::null(), None);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let baseline = baseline(&binary, &runtime);
    let latencies = runtime.block_on(async {
        // Idle HTTP/2 connections sending GET /healthz every 2 s (the idle
        // timeout never fires), then silent TCP connections: every slot of
        // the TLS port taken.
        let mut attackers = Vec::new();
        for _ in 0..PROBING {
            let (mut sender, driver) = h2_connect(binary.address(), &binary.ca_pem).await;
            attackers.push(driver);
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
        // Each review on a new connection: it needs a slot.
        let latencies = reviews(&binary, true).await;
        for attacker in attackers {
            attacker.abort();
        }
        drop(silent);
        latencies
    });
    report("slot exhaustion", &binary, baseline, &latencies);
}
