//! `virt-sizer serve` with nothing but `KUBECONFIG` (no `--cluster`, no
//! `--vmi-dir`) infers cluster mode the kube-rs way: it watches VMIs and
//! Namespaces and sizes launcher Pods exactly as `review` does offline,
//! finding their VMIs in its watch cache (no direct GET).

use serde_json::Value;

use super::api::{self, Kind, Resources};
use super::control_plane;
use super::objects;
use super::webhook::{Offline, Serve, policy, register};
use crate::support::VmiSpec;

const NAMESPACE: &str = "inferred-e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_alone_means_cluster_mode() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    // The VMIs (this one and the registration canary's) exist before the
    // server starts: they are in the watch's first list, so every lookup is
    // a cache hit.
    super::webhook::canary_pod(client).await;
    let namespace = api::namespace(client, NAMESPACE, &[("tier", "batch")]).await;
    let mut spec = VmiSpec::simple("inferred", 4096);
    spec.cores = 4;
    let vmi = api::create(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&spec, NAMESPACE),
    )
    .await;

    let mut serve = Serve::with_e2e_policy();
    serve.cluster_flag = false;
    let server = serve.start(session.plane).await;
    let is_source = |line: &Value| line["message"] == "VMI source";
    let source = server
        .log_lines_once(|lines| lines.iter().any(is_source))
        .await
        .into_iter()
        .find(is_source)
        .expect("the VMI source is logged");
    assert_eq!(source["cluster"], true, "{source}");

    register(
        &session,
        &server.webhook_configurations(session.plane, "manifests/base"),
    )
    .await;
    // KubeVirt's rendering: 4/10 = 400m; 4096 + (220 + 32 + 8 + 32) = 4388Mi.
    let pod = objects::launcher_pod(
        &vmi,
        crate::support::compute_resources(&[("cpu", "400m"), ("memory", "4388Mi")], &[]),
    );
    let stored = api::create(client, Kind::Pod, &pod).await;
    let policy = policy();
    let offline = Offline {
        policy: Some(&policy),
        vmi: Some(&vmi),
        namespace_labels: api::labels_flag(&namespace),
        extra_args: Vec::new(),
    }
    .patched(&pod);
    // tier=batch: the batch profile (ratio 4: 4/4 = 1 CPU, limits by ratio).
    assert!(
        api::annotation(&stored, virt_sizer::admission::DECISION_ANNOTATION)
            .is_some_and(|text| text.starts_with("profile=batch,")),
        "{stored}"
    );
    assert_eq!(
        Resources::compute(&stored).request("cpu"),
        Some(crate::support::q("1"))
    );
    assert_eq!(
        Resources::compute(&stored),
        Resources::compute(&offline).as_stored()
    );

    // Every lookup was answered by the watch cache.
    let metrics = server
        .https_client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let sample = |name: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    };
    assert_eq!(
        sample(r#"virt_sizer_cache_fallback_gets_total{resource="virtualmachineinstances"}"#),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        sample(r#"virt_sizer_cache_objects{resource="virtualmachineinstances"}"#)
            .is_some_and(|objects| objects >= 2.0),
        "{metrics}"
    );
}
