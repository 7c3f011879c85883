//! Router-level: every endpoint, every client mistake.

use super::*;

#[tokio::test]
async fn router_rejects_client_mistakes_with_4xx() {
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        ("wrong content type", "text/plain", EXAMPLE_REVIEW.as_bytes().to_vec(), StatusCode::BAD_REQUEST, "Content-Type"),
        ("truncated JSON", "application/json", b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\"".to_vec(), StatusCode::BAD_REQUEST, "undecodable"),
        ("not JSON", "application/json", b"hello".to_vec(), StatusCode::BAD_REQUEST, "undecodable"),
        ("v1beta1", "application/json", br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}"#.to_vec(), StatusCode::BAD_REQUEST, "expected apiVersion"),
        ("no request", "application/json", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), StatusCode::BAD_REQUEST, "no request"),
        ("empty uid", "application/json", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}"#.to_vec(), StatusCode::BAD_REQUEST, "no uid"),
        ("over 7 MiB", "application/json", vec![b' '; server::MAX_BODY_BYTES + 1], StatusCode::PAYLOAD_TOO_LARGE, ""),
    ];
    let (router, state) = router_with(Arc::new(NoVmis), Duration::from_secs(1));
    for (name, content_type, body, expected_status, message) in cases {
        let response = router
            .clone()
            .oneshot(
                Request::post("/mutate")
                    .header("content-type", content_type)
                    .body(Body::from(body))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), expected_status, "{name}");
        let text = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert!(
            String::from_utf8_lossy(&text).contains(message),
            "{name}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    let metrics = state.metrics().render();
    assert!(
        metrics.contains("virt_sizer_admission_errors_total{reason=\"bad_request\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("virt_sizer_admission_errors_total{reason=\"too_large\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn router_serves_health_readiness_and_metrics() {
    let (router, state) = router_with(Arc::new(NoVmis), Duration::from_secs(1));
    let (status, body) = oneshot_review(router.clone(), EXAMPLE_REVIEW).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true);

    let get = |path: &'static str| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
                .await
                .expect("response");
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|value| value.to_str().unwrap_or_default().to_owned());
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            (
                status,
                content_type,
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
    };
    let (status, _, body) = get("/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, body) = get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    // What a person with curl looks for comes first.
    assert!(
        body.starts_with(r#"{"ready":true,"draining":false,"saturated":false,"policy":"#),
        "{body}"
    );
    let (status, content_type, body) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type
            .expect("content type")
            .starts_with("application/openmetrics-text")
    );
    for name in [
        "virt_sizer_admission_requests_total{kind=\"launcher_pod\",operation=\"CREATE\",outcome=\"error_allowed\"} 1",
        "virt_sizer_admission_duration_seconds_bucket",
        "virt_sizer_admission_duration_seconds_count{kind=\"launcher_pod\",operation=\"CREATE\",outcome=\"error_allowed\"} 1",
        "virt_sizer_admission_in_flight_requests 0",
        "virt_sizer_admission_errors_total{reason=\"vmi_not_found\"} 1",
        "virt_sizer_policy_reloads_total{result=\"success\"} 0",
        "virt_sizer_certificate_reloads_total{result=\"failure\"} 0",
    ] {
        assert!(body.contains(name), "missing {name} in\n{body}");
    }
    state.begin_shutdown();
    let (status, _, body) = get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("\"draining\":true"));
    let (status, _, _) = get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
