//! The cluster's KubeVirt CR is the built-in policy's baseline. With
//! `cpuAllocationRatio: 20` and `memoryOvercommit: 150` in the CR,
//! launcher Pods rendered by KubeVirt for those settings are stored
//! exactly as created by `serve` without `--policy` (no patch, no decision
//! annotation), and `review --kubevirt` agrees offline. When the CR changes,
//! decisions follow within seconds. A CR virt-sizer cannot use (a release
//! older than its overhead table), or one it may not read, leaves the
//! settings unknown: the Pod KubeVirt rendered is stored unchanged and the
//! apiserver passes on virt-sizer's warning, in `serve` and `review` alike.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::api::{self, Kind, Resources};
use super::control_plane;
use super::objects;
use super::webhook::{Offline, Serve, register};
use crate::support::{FIXED_OVERHEAD_V1_9, GI, MI, VmiSpec, compute_resources, q};
use virt_sizer::sizing::policy::KubevirtBaseline;

const NAMESPACE: &str = "kv-baseline-e2e";
const OVERHEAD_ANNOTATION: &str = "kubevirt.io/memory-overhead-bytes";

fn kubevirt_cr(cpu_allocation_ratio: u64) -> Value {
    kubevirt_cr_of(cpu_allocation_ratio, "v1.9.0")
}

fn kubevirt_cr_of(cpu_allocation_ratio: u64, release: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {"configuration": {"developerConfiguration": {
            "cpuAllocationRatio": cpu_allocation_ratio,
            "memoryOvercommit": 150,
        }}},
        "status": {"observedKubeVirtVersion": release, "phase": "Deployed"},
    })
}

/// A VMI with `vcpus` vCPUs (1 socket × `vcpus` cores) and `guest_mib`, and
/// the Pod KubeVirt v1.9 renders for it with ratio 20 and overcommit 150.
struct Rendered {
    spec: VmiSpec,
    cpu: &'static str,
    memory_bytes: u64,
    overhead_bytes: u64,
}

fn rendered() -> Vec<Rendered> {
    // Overhead (v1.9): 220Mi + 8Mi × vCPUs + 8Mi IOThread + 32Mi video.
    let overhead = |vcpus: u64| FIXED_OVERHEAD_V1_9 + vcpus * 8 * MI + 8 * MI + 32 * MI;
    let mut twelve = VmiSpec::simple("twelve", 2048);
    twelve.cores = 6;
    twelve.threads = 2;
    vec![
        // 12/20 = 0.6 → "600m"; memory 2Gi × 100/150 = 1431655765
        // (truncated) + 356Mi = 1804948821.
        Rendered {
            spec: twelve,
            cpu: "600m",
            memory_bytes: 2 * GI * 100 / 150 + overhead(12),
            overhead_bytes: overhead(12),
        },
        // 1/20 = 0.05 → "50m"; memory 1Gi × 100/150 = 715827882 + 268Mi =
        // 996846250.
        Rendered {
            spec: VmiSpec::simple("one", 1024),
            cpu: "50m",
            memory_bytes: GI * 100 / 150 + overhead(1),
            overhead_bytes: overhead(1),
        },
    ]
}

