//! Issue 11, section 5: Labels from closed sets.

use super::*;

#[tokio::test]
async fn issue_11_distinct_operation_values_add_no_metric_series() {
    let state = AppState::new(
        PolicyStore::builtin(),
        None,
        Arc::new(NoVmis),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(1),
    );
    let router = server::app(state.clone());
    let review = |operation: String| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": operation, "namespace": "n",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}}})
        .to_string()
    };
    let send = |body: String| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(
                    Request::post("/mutate")
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .expect("request"),
                )
                .await
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK);
        }
    };
    let series = || {
        state
            .metrics()
            .render()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .count()
    };
    send(review("WARM-UP".into())).await;
    let before = series();
    for index in 0..10_000 {
        send(review(format!("OPERATION-{index}-{}", "x".repeat(64)))).await;
    }
    assert_eq!(series(), before, "client operations became series");
    assert!(
        state
            .metrics()
            .render()
            .contains("operation=\"other\",outcome=\"skipped\"} 10001")
    );
}

#[test]
fn issue_11_shadow_figures_by_namespace_are_bounded() {
    let metrics = virt_sizer::metrics::Metrics::new();
    let labels: std::collections::BTreeSet<String> = (0..1000)
        .map(|index| metrics.shadow_namespace(&format!("tenant-{index}")))
        .chain([metrics.shadow_namespace(&"x".repeat(3_000_000))])
        .collect();
    assert_eq!(
        labels.len(),
        virt_sizer::metrics::MAX_SHADOW_NAMESPACES + 1,
        "{labels:?}"
    );
    assert!(labels.contains(virt_sizer::metrics::OTHER_NAMESPACES));
    assert_eq!(metrics.shadow_namespace("tenant-0"), "tenant-0");
}
