//! Connection slots are reclaimed, not waited for: a silent TCP connection
//! holds its slot for the 3 s handshake timeout at most, a connection kept
//! busy by probes closes at its maximum age, and unfinished heads on either
//! port hold 32 KiB at most, the probe port having its own small cap where
//! the connection idle longest gives way.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tcp_connection_is_closed_at_the_handshake_timeout_of_a_few_seconds() {
    let options = ServeOptions::default();
    assert!(options.handshake_timeout <= Duration::from_secs(3));
    let running = Running::start(options, RequestLimits::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(running.address)
        .await
        .expect("connect");
    let began = Instant::now();
    let (received, ended) = read_until_closed(&mut tcp, Duration::from_secs(12)).await;
    assert!(received.is_empty(), "{received:?}");
    assert_closed_within(
        "silent TCP before the handshake",
        ended - began,
        options.handshake_timeout,
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_kept_busy_by_probes_closes_at_its_maximum_age() {
    let options = ServeOptions {
        idle_timeout: Duration::from_millis(800),
        max_connection_age: Duration::from_millis(1500),
        ..ServeOptions::default()
    };
    let running = Running::start(options, RequestLimits::default()).await;
    let (mut sender, driver) = h2_client(&running).await;
    let began = Instant::now();
    // A probe every 300 ms: never idle for 800 ms.
    let probing = tokio::spawn(async move {
        loop {
            let probe = hyper::Request::get("https://localhost/healthz")
                .body(full(Bytes::new()))
                .expect("request");
            if sender.send_request(probe).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(8), driver)
        .await
        .expect("the server closed the connection")
        .expect("driver");
    assert_closed_within(
        "HTTP/2 with a probe every 300 ms",
        began.elapsed(),
        options.max_connection_age,
    );
    probing.abort();
    running.stop().await;
}

/// Writes a request head of 400 KB that never ends (the rest of the
/// connection's life it sends nothing); the server may cut it off.
async fn unfinished_head<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S) {
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: ".to_vec();
    head.resize(400 * 1000, b'p');
    let _ = stream.write_all(&head).await;
}

#[test]
fn unfinished_heads_on_both_ports_stay_under_200_mib_and_probes_are_answered() {
    let binary = Binary::spawn(&[], Stdio::null(), None);
    let probes = SocketAddr::from(([127, 0, 0, 1], binary.probe_port));
    let tls = SocketAddr::from(([127, 0, 0, 1], binary.port));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let baseline = binary.memory_kib("VmRSS");
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers = runtime.block_on(async {
        // 500 TLS connections and 1,000 probe-port connections (all
        // connected first), each then writing an unfinished 400 KB head:
        // every head written, or cut off by the server, before the probes.
        let mut tls_streams = Vec::new();
        for _ in 0..500 {
            tls_streams.push(tls_connect(tls, &binary.ca_pem, &[b"http/1.1"]).await);
        }
        let mut writers = Vec::new();
        for mut stream in tls_streams {
            let written = written.clone();
            writers.push(tokio::spawn(async move {
                unfinished_head(&mut stream).await;
                written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(120)).await;
            }));
        }
        for _ in 0..1000 {
            let mut tcp = tokio::net::TcpStream::connect(probes)
                .await
                .expect("connect");
            let written = written.clone();
            writers.push(tokio::spawn(async move {
                unfinished_head(&mut tcp).await;
                written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(120)).await;
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while written.load(std::sync::atomic::Ordering::SeqCst) < 1500 {
            assert!(Instant::now() < deadline, "heads not written within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        writers
    });
    // Probes on new connections are answered at once, as the kubelet's
    // would be; a review too. (On a runtime of their own: the writers' tasks
    // keep theirs busy.)
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(2))
                .build()
                .expect("client");
            for _ in 0..9 {
                let response = http
                    .get(format!("http://{probes}/healthz"))
                    .send()
                    .await
                    .expect("a probe answered within 2 s");
                assert_eq!(response.status(), StatusCode::OK);
            }
            let http = binary.client();
            let response = binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()).await;
            assert_eq!(response.status(), StatusCode::OK);
        });
    runtime.block_on(async {
        for writer in writers {
            writer.abort();
        }
    });
    let peak = binary.memory_kib("VmHWM");
    eprintln!(
        "unfinished heads: RSS baseline {} MiB, peak {} MiB",
        baseline / 1024,
        peak / 1024
    );
    assert!(peak < 200 * 1024, "peak RSS {} MiB", peak / 1024);
}
