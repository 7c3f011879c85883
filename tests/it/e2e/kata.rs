//! Kata Containers through the apiserver: RuntimeClass CREATE and UPDATE get
//! `overhead.podFixed` from the policy, a class the policy does not know is
//! left alone, and a Kata Pod gets its limits filled while the built-in
//! RuntimeClass admission plugin, which sets `spec.overhead` before the
//! webhooks and checks it after them, still admits it.

use serde_json::{Value, json};

use super::api::{self, Kind, Resources};
use super::control_plane;
use super::webhook::{Offline, Serve, policy};
use crate::support::q;

const NAMESPACE: &str = "kata-e2e";

/// A RuntimeClass as kata-deploy 3.x ships it.
fn runtime_class(handler: &str, pod_fixed: Option<(&str, &str)>) -> Value {
    let mut class = crate::support::runtime_class(handler, pod_fixed);
    class["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "kata-deploy"});
    class
}

/// `overhead.podFixed` as (cpu, memory).
fn pod_fixed(
    class: &Value,
) -> (
    Option<virt_sizer::sizing::Quantity>,
    Option<virt_sizer::sizing::Quantity>,
) {
    let read = |name: &str| class["overhead"]["podFixed"][name].as_str().map(q);
    (read("cpu"), read("memory"))
}

/// An AdmissionReview for an UPDATE of a RuntimeClass.
fn update_review(object: &Value, old_object: &Value) -> Value {
    let gvk = json!({"group": "node.k8s.io", "version": "v1", "kind": "RuntimeClass"});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e2e00000-0000-4000-8000-000000000001",
            "kind": gvk,
            "resource": {"group": "node.k8s.io", "version": "v1", "resource": "runtimeclasses"},
            "name": object["metadata"]["name"],
            "operation": "UPDATE",
            "object": object,
            "oldObject": old_object,
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_classes_and_kata_pods_are_sized_and_admitted() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let server = Serve::with_e2e_policy().start(session.plane).await;
    let configurations = server.webhook_configurations(session.plane, "manifests/base");
    super::webhook::register(&session, &configurations).await;
    let policy = policy();
    let offline = Offline {
        policy: Some(&policy),
        ..Offline::default()
    };

    // CREATE kata-qemu with kata-deploy's 250m / 160Mi. The policy's
    // guestMemory: Account sizes the pod cgroup for the VM that boots:
    // vmm 160Mi + default_memory 2048Mi = 2208Mi; cpu stays the vmm's 250m.
    let class = runtime_class("kata-qemu", Some(("250m", "160Mi")));
    let stored = api::create(client, Kind::RuntimeClass, &class).await;
    assert_eq!(
        pod_fixed(&stored),
        (Some(q("250m")), Some(q("2208Mi"))),
        "{stored}"
    );
    assert_eq!(pod_fixed(&stored), pod_fixed(&offline.patched(&class)));

    // UPDATE: re-applying kata-deploy's class puts 160Mi back; the update is
    // sized the same way.
    let mut reapplied = stored.clone();
    reapplied["overhead"]["podFixed"]["memory"] = json!("160Mi");
    let updated = api::try_replace(client, Kind::RuntimeClass, &reapplied)
        .await
        .expect("the update is admitted");
    assert_eq!(
        pod_fixed(&updated),
        (Some(q("250m")), Some(q("2208Mi"))),
        "{updated}"
    );
    assert_eq!(
        pod_fixed(&updated),
        pod_fixed(&offline.patched(&update_review(&reapplied, &stored)))
    );

    // kata-clh (guestMemory Ignore) with kata-deploy's own numbers, and a
    // handler the policy does not know: stored as sent.
    for class in [
        runtime_class("kata-clh", Some(("250m", "130Mi"))),
        runtime_class("runsc", Some(("100m", "64Mi"))),
    ] {
        let stored = api::create(client, Kind::RuntimeClass, &class).await;
        assert_eq!(pod_fixed(&stored), pod_fixed(&class), "{stored}");
        assert_eq!(pod_fixed(&stored), pod_fixed(&offline.patched(&class)));
    }

    // A Kata Pod with requests only: Kata sizes the VM from limits, so
    // fillLimits: FromRequests gives limits cpu 1 / memory 1Gi. The
    // RuntimeClass plugin set spec.overhead = the class's podFixed before
    // the webhook and accepts it after: virt-sizer did not touch it.
    api::namespace(client, NAMESPACE, &[]).await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kata-app", "namespace": NAMESPACE},
        "spec": {"runtimeClassName": "kata-qemu",
                 "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
    });
    let stored_pod = api::create(client, Kind::Pod, &pod).await;
    let resources = Resources::of(&stored_pod, "app");
    assert_eq!(resources.limit("cpu"), Some(q("1")), "{stored_pod}");
    assert_eq!(resources.limit("memory"), Some(q("1Gi")), "{stored_pod}");
    assert_eq!(
        resources,
        Resources::of(&offline.patched(&pod), "app").as_stored()
    );
    assert_eq!(
        (
            stored_pod["spec"]["overhead"]["cpu"].as_str().map(q),
            stored_pod["spec"]["overhead"]["memory"].as_str().map(q)
        ),
        pod_fixed(&updated),
        "{stored_pod}"
    );

    // A Pod of the unknown class never reaches virt-sizer (matchConditions).
    let mut other = pod.clone();
    other["metadata"]["name"] = json!("runsc-app");
    other["spec"]["runtimeClassName"] = json!("runsc");
    let stored_other = api::create(client, Kind::Pod, &other).await;
    assert_eq!(
        Resources::of(&stored_other, "app"),
        Resources::of(&other, "app")
    );
    let names: Vec<Value> = server
        .decisions_once(|lines| lines.iter().any(|line| line["name"] == "kata-app"))
        .await
        .iter()
        .filter(|line| line["namespace"] == NAMESPACE)
        .map(|line| line["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("kata-app")]);

    // An init container and a sidecar count in the Pod's limits and in the
    // VM: their requests are filled in as limits in spec.initContainers, the
    // memory in whole 128 MiB blocks (guestMemory: Account on the Go runtime
    // hot-adds whole blocks), and the apiserver admits the patch.
    let pause = "registry.k8s.io/pause:3.10";
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kata-init", "namespace": NAMESPACE},
        "spec": {"runtimeClassName": "kata-qemu",
                 "initContainers": [
                     {"name": "migrate", "image": pause,
                      "resources": {"requests": {"memory": "100Mi"}}},
                     {"name": "proxy", "image": pause, "restartPolicy": "Always",
                      "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
                 "containers": [{"name": "app", "image": pause,
                                 "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
    });
    let stored_pod = api::create(client, Kind::Pod, &pod).await;
    let expected = [
        ("migrate", None, Some(q("128Mi"))),
        ("proxy", Some(q("100m")), Some(q("128Mi"))),
        ("app", Some(q("1")), Some(q("1Gi"))),
    ];
    for (name, cpu, memory) in expected {
        let resources = Resources::of(&stored_pod, name);
        assert_eq!(
            (resources.limit("cpu"), resources.limit("memory")),
            (cpu, memory),
            "{name}: {stored_pod}"
        );
        assert_eq!(
            resources,
            Resources::of(&offline.patched(&pod), name).as_stored()
        );
    }
}
