//! Stalled bodies.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_http1_is_answered_408_within_the_body_timeout() {
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
async fn stalled_body_http2_stream_is_reset_within_the_body_timeout() {
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

/// A request with the wrong `Content-Type` is answered 400 only once its
/// body has been received: over HTTP/2 an answer sent while the body is
/// still arriving is followed by a reset of the stream, which curl reports
/// instead of the answer (`(92) Stream error in the HTTP/2 framing layer`).
/// Ten such requests on one connection hold back their body's second
/// half: no answer may come before it, and all ten are whole 400s after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_error_answers_wait_for_the_body_so_they_arrive_whole() {
    use futures::StreamExt as _;
    let running = Running::start(ServeOptions::default(), RequestLimits::default()).await;
    let (sender, _driver) = h2_client(&running).await;
    let mut releases = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..10 {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        releases.push(release);
        let second_half = futures::stream::once(async move {
            let _ = released.await;
            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(vec![b' '; 4096])))
        });
        let frames = futures::stream::iter([Ok::<_, Infallible>(hyper::body::Frame::data(
            Bytes::from(vec![b'{'; 4096]),
        ))])
        .chain(second_half);
        let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(frames));
        let request = hyper::Request::post("https://localhost/mutate")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-length", "8192")
            .body(body)
            .expect("request");
        let mut sender = sender.clone();
        answers.push(tokio::spawn(
            async move { sender.send_request(request).await },
        ));
    }
    // Deciding a 400 takes microseconds: an answer within 300 ms is one
    // sent before the body's end.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        answers.iter().all(|answer| !answer.is_finished()),
        "answered before the body was received"
    );
    for release in releases {
        let _ = release.send(());
    }
    for answer in answers {
        let response = answer.await.expect("task").expect("an answer, not a reset");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let text = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("the whole answer")
            .to_bytes();
        assert_eq!(&text[..], b"Content-Type must be application/json");
    }
    running.stop().await;
}
