//! Sizing of a Pod that runs in a Kata sandbox: the limits Kata needs to
//! see, the `default_memory` / `default_vcpus` annotations, the VM the
//! sandbox boots and the Pod's footprint against its cgroup.

use std::collections::BTreeMap;

use super::{
    ANNOTATION_DEFAULT_MEMORY, ANNOTATION_DEFAULT_VCPUS, FillLimits, GO_MIN_MEMORY_MIB,
    GuestMemory, KataClass, KataPodInput, KataPodSettings, KataPodSizing, KataRuntime, LimitChange,
    MIB_BYTES, NANOS_PER_UNIT, PodFixed, VmEstimate, add_bytes, ceil_div, millicores,
    size_runtime_class,
};
use crate::sizing::explain::Explanation;
use crate::sizing::quantity::{Format, Quantity};
use crate::sizing::spelling::Spelled as _;
use crate::terms;

/// Makes a Kata sandbox Pod's resources coherent with how Kata sizes the VM,
/// and estimates that VM.
///
/// 1. `fillLimits: FromRequests`: a container with a CPU/memory request and no
///    limit gets limit = request (Kata sizes the VM from limits only; a
///    request-only container adds no VM capacity: kata#13823). With `None`,
///    such containers are warned about.
/// 2. Go runtimes: an [`ANNOTATION_DEFAULT_MEMORY`] below `minMemory` (MiB,
///    rounded up) is raised to it, with a warning (Kata refuses a value below
///    256: "less than minimum required 256").
/// 3. A warning when both [`ANNOTATION_DEFAULT_VCPUS`] and a CPU limit are set
///    (Kata's advice: one or the other).
/// 4. The VM estimate (Go hotplug `updateResources`, Go static
///    `CalculateSandboxSizing`, runtime-rs 4.x `initial_size.rs`: see
///    [`VmEstimate`]) and the Pod's scheduling footprint (requests +
///    `podFixed` of `class`) go into the explanation; with `guestMemory:
///    Account`, a VM that outgrows the Pod cgroup is a warning.
///
/// A negative request or limit (which the API server's validation rejects
/// after the webhooks) is left alone, warned about and counted as absent.
/// `spec.overhead` is never touched.
#[must_use]
pub fn size_kata_pod(
    input: &KataPodInput,
    class: &KataClass,
    settings: &KataPodSettings,
) -> KataPodSizing {
    let mut out = KataPodSizing {
        limit_changes: Vec::new(),
        annotation_changes: Vec::new(),
        warnings: Vec::new(),
        explanation: Explanation::from(terms![
            "kata sandbox pod on runtime class ",
            class.handler.clone(),
            " (runtime ",
            class.runtime.as_str(),
            ", fillLimits ",
            settings.fill_limits.as_str(),
            ", minMemory ",
            settings.min_memory,
            ")"
        ]),
        vm: VmEstimate {
            vcpus: 0,
            memory_mib: 0,
        },
    };
    let limits = effective_limits(input, settings, &mut out);
    let memory_override = check_memory_annotation(input, class, settings, &mut out);
    let vcpus_override = check_vcpus_annotation(input, class, &limits, &mut out);
    let sums = LimitSums::of(&limits);
    out.vm = estimate_vm(
        class,
        &sums,
        vcpus_override,
        memory_override,
        &mut out.explanation,
    );
    let pod_fixed = size_runtime_class(class).pod_fixed;
    explain_footprint(input, class, &pod_fixed, &sums, &mut out);
    out
}

