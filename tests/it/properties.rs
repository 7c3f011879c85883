//! Property tests of the hard rules (SPEC §1.2) over generated VMIs,
//! profiles and launcher Pods, through the public `admission::review`.
//!
//! The generators aim at VMIs KubeVirt's own admission accepts (anything
//! else is filtered out, see [`VmiSpec::kubevirt_accepts`]) and at launcher
//! Pods shaped like virt-controller's, with arbitrary starting resources.
//! A case the core refuses with an error is skipped by the properties;
//! [`generated_cases_are_mostly_sizable`] checks that such cases stay rare,
//! so the properties do test something.

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

// === Properties ===

proptest! {
    #![proptest_config(config())]

    /// Sizing an already-sized Pod (same policy, same VMI) changes nothing:
    /// the webhook runs with `reinvocationPolicy: IfNeeded`.
    #[test]
    fn sizing_is_idempotent(case in arb_case()) {
        let run = Run::of(&case);
        if run.sized() {
            let again = request(run.patched(), "CREATE");
            let second = review(&run.policy, Some(&run.vmi), &again);
            prop_assert_eq!(second.outcome.label(), OutcomeLabel::Unchanged, "{}", second.explain());
            prop_assert!(second.patch().is_none());
            prop_assert!(second.response().patch.is_none());
        }
    }

    /// requests ≤ limits for every resource of the compute container.
    #[test]
    fn requests_never_exceed_limits(case in arb_case()) {
        let run = Run::of(&case);
        if run.sized() {
            let (requests, limits) = container_resources(&run.patched(), 0);
            for (name, request) in &requests {
                if let Some(limit) = limits.get(name) {
                    prop_assert!(request <= limit, "{name}: request {request} > limit {limit}\n{}", run.decision.explain());
                }
            }
        }
    }

    /// Hugepages: request == limit, a whole number of pages.
    #[test]
    fn hugepages_are_whole_pages_and_guaranteed(case in arb_case()) {
        let run = Run::of(&case);
        if run.sized() {
            let (requests, limits) = container_resources(&run.patched(), 0);
            for name in requests.keys().chain(limits.keys()).filter(|name| name.starts_with("hugepages-")) {
                prop_assert_eq!(requests.get(name), limits.get(name), "{}", name);
                let amount = whole(requests[name]);
                prop_assert!(amount > 0 && amount.is_multiple_of(page_bytes(name)), "{name} {amount} is not whole pages");
            }
            if let Some(page) = case.vmi.hugepages {
                let resource = format!("hugepages-{}", page.text());
                prop_assert!(requests.contains_key(&resource), "no {resource}");
            }
        }
    }

    /// Dedicated-CPU VMIs keep whole CPUs and Guaranteed QoS.
    #[test]
    fn dedicated_cpus_stay_guaranteed(case in arb_case()) {
        let run = Run::of(&case);
        if run.sized() && case.vmi.dedicated {
            let (requests, limits) = container_resources(&run.patched(), 0);
            let cpu = requests.get("cpu").copied();
            prop_assert!(cpu.is_some(), "no cpu request");
            prop_assert_eq!(cpu, limits.get("cpu").copied());
            prop_assert_eq!(cpu.map(|cpu| cpu.nanos() % 1_000_000_000), Some(0), "fractional CPUs: {:?}", cpu);
            prop_assert!(cpu.map(whole) >= Some(case.vmi.vcpus()));
            let memory = requests.get("memory").copied();
            prop_assert!(memory.is_some(), "no memory request");
            prop_assert_eq!(memory, limits.get("memory").copied());
        }
    }

    /// Only the compute container's cpu/memory/hugepages and virt-sizer's
    /// annotations are written; device resources, ephemeral storage, other
    /// containers, `spec.overhead` and unknown fields come out unchanged.
    #[test]
    fn only_managed_fields_are_touched(case in arb_case()) {
        let run = Run::of(&case);
        for path in patch_ops(&run.decision).iter().map(|op| op["path"].as_str().unwrap_or_default()) {
            prop_assert!(allowed_path(path), "op touches {path}");
        }
        if run.sized() {
            prop_assert_eq!(untouchable(&run.patched()), untouchable(&run.pod));
        }
    }

    /// The response is a well-formed AdmissionReview: uid copied, patch a
    /// base64 JSON array that applies to the object.
    #[test]
    fn response_is_well_formed(case in arb_case()) {
        let run = Run::of(&case);
        let decision = &run.decision;
        prop_assert_eq!(&decision.response().uid, UID);
        prop_assert!(admission::patched_object(&run.request, decision).is_ok());
        let bytes = admission::encode_response(decision).expect("encodes");
        let back: AdmissionReview = serde_json::from_slice(&bytes).expect("decodes as AdmissionReview");
        prop_assert_eq!(back.api_version.as_str(), "admission.k8s.io/v1");
        prop_assert_eq!(back.kind.as_str(), "AdmissionReview");
        prop_assert_eq!(back.response.as_ref(), Some(&decision.response()));
        let ops = patch_ops(decision);
        let response = decision.response();
        match decision.patch() {
            Some(patch) => {
                prop_assert_eq!(response.patch_type.as_deref(), Some("JSONPatch"));
                prop_assert_eq!(Value::Array(ops), serde_json::to_value(patch).expect("serialises"));
            }
            None => {
                prop_assert!(response.patch.is_none());
                prop_assert!(response.patch_type.is_none());
            }
        }
    }
}

