//! Property tests of the hard rules over generated VMIs,
//! profiles and launcher Pods, through the public `admission::review`.
//!
//! The generators aim at VMIs KubeVirt's own admission accepts (anything
//! else is filtered out, see [`VmiSpec::kubevirt_accepts`]) and at launcher
//! Pods shaped like virt-controller's, with arbitrary starting resources.
//! A case the core refuses with an error is skipped by the properties;
//! [`kubevirt_equivalence::generated_cases_are_mostly_sizable`] checks that
//! such cases stay rare, so the properties do test something.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use virt_sizer::admission::{
    self, AdmissionRequest, AdmissionReview, Decision, Environment, GroupVersionKind, OutcomeLabel,
};
use virt_sizer::sizing::Quantity;
use virt_sizer::sizing::policy::ValidPolicy;

use crate::support::{
    Cpu, FIXED_OVERHEAD_V1_9, MI, Mem, MemFormat, PageSize, UID, VmiSpec, container_resources,
    launcher_pod, patch_ops, patched, policy, q, request, review, whole,
};

mod hard_rules;
mod kubevirt_equivalence;
mod robustness;

/// Bounded: 256 cases per property, no regression files written into the
/// source tree (a failure prints its minimal input; pin it as an example
/// test in `admission.rs`).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// === Generators ===

/// How a generated VMI relates its memory request/limit to the guest.
#[derive(Debug, Clone, Copy)]
enum Relation {
    Absent,
    Equal,
    Lower,
    Higher,
}

fn arb_relation(absent_weight: u32) -> impl Strategy<Value = Relation> {
    prop_oneof![
        absent_weight => Just(Relation::Absent),
        2 => Just(Relation::Equal),
        1 => Just(Relation::Lower),
        1 => Just(Relation::Higher),
    ]
}

fn arb_cpu() -> impl Strategy<Value = Cpu> {
    prop_oneof![
        3 => (1_u32..=8000).prop_map(Cpu::Milli),
        1 => (1_u32..=8).prop_map(Cpu::Whole),
    ]
}

fn arb_page() -> impl Strategy<Value = Option<PageSize>> {
    prop_oneof![
        8 => Just(None),
        1 => Just(Some(PageSize::TwoMi)),
        1 => Just(Some(PageSize::OneGi)),
    ]
}

fn arb_mem_format() -> impl Strategy<Value = MemFormat> {
    prop_oneof![
        Just(MemFormat::Mi),
        Just(MemFormat::Bytes),
        Just(MemFormat::DecimalM)
    ]
}

/// Raw memory choices, turned into a consistent VMI by [`build_vmi`].
#[derive(Debug, Clone)]
struct MemoryChoice {
    page: Option<PageSize>,
    guest_mib: u64,
    format: MemFormat,
    guest_absent: bool,
    request: Relation,
    limit: Relation,
    eighths: u64,
    extra_mib: u64,
}

#[derive(Debug, Clone)]
struct CpuChoice {
    topology: (u32, u32, u32),
    dedicated: bool,
    isolate: bool,
    even_parity: bool,
    io_threads: Option<u32>,
    request: Option<Cpu>,
    limit: Relation,
    limit_any: Cpu,
    extra_millis: u32,
}

#[derive(Debug, Clone)]
struct Extras {
    overcommit_guest_overhead: bool,
    gpus: u32,
    host_devices: u32,
    liveness_exec: bool,
    readiness_exec: bool,
    architecture: Option<&'static str>,
    graphics: Option<bool>,
}

fn arb_memory_choice() -> BoxedStrategy<MemoryChoice> {
    (
        arb_page(),
        64_u64..=65536,
        arb_mem_format(),
        prop::bool::weighted(0.1),
        arb_relation(5),
        arb_relation(6),
        1_u64..=7,
        0_u64..=4096,
    )
        .prop_map(
            |(page, guest_mib, format, guest_absent, request, limit, eighths, extra_mib)| {
                MemoryChoice {
                    page,
                    guest_mib,
                    format,
                    guest_absent,
                    request,
                    limit,
                    eighths,
                    extra_mib,
                }
            },
        )
        .boxed()
}

