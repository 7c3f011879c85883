//! What the shipped selectors keep away from virt-sizer: launcher Pods in
//! kube-system and in virt-sizer's own namespace, launcher Pods whose
//! namespace is labelled `virt-sizer.io/ignore: "true"`, and Pods that are
//! not launcher Pods. They are stored exactly as sent, and virt-sizer never
//! hears of them, while the same launcher Pod in an ordinary namespace is
//! sized, whatever label its VM owner gave it.

use super::api::{self, Kind, Resources};
use super::control_plane;
use super::objects;
use super::webhook::Serve;
use crate::support::{IGNORE_LABEL, VmiSpec, q};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_namespaces_and_other_pods_are_stored_untouched() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let server = Serve::with_e2e_policy().start(session.plane).await;
    let configurations = server.webhook_configurations(session.plane, "manifests/base");
    super::webhook::register(&session, &configurations).await;

    // kube-system exists already. virt-sizer and the other namespaces are
    // made here, labelled tier=dev: only an exclusion keeps the dev profile
    // away. The opt-out label works on a namespace; on the Pod itself (a
    // launcher Pod carries its VM's labels, which the VM owner writes) it
    // opts nothing out, nor does another value. The control comes last, so
    // that the log check below sees every decision made before it.
    // (namespace, opted out itself, VM, the Pod's opt-out label, sized)
    let cases = [
        ("kube-system", false, "excluded", None, false),
        ("virt-sizer", false, "excluded", None, false),
        ("opted-out", true, "excluded", None, false),
        (
            "excluded-control",
            false,
            "owner-labelled",
            Some("true"),
            true,
        ),
        ("excluded-control", false, "excluded", Some("false"), true),
    ];
    for (namespace, namespace_opted_out, vm, ignore, sized) in cases {
        let mut labels = vec![("tier", "dev")];
        if namespace_opted_out {
            labels.push((IGNORE_LABEL, "true"));
        }
        api::namespace(client, namespace, &labels).await;
        let vmi = api::create(
            client,
            Kind::VirtualMachineInstance,
            &objects::vmi(&VmiSpec::simple(vm, 1024), namespace),
        )
        .await;
        let mut pod = objects::small_launcher_pod(&vmi);
        if let Some(value) = ignore {
            pod["metadata"]["labels"][IGNORE_LABEL] = serde_json::json!(value);
        }
        let stored = api::create(client, Kind::Pod, &pod).await;
        let decision = api::annotation(&stored, virt_sizer::admission::DECISION_ANNOTATION);
        let at = format!("{namespace}/{vm} labelled {IGNORE_LABEL}={ignore:?}");
        if sized {
            // dev: 1 vCPU / 20 = 50m.
            assert_eq!(
                Resources::compute(&stored).request("cpu"),
                Some(q("50m")),
                "{at}"
            );
            assert!(
                decision.is_some_and(|text| text.starts_with("profile=dev,")),
                "{at}"
            );
        } else {
            assert_eq!(
                Resources::compute(&stored),
                Resources::compute(&pod),
                "{at}"
            );
            assert_eq!(decision, None, "{at}");
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

    // The log is in order: once the control namespace's two decisions are
    // there (the owner-labelled Pod's and the control's), any about the
    // excluded ones (made before them) would be too.
    let namespaces: Vec<String> = server
        .decisions_once(|lines| {
            lines
                .iter()
                .filter(|line| line["namespace"] == "excluded-control")
                .count()
                >= 2
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
        2,
        "both launcher Pods of excluded-control reach virt-sizer: a Pod's own label opts nothing out"
    );
}