// === KubeVirt equivalence ===

/// KubeVirt v1.6–v1.9's overhead for a VMI without an explicit memory
/// request (reference §1.5): no page-table term; 220Mi fixed; 8Mi per vCPU;
/// 8Mi IOThread; 32Mi video unless `autoattachGraphicsDevice: false`; 128Mi
/// arm64 pflash; 1Gi VFIO once for any GPU/host device; 10Mi per exec
/// probe + 100Mi once. (No 100Mi QoS term: Guaranteed intent needs a
/// memory limit, which a guest-only VMI lacks.)
fn kubevirt_overhead_guest_only(vmi: &VmiSpec) -> u64 {
    let mut overhead = FIXED_OVERHEAD_V1_9 + 8 * MI * vmi.vcpus().max(1) + 8 * MI;
    if vmi.graphics != Some(false) {
        overhead += 32 * MI;
    }
    if vmi.architecture == Some("arm64") {
        overhead += 128 * MI;
    }
    if vmi.gpus > 0 || vmi.host_devices > 0 {
        overhead += 1024 * MI;
    }
    let probes = u64::from(vmi.liveness_exec) + u64::from(vmi.readiness_exec);
    if probes > 0 {
        overhead += (10 * probes + 100) * MI;
    }
    overhead
}

/// Guest-only, no hugepages, not dedicated: the simple case the test
/// derives on its own.
fn arb_simple_vmi() -> BoxedStrategy<VmiSpec> {
    (arb_vmi(), 64_u64..=65536, arb_mem_format())
        .prop_map(|(mut vmi, guest_mib, format)| {
            vmi.guest = Some(Mem::new(guest_mib, format));
            vmi.requests_memory = None;
            vmi.limits_memory = None;
            vmi.hugepages = None;
            vmi.dedicated = false;
            vmi.isolate_emulator_thread = false;
            vmi
        })
        .boxed()
}

/// The overhead in the `overhead <q> = …` explanation line.
fn explained_overhead(decision: &Decision) -> Option<Quantity> {
    decision.explanation.iter().find_map(|line| {
        let rest = line.strip_prefix("overhead ")?;
        Quantity::parse(rest.split_whitespace().next()?).ok()
    })
}

