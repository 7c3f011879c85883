//! Launcher Pods of eleven VMI shapes in six namespaces, one per profile of
//! the e2e policy: what the apiserver stores is what `virt-sizer review
//! --patched` computes offline for the same Pod, VMI, policy and namespace
//! labels. Under the `default` profile (KubeVirt's own settings) and the
//! `shadow-dev` profile (Shadow mode) the stored resources are exactly
//! what KubeVirt rendered, which the arithmetic below spells out.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::api::{self, Kind, Resources};
use super::control_plane;
use super::objects;
use super::webhook::{Offline, Serve, policy};
use crate::support::{
    Cpu, FIXED_OVERHEAD_V1_9, GI, MI, Mem, MemFormat, PageSize, VmiSpec, compute_resources,
};

const OVERHEAD_ANNOTATION: &str = "kubevirt.io/memory-overhead-bytes";

// KubeVirt v1.9's overhead terms.
const PER_VCPU: u64 = 8 * MI;
const IOTHREAD: u64 = 8 * MI;
const VIDEO: u64 = 32 * MI;
const DEDICATED_OR_QOS: u64 = 100 * MI;
const VFIO: u64 = GI;
const ARM64_PFLASH: u64 = 128 * MI;
const EXEC_PROBE: u64 = 10 * MI;
const EXEC_PROBES_ONCE: u64 = 100 * MI;

/// Namespace labels: `(key, value)` pairs.
type Labels = &'static [(&'static str, &'static str)];

/// Namespace, its labels, and the profile the e2e policy's rules give it.
const NAMESPACES: [(&str, Labels, &str); 6] = [
    ("kv-defaults", &[], "default"),
    ("prod-e2e", &[], "production"),
    ("dev-e2e", &[("tier", "dev")], "dev"),
    ("batch-e2e", &[("tier", "batch")], "batch"),
    ("staging", &[], "shadow-dev"),
    ("lab-e2e", &[("tier", "lab")], "lab"),
];