/// Each container's limits after filling, negative values dropped (with a
/// warning).
fn effective_limits(
    input: &KataPodInput,
    settings: &KataPodSettings,
    out: &mut KataPodSizing,
) -> Vec<BTreeMap<String, Quantity>> {
    let mut all = Vec::with_capacity(input.containers.len());
    for (index, container) in input.containers.iter().enumerate() {
        for (kind, map) in [
            ("request", &container.requests),
            ("limit", &container.limits),
        ] {
            for (resource, quantity) in map.iter().filter(|(_, q)| q.is_negative()) {
                out.warnings.push(format!(
                    "container {} has a negative {resource} {kind} {quantity}: the API server rejects it; \
                     ignored",
                    container.name
                ));
            }
        }
        let mut effective: BTreeMap<String, Quantity> = container
            .limits
            .iter()
            .filter(|(_, q)| !q.is_negative())
            .map(|(name, q)| (name.clone(), *q))
            .collect();
        for resource in ["cpu", "memory"] {
            let Some(request) = container.requests.get(resource).copied() else {
                continue;
            };
            if container.limits.contains_key(resource) || request.is_negative() {
                continue;
            }
            match settings.fill_limits {
                FillLimits::FromRequests => {
                    let why = terms![
                        "container ",
                        container.name.clone(),
                        " ",
                        resource,
                        " limit := request ",
                        request,
                        ": Kata sizes the VM from limits only, a request-only container adds no VM \
                         capacity (kata#13823)"
                    ];
                    out.explanation.note(why.clone());
                    out.limit_changes.push(LimitChange {
                        container: index,
                        resource: resource.to_owned(),
                        old: None,
                        new: request,
                        why,
                    });
                    effective.insert(resource.to_owned(), request);
                }
                FillLimits::None => out.warnings.push(format!(
                    "container {} requests {resource} {request} without a limit: Kata adds no VM capacity \
                     for it (kata#13823)",
                    container.name
                )),
            }
        }
        all.push(effective);
    }
    all
}

/// Σ of the effective container limits that Kata reads. Sums are in whole
/// units of quantities bounded by ±1.7 × 10^29, so they cannot overflow
/// `i128`; they saturate regardless.
struct LimitSums {
    /// Σ CPU limits in millicores (`MilliValue()`, rounded up, as the kubelet
    /// converts them to a CFS quota).
    cpu_millis: i128,
    /// Σ memory limits in bytes (`Value()`, rounded up).
    memory_bytes: i128,
    /// Σ `hugepages-*` limits in bytes.
    hugepages_bytes: i128,
    /// Whether any container has a CPU or memory limit.
    any_limit: bool,
    /// Whether every container has a memory limit (the Pod cgroup is then
    /// memory-limited).
    all_memory_limited: bool,
}

impl LimitSums {
    fn of(limits: &[BTreeMap<String, Quantity>]) -> Self {
        let mut sums = Self {
            cpu_millis: 0,
            memory_bytes: 0,
            hugepages_bytes: 0,
            any_limit: false,
            all_memory_limited: !limits.is_empty(),
        };
        for container in limits {
            if let Some(cpu) = container.get("cpu") {
                sums.cpu_millis = sums.cpu_millis.saturating_add(cpu.milli_value());
                sums.any_limit = true;
            }
            if let Some(memory) = container.get("memory") {
                sums.memory_bytes = sums.memory_bytes.saturating_add(memory.value());
                sums.any_limit = true;
            } else {
                sums.all_memory_limited = false;
            }
            for (name, quantity) in container {
                if name.starts_with("hugepages-") {
                    sums.hugepages_bytes = sums.hugepages_bytes.saturating_add(quantity.value());
                }
            }
        }
        sums
    }
}