proptest! {
    #![proptest_config(config())]

    /// With the built-in policy (KubeVirt's defaults) a guest-only VMI gets
    /// exactly what virt-controller v1.9 renders, derived here from the
    /// reference: memory = guest + overhead (guest alone with
    /// `overcommitGuestOverhead`), cpu = the VMI's request, else its limit,
    /// else (vCPUs + IOThreads) / 10; automatic limits where the Pod shows
    /// KubeVirt applied them. A Pod already rendered that way gets no
    /// resource operation.
    #[test]
    fn builtin_policy_matches_kubevirt(vmi in arb_simple_vmi(), start in arb_pod_start()) {
        let run = Run::new(ValidPolicy::builtin(), &vmi, start.pod(&vmi.name));
        let total_cpus = vmi.vcpus() + u64::from(vmi.io_threads.unwrap_or(0));
        let cpu_request_millis = vmi
            .requests_cpu
            .or(vmi.limits_cpu)
            .map_or(total_cpus * 100, Cpu::millis);
        let auto_cpu_limit = vmi.limits_cpu.is_none() && start.cpu_limit.is_some();
        let cpu_limit_millis = vmi
            .limits_cpu
            .map(Cpu::millis)
            .or(auto_cpu_limit.then_some(total_cpus * 1000));
        if cpu_limit_millis.is_some_and(|limit| cpu_request_millis > limit) {
            // KubeVirt itself renders request > limit here (an explicit
            // request above the automatic limit): refused, not admitted.
            prop_assert_eq!(run.decision.outcome.label(), OutcomeLabel::ErrorAllowed);
            return Ok(());
        }
        prop_assert_eq!(run.decision.outcome.label(), OutcomeLabel::Patched, "{}", run.decision.explain());

        let overhead = start
            .overhead_annotation
            .unwrap_or_else(|| kubevirt_overhead_guest_only(&vmi));
        let guest = vmi.guest.as_ref().expect("guest-only").bytes;
        let memory_request = if vmi.overcommit_guest_overhead { guest } else { guest + overhead };
        let memory_limit = start.memory_limit.is_some().then_some(memory_request * 2);

        let pod = run.patched();
        let (requests, limits) = container_resources(&pod, 0);
        prop_assert_eq!(requests.get("memory").map(|m| whole(*m)), Some(memory_request));
        prop_assert_eq!(limits.get("memory").map(|m| whole(*m)), memory_limit);
        prop_assert_eq!(requests.get("cpu").map(|c| c.nanos()), Some(i128::from(cpu_request_millis) * 1_000_000));
        prop_assert_eq!(limits.get("cpu").map(|c| c.nanos()), cpu_limit_millis.map(|m| i128::from(m) * 1_000_000));
        prop_assert_eq!(explained_overhead(&run.decision).map(whole), Some(overhead));
        // No margin, ratio 1.0: KubeVirt's own annotation stays true as is.
        for path in patch_ops(&run.decision).iter().map(|op| op["path"].as_str().unwrap_or_default()) {
            prop_assert!(!path.contains("memory-overhead-bytes"), "rewrote {path}");
        }

        // A Pod exactly as virt-controller rendered it: no resource op.
        let mut limits_json = json!({"devices.kubevirt.io/kvm": "1"});
        if let Some(limit) = cpu_limit_millis {
            limits_json["cpu"] = json!(format!("{limit}m"));
        }
        if let Some(limit) = memory_limit {
            limits_json["memory"] = json!(limit.to_string());
        }
        let mut rendered = launcher_pod(&vmi.name, json!({
            "requests": {
                "devices.kubevirt.io/kvm": "1",
                "cpu": format!("{cpu_request_millis}m"),
                "memory": memory_request.to_string(),
            },
            "limits": limits_json,
        }));
        if let Some(bytes) = start.overhead_annotation {
            rendered["metadata"]["annotations"]["kubevirt.io/memory-overhead-bytes"] = json!(bytes.to_string());
        }
        let rendered_run = Run::new(ValidPolicy::builtin(), &vmi, rendered);
        let paths: Vec<String> = patch_ops(&rendered_run.decision)
            .iter()
            .map(|op| op["path"].as_str().unwrap_or_default().to_owned())
            .collect();
        prop_assert_eq!(paths, vec!["/metadata/annotations/virt-sizer.io~1decision".to_owned()]);
    }

    /// The memory-hotplug floor: with an explicit VMI `requests.memory` R
    /// (no hugepages, no `overcommitGuestOverhead`) the Pod requests at
    /// least R + overhead, whatever the profile (overcommit, `Omit`). The
    /// overhead is the Pod's `kubevirt.io/memory-overhead-bytes` after the
    /// patch when KubeVirt reported one (the annotation must stay true),
    /// else at least KubeVirt's unconditional terms: 220Mi + 8Mi per vCPU +
    /// 8Mi IOThread. (A VMI that asks for `overcommitGuestOverhead` itself
    /// is the one exception; see the property after this one.)
    #[test]
    fn memory_request_keeps_the_hotplug_floor(
        vmi in arb_vmi().prop_map(|mut vmi| {
            vmi.hugepages = None;
            vmi.overcommit_guest_overhead = false;
            if vmi.requests_memory.is_none() {
                vmi.requests_memory = vmi.limits_memory.clone().or_else(|| vmi.guest.clone());
            }
            vmi
        }),
        profile in arb_profile(),
        start in arb_pod_start(),
    ) {
        let run = Run::new(policy(&profile.yaml()), &vmi, start.pod(&vmi.name));
        if run.sized() {
            let pod = run.patched();
            let explicit = vmi.requests_memory.as_ref().expect("explicit request").bytes;
            let overhead = match pod.pointer("/metadata/annotations/kubevirt.io~1memory-overhead-bytes") {
                Some(annotation) => {
                    let annotation = annotation.as_str().expect("a string").parse::<u64>().expect("bytes");
                    prop_assert!(start.overhead_annotation.is_some_and(|original| annotation >= original));
                    annotation
                }
                None => FIXED_OVERHEAD_V1_9 + 8 * MI * vmi.vcpus() + 8 * MI,
            };
            let (requests, _) = container_resources(&pod, 0);
            let memory = requests.get("memory").map(|m| whole(*m));
            prop_assert!(memory >= Some(explicit + overhead),
                "memory request {memory:?} < {explicit} + {overhead}\n{}", run.decision.explain());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// The VM owner's `overcommitGuestOverhead` wins (SPEC §1.2, issue 10):
    /// with an explicit VMI `requests.memory` R (no hugepages, no dedicated
    /// CPUs) the Pod requests exactly R, as KubeVirt's `WithMemoryOverhead`
    /// renders it, whatever the profile (overcommit, `Omit`, ratio, margin,
    /// limits policy) and whether the VMI has a `maxGuest`, and the decision
    /// warns that KubeVirt will refuse memory hotplug (virt-handler's
    /// `hotplugMemory` needs R + overhead, and the overhead is never 0).
    #[test]
    fn vmi_overcommit_guest_overhead_requests_exactly_the_vmi_request(
        vmi in arb_vmi().prop_map(|mut vmi| {
            vmi.hugepages = None;
            vmi.dedicated = false;
            vmi.isolate_emulator_thread = false;
            vmi.overcommit_guest_overhead = true;
            if vmi.requests_memory.is_none() {
                vmi.requests_memory = vmi.limits_memory.clone().or_else(|| vmi.guest.clone());
            }
            vmi
        }),
        max_guest in prop::bool::ANY,
        profile in arb_profile(),
        start in arb_pod_start(),
    ) {
        let mut vmi_json = vmi.to_json();
        if max_guest {
            let guest = vmi.guest.as_ref().or(vmi.requests_memory.as_ref()).expect("memory");
            vmi_json["spec"]["domain"]["memory"]["maxGuest"] = json!((guest.bytes * 4).to_string());
        }
        let pod = start.pod(&vmi.name);
        let request = request(pod, "CREATE");
        let decision = review(&policy(&profile.yaml()), Some(&vmi_json), &request);
        if matches!(decision.outcome.label(), OutcomeLabel::Patched | OutcomeLabel::Unchanged) {
            let pod = patched(&request, &decision);
            let explicit = vmi.requests_memory.as_ref().expect("explicit request").bytes;
            let (requests, _) = container_resources(&pod, 0);
            prop_assert_eq!(requests.get("memory").map(|m| whole(*m)), Some(explicit),
                "{}", decision.explain());
            prop_assert!(
                decision.warnings.iter().any(|w| w.contains("KubeVirt will refuse memory hotplug")),
                "{:?}", decision.warnings
            );
        }
    }
}

/// The properties above skip cases the core refuses; this checks, over the
/// same generator with a fixed seed, that such cases are rare (< 10 %) and
/// that the interesting shapes actually occur.
#[test]
fn generated_cases_are_mostly_sizable() {
    let mut runner = TestRunner::deterministic();
    let strategy = arb_case();
    let total = 256;
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    let (mut dedicated, mut hugepages, mut explicit, mut annotated) = (0, 0, 0, 0);
    for _ in 0..total {
        let case = strategy.new_tree(&mut runner).expect("generates").current();
        let run = Run::of(&case);
        *outcomes
            .entry(run.decision.outcome.label().as_str())
            .or_default() += 1;
        if let Some(error) = run.decision.error() {
            errors.push(error.to_string());
        }
        if run.sized() {
            dedicated += usize::from(case.vmi.dedicated);
            hugepages += usize::from(case.vmi.hugepages.is_some());
            explicit += usize::from(case.vmi.requests_memory.is_some());
            annotated += usize::from(case.pod.overhead_annotation.is_some());
        }
    }
    assert!(
        errors.len() * 10 < total,
        "{} of {total} generated cases were refused: {outcomes:?}\n{}",
        errors.len(),
        errors.join("\n")
    );
    for (what, count) in [
        ("dedicated", dedicated),
        ("hugepages", hugepages),
        ("explicit memory request", explicit),
        ("overhead annotation", annotated),
    ] {
        assert!(
            count * 20 >= total,
            "only {count} sized {what} cases of {total}"
        );
    }
}

// === Robustness ===

/// Keys and leaves that steer random objects into the code paths.
fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("metadata"),
        Just("labels"),
        Just("annotations"),
        Just("kubevirt.io"),
        Just("kubevirt.io/domain"),
        Just("kubevirt.io/memory-overhead-bytes"),
        Just("virt-sizer.io/profile"),
        Just("ownerReferences"),
        Just("kind"),
        Just("name"),
        Just("namespace"),
        Just("spec"),
        Just("containers"),
        Just("resources"),
        Just("requests"),
        Just("limits"),
        Just("cpu"),
        Just("memory"),
        Just("hugepages-2Mi"),
        Just("runtimeClassName"),
        Just("handler"),
        Just("overhead"),
        Just("podFixed"),
        Just("x"),
    ]
    .prop_map(str::to_owned)
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("virt-launcher"),
            Just("compute"),
            Just("kata-qemu"),
            Just("VirtualMachineInstance"),
            Just("vm-gen"),
            Just("1Gi"),
            Just("100m"),
            Just("-1"),
            Just("1.5.5Gi"),
            Just("9999Ei"),
            Just("0.0000000001"),
            Just(""),
            Just("2Mi"),
            Just("Pod"),
        ]
        .prop_map(Value::from),
        "[a-z0-9.~/-]{0,12}".prop_map(Value::from),
    ]
}

