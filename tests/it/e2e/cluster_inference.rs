//! `virt-sizer serve` with nothing but `KUBECONFIG` (no `--cluster`, no
//! `--vmi-dir`) infers cluster mode the kube-rs way: it watches VMIs and
//! Namespaces and sizes launcher Pods exactly as `review` does offline.

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
    // The VMI exists before the server starts: it is in the first list of
    // the watch, so the lookup is a cache hit.
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
}