/// A VMI and the `compute` resources KubeVirt v1.9 renders for it with its
/// defaults (cpuAllocationRatio 10, memoryOvercommit 100).
struct Shape {
    spec: VmiSpec,
    requests: Vec<(&'static str, String)>,
    limits: Vec<(&'static str, String)>,
    /// `kubevirt.io/memory-overhead-bytes`, on the shapes rendered with
    /// the VmiMemoryOverheadReport gate on (beta in v1.9).
    overhead_bytes: Option<u64>,
    /// Guaranteed QoS: KubeVirt also sets the console-log container's
    /// requests to its limits.
    guaranteed: bool,
}

/// Page-table term: `ceil(R / 1000) × 1000 / 512` for the VMI's memory
/// request R.
fn page_tables(request_bytes: u64) -> u64 {
    request_bytes.div_ceil(1000) * 1000 / 512
}

/// Without IOThreads' supplemental pool, for `vcpus` vCPUs with graphics:
/// 220Mi + 8Mi × vCPUs + 8Mi + 32Mi.
fn base_overhead(vcpus: u64) -> u64 {
    FIXED_OVERHEAD_V1_9 + vcpus * PER_VCPU + IOTHREAD + VIDEO
}

/// Bytes as KubeVirt prints them: `Mi` when exact, else plain bytes.
fn bytes(value: u64) -> String {
    if value.is_multiple_of(MI) {
        format!("{}Mi", value / MI)
    } else {
        value.to_string()
    }
}

fn with_topology(name: &str, guest_mib: u64, cores: u32) -> VmiSpec {
    let mut spec = VmiSpec::simple(name, guest_mib);
    spec.cores = cores;
    spec
}

#[expect(
    clippy::too_many_lines,
    reason = "one table of shapes, each with its arithmetic"
)]
fn shapes() -> Vec<Shape> {
    let mut shapes = Vec::new();

    // 2 vCPUs, guest 2Gi. CPU 2/10 = 0.2 → "200m". Overhead 220 + 2×8 + 8 +
    // 32 = 276Mi; memory 2048 + 276 = 2324Mi.
    let overhead = base_overhead(2);
    shapes.push(Shape {
        spec: with_topology("plain", 2048, 2),
        requests: vec![("cpu", "200m".into()), ("memory", bytes(2 * GI + overhead))],
        limits: vec![],
        overhead_bytes: Some(overhead),
        guaranteed: false,
    });

    // Dedicated CPUs, 2 vCPUs + the isolated emulator thread: CPU request =
    // limit = 3. Memory limit := guest, then overhead on both: 220 + 16 + 8
    // + 32 + 100 (dedicated) = 376Mi → 2424Mi / 2424Mi.
    let mut spec = with_topology("dedicated", 2048, 2);
    spec.dedicated = true;
    spec.isolate_emulator_thread = true;
    let memory = bytes(2 * GI + base_overhead(2) + DEDICATED_OR_QOS);
    shapes.push(Shape {
        spec,
        requests: vec![("cpu", "3".into()), ("memory", memory.clone())],
        limits: vec![("cpu", "3".into()), ("memory", memory)],
        overhead_bytes: None,
        guaranteed: true,
    });

    // Hugepages 2Mi, guest 4Gi, 1 vCPU: hugepages-2Mi request = limit = 4Gi;
    // memory request = overhead only, 268Mi (reference H1).
    let mut spec = VmiSpec::simple("hugepages-2mi", 4096);
    spec.hugepages = Some(PageSize::TwoMi);
    shapes.push(Shape {
        spec,
        requests: vec![
            ("cpu", "100m".into()),
            ("memory", bytes(base_overhead(1))),
            ("hugepages-2Mi", "4Gi".into()),
        ],
        limits: vec![("hugepages-2Mi", "4Gi".into())],
        overhead_bytes: None,
        guaranteed: false,
    });

    // Hugepages 1Gi, requests = limits = guest = 8Gi (reference H2): page
    // tables 8Gi → 16Mi; memory request = limit = 16 + 268 = 284Mi;
    // hugepages-1Gi 8Gi / 8Gi; a memory limit, so ephemeral-storage gets one.
    let mut spec = VmiSpec::simple("hugepages-1gi", 8192);
    spec.hugepages = Some(PageSize::OneGi);
    spec.requests_memory = Some(Mem::mi(8192));
    spec.limits_memory = Some(Mem::mi(8192));
    let memory = bytes(page_tables(8 * GI) + base_overhead(1));
    assert_eq!(memory, "284Mi");
    shapes.push(Shape {
        spec,
        requests: vec![
            ("cpu", "100m".into()),
            ("memory", memory.clone()),
            ("hugepages-1Gi", "8Gi".into()),
        ],
        limits: vec![
            ("memory", memory),
            ("hugepages-1Gi", "8Gi".into()),
            ("ephemeral-storage", "50M".into()),
        ],
        overhead_bytes: None,
        guaranteed: false,
    });

    // Two GPUs (device plugin nvidia.com/GH100), 4 vCPUs, guest 16Gi
    // (reference D1): the device resource 2 / 2, left alone by everyone;
    // CPU 0.4 → "400m"; overhead 220 + 32 + 8 + 32 + 1024 (VFIO) = 1316Mi;
    // memory 16384 + 1316 = 17700Mi.
    let mut spec = with_topology("gpus", 16384, 4);
    spec.gpus = 2;
    let overhead = base_overhead(4) + VFIO;
    shapes.push(Shape {
        spec,
        requests: vec![
            ("cpu", "400m".into()),
            ("memory", bytes(16 * GI + overhead)),
            ("nvidia.com/GH100", "2".into()),
        ],
        limits: vec![("nvidia.com/GH100", "2".into())],
        overhead_bytes: Some(overhead),
        guaranteed: false,
    });

    // Explicit VMI requests, 5 vCPUs: cpu 150m beats 5/10 (reference K8);
    // memory 3Gi is not overcommitted. Page tables ceil(3221225472/1000) ×
    // 1000 / 512 = 6291457; overhead 6291457 + (220 + 40 + 8 + 32)Mi.
    let mut spec = with_topology("explicit-requests", 3072, 5);
    spec.requests_cpu = Some(Cpu::Milli(150));
    spec.requests_memory = Some(Mem::mi(3072));
    let overhead = page_tables(3 * GI) + base_overhead(5);
    assert_eq!(page_tables(3 * GI), 6_291_457);
    shapes.push(Shape {
        spec,
        requests: vec![("cpu", "150m".into()), ("memory", bytes(3 * GI + overhead))],
        limits: vec![],
        overhead_bytes: None,
        guaranteed: false,
    });

    // overcommitGuestOverhead (KubeVirt's own test, reference M4): requests
    // 1G / 1m, limits 2G / 2m. Overhead 1953125 + 268Mi = 282971493 on the
    // limit only: memory 1G / 2282971493.
    let mut spec = VmiSpec::simple("overcommit-overhead", 0);
    spec.guest = Some(Mem::new(1000, MemFormat::DecimalM));
    spec.requests_memory = Some(Mem::new(1000, MemFormat::DecimalM));
    spec.limits_memory = Some(Mem::new(2000, MemFormat::DecimalM));
    spec.requests_cpu = Some(Cpu::Milli(1));
    spec.limits_cpu = Some(Cpu::Milli(2));
    spec.overcommit_guest_overhead = true;
    let overhead = page_tables(1_000_000_000) + base_overhead(1);
    assert_eq!(overhead, 282_971_493);
    shapes.push(Shape {
        spec,
        requests: vec![("cpu", "1m".into()), ("memory", "1G".into())],
        limits: vec![
            ("cpu", "2m".into()),
            ("memory", (2_000_000_000 + overhead).to_string()),
            ("ephemeral-storage", "50M".into()),
        ],
        overhead_bytes: None,
        guaranteed: false,
    });

    // Limits only (cpu 4, memory 4Gi), as stored after virt-api's defaults:
    // sockets 4, requests.cpu := 4, guest := 4Gi (reference K9). The Pod
    // request := the limit; CPU request = limit and a memory limit mean
    // QoS-Guaranteed intent, +100Mi: overhead 220 + 32 + 8 + 32 + 100 =
    // 392Mi; memory 4488Mi / 4488Mi.
    let mut spec = VmiSpec::simple("limits-only", 4096);
    spec.sockets = 4;
    spec.requests_cpu = Some(Cpu::Whole(4));
    spec.limits_cpu = Some(Cpu::Whole(4));
    spec.limits_memory = Some(Mem::mi(4096));
    let overhead = base_overhead(4) + DEDICATED_OR_QOS;
    let memory = bytes(4 * GI + overhead);
    assert_eq!(memory, "4488Mi");
    shapes.push(Shape {
        spec,
        requests: vec![("cpu", "4".into()), ("memory", memory.clone())],
        limits: vec![
            ("cpu", "4".into()),
            ("memory", memory),
            ("ephemeral-storage", "50M".into()),
        ],
        overhead_bytes: Some(overhead),
        guaranteed: true,
    });

    // arm64, 1 vCPU, guest 1Gi: + 128Mi pflash; 1024 + 268 + 128 = 1420Mi
    // (reference 1.12: arm64 adds exactly 128Mi).
    let mut spec = VmiSpec::simple("arm64", 1024);
    spec.architecture = Some("arm64");
    shapes.push(Shape {
        spec,
        requests: vec![
            ("cpu", "100m".into()),
            ("memory", bytes(GI + base_overhead(1) + ARM64_PFLASH)),
        ],
        limits: vec![],
        overhead_bytes: None,
        guaranteed: false,
    });

    // 4 vCPUs + 2 supplemental IOThreads: CPU (4 + 2)/10 = 0.6 → "600m";
    // the IOThreads add no memory term: 4096 + 292 = 4388Mi.
    let mut spec = with_topology("io-threads", 4096, 4);
    spec.io_threads = Some(2);
    let overhead = base_overhead(4);
    shapes.push(Shape {
        spec,
        requests: vec![("cpu", "600m".into()), ("memory", bytes(4 * GI + overhead))],
        limits: vec![],
        overhead_bytes: Some(overhead),
        guaranteed: false,
    });

    // Exec liveness + readiness probes and a host device (intel.com/qat):
    // 268 + 1024 (VFIO) + 2 × 10 + 100 = 1412Mi; memory 2436Mi.
    let mut spec = VmiSpec::simple("probes-hostdevice", 1024);
    spec.liveness_exec = true;
    spec.readiness_exec = true;
    spec.host_devices = 1;
    shapes.push(Shape {
        spec,
        requests: vec![
            ("cpu", "100m".into()),
            (
                "memory",
                bytes(GI + base_overhead(1) + VFIO + 2 * EXEC_PROBE + EXEC_PROBES_ONCE),
            ),
            ("intel.com/qat", "1".into()),
        ],
        limits: vec![("intel.com/qat", "1".into())],
        overhead_bytes: None,
        guaranteed: false,
    });

    shapes
}