fn arb_json() -> BoxedStrategy<Value> {
    arb_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((arb_key(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Pointers into well-formed objects where a random value does damage.
const MUTATION_POINTS: [&str; 24] = [
    "/metadata",
    "/metadata/labels",
    "/metadata/labels/kubevirt.io",
    "/metadata/annotations",
    "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
    "/metadata/annotations/virt-sizer.io~1kubevirt-memory-overhead-bytes",
    "/metadata/annotations/virt-sizer.io~1profile",
    "/metadata/ownerReferences",
    "/metadata/namespace",
    "/spec",
    "/spec/containers",
    "/spec/containers/0",
    "/spec/containers/0/name",
    "/spec/containers/0/resources",
    "/spec/containers/0/resources/requests",
    "/spec/containers/0/resources/limits",
    "/spec/containers/0/resources/requests/memory",
    "/spec/containers/0/resources/limits/cpu",
    "/spec/containers/0/resources/requests/hugepages-2Mi",
    "/spec/runtimeClassName",
    "/spec/domain/cpu",
    "/spec/domain/memory/guest",
    "/spec/domain/resources",
    "/overhead/podFixed",
];

/// Sets `value` at `path` when the parent exists (objects and in-range
/// array indices only).
fn try_set(object: &mut Value, path: &str, value: Value) {
    let Some((parent, last)) = path.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/");
    match object.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
        }
        Some(Value::Array(items)) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = value;
            }
        }
        _ => {}
    }
}