fn arb_cpu_choice() -> BoxedStrategy<CpuChoice> {
    (
        (0_u32..=4, 0_u32..=4, 0_u32..=4),
        prop::bool::weighted(0.25),
        any::<bool>(),
        any::<bool>(),
        prop::option::weighted(0.3, 0_u32..=4),
        prop::option::weighted(0.3, arb_cpu()),
        arb_relation(6),
        arb_cpu(),
        0_u32..=4000,
    )
        .prop_map(
            |(
                topology,
                dedicated,
                isolate,
                even_parity,
                io_threads,
                request,
                limit,
                limit_any,
                extra_millis,
            )| CpuChoice {
                topology,
                dedicated,
                isolate,
                even_parity,
                io_threads,
                request,
                limit,
                limit_any,
                extra_millis,
            },
        )
        .boxed()
}

fn arb_extras() -> BoxedStrategy<Extras> {
    (
        prop::bool::weighted(0.2),
        prop_oneof![6 => Just(0_u32), 1 => Just(1), 1 => Just(2)],
        prop_oneof![7 => Just(0_u32), 1 => Just(1)],
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop_oneof![Just(None), Just(Some("amd64")), Just(Some("arm64"))],
        prop_oneof![4 => Just(None), 1 => Just(Some(false)), 1 => Just(Some(true))],
    )
        .prop_map(
            |(
                overcommit_guest_overhead,
                gpus,
                host_devices,
                liveness_exec,
                readiness_exec,
                architecture,
                graphics,
            )| Extras {
                overcommit_guest_overhead,
                gpus,
                host_devices,
                liveness_exec,
                readiness_exec,
                architecture,
                graphics,
            },
        )
        .boxed()
}

/// Rounds `mib` down to whole pages (at least one page).
fn whole_pages(mib: u64, page: Option<PageSize>) -> u64 {
    match page {
        None => mib,
        Some(page) => {
            let page_mib = page.bytes() / MI;
            (mib / page_mib).max(1) * page_mib
        }
    }
}

/// A VMI from the raw choices, mostly valid by construction: memory
/// request/limit relate to the guest, hugepage amounts are whole pages,
/// dedicated CPUs get whole CPU values equal to the topology.
fn build_vmi(memory: &MemoryChoice, cpu: &CpuChoice, extras: &Extras) -> VmiSpec {
    let page = memory.page;
    // Hugepage amounts must be whole pages: no decimal megabytes there.
    let format = match (page, memory.format) {
        (Some(_), MemFormat::DecimalM) => MemFormat::Mi,
        (_, format) => format,
    };
    let guest_mib = whole_pages(memory.guest_mib, page);
    let request_mib = match memory.request {
        Relation::Absent => None,
        Relation::Equal => Some(guest_mib),
        Relation::Lower => Some(whole_pages((guest_mib * memory.eighths / 8).max(64), page)),
        Relation::Higher => Some(whole_pages(guest_mib + memory.extra_mib, page)),
    };
    let base_mib = request_mib.unwrap_or(guest_mib).max(guest_mib);
    let limit_mib = match memory.limit {
        Relation::Absent => None,
        Relation::Equal | Relation::Lower => Some(base_mib),
        Relation::Higher => Some(whole_pages(base_mib + memory.extra_mib, page)),
    };
    let mut vmi = VmiSpec::simple("vm-gen", guest_mib);
    vmi.guest = (!(memory.guest_absent && (request_mib.is_some() || limit_mib.is_some())))
        .then(|| Mem::new(guest_mib, format));
    vmi.requests_memory = request_mib.map(|mib| Mem::new(mib, format));
    vmi.limits_memory = limit_mib.map(|mib| Mem::new(mib, format));
    vmi.hugepages = page;

    (vmi.sockets, vmi.cores, vmi.threads) = cpu.topology;
    vmi.dedicated = cpu.dedicated;
    vmi.isolate_emulator_thread = cpu.dedicated && cpu.isolate;
    vmi.even_parity = cpu.even_parity;
    vmi.io_threads = cpu.io_threads;
    vmi.requests_cpu = cpu.request;
    vmi.limits_cpu = match (cpu.limit, cpu.request) {
        (Relation::Absent, _) => None,
        (_, None) => Some(cpu.limit_any),
        (Relation::Equal | Relation::Lower, Some(request)) => Some(request),
        (Relation::Higher, Some(request)) => {
            let millis = u32::try_from(request.millis()).expect("small") + cpu.extra_millis;
            Some(Cpu::Milli(millis))
        }
    };
    if vmi.dedicated {
        // KubeVirt: whole CPUs, request == limit, equal to the topology.
        let vcpus = u32::try_from(vmi.vcpus()).expect("small");
        vmi.requests_cpu = vmi.requests_cpu.map(|_| Cpu::Whole(vcpus));
        vmi.limits_cpu = vmi.limits_cpu.map(|_| Cpu::Whole(vcpus));
        if let (Some(request), Some(_)) = (&vmi.requests_memory, &vmi.limits_memory) {
            vmi.limits_memory = Some(request.clone());
        }
    }

    vmi.overcommit_guest_overhead = extras.overcommit_guest_overhead;
    vmi.gpus = extras.gpus;
    vmi.host_devices = extras.host_devices;
    vmi.liveness_exec = extras.liveness_exec;
    vmi.readiness_exec = extras.readiness_exec;
    vmi.architecture = extras.architecture;
    vmi.graphics = extras.graphics;
    vmi
}