impl Shape {
    fn launcher_pod(&self, vmi: &Value) -> Value {
        let mut resources = compute_resources(&pairs(&self.requests), &pairs(&self.limits));
        // Masquerade on the pod network: vhost-net as well (limits only in
        // KubeVirt's output; the apiserver defaults the request).
        for section in ["requests", "limits"] {
            resources[section]["devices.kubevirt.io/vhost-net"] = json!("1");
        }
        let mut pod = objects::launcher_pod(vmi, resources);
        if let Some(overhead) = self.overhead_bytes {
            pod["metadata"]["annotations"][OVERHEAD_ANNOTATION] = json!(overhead.to_string());
        }
        if self.guaranteed {
            pod["spec"]["containers"][1]["resources"]["requests"] =
                json!({"cpu": "15m", "memory": "60M"});
        }
        pod
    }

    fn vmi(&self, namespace: &str) -> Value {
        let mut vmi = objects::vmi(&self.spec, namespace);
        if self.spec.io_threads.is_some() {
            vmi["spec"]["domain"]["ioThreadsPolicy"] = json!("supplementalPool");
        }
        vmi
    }
}

/// The hard rules, whatever the profile: device-plugin resources
/// untouched; hugepages never overcommitted (request = limit = what KubeVirt
/// rendered); dedicated CPUs keep whole CPUs and Guaranteed QoS; requests
/// never above limits.
fn hard_rule_violations(shape: &Shape, rendered: &Value, stored: &Value) -> Vec<String> {
    let (before, after) = (Resources::compute(rendered), Resources::compute(stored));
    let mut problems = Vec::new();
    let sized = |name: &str| matches!(name, "cpu" | "memory");
    for (section, before, after) in [
        ("requests", &before.requests, &after.requests),
        ("limits", &before.limits, &after.limits),
    ] {
        for (name, quantity) in before.iter().filter(|(name, _)| !sized(name)) {
            if after.get(name) != Some(quantity) {
                problems.push(format!(
                    "{section}.{name} {quantity:?} became {:?}",
                    after.get(name)
                ));
            }
        }
        for name in after
            .keys()
            .filter(|name| !sized(name) && !before.contains_key(*name))
        {
            problems.push(format!("{section}.{name} added"));
        }
    }
    for (name, request) in &after.requests {
        if let Some(limit) = after.limits.get(name)
            && request.nanos() > limit.nanos()
        {
            problems.push(format!("{name}: request {request:?} above limit {limit:?}"));
        }
    }
    if shape.spec.dedicated {
        let cpu = (after.request("cpu"), after.limit("cpu"));
        if cpu.0 != cpu.1 || cpu.0.is_none_or(|cpu| cpu.nanos() % 1_000_000_000 != 0) {
            problems.push(format!("dedicated CPUs not whole and Guaranteed: {cpu:?}"));
        }
        if after.request("memory") != after.limit("memory") {
            problems.push("dedicated CPUs: memory request != limit".to_owned());
        }
    }
    problems
}