/// A well-formed object of some kind, damaged at a few points, or pure noise.
fn arb_object() -> BoxedStrategy<Value> {
    let base = prop_oneof![
        4 => arb_case().prop_map(|case| case.pod.pod(&case.vmi.name)),
        1 => Just(crate::support::runtime_class(
            "kata-qemu",
            Some(("250m", "160Mi"))
        )),
        1 => Just(crate::support::plain_pod(Some("kata-qemu"))),
        1 => arb_vmi().prop_map(|vmi| vmi.to_json()),
    ];
    let damaged = (
        base,
        prop::collection::vec(
            (prop::sample::select(&MUTATION_POINTS[..]), arb_json()),
            0..4,
        ),
    )
        .prop_map(|(mut object, mutations)| {
            for (path, value) in mutations {
                try_set(&mut object, path, value);
            }
            object
        });
    prop_oneof![3 => damaged, 1 => arb_json()].boxed()
}

fn arb_operation() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("CREATE"),
        2 => Just("UPDATE"),
        1 => Just("DELETE"),
        1 => Just("CONNECT"),
        1 => Just(""),
        1 => Just("create"),
    ]
}

/// Mostly what the apiserver would send for the object (kind from its
/// `apiVersion`/`kind`), sometimes a kind that does not match it.
fn arb_request() -> BoxedStrategy<AdmissionRequest> {
    let kind = prop_oneof![
        Just(("", "Pod")),
        Just(("node.k8s.io", "RuntimeClass")),
        Just(("apps", "Deployment")),
        Just(("", "")),
        Just(("", "RuntimeClass")),
    ];
    (
        prop::option::weighted(0.25, kind),
        arb_operation(),
        prop::option::weighted(0.95, arb_object()),
        "[a-z0-9-]{0,36}",
        prop_oneof![Just(""), Just("tenant-a"), Just("dev-x")],
    )
        .prop_map(|(kind, operation, object, uid, namespace)| {
            let mut request = match &object {
                Some(object) => {
                    virt_sizer::commands::request_for_object(object.clone(), namespace, operation)
                }
                None => virt_sizer::commands::request_for_object(json!({}), namespace, operation),
            };
            request.object = object;
            request.uid = uid;
            if let Some((group, kind)) = kind {
                request.kind = GroupVersionKind {
                    group: group.to_owned(),
                    version: "v1".to_owned(),
                    kind: kind.to_owned(),
                };
            }
            request
        })
        .boxed()
}

