//! Faults: slow VMI source, panics, drain, slow clients.

use super::*;
use virt_sizer::sizing::vmi::ReadVmi;

/// A VMI source that waits, then answers with the example VMI.
struct SlowVmis {
    delay: Duration,
    started: Arc<AtomicUsize>,
}

impl VmiSource for SlowVmis {
    fn get<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>> {
        Box::pin(async move {
            self.started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let vmi: Value = yaml_serde::from_str(
                &std::fs::read_to_string(repo("examples/vmi-dev.yaml")).expect("read"),
            )
            .expect("yaml");
            Ok(Some(Arc::new(ReadVmi::from_value(&vmi))))
        })
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

/// A VMI source that panics.
struct PanickingVmis;

impl VmiSource for PanickingVmis {
    fn get<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>> {
        Box::pin(async { panic!("injected fault") })
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "panics".into()
    }
}

#[tokio::test]
async fn a_hanging_vmi_lookup_is_answered_within_the_bound_per_on_error() {
    let started = Arc::new(AtomicUsize::new(0));
    let vmis = Arc::new(SlowVmis {
        delay: Duration::from_secs(3600),
        started: started.clone(),
    });
    let (router, _) = router_with(vmis, Duration::from_millis(200));
    let began = Instant::now();
    let (status, body) = oneshot_review(router, EXAMPLE_REVIEW).await;
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "took {:?}",
        began.elapsed()
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(
        body["response"]["uid"],
        "7f3b1c2a-0000-4000-8000-000000000001"
    );
    let warning = body["response"]["warnings"][0].as_str().expect("warning");
    assert!(warning.contains("timed out after 200 ms"), "{warning}");
    assert!(body["response"].get("patch").is_none());
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panic_while_deciding_is_caught_counted_and_answered() {
    let (router, state) = router_with(Arc::new(PanickingVmis), Duration::from_secs(1));
    let (status, body) = oneshot_review(router, EXAMPLE_REVIEW).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true, "onError Allow");
    assert_eq!(
        body["response"]["uid"],
        "7f3b1c2a-0000-4000-8000-000000000001"
    );
    assert!(
        state
            .metrics()
            .render()
            .contains("virt_sizer_admission_panics_total 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_an_in_flight_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = pair();
    let started = Arc::new(AtomicUsize::new(0));
    let mut setup = setup_in(dir.path(), &pem);
    setup.vmis = Arc::new(SlowVmis {
        delay: Duration::from_millis(700),
        started: started.clone(),
    });
    setup.lookup_timeout = Duration::from_secs(5);
    let server = TestServer::start(setup).await;
    let http = client(&[&pem.ca_pem]);
    let url = server.url("/mutate");
    let in_flight =
        tokio::spawn(async move { post_review(&http, &url, EXAMPLE_REVIEW.as_bytes()).await });
    while started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let state = server.state.clone();
    server.stop().await; // returns only after the drain
    let response = in_flight.await.expect("task");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert!(
        crate::support::was_sized(&body),
        "the in-flight request was decided, not cut"
    );
    let (status, _) = crate::support::readyz_of(server::app(state)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_does_not_block_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = pair();
    let server = TestServer::start(setup_in(dir.path(), &pem)).await;
    // Ten connections that never finish a handshake.
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(
            tokio::net::TcpStream::connect(server.address)
                .await
                .expect("connect"),
        );
    }
    let http = client(&[&pem.ca_pem]);
    let began = Instant::now();
    let response = http
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(began.elapsed() < Duration::from_secs(2));
    drop(idle);
    server.stop().await;
}
