//! Connection slots are reclaimed, not waited for: a silent TCP connection
//! holds its slot for the 3 s handshake timeout at most, a connection kept
//! busy by probes closes at its maximum age, and the probe port has its own
//! small cap, where the connection idle longest gives way.

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

#[test]
fn the_probe_port_has_its_own_cap_and_idle_connections_give_way() {
    let binary = Binary::spawn(&[], Stdio::null(), None);
    let probes = SocketAddr::from(([127, 0, 0, 1], binary.probe_port));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // 1,200 keep-alive connections, each served once and then idle: more
        // than the TLS port's 1,024 slots, far more than the probe port's 64.
        let mut idle = Vec::new();
        for _ in 0..1200 {
            let mut tcp = tokio::net::TcpStream::connect(probes)
                .await
                .expect("connect");
            let _ = tcp
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await;
            idle.push(tcp);
        }
        // Probes on new connections are answered at once, as the kubelet's
        // would be.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        for _ in 0..9 {
            let response = http
                .get(format!("http://127.0.0.1:{}/healthz", binary.probe_port))
                .send()
                .await
                .expect("a probe answered within 2 s");
            assert_eq!(response.status(), StatusCode::OK);
        }
        // The TLS port's slots are its own.
        let http = binary.client();
        let response = binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()).await;
        assert_eq!(response.status(), StatusCode::OK);
        drop(idle);
    });
}