impl Rendered {
    fn pod(&self, vmi: &Value) -> Value {
        let memory = self.memory_bytes.to_string();
        let mut pod = objects::launcher_pod(
            vmi,
            compute_resources(&[("cpu", self.cpu), ("memory", &memory)], &[]),
        );
        pod["metadata"]["annotations"][OVERHEAD_ANNOTATION] =
            json!(self.overhead_bytes.to_string());
        pod
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubevirt_cr_is_the_baseline_and_changes_follow() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    assert_eq!(rendered()[0].memory_bytes, 1_804_948_821);
    assert_eq!(rendered()[1].memory_bytes, 996_846_250);

    api::namespace(client, "kubevirt", &[]).await;
    let cr = api::create(client, Kind::KubeVirt, &kubevirt_cr(20)).await;
    // The built-in policy: no --policy.
    let mut serve = Serve::with_e2e_policy();
    serve.policy = None;
    let server = serve.start(session.plane).await;
    register(
        &session,
        &server.webhook_configurations(session.plane, "manifests/base"),
    )
    .await;
    api::namespace(client, NAMESPACE, &[]).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let cr_file = dir.path().join("kubevirt.json");
    std::fs::write(&cr_file, kubevirt_cr(20).to_string()).expect("write");
    for rendered in rendered() {
        let vmi = api::create(
            client,
            Kind::VirtualMachineInstance,
            &objects::vmi(&rendered.spec, NAMESPACE),
        )
        .await;
        let pod = rendered.pod(&vmi);
        let stored = api::create(client, Kind::Pod, &pod).await;
        let name = &rendered.spec.name;
        // Stored as created: no patch at all, so the same resources and the
        // same annotations (the apiserver adds none of its own).
        assert_eq!(
            Resources::compute(&stored),
            Resources::compute(&pod),
            "{name}: {stored}"
        );
        assert_eq!(
            stored["metadata"]["annotations"], pod["metadata"]["annotations"],
            "{name}: no decision annotation, KubeVirt's overhead as reported"
        );
        assert_eq!(
            api::annotation_quantity(&stored, OVERHEAD_ANNOTATION),
            Some(q(&rendered.overhead_bytes.to_string())),
            "{name}"
        );

        let offline = Offline {
            vmi: Some(&vmi),
            extra_args: vec![format!("--kubevirt={}", cr_file.display())],
            ..Offline::default()
        }
        .patched(&pod);
        assert_eq!(offline, pod, "{name}: offline, the same: nothing written");
    }

    // Back to KubeVirt's default ratio 10: a new Pod for the 12-vCPU VMI,
    // still rendered at 600m, is sized 12/10 = 1.2 → "1200m" once the
    // server has seen the change.
    let mut changed = cr.clone();
    changed["spec"]["configuration"]["developerConfiguration"]["cpuAllocationRatio"] = json!(10);
    api::try_replace(client, Kind::KubeVirt, &changed)
        .await
        .expect("the CR changes");
    let twelve = rendered().remove(0);
    let vmi = api::get(
        client,
        Kind::VirtualMachineInstance,
        Some(NAMESPACE),
        "twelve",
    )
    .await;
    let started = Instant::now();
    let mut stored = Value::Null;
    api::eventually(
        "decisions to follow the CR",
        Duration::from_secs(20),
        async || {
            stored = api::create(client, Kind::Pod, &twelve.pod(&vmi)).await;
            Resources::compute(&stored).request("cpu") == Some(q("1200m"))
        },
    )
    .await;
    eprintln!(
        "e2e: the CR change took effect after {:?}",
        started.elapsed()
    );
    // Memory still follows memoryOvercommit 150 from the CR.
    assert_eq!(
        Resources::compute(&stored).request("memory"),
        Some(q(&twelve.memory_bytes.to_string()))
    );
    let decision = api::annotation(&stored, virt_sizer::admission::DECISION_ANNOTATION)
        .expect("a decision annotation beside the change");
    let changed_digest = KubevirtBaseline::from_json(&changed)
        .expect("a KubeVirt CR")
        .digest;
    assert!(
        decision.ends_with(&format!(",kubevirt={changed_digest}")),
        "the new baseline's digest: {decision}"
    );

    // A release older than the overhead table (v1.4.2), still ratio 20:
    // the release-independent settings are read, the overhead model is
    // unknown, and the Pod KubeVirt rendered is stored unchanged with a
    // warning, which `review` gives offline too.
    let old = kubevirt_cr_of(20, "v1.4.2");
    let mut replaced = api::get(client, Kind::KubeVirt, Some("kubevirt"), "kubevirt").await;
    replaced["spec"] = old["spec"].clone();
    replaced["status"] = old["status"].clone();
    api::try_replace(client, Kind::KubeVirt, &replaced)
        .await
        .expect("the CR changes");
    std::fs::write(&cr_file, old.to_string()).expect("write");
    let offline = Offline {
        vmi: Some(&vmi),
        extra_args: vec![format!("--kubevirt={}", cr_file.display())],
        ..Offline::default()
    };
    let offline_warnings = offline.warnings(&twelve.pod(&vmi));
    assert!(
        offline_warnings.iter().any(|warning| warning
            .contains("the KubeVirt settings observedKubeVirtVersion are unknown")
            && warning.contains("v1.4.2")),
        "{offline_warnings:?}"
    );
    assert_eq!(offline.patched(&twelve.pod(&vmi)), twelve.pod(&vmi));
    let mut attempt = 0;
    api::eventually(
        "an unusable release to leave the Pod unchanged with a warning",
        Duration::from_secs(20),
        async || {
            attempt += 1;
            let mut pod = twelve.pod(&vmi);
            pod["metadata"]["name"] = json!(format!("twelve-old-{attempt}"));
            let (stored, warnings) = super::webhook::kubectl_create(session.plane, &pod);
            Resources::compute(&stored) == Resources::compute(&pod)
                && stored["metadata"]["annotations"] == pod["metadata"]["annotations"]
                && offline_warnings
                    .iter()
                    .all(|warning| warnings.contains(warning.as_str()))
        },
    )
    .await;
}

/// A ServiceAccount that may read VMIs and Namespaces but not KubeVirt
/// CRs: the settings are unknown, so the Pod KubeVirt rendered is stored
/// unchanged, with the warning naming the forbidden list; never sized from
/// KubeVirt's defaults (ratio 10 would give 1200m for 12 vCPUs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubevirt_cr_it_may_not_read_leaves_pods_unchanged_with_a_warning() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let dir = tempfile::tempdir().expect("tempdir");
    api::namespace(client, "kubevirt", &[]).await;
    api::create(client, Kind::KubeVirt, &kubevirt_cr(20)).await;
    api::namespace(client, FORBIDDEN_NAMESPACE, &[]).await;
    let kubeconfig = session.plane.service_account_kubeconfig(
        dir.path(),
        "virt-sizer-no-kubevirts",
        FORBIDDEN_NAMESPACE,
        "- apiGroups: [kubevirt.io]\n  resources: [virtualmachineinstances]\n  verbs: [get, list, watch]\n\
         - apiGroups: [\"\"]\n  resources: [namespaces]\n  verbs: [get, list, watch]\n",
    );
    let mut serve = Serve::with_e2e_policy();
    serve.policy = None;
    serve.extra_args = vec!["--kubeconfig".into(), kubeconfig.display().to_string()];
    let server = serve.start(session.plane).await;
    for configuration in server.webhook_configurations(session.plane, "manifests/base") {
        let kind = if configuration["kind"] == "MutatingWebhookConfiguration" {
            Kind::MutatingWebhookConfiguration
        } else {
            Kind::ValidatingWebhookConfiguration
        };
        api::create(client, kind, &configuration).await;
    }
    let twelve = rendered().remove(0);
    let vmi = api::create(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&twelve.spec, FORBIDDEN_NAMESPACE),
    )
    .await;
    let mut attempt = 0;
    let mut last = String::new();
    api::eventually(
        "a forbidden KubeVirt CR to leave the Pod unchanged with a warning",
        Duration::from_secs(30),
        async || {
            attempt += 1;
            let mut pod = twelve.pod(&vmi);
            pod["metadata"]["name"] = json!(format!("forbidden-{attempt}"));
            let (stored, warnings) = super::webhook::kubectl_create(session.plane, &pod);
            last = warnings.clone();
            Resources::compute(&stored) == Resources::compute(&pod)
                && warnings
                    .contains("the KubeVirt settings observedKubeVirtVersion, cpuAllocationRatio")
                && warnings.contains("forbidden")
        },
    )
    .await;
    assert!(last.contains("admitted unchanged"), "{last}");
}

const FORBIDDEN_NAMESPACE: &str = "kv-forbidden-e2e";
