//! VirtualMachineInstances and the virt-launcher Pods KubeVirt renders for
//! them, placed in a namespace of the test cluster.

use serde_json::{Value, json};

use crate::support::{self, VmiSpec, compute_resources};

/// The VMI of `spec` in `namespace`, without a uid (the apiserver assigns
/// it; the launcher Pod refers to the stored one).
pub(crate) fn vmi(spec: &VmiSpec, namespace: &str) -> Value {
    let mut vmi = spec.to_json();
    support::remove(&mut vmi, "/metadata/uid");
    vmi["metadata"]["namespace"] = json!(namespace);
    vmi
}

/// The virt-launcher Pod KubeVirt creates for the *stored* VMI `vmi`
/// as KubeVirt renders it: labels `kubevirt.io=virt-launcher` and
/// `kubevirt.io/created-by=<uid>` plus the VMI's own labels, annotation
/// `kubevirt.io/domain`, a controller owner reference with the VMI's uid,
/// and `compute` (container 0) with `compute` resources.
pub(crate) fn launcher_pod(vmi: &Value, compute: Value) -> Value {
    let name = vmi["metadata"]["name"].as_str().expect("VMI name");
    let uid = vmi["metadata"]["uid"]
        .as_str()
        .expect("a stored VMI has a uid");
    let mut pod = support::launcher_pod(name, compute);
    pod["metadata"]["namespace"] = vmi["metadata"]["namespace"].clone();
    if let Some(labels) = vmi["metadata"]["labels"].as_object() {
        for (key, value) in labels {
            pod["metadata"]["labels"][key] = value.clone();
        }
    }
    pod["metadata"]["labels"]["kubevirt.io/created-by"] = json!(uid);
    pod["metadata"]["ownerReferences"][0]["uid"] = json!(uid);
    pod
}

/// The Pod KubeVirt renders for a 1-vCPU, `guest: 1Gi` VMI with its
/// defaults (ratio 10, no overcommit, v1.9): CPU 1/10 = `100m`; memory
/// 1Gi + 268Mi overhead (220Mi fixed + 8Mi per vCPU + 8Mi IOThread + 32Mi
/// video) = 1292Mi (reference M1).
pub(crate) fn small_launcher_pod(vmi: &Value) -> Value {
    launcher_pod(
        vmi,
        compute_resources(&[("cpu", "100m"), ("memory", "1292Mi")], &[]),
    )
}

/// A launcher Pod for the stored 1-vCPU, 1Gi VMI `vmi` that asks for
/// `cpu` and KubeVirt's 1292Mi (see [`small_launcher_pod`]), named `name`:
/// a test that creates one per attempt gives each its own name.
pub(crate) fn named_launcher_pod(vmi: &Value, cpu: &str, name: &str) -> Value {
    let mut pod = launcher_pod(
        vmi,
        compute_resources(&[("cpu", cpu), ("memory", "1292Mi")], &[]),
    );
    pod["metadata"]["name"] = json!(name);
    pod
}

/// A Pod that is not a launcher Pod (no `kubevirt.io` label).
pub(crate) fn plain_pod(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"containers": [{
            "name": "app",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}},
        }]},
    })
}