fn arb_vmi() -> BoxedStrategy<VmiSpec> {
    (arb_memory_choice(), arb_cpu_choice(), arb_extras())
        .prop_map(|(memory, cpu, extras)| build_vmi(&memory, &cpu, &extras))
        .prop_filter(
            "KubeVirt's VMI admission refuses it",
            VmiSpec::kubevirt_accepts,
        )
        .boxed()
}

/// A profile (as the policy's `default`), plus the KubeVirt release line.
#[derive(Debug, Clone)]
struct ProfileSpec {
    release: &'static str,
    cpu_ratio: u32,
    overcommit_percent: u32,
    omit_overhead: bool,
    overhead_ratio: &'static str,
    margin_mib: u64,
    limits: &'static str,
    ratio_cpu: Option<&'static str>,
    ratio_memory: Option<&'static str>,
}

impl ProfileSpec {
    fn yaml(&self) -> String {
        let mut text = format!(
            "apiVersion: virt-sizer.io/v1alpha1\n\
             kind: SizingPolicy\n\
             kubevirt:\n  release: \"{}\"\n  architecture: amd64\n\
             profiles:\n  default:\n\
             \x20   cpuAllocationRatio: {}\n\
             \x20   memoryOvercommitPercent: {}\n\
             \x20   guestOverhead: {}\n\
             \x20   overheadRatio: \"{}\"\n\
             \x20   overheadMargin: {}Mi\n\
             \x20   limits: {}\n\
             \x20   mode: Enforce\n",
            self.release,
            self.cpu_ratio,
            self.overcommit_percent,
            if self.omit_overhead {
                "Omit"
            } else {
                "Request"
            },
            self.overhead_ratio,
            self.margin_mib,
            self.limits,
        );
        if self.limits == "Ratio" {
            text.push_str("    limitsRatio:\n");
            if let Some(cpu) = self.ratio_cpu {
                text.push_str(&format!("      cpu: \"{cpu}\"\n"));
            }
            if let Some(memory) = self.ratio_memory {
                text.push_str(&format!("      memory: \"{memory}\"\n"));
            }
        }
        text
    }
}

fn arb_ratio() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("1"), Just("1.5"), Just("2"), Just("4")]
}

