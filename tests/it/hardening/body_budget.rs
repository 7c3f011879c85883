//! The body budget: charged as the bytes arrive, taken back from bodies
//! that stop arriving, and shared by a bounded number of bodies in flight
//! (`limits`: 24 MiB by default, eight bodies at the 3 MiB cap).

use super::*;

/// How many bodies at the cap the default budget holds: its size over the
/// cap.
fn bodies_at_the_cap_in_the_budget() -> usize {
    RequestLimits::default().buffered_body_bytes() / server::MAX_BODY_BYTES
}

/// `count` reviews on a fresh HTTP/2 connection, one after the other; the
/// time each took to be answered 200.
async fn review_latencies(running: &Running, count: usize) -> Vec<Duration> {
    let (mut sender, _driver) = h2_client(running).await;
    let mut latencies = Vec::new();
    for _ in 0..count {
        let began = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(15),
            sender.send_request(mutate_request(full(EXAMPLE_REVIEW))),
        )
        .await
        .expect("answered within 15 s")
        .expect("a review");
        assert_eq!(response.status(), StatusCode::OK);
        let _ = response.into_body().collect().await;
        latencies.push(began.elapsed());
    }
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_declare_the_cap_and_send_nothing_hold_no_budget() {
    let running = Running::start(ServeOptions::default(), RequestLimits::default()).await;
    // One HTTP/2 connection with 32 streams and twelve HTTP/1.1 connections,
    // each declaring a body at the cap and sending none of it: more than
    // the budget's bodies at the cap.
    let silent = 32 + 12;
    assert!(silent > bodies_at_the_cap_in_the_budget());
    let (sender, _driver) = h2_client(&running).await;
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
        let mut stream = tls_connect(running.address, &running.pem.ca_pem, &[b"http/1.1"]).await;
        let head = format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            server::MAX_BODY_BYTES
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        connections.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The body timeout is 10 s: a review that waited for the silent bodies'
    // budget would take that long.
    let latencies = review_latencies(&running, 10).await;
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(1),
        "a review took {slowest:?} beside {silent} silent bodies: {latencies:?}"
    );
    for stream in streams {
        stream.abort();
    }
    drop(connections);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_bodies_give_way_to_a_waiting_review() {
    let running = Running::start(ServeOptions::default(), RequestLimits::default()).await;
    // Bodies that send all but their last byte and stop: together more than
    // the budget, so one of their chunks must wait and the others hold
    // their bytes until they give way.
    let unfinished = bodies_at_the_cap_in_the_budget() + 1;
    let (sender, _driver) = h2_client(&running).await;
    let mut streams = Vec::new();
    for _ in 0..unfinished {
        let mut sender = sender.clone();
        let prefix = Bytes::from(vec![b' '; server::MAX_BODY_BYTES - 1]);
        streams.push(tokio::spawn(async move {
            match sender
                .send_request(unfinished_request(server::MAX_BODY_BYTES, prefix))
                .await
            {
                Ok(response) => Some(response.status()),
                Err(_) => None,
            }
        }));
    }
    // Time for the bytes to arrive and the budget to run out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let latencies = review_latencies(&running, 10).await;
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(1),
        "a review took {slowest:?} beside {unfinished} unfinished bodies: {latencies:?}"
    );
    let metrics = running.state.metrics().render();
    assert!(
        metric_value(
            &metrics,
            "virt_sizer_admission_errors_total{reason=\"body_reclaimed\"}"
        ) >= 1.0,
        "{metrics}"
    );
    // The bodies that gave way were answered 408 (or their stream reset),
    // long before their 10 s timeout.
    let mut answered = 0;
    for stream in streams {
        if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_millis(100), stream).await {
            assert!(
                status.is_none_or(|status| status == StatusCode::REQUEST_TIMEOUT),
                "{status:?}"
            );
            answered += 1;
        }
    }
    assert!(answered >= 1, "no unfinished body gave way");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_bound_in_flight_takes_the_place_of_the_oldest() {
    let in_flight = 4;
    let running = Running::start(
        ServeOptions::default(),
        RequestLimits::default().with_max_bodies_in_flight(in_flight),
    )
    .await;
    let (sender, _driver) = h2_client(&running).await;
    let mut streams = Vec::new();
    for _ in 0..in_flight {
        let mut sender = sender.clone();
        streams.push(tokio::spawn(async move {
            sender
                .send_request(unfinished_request(1000, Bytes::new()))
                .await
                .map(|response| response.status())
                .ok()
        }));
        // Arrival order decides which is the oldest.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latencies = review_latencies(&running, 1).await;
    assert!(latencies[0] < Duration::from_secs(1), "{latencies:?}");
    let mut streams = streams.into_iter();
    let oldest = streams.next().expect("a stream");
    let status = tokio::time::timeout(Duration::from_secs(1), oldest)
        .await
        .expect("the oldest body gave way at once")
        .expect("task");
    assert!(
        status.is_none_or(|status| status == StatusCode::REQUEST_TIMEOUT),
        "{status:?}"
    );
    // The others still wait for their bodies.
    for stream in streams {
        assert!(!stream.is_finished());
        stream.abort();
    }
    running.stop().await;
}
