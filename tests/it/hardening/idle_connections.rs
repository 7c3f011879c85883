//! Idle connections, connection count, NOFILE.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_connection_is_closed_within_the_header_timeout() {
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
async fn partial_http2_preface_is_closed_within_the_header_timeout() {
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
async fn idle_http2_connection_gets_goaway_after_the_idle_timeout() {
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
async fn a_connection_past_the_maximum_takes_the_slot_of_the_one_idle_longest() {
    let options = ServeOptions {
        max_connections: 2,
        ..ServeOptions::default()
    };
    let running = Running::start(options, RequestLimits::default()).await;
    let mut idlest = tls_connect(running.address, &running.pem.ca_pem, &[b"http/1.1"]).await;
    let (mut busier, _busier_driver) = h2_client(&running).await;
    let response = busier
        .send_request(mutate_request(full(EXAMPLE_REVIEW)))
        .await
        .expect("a review");
    assert_eq!(response.status(), StatusCode::OK);
    // A third connection is served at once, in the slot of the first (idle
    // since it opened, before the second's review)...
    let (mut third, _third_driver) =
        tokio::time::timeout(Duration::from_secs(2), h2_client(&running))
            .await
            .expect("the third connection was served past the maximum of 2");
    let response = tokio::time::timeout(
        Duration::from_secs(2),
        third.send_request(mutate_request(full(EXAMPLE_REVIEW))),
    )
    .await
    .expect("answered at once")
    .expect("a review");
    assert_eq!(response.status(), StatusCode::OK);
    // ...which was closed to make room...
    let (received, _) = read_until_closed(&mut idlest, Duration::from_secs(2)).await;
    assert!(received.is_empty(), "{received:?}");
    // ...while the one with the latest review still serves.
    let response = busier
        .send_request(mutate_request(full(EXAMPLE_REVIEW)))
        .await
        .expect("the second connection still serves");
    assert_eq!(response.status(), StatusCode::OK);
    running.stop().await;
}

#[test]
fn open_files_soft_limit_is_raised_to_the_hard_limit() {
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