fn pairs<'a>(list: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    list.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_under_every_profile_is_stored_as_review_sizes_it() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let server = Serve::with_e2e_policy().start(session.plane).await;
    let configurations = server.webhook_configurations(session.plane, "manifests/base");
    super::webhook::register(&session, &configurations).await;
    let policy = policy();
    let shapes = shapes();
    let mut failures = String::new();
    let mut n_pods = 0;
    for (namespace_name, labels, profile) in NAMESPACES {
        let namespace = api::namespace(&session.client, namespace_name, labels).await;
        let unchanged_expected = matches!(profile, "default" | "shadow-dev");
        for shape in &shapes {
            let vmi = api::create(
                &session.client,
                Kind::VirtualMachineInstance,
                &shape.vmi(namespace_name),
            )
            .await;
            let pod = shape.launcher_pod(&vmi);
            let stored = api::create(&session.client, Kind::Pod, &pod).await;
            n_pods += 1;
            let offline = Offline {
                policy: Some(&policy),
                vmi: Some(&vmi),
                namespace_labels: api::labels_flag(&namespace),
                extra_args: Vec::new(),
            }
            .patched(&pod);
            let case = format!("{namespace_name}/{} ({profile})", shape.spec.name);
            let (stored_compute, offline_compute) = (
                Resources::compute(&stored),
                Resources::compute(&offline).as_stored(),
            );
            if stored_compute != offline_compute {
                let _ = writeln!(
                    failures,
                    "{case}: stored compute {stored_compute:?}\n    review --patched {offline_compute:?}"
                );
            }
            if unchanged_expected && stored_compute != Resources::compute(&pod) {
                let _ = writeln!(
                    failures,
                    "{case}: KubeVirt's own settings must leave the Pod as rendered\n    rendered {:?}\n    stored {stored_compute:?}",
                    Resources::compute(&pod)
                );
            }
            if Resources::of(&stored, "guest-console-log")
                != Resources::of(&pod, "guest-console-log")
            {
                let _ = writeln!(failures, "{case}: guest-console-log changed");
            }
            for problem in hard_rule_violations(shape, &pod, &stored) {
                let _ = writeln!(failures, "{case}: {problem}");
            }
            let decision = virt_sizer::admission::DECISION_ANNOTATION;
            if api::annotation(&stored, decision) != api::annotation(&offline, decision) {
                let _ = writeln!(
                    failures,
                    "{case}: decision annotation {:?} vs review {:?}",
                    api::annotation(&stored, decision),
                    api::annotation(&offline, decision)
                );
            }
            // The decision is written beside a change, and only then.
            let changed = Resources::compute(&stored) != Resources::compute(&pod).as_stored()
                || api::annotation(&stored, OVERHEAD_ANNOTATION)
                    != api::annotation(&pod, OVERHEAD_ANNOTATION);
            let expected_prefix = format!("profile={profile},");
            let written = api::annotation(&stored, decision);
            let as_expected = if changed {
                written.is_some_and(|text| text.starts_with(&expected_prefix))
            } else {
                written.is_none()
            };
            if profile != "shadow-dev" && !as_expected {
                let _ = writeln!(
                    failures,
                    "{case}: decision annotation {:?} (changed: {changed})",
                    api::annotation(&stored, decision)
                );
            }
            if api::annotation_quantity(&stored, OVERHEAD_ANNOTATION)
                != api::annotation_quantity(&offline, OVERHEAD_ANNOTATION)
            {
                let _ = writeln!(
                    failures,
                    "{case}: overhead annotation {:?} vs review {:?}",
                    api::annotation(&stored, OVERHEAD_ANNOTATION),
                    api::annotation(&offline, OVERHEAD_ANNOTATION)
                );
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
    assert_eq!(n_pods, 66);

    // Every Pod was decided (lab-e2e is the last namespace). Shadow mode
    // decides (the log says so) but patches nothing.
    let in_namespace = |lines: &[Value], namespace: &str| {
        lines
            .iter()
            .filter(|line| line["namespace"] == namespace)
            .count()
    };
    let decisions = server
        .decisions_once(|lines| in_namespace(lines, "lab-e2e") >= shapes.len())
        .await;
    assert_eq!(in_namespace(&decisions, "lab-e2e"), shapes.len());
    let shadow_decisions = decisions
        .into_iter()
        .filter(|line| line["namespace"] == "staging")
        .collect::<Vec<_>>();
    assert_eq!(
        shadow_decisions.len(),
        shapes.len(),
        "{shadow_decisions:#?}"
    );
    assert!(
        shadow_decisions
            .iter()
            .all(|line| line["profile"] == "shadow-dev" && line["patch_ops"] == 0),
        "{shadow_decisions:#?}"
    );
    // The one value the apiserver rounds: `lab` (ratio 3) gives a 1-vCPU VM
    // 1/3 CPU, 333.33…m, which KubeVirt's arithmetic writes as 333333334n
    // and the apiserver stores as 334m.
    let pods = api::list_names(&session.client, Kind::Pod, Some("lab-e2e")).await;
    let arm64 = pods
        .iter()
        .find(|name| name.starts_with("virt-launcher-arm64-"))
        .expect("the arm64 Pod");
    let stored = api::get(&session.client, Kind::Pod, Some("lab-e2e"), arm64).await;
    assert_eq!(
        Resources::compute(&stored).request("cpu"),
        Some(crate::support::q("334m"))
    );
}
