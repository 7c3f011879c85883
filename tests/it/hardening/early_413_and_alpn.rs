//! Early 413, ALPN.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_content_length_gets_413_before_the_body_and_never_100_continue() {
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
async fn alpn_http1_connection_is_not_served_http2() {
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
