//! Criterion benches of the pure core: quantity parse/format, one launcher
//! decision, one RuntimeClass decision and one full review (JSON decode of
//! a realistic launcher-Pod AdmissionReview, decision, patch encode,
//! response encode). No sockets.
//!
//! `cargo bench --bench sizing`
#![expect(
    clippy::expect_used,
    reason = "a bench over fixed inputs that are valid by construction"
)]

// Measure with the allocator the binary ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use virt_sizer::admission::{self, AdmissionReview, Environment};
use virt_sizer::sizing::Quantity;
use virt_sizer::sizing::kata;
use virt_sizer::sizing::kubevirt::{self, AutoLimits, LauncherInput};
use virt_sizer::sizing::policy::ValidPolicy;
use virt_sizer::sizing::vmi::VmiFacts;

const POLICY: &str = r#"
apiVersion: virt-sizer.io/v1alpha1
kind: SizingPolicy
kubevirt: {release: "1.9"}
profiles:
  default: {cpuAllocationRatio: 10}
  production: {cpuAllocationRatio: 1, limits: EqualRequests}
  dev: {cpuAllocationRatio: 20, memoryOvercommitPercent: 150, overheadMargin: 128Mi}
rules:
  - namespaces: ["prod-*"]
    profile: production
  - namespaceSelector: {matchLabels: {tier: dev}}
    profile: dev
kata:
  runtimeClasses:
    kata-qemu: {runtime: go, defaultMemory: 2048Mi, vmm: {cpu: 250m, memory: 160Mi}, guestMemory: Account}
"#;

fn vmi() -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "web-1", "namespace": "dev-a", "labels": {"app": "web"}},
        "spec": {"domain": {
            "cpu": {"sockets": 1, "cores": 6, "threads": 2},
            "memory": {"guest": "8Gi"},
            "devices": {"interfaces": [{"name": "default", "masquerade": {}}],
                        "disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
            "resources": {}
        },
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}]}
    })
}

/// A launcher Pod AdmissionReview of roughly the size KubeVirt sends (~10 KB).
fn review_body() -> Vec<u8> {
    let env: Vec<Value> = (0..40)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": format!("value-{i}-{}", "x".repeat(40))}))
        .collect();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "virt-launcher-web-1-",
            "namespace": "dev-a",
            "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "0d7e-uid", "app": "web", "vm.kubevirt.io/name": "web-1"},
            "annotations": {"kubevirt.io/domain": "web-1", "kubectl.kubernetes.io/default-container": "compute",
                            "kubevirt.io/migrationTransportUnix": "true"},
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "name": "web-1",
                                 "uid": "0d7e-uid", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": [
                {"name": "compute", "image": "quay.io/kubevirt/virt-launcher:v1.9.0",
                 "command": ["/usr/bin/virt-launcher-monitor", "--qemu-timeout", "321s", "--name", "web-1"],
                 "env": env,
                 "resources": {
                    "requests": {"cpu": "1200m", "memory": "8548Mi", "ephemeral-storage": "50M",
                                 "devices.kubevirt.io/kvm": "1", "devices.kubevirt.io/tun": "1", "devices.kubevirt.io/vhost-net": "1"},
                    "limits": {"devices.kubevirt.io/kvm": "1", "devices.kubevirt.io/tun": "1", "devices.kubevirt.io/vhost-net": "1"}},
                 "securityContext": {"runAsUser": 107, "runAsNonRoot": true, "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
                 "volumeMounts": (0..12).map(|i| json!({"name": format!("vol-{i}"), "mountPath": format!("/var/run/kubevirt/vol-{i}")})).collect::<Vec<_>>()},
                {"name": "guest-console-log", "image": "quay.io/kubevirt/virt-launcher:v1.9.0",
                 "resources": {"requests": {"cpu": "5m", "memory": "35M"}, "limits": {"cpu": "15m", "memory": "60M"}}}
            ],
            "volumes": (0..12).map(|i| json!({"name": format!("vol-{i}"), "emptyDir": {}})).collect::<Vec<_>>(),
            "nodeSelector": {"kubevirt.io/schedulable": "true"},
            "terminationGracePeriodSeconds": 210
        }
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7f3b1c2a-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "dev-a",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kubevirt:kubevirt-controller"},
            "object": pod,
            "dryRun": false
        }
    }))
    .expect("serialises")
}

fn benches(c: &mut Criterion) {
    let policy = ValidPolicy::from_yaml(POLICY).expect("valid policy");
    let vmi_value = vmi();
    let vmi_facts = VmiFacts::from_value(&vmi_value).expect("valid VMI");
    let labels: BTreeMap<String, String> = [("tier".to_owned(), "dev".to_owned())].into();
    let body = review_body();

    c.bench_function("quantity/parse+format", |b| {
        b.iter(|| {
            Quantity::parse(black_box("1292Mi"))
                .expect("valid")
                .to_string()
        });
    });
    c.bench_function("kubevirt/size_launcher", |b| {
        let profile = &policy.profiles["dev"];
        b.iter(|| {
            kubevirt::size_launcher(&LauncherInput {
                vmi: black_box(&vmi_facts),
                settings: &policy.kubevirt,
                profile,
                namespace_labels: &labels,
                auto_limits: AutoLimits::default(),
                reported_overhead: None,
            })
            .expect("sizes")
        });
    });
    c.bench_function("kata/size_runtime_class", |b| {
        let class = &policy.kata.runtime_classes["kata-qemu"];
        b.iter(|| kata::size_runtime_class(black_box(class)));
    });
    let decoded: AdmissionReview = serde_json::from_slice(&body).expect("decodes");
    let decoded_request = decoded.request.expect("request");
    c.bench_function("review/decode only", |b| {
        b.iter(|| serde_json::from_slice::<AdmissionReview>(black_box(&body)).expect("decodes"));
    });
    c.bench_function("review/decide only", |b| {
        let environment = Environment {
            policy: &policy,
            namespace_labels: &labels,
            quota: None,
            vmi: Some(&vmi_value),
            vmi_unavailable: None,
        };
        b.iter(|| admission::review(&environment, black_box(&decoded_request)));
    });
    c.bench_function("vmi/facts from JSON", |b| {
        b.iter(|| VmiFacts::from_value(black_box(&vmi_value)).expect("valid VMI"));
    });
    c.bench_function(
        &format!("review/full launcher pod ({} B)", body.len()),
        |b| {
            b.iter(|| {
                let review: AdmissionReview =
                    serde_json::from_slice(black_box(&body)).expect("decodes");
                let request = review.request.expect("request");
                let environment = Environment {
                    policy: &policy,
                    namespace_labels: &labels,
                    quota: None,
                    vmi: Some(&vmi_value),
                    vmi_unavailable: None,
                };
                let decision = admission::review(&environment, &request);
                admission::encode_response(&decision).expect("encodes")
            });
        },
    );
}

criterion_group!(sizing, benches);
criterion_main!(sizing);