/// Enforces `minMemory` on [`ANNOTATION_DEFAULT_MEMORY`] (Go runtimes) and
/// returns the annotation's effective value in MiB, if it is usable.
fn check_memory_annotation(
    input: &KataPodInput,
    class: &KataClass,
    settings: &KataPodSettings,
    out: &mut KataPodSizing,
) -> Option<i128> {
    let text = input.annotations.get(ANNOTATION_DEFAULT_MEMORY)?;
    // Go: strconv.ParseUint(v, 10, 32); runtime-rs also takes a plain MiB count.
    let Some(mib) = text.parse::<u32>().ok().map(i128::from) else {
        out.warnings.push(format!(
            "annotation {ANNOTATION_DEFAULT_MEMORY}={text:?} is not a whole number of MiB: Kata will refuse \
             the sandbox or ignore it; left unchanged"
        ));
        return None;
    };
    if !class.runtime.is_go() {
        return Some(mib);
    }
    let min_mib = ceil_div(settings.min_memory.value(), MIB_BYTES);
    if mib >= min_mib {
        return Some(mib);
    }
    out.warnings.push(format!(
        "annotation {ANNOTATION_DEFAULT_MEMORY}={mib} is below minMemory {} ({min_mib} MiB): the Go runtime \
         refuses a sandbox below {GO_MIN_MEMORY_MIB} MiB (\"less than minimum required {GO_MIN_MEMORY_MIB}\"); \
         raised to {min_mib}",
        settings.min_memory
    ));
    out.explanation.note(terms![
        "annotation ",
        ANNOTATION_DEFAULT_MEMORY,
        " ",
        mib,
        " → ",
        min_mib,
        " (minMemory ",
        settings.min_memory,
        ")"
    ]);
    out.annotation_changes
        .push((ANNOTATION_DEFAULT_MEMORY.to_owned(), min_mib.to_string()));
    Some(min_mib)
}

/// Warns when [`ANNOTATION_DEFAULT_VCPUS`] and CPU limits are both set, and
/// returns the annotation's value in millicores, if it is usable.
fn check_vcpus_annotation(
    input: &KataPodInput,
    class: &KataClass,
    limits: &[BTreeMap<String, Quantity>],
    out: &mut KataPodSizing,
) -> Option<i128> {
    let text = input.annotations.get(ANNOTATION_DEFAULT_VCPUS)?;
    let parsed = Quantity::parse(text).ok().filter(|q| !q.is_negative());
    if parsed.is_none() {
        out.warnings.push(format!(
            "annotation {ANNOTATION_DEFAULT_VCPUS}={text:?} is not a non-negative number: Kata will refuse \
             the sandbox; left unchanged"
        ));
    }
    let with_cpu_limit: Vec<&str> = input
        .containers
        .iter()
        .zip(limits)
        .filter(|(_, effective)| effective.contains_key("cpu"))
        .map(|(container, _)| container.name.as_str())
        .collect();
    if !with_cpu_limit.is_empty() {
        let consequence = if class.runtime == KataRuntime::RuntimeRs {
            "runtime-rs ignores default_vcpus when any limit is set"
        } else {
            "Kata adds the CPU limits on top of default_vcpus"
        };
        out.warnings.push(format!(
            "both annotation {ANNOTATION_DEFAULT_VCPUS}={text} and CPU limits (containers {}) are set: \
             {consequence}; Kata's advice is to set one or the other",
            with_cpu_limit.join(", ")
        ));
    }
    parsed.map(|q| q.milli_value())
}

/// The VM the sandbox boots: Go runtime with hotplug (`updateResources`), Go
/// static (`CalculateSandboxSizing`), runtime-rs 4.x (`initial_size.rs`).
/// The annotations, when usable, replace `default_vcpus` (a positive value
/// only) and `default_memory`.
fn estimate_vm(
    class: &KataClass,
    sums: &LimitSums,
    vcpus_override_millis: Option<i128>,
    memory_override_mib: Option<i128>,
    explanation: &mut Explanation,
) -> VmEstimate {
    let default_millis = match vcpus_override_millis {
        Some(millis) if millis > 0 => millis,
        _ => class.default_vcpus.milli_value(),
    };
    let default_mib = if let Some(mib) = memory_override_mib {
        mib
    } else {
        let (mib, remark) = class.effective_default_memory_mib();
        if let Some(remark) = remark {
            explanation.note(remark);
        }
        mib
    };
    let (vcpus, memory_mib) = if class.runtime.is_go() {
        go_vm(class, sums, default_millis, default_mib, explanation)
    } else if sums.any_limit {
        runtime_rs_vm(class, sums, explanation)
    } else {
        runtime_rs_default_vm(default_millis, default_mib, explanation)
    };
    if memory_mib == 0 {
        explanation.note(terms!["a computed VM memory of 0 MiB is refused by Kata"]);
    }
    VmEstimate {
        vcpus: u64::try_from(vcpus).unwrap_or(u64::MAX),
        memory_mib: u64::try_from(memory_mib).unwrap_or(u64::MAX),
    }
}