fn arb_profile() -> BoxedStrategy<ProfileSpec> {
    (
        prop_oneof![Just("1.5"), Just("1.9"), Just("main")],
        1_u32..=32,
        prop_oneof![1 => Just(100_u32), 2 => 10_u32..=400],
        prop::bool::weighted(0.25),
        prop_oneof![Just("1.0"), Just("1.25"), Just("1.5"), Just("2")],
        prop_oneof![1 => Just(0_u64), 2 => 0_u64..=512],
        prop_oneof![Just("None"), Just("EqualRequests"), Just("Ratio")],
        prop::option::weighted(0.8, arb_ratio()),
        prop::option::weighted(0.8, arb_ratio()),
    )
        .prop_map(
            |(
                release,
                cpu_ratio,
                overcommit_percent,
                omit_overhead,
                overhead_ratio,
                margin_mib,
                limits,
                ratio_cpu,
                ratio_memory,
            )| ProfileSpec {
                release,
                cpu_ratio,
                overcommit_percent,
                omit_overhead,
                overhead_ratio,
                margin_mib,
                limits,
                // `limits: Ratio` needs at least one ratio.
                ratio_cpu: ratio_cpu.or(ratio_memory.is_none().then_some("2")),
                ratio_memory,
            },
        )
        .boxed()
}

/// What the launcher Pod carries before virt-sizer sees it.
#[derive(Debug, Clone)]
struct PodStart {
    cpu_request: Option<Cpu>,
    memory_request: Option<Mem>,
    cpu_limit: Option<Cpu>,
    memory_limit: Option<Mem>,
    stale_hugepages: bool,
    ephemeral_limit: bool,
    overhead_annotation: Option<u64>,
    spec_overhead: bool,
}

impl PodStart {
    fn pod(&self, vmi: &str) -> Value {
        let mut requests = json!({
            "devices.kubevirt.io/kvm": "1",
            "nvidia.com/GH100": "2",
            "ephemeral-storage": "50M",
        });
        let mut limits = json!({
            "devices.kubevirt.io/kvm": "1",
            "nvidia.com/GH100": "2",
        });
        if let Some(cpu) = self.cpu_request {
            requests["cpu"] = json!(cpu.text());
        }
        if let Some(memory) = &self.memory_request {
            requests["memory"] = json!(memory.text);
        }
        if let Some(cpu) = self.cpu_limit {
            limits["cpu"] = json!(cpu.text());
        }
        if let Some(memory) = &self.memory_limit {
            limits["memory"] = json!(memory.text);
        }
        if self.stale_hugepages {
            requests["hugepages-1Gi"] = json!("2Gi");
            limits["hugepages-1Gi"] = json!("2Gi");
        }
        if self.ephemeral_limit {
            limits["ephemeral-storage"] = json!("50M");
        }
        let mut pod = launcher_pod(vmi, json!({"requests": requests, "limits": limits}));
        if let Some(bytes) = self.overhead_annotation {
            pod["metadata"]["annotations"]["kubevirt.io/memory-overhead-bytes"] =
                json!(bytes.to_string());
        }
        if self.spec_overhead {
            pod["spec"]["runtimeClassName"] = json!("kata-qemu");
            pod["spec"]["overhead"] = json!({"cpu": "250m", "memory": "160Mi"});
        }
        pod
    }
}

fn arb_pod_start() -> BoxedStrategy<PodStart> {
    (
        prop::option::weighted(0.9, (1_u32..=8000).prop_map(Cpu::Milli)),
        prop::option::weighted(
            0.9,
            (
                64_u64..=70000,
                prop_oneof![Just(MemFormat::Mi), Just(MemFormat::Bytes)],
            )
                .prop_map(|(mib, format)| Mem::new(mib, format)),
        ),
        prop::option::weighted(0.15, (1_u32..=16000).prop_map(Cpu::Milli)),
        prop::option::weighted(0.25, (64_u64..=140_000).prop_map(Mem::mi)),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.3),
        // KubeVirt's overheads range from 236Mi up past 1.5Gi, with odd
        // bytes from the page-table term.
        prop::option::weighted(0.4, (236 * MI)..=(1600 * MI)),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(
                cpu_request,
                memory_request,
                cpu_limit,
                memory_limit,
                stale_hugepages,
                ephemeral_limit,
                overhead_annotation,
                spec_overhead,
            )| PodStart {
                cpu_request,
                memory_request,
                cpu_limit,
                memory_limit,
                stale_hugepages,
                ephemeral_limit,
                overhead_annotation,
                spec_overhead,
            },
        )
        .boxed()
}

