//! With virt-sizer down, the base's `failurePolicy: Ignore` lets launcher
//! Pods through unsized (VM starts never block on the webhook), and the
//! fail-closed overlay's `Fail` refuses them.

use std::time::Duration;

use serde_json::Value;

use super::api::{self, Kind, Resources};
use super::control_plane;
use super::objects;
use super::webhook::{Serve, canary_pod, register};
use crate::support::VmiSpec;

const NAMESPACE: &str = "failure-e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virt_sizer_down_admits_under_base_and_refuses_under_fail_closed() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let mut server = Serve::with_e2e_policy().start(session.plane).await;
    let base = server.webhook_configurations(session.plane, "manifests/base");
    let fail_closed =
        server.webhook_configurations(session.plane, "manifests/overlays/fail-closed");
    // The mutating webhooks' policies (the policy ConfigMap's validating
    // webhook stays Ignore in both).
    let mutating = |configurations: &[Value]| -> Vec<Value> {
        configurations
            .iter()
            .filter(|configuration| configuration["kind"] == "MutatingWebhookConfiguration")
            .cloned()
            .collect()
    };
    let fail_closed = mutating(&fail_closed);
    for (configurations, expected) in [(&mutating(&base), "Ignore"), (&fail_closed, "Fail")] {
        let policies: Vec<&str> = configurations
            .iter()
            .flat_map(|configuration| configuration["webhooks"].as_array().expect("webhooks"))
            .map(|webhook| {
                webhook["failurePolicy"]
                    .as_str()
                    .expect("explicit failurePolicy")
            })
            .collect();
        assert!(
            policies.iter().all(|policy| *policy == expected),
            "{policies:?}"
        );
    }
    register(&session, &base).await;
    api::namespace(client, NAMESPACE, &[("tier", "dev")]).await;
    let vmi = api::create(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&VmiSpec::simple("down", 1024), NAMESPACE),
    )
    .await;
    let pod = objects::small_launcher_pod(&vmi);

    server.stop();
    // Ignore: created, exactly as KubeVirt rendered it.
    let stored = api::create(client, Kind::Pod, &pod).await;
    assert_eq!(Resources::compute(&stored), Resources::compute(&pod));
    assert_eq!(
        api::annotation(&stored, virt_sizer::admission::DECISION_ANNOTATION),
        None
    );
    // Only the apiserver saw it, and counts it where the monitoring
    // component's alert VirtSizerWebhookFailingOpen looks.
    assert!(
        apiserver_metric(
            &session,
            "apiserver_admission_webhook_fail_open_count{",
            &["name=\"launcher-pods.virt-sizer.io\""]
        ),
        "the fail-open call is counted for launcher-pods.virt-sizer.io"
    );

    // Fail: swap in the fail-closed overlay's configuration (same name) and
    // wait until the canary is refused, then the launcher Pod is too.
    api::delete(
        client,
        Kind::MutatingWebhookConfiguration,
        None,
        "virt-sizer",
    )
    .await;
    for configuration in &fail_closed {
        api::create(client, Kind::MutatingWebhookConfiguration, configuration).await;
    }
    let canary = canary_pod(client).await;
    api::eventually(
        "the fail-closed configuration to take effect",
        Duration::from_secs(20),
        async || {
            api::try_create_dry_run(client, Kind::Pod, &canary)
                .await
                .is_err()
        },
    )
    .await;
    let refused = api::try_create(client, Kind::Pod, &pod)
        .await
        .expect_err("refused while virt-sizer is down");
    let message = api::refusal(&refused);
    assert!(
        message.contains("failed calling webhook")
            && message.contains("launcher-pods.virt-sizer.io"),
        "{message}"
    );
    // Counted where VirtSizerWebhookRejectedByApiserver looks; and every
    // apiserver metric the monitoring component reads exists under the
    // name it uses.
    assert!(
        apiserver_metric(
            &session,
            "apiserver_admission_webhook_rejection_count{",
            &[
                "name=\"launcher-pods.virt-sizer.io\"",
                "error_type=\"calling_webhook_error\""
            ]
        ),
        "the refusal is counted as calling_webhook_error"
    );
    let metrics = apiserver_metrics(&session);
    let exported = crate::manifests::metrics::exported_names(&metrics);
    for (origin, expr) in crate::manifests::metrics::monitoring_expressions() {
        for name in crate::manifests::metrics::promql_metric_names(&expr) {
            if name.starts_with(crate::manifests::metrics::APISERVER_METRICS) {
                assert!(
                    exported.contains(&name),
                    "{origin}: the apiserver exports no {name}"
                );
            }
        }
    }
}

/// The apiserver's `/metrics`.
fn apiserver_metrics(session: &control_plane::Session) -> String {
    let metrics = session.plane.kubectl(&["get", "--raw", "/metrics"]);
    assert!(metrics.status.success(), "{metrics:?}");
    String::from_utf8_lossy(&metrics.stdout).into_owned()
}

/// Whether the apiserver has a non-zero sample starting with `series`
/// whose labels include every one of `labels` (`key="value"`).
fn apiserver_metric(session: &control_plane::Session, series: &str, labels: &[&str]) -> bool {
    apiserver_metrics(session).lines().any(|line| {
        line.starts_with(series)
            && labels.iter().all(|label| line.contains(label))
            && !line.ends_with(" 0")
    })
}
