//! What the shipped selectors keep away from virt-sizer: launcher Pods in
//! kube-system and in virt-sizer's own namespace, and Pods that are not
//! launcher Pods. They are stored exactly as sent, and virt-sizer never
//! hears of them, while the same launcher Pod in an ordinary namespace is
//! sized.

use super::api::{self, Kind, Resources};
use super::control_plane;
use super::objects;
use super::webhook::Serve;
use crate::support::{VmiSpec, q};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_namespaces_and_other_pods_are_stored_untouched() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let server = Serve::with_e2e_policy().start(session.plane).await;
    let configurations = server.webhook_configurations(session.plane, "manifests/base");
    super::webhook::register(&session, &configurations).await;

    // kube-system exists already. virt-sizer and the control namespace are
    // made here, labelled tier=dev: only the exclusion keeps the dev profile
    // away from the first.
    for (namespace, sized) in [
        ("kube-system", false),
        ("virt-sizer", false),
        ("excluded-control", true),
    ] {
        api::namespace(client, namespace, &[("tier", "dev")]).await;
        let vmi = api::create(
            client,
            Kind::VirtualMachineInstance,
            &objects::vmi(&VmiSpec::simple("excluded", 1024), namespace),
        )
        .await;
        let pod = objects::small_launcher_pod(&vmi);
        let stored = api::create(client, Kind::Pod, &pod).await;
        let decision = api::annotation(&stored, virt_sizer::admission::DECISION_ANNOTATION);
        if sized {
            // dev: 1 vCPU / 20 = 50m.
            assert_eq!(Resources::compute(&stored).request("cpu"), Some(q("50m")));
            assert!(decision.is_some_and(|text| text.starts_with("profile=dev,")));
        } else {
            assert_eq!(
                Resources::compute(&stored),
                Resources::compute(&pod),
                "{namespace}"
            );
            assert_eq!(decision, None, "{namespace}");
            assert_eq!(
                stored["metadata"]["annotations"],
                pod["metadata"]["annotations"]
            );
        }
    }

    // Not launcher Pods: a plain Pod, and one whose kubevirt.io label has
    // another value (KubeVirt's virt-handler and friends).
    let plain = objects::plain_pod("excluded-control", "plain");
    let mut handler = objects::plain_pod("excluded-control", "virt-handler-x");
    handler["metadata"]["labels"]["kubevirt.io"] = serde_json::json!("virt-handler");
    for pod in [plain, handler] {
        let stored = api::create(client, Kind::Pod, &pod).await;
        assert_eq!(Resources::of(&stored, "app"), Resources::of(&pod, "app"));
        assert!(stored["metadata"]["annotations"].is_null(), "{stored}");
    }

    // The log is in order: once the control namespace's decision is there,
    // any about the excluded ones (made before it) would be too.
    let namespaces: Vec<String> = server
        .decisions_once(|lines| {
            lines
                .iter()
                .any(|line| line["namespace"] == "excluded-control")
        })
        .await
        .iter()
        .map(|line| line["namespace"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        namespaces
            .iter()
            .all(|namespace| namespace == "excluded-control" || namespace == "e2e-canary"),
        "virt-sizer was asked about {namespaces:?}"
    );
    assert_eq!(
        namespaces
            .iter()
            .filter(|namespace| *namespace == "excluded-control")
            .count(),
        1,
        "only the launcher Pod of excluded-control reaches virt-sizer"
    );
}