/// Go runtime (`updateResources` with hotplug, `CalculateSandboxSizing`
/// static): vCPUs = ceil(`default_vcpus` (0 counts as 1) + Σ quota/period),
/// rounded up once; memory = (`default_memory` << 20 + Σ limit bytes [+ Σ
/// hugepages limits, hotplug only]) >> 20. Returns (vCPUs, MiB).
fn go_vm(
    class: &KataClass,
    sums: &LimitSums,
    default_millis: i128,
    default_mib: i128,
    explanation: &mut Explanation,
) -> (i128, i128) {
    let default_millis = if default_millis == 0 {
        1000
    } else {
        default_millis
    };
    let vcpus = ceil_div(default_millis.saturating_add(sums.cpu_millis), 1000);
    let hugepages = if class.runtime == KataRuntime::Go {
        sums.hugepages_bytes
    } else {
        0
    };
    let memory_bytes = default_mib
        .saturating_mul(MIB_BYTES)
        .saturating_add(sums.memory_bytes)
        .saturating_add(hugepages);
    let memory_mib = memory_bytes.div_euclid(MIB_BYTES);
    let hugepages_term = (hugepages > 0).then(|| {
        terms![
            " + Σ hugepages limits ",
            hugepages.div_euclid(MIB_BYTES),
            " MiB"
        ]
    });
    explanation.note(terms![
        "VM boots with ",
        vcpus,
        " vCPUs = ceil(default_vcpus ",
        millicores(default_millis),
        " + Σ cpu limits ",
        millicores(sums.cpu_millis),
        ") and ",
        memory_mib,
        " MiB = default_memory ",
        default_mib,
        " MiB + Σ memory limits ",
        sums.memory_bytes.div_euclid(MIB_BYTES),
        " MiB",
        hugepages_term,
        " (Go runtime",
        if class.runtime == KataRuntime::GoStatic {
            ", static"
        } else {
            ", hotplug"
        },
        ")"
    ]);
    (vcpus, memory_mib)
}

/// runtime-rs 4.x with any container limit (`initial_size.rs`): vCPUs =
/// ceil(max(`overhead_vcpus` + Σ CPU limits, 1)); memory =
/// `overhead_memory` + Σ memory limits in MiB (floored, then rounded up to
/// even). Returns (vCPUs, MiB).
fn runtime_rs_vm(
    class: &KataClass,
    sums: &LimitSums,
    explanation: &mut Explanation,
) -> (i128, i128) {
    let overhead_millis = class.effective_overhead_vcpus().milli_value();
    let overhead_mib = class
        .effective_overhead_memory()
        .value()
        .div_euclid(MIB_BYTES);
    let vcpus = ceil_div(
        overhead_millis.saturating_add(sums.cpu_millis).max(1000),
        1000,
    );
    let workload_floor = sums.memory_bytes.div_euclid(MIB_BYTES);
    let workload_mib = workload_floor.saturating_add(workload_floor.rem_euclid(2));
    let memory_mib = overhead_mib.saturating_add(workload_mib);
    let even_note = (workload_mib != workload_floor)
        .then(|| terms![", ", workload_floor, " rounded up to even"]);
    explanation.note(terms![
        "VM boots with ",
        vcpus,
        " vCPUs = ceil(max(overhead_vcpus ",
        millicores(overhead_millis),
        " + Σ cpu limits ",
        millicores(sums.cpu_millis),
        ", 1)) and ",
        memory_mib,
        " MiB = overhead_memory ",
        overhead_mib,
        " MiB + Σ memory limits ",
        workload_mib,
        " MiB (MiB floor",
        even_note,
        "; runtime-rs 4.x)"
    ]);
    (vcpus, memory_mib)
}

