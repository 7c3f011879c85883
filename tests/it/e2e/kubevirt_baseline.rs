//! The cluster's KubeVirt CR is the built-in policy's baseline. With
//! `cpuAllocationRatio: 20` and `memoryOvercommit: 150` in the CR,
//! launcher Pods rendered by KubeVirt for those settings are stored
//! unchanged by `serve` without `--policy`, and `review --kubevirt` agrees
//! offline. When the CR changes, decisions follow within seconds.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::api::{self, Kind, Resources};
use super::control_plane;
use super::objects;
use super::webhook::{Offline, Serve, register};
use crate::support::{FIXED_OVERHEAD_V1_9, GI, MI, VmiSpec, compute_resources, q};

const NAMESPACE: &str = "kv-baseline-e2e";
const OVERHEAD_ANNOTATION: &str = "kubevirt.io/memory-overhead-bytes";

fn kubevirt_cr(cpu_allocation_ratio: u64) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {"configuration": {"developerConfiguration": {
            "cpuAllocationRatio": cpu_allocation_ratio,
            "memoryOvercommit": 150,
        }}},
        "status": {"observedKubeVirtVersion": "v1.9.0", "phase": "Deployed"},
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
    let mut first_decision = None;
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
        assert_eq!(
            Resources::compute(&stored),
            Resources::compute(&pod),
            "{name}: {stored}"
        );
        assert_eq!(
            api::annotation_quantity(&stored, OVERHEAD_ANNOTATION),
            Some(q(&rendered.overhead_bytes.to_string())),
            "{name}"
        );
        let decision = api::annotation(&stored, virt_sizer::admission::DECISION_ANNOTATION)
            .expect("a decision annotation")
            .to_owned();
        assert!(decision.contains("kubevirt=sha256:"), "{decision}");

        let offline = Offline {
            vmi: Some(&vmi),
            extra_args: vec![format!("--kubevirt={}", cr_file.display())],
            ..Offline::default()
        }
        .patched(&pod);
        assert_eq!(
            Resources::compute(&offline),
            Resources::compute(&pod),
            "{name}: offline"
        );
        assert_eq!(
            api::annotation(&offline, virt_sizer::admission::DECISION_ANNOTATION),
            Some(decision.as_str()),
            "{name}: the same effective settings offline"
        );
        first_decision = Some(decision);
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
        .expect("a decision annotation");
    assert!(decision.contains("kubevirt=sha256:"), "{decision}");
    assert_ne!(
        Some(decision),
        first_decision.as_deref(),
        "a new baseline digest"
    );
}
