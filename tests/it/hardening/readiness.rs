//! Readiness reflects the ability to answer: `/readyz` is not ready while a
//! review has waited a second or more for the server's own capacity.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use virt_sizer::server::vmi_source::BoxFuture;
use virt_sizer::sizing::vmi::ReadVmi;

/// A VMI source whose first `hanging` lookups never answer (the server's
/// lookup timeout ends them); later ones find nothing at once.
struct HangingVmis {
    hanging: usize,
    started: AtomicUsize,
}

impl VmiSource for HangingVmis {
    fn get<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>> {
        let hang = self.started.fetch_add(1, Ordering::SeqCst) < self.hanging;
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok(None)
        })
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "hanging".into()
    }
}

async fn readyz(state: &AppState) -> (StatusCode, Value) {
    crate::support::readyz_of(server::probe_app(state.clone())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_not_ready_while_a_review_waits_for_the_body_budget() {
    // Reviews at the body cap (the example, padded with whitespace), as
    // many as the budget holds: their VMI lookups hang for 3 s, and they
    // hold their bytes until answered.
    let limits = RequestLimits::default();
    let holders = server::limits::BUFFERED_BODY_BYTES / server::MAX_BODY_BYTES;
    let lookup_timeout = Duration::from_secs(3);
    let running = Running::start_over(
        ServeOptions::default(),
        limits,
        None,
        Arc::new(HangingVmis {
            hanging: holders,
            started: AtomicUsize::new(0),
        }),
        lookup_timeout,
    )
    .await;
    let mut padded = EXAMPLE_REVIEW.as_bytes().to_vec();
    padded.resize(server::MAX_BODY_BYTES, b' ');
    let padded = Bytes::from(padded);
    let (sender, _driver) = h2_client(&running).await;
    let mut answers = Vec::new();
    for _ in 0..holders {
        let (mut sender, padded) = (sender.clone(), padded.clone());
        answers.push(tokio::spawn(async move {
            sender
                .send_request(mutate_request(full(padded)))
                .await
                .map(|response| response.status())
        }));
    }
    let in_flight = format!("virt_sizer_admission_in_flight_requests {holders}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running.state.metrics().render().contains(&in_flight) {
        assert!(Instant::now() < deadline, "the reviews did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(readyz(&running.state).await.0, StatusCode::OK);

    // One more review finds the budget spent, and waits.
    let began = Instant::now();
    let waiting = tokio::spawn({
        let mut sender = sender.clone();
        async move {
            sender
                .send_request(mutate_request(full(EXAMPLE_REVIEW)))
                .await
                .map(|response| response.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, detail) = readyz(&running.state).await;
    assert!(!waiting.is_finished(), "the review did not wait");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{detail}");
    assert_eq!(detail["saturated"], json!(true), "{detail}");
    assert_eq!(detail["ready"], json!(false), "{detail}");
    assert!(
        running
            .state
            .metrics()
            .render()
            .contains("virt_sizer_ready 0")
    );

    // Once the lookups time out the reviews are answered, the waiting one
    // too, and the replica is ready again.
    for answer in answers {
        assert_eq!(
            answer.await.expect("task").expect("answered"),
            StatusCode::OK
        );
    }
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting review was answered")
        .expect("task")
        .expect("answered");
    assert_eq!(status, StatusCode::OK);
    assert!(began.elapsed() >= lookup_timeout.mul_f32(0.5));
    let (status, detail) = readyz(&running.state).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["saturated"], json!(false), "{detail}");
    running.stop().await;
}