/// A policy with rules, opt-in, a Kata class and `onError: Deny`, so that
/// random requests reach every path.
const ROBUSTNESS_POLICY: &str = r#"
apiVersion: virt-sizer.io/v1alpha1
kind: SizingPolicy
kubevirt: {release: "1.9"}
profiles:
  default: {cpuAllocationRatio: 10}
  dev: {cpuAllocationRatio: 20, memoryOvercommitPercent: 150, limits: Ratio, limitsRatio: {memory: "1.5"}}
  production: {cpuAllocationRatio: 1, limits: EqualRequests, overheadMargin: 64Mi}
rules:
  - namespaces: ["dev-*"]
    profile: dev
    allowedProfiles: [dev, production]
onError: Deny
kata:
  runtimeClasses:
    kata-qemu: {runtime: go, defaultVcpus: "1", defaultMemory: 2048Mi, vmm: {cpu: 250m, memory: 160Mi}, guestMemory: Account}
"#;

proptest! {
    #![proptest_config(config())]

    /// Structurally random requests, objects and VMIs never panic `review`,
    /// and every response carries the request's uid and encodes.
    #[test]
    fn review_never_panics_and_keeps_the_uid(
        request in arb_request(),
        vmi in prop::option::weighted(0.9, prop_oneof![3 => arb_vmi().prop_map(|vmi| vmi.to_json()), 1 => arb_json()]),
        unavailable in prop::option::weighted(0.1, Just("timeout after 2s")),
    ) {
        let policy = policy(ROBUSTNESS_POLICY);
        let labels = BTreeMap::new();
        let env = Environment {
            policy: &policy,
            namespace_labels: &labels,
            vmi: match (vmi.as_ref(), unavailable) {
                (None, Some(reason)) => admission::VmiLookup::Unavailable(reason),
                (found, _) => admission::VmiLookup::of(found),
            },
        };
        let decision = admission::review(&env, &request);
        prop_assert_eq!(&decision.response().uid, &request.uid);
        prop_assert!(admission::encode_response(&decision).is_ok());
        // A scalar where the patch would add a map entry (`resources: "x"`,
        // `metadata.annotations: "x"`, a RuntimeClass's `overhead: "x"`) is
        // refused with an error naming the field, so every patch applies.
        let applied = admission::patched_object(&request, &decision);
        prop_assert!(applied.is_ok(), "{:?}\n{}", applied, serde_json::to_string(&request.object).unwrap_or_default());
        prop_assert_eq!(decision.response().allowed, decision.outcome.label() != OutcomeLabel::ErrorDenied);
        let _ = decision.explain();
    }
}