/// runtime-rs 4.x without container limits: `default_vcpus` (ceil) and
/// `default_memory`. Returns (vCPUs, MiB).
fn runtime_rs_default_vm(
    default_millis: i128,
    default_mib: i128,
    explanation: &mut Explanation,
) -> (i128, i128) {
    let vcpus = ceil_div(default_millis.max(0), 1000);
    explanation.note(terms![
        "VM boots with ",
        vcpus,
        " vCPUs = ceil(default_vcpus ",
        millicores(default_millis),
        ") and ",
        default_mib,
        " MiB = default_memory (no container limits; runtime-rs 4.x)"
    ]);
    (vcpus, default_mib)
}

/// Explains the Pod's scheduling footprint (Σ requests + `podFixed`) and its
/// cgroup memory limit compared with the VM; with `guestMemory: Account`, a
/// VM that still outgrows the cgroup (a `default_memory` annotation above
/// the class's value) is also a warning.
fn explain_footprint(
    input: &KataPodInput,
    class: &KataClass,
    pod_fixed: &PodFixed,
    sums: &LimitSums,
    out: &mut KataPodSizing,
) {
    // Requests as the scheduler sees them: the API server defaults a missing
    // request to the limit (filled limits come from requests, so they change
    // nothing here).
    let mut request_nanos = [0_i128, 0_i128];
    for container in &input.containers {
        for (slot, resource) in ["cpu", "memory"].into_iter().enumerate() {
            let request = container
                .requests
                .get(resource)
                .or_else(|| container.limits.get(resource))
                .filter(|q| !q.is_negative());
            if let Some(q) = request {
                request_nanos[slot] = request_nanos[slot].saturating_add(q.nanos());
            }
        }
    }
    let cpu_requests = Quantity::from_nanos(request_nanos[0], Format::DecimalSi);
    let memory_requests = Quantity::from_nanos(request_nanos[1], Format::BinarySi);
    let cpu_total = Quantity::from_nanos(
        cpu_requests.nanos().saturating_add(pod_fixed.cpu.nanos()),
        Format::DecimalSi,
    );
    let memory_total = add_bytes(memory_requests, pod_fixed.memory);
    out.explanation.note(terms![
        "scheduler reserves cpu ",
        cpu_total,
        " = requests ",
        cpu_requests,
        " + podFixed ",
        pod_fixed.cpu,
        ", memory ",
        memory_total,
        " = requests ",
        memory_requests,
        " + podFixed ",
        pod_fixed.memory
    ]);
    if !sums.all_memory_limited {
        return;
    }
    let limits = Quantity::from_nanos(
        sums.memory_bytes.saturating_mul(NANOS_PER_UNIT),
        Format::BinarySi,
    );
    let cgroup = add_bytes(limits, pod_fixed.memory);
    let vm_bytes = i128::from(out.vm.memory_mib).saturating_mul(MIB_BYTES);
    let outgrows = vm_bytes > cgroup.value();
    let verdict = if outgrows {
        "the VM's guest memory alone can outgrow it (kata#12786)"
    } else {
        "it holds the VM's guest memory"
    };
    out.explanation.note(terms![
        "pod cgroup memory limit ",
        cgroup,
        " = Σ limits ",
        limits,
        " + podFixed ",
        pod_fixed.memory,
        ": ",
        verdict
    ]);
    if outgrows && class.guest_memory == GuestMemory::Account {
        out.warnings.push(format!(
            "the VM boots with {} MiB of guest memory but the pod cgroup allows {cgroup} (runtime class {} \
             accounts for its own default memory, not this pod's {ANNOTATION_DEFAULT_MEMORY} annotation): the \
             VMM can be OOM-killed (kata#12786)",
            out.vm.memory_mib, class.handler
        ));
    }
}