#[derive(Debug, Clone)]
struct Case {
    vmi: VmiSpec,
    profile: ProfileSpec,
    pod: PodStart,
}

fn arb_case() -> BoxedStrategy<Case> {
    (arb_vmi(), arb_profile(), arb_pod_start())
        .prop_map(|(vmi, profile, pod)| Case { vmi, profile, pod })
        .boxed()
}

/// One reviewed case.
struct Run {
    policy: ValidPolicy,
    vmi: Value,
    pod: Value,
    request: AdmissionRequest,
    decision: Decision,
}

impl Run {
    fn new(policy: ValidPolicy, vmi: &VmiSpec, pod: Value) -> Run {
        let vmi = vmi.to_json();
        let request = request(pod.clone(), "CREATE");
        let decision = review(&policy, Some(&vmi), &request);
        Run {
            policy,
            vmi,
            pod,
            request,
            decision,
        }
    }

    fn of(case: &Case) -> Run {
        Run::new(
            policy(&case.profile.yaml()),
            &case.vmi,
            case.pod.pod(&case.vmi.name),
        )
    }

    /// Sized (the properties apply), as opposed to refused with an error.
    fn sized(&self) -> bool {
        matches!(
            self.decision.outcome.label(),
            OutcomeLabel::Patched | OutcomeLabel::Unchanged
        )
    }

    fn patched(&self) -> Value {
        patched(&self.request, &self.decision)
    }
}

fn is_managed(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
}

/// The Pod without what virt-sizer may write: the compute container's
/// cpu/memory/hugepages entries and its own three annotations. Everything
/// else must come out of the patch exactly as it went in.
fn untouchable(pod: &Value) -> Value {
    let mut pod = pod.clone();
    for section in ["requests", "limits"] {
        if let Some(Value::Object(map)) =
            pod.pointer_mut(&format!("/spec/containers/0/resources/{section}"))
        {
            map.retain(|name, _| !is_managed(name));
        }
    }
    if let Some(Value::Object(annotations)) = pod.pointer_mut("/metadata/annotations") {
        for key in [
            "virt-sizer.io/decision",
            "kubevirt.io/memory-overhead-bytes",
            "virt-sizer.io/kubevirt-memory-overhead-bytes",
        ] {
            annotations.remove(key);
        }
    }
    pod
}

/// Whether a patch op path is one virt-sizer may write on a launcher Pod
/// whose compute container is `spec.containers[0]`.
fn allowed_path(path: &str) -> bool {
    const ANNOTATIONS: [&str; 3] = [
        "virt-sizer.io~1decision",
        "kubevirt.io~1memory-overhead-bytes",
        "virt-sizer.io~1kubevirt-memory-overhead-bytes",
    ];
    if path == "/metadata/annotations" || path == "/spec/containers/0/resources" {
        return true;
    }
    if let Some(key) = path.strip_prefix("/metadata/annotations/") {
        return ANNOTATIONS.contains(&key);
    }
    let Some(rest) = path.strip_prefix("/spec/containers/0/resources/") else {
        return false;
    };
    match rest.split_once('/') {
        None => rest == "requests" || rest == "limits",
        Some((section, name)) => (section == "requests" || section == "limits") && is_managed(name),
    }
}

/// The hugepage size named by a `hugepages-<size>` resource, in bytes.
fn page_bytes(resource: &str) -> u64 {
    whole(q(resource
        .strip_prefix("hugepages-")
        .expect("a hugepages resource")))
}
