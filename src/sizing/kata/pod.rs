//! Sizing of a Pod that runs in a Kata sandbox: the limits Kata needs to
//! see, the `default_memory` / `default_vcpus` annotations, the VM the
//! sandbox boots and the Pod's footprint against its cgroup.

use super::annotations::{self, Reading};
use super::kubelet::{PodContainer, Role, SandboxLimits, nanos_of, pod_total};
use super::vcpus::Vcpus;
use super::vm::{self, Base, Labels};
use super::{
    ANNOTATION_DEFAULT_MEMORY, ANNOTATION_DEFAULT_VCPUS, ANNOTATION_HYPERVISOR_PREFIX,
    ContainerList, ContainerResources, FillLimits, GO_MIN_MEMORY_MIB, GuestMemory, KataClass,
    KataPodInput, KataPodSettings, KataPodSizing, KataRuntime, MIB_BYTES, NANOS_PER_UNIT, PodFixed,
    RUNTIME_RS_MIN_MEMORY_MIB, ResourceChange, VmEstimate, add_bytes, ceil_div, size_runtime_class,
};
use crate::sizing::explain::{Explanation, Section, Terms};
use crate::sizing::quantity::{Format, Quantity};
use crate::sizing::spelling::Spelled as _;
use crate::terms;

/// Makes a Kata sandbox Pod's resources coherent with how Kata sizes the VM,
/// and estimates that VM.
///
/// 1. `fillLimits: FromRequests`: a container, init container or sidecar
///    with a CPU/memory request and no limit gets limit = request (Kata
///    sizes the VM from limits only; a request-only container adds no VM
///    capacity: kata#13823). With `None`, such containers are warned about.
/// 2. Hypervisor annotations are read as the class's runtime reads them
///    (see [`super::ANNOTATION_HYPERVISOR_PREFIX`]): one the class's
///    `enableAnnotations` does not list makes the Go runtime refuse the
///    sandbox and runtime-rs ignore it, each a warning; `default_vcpus` is a
///    plain number (`"500m"` is refused); on the Go runtimes a
///    `default_memory` below `minMemory` (MiB, rounded up) is raised to it,
///    with a warning (Kata refuses a value below 256).
/// 3. A warning when both [`ANNOTATION_DEFAULT_VCPUS`] and a CPU limit are set
///    (Kata's advice: one or the other).
/// 4. `guestMemory: Account` on the Go runtime with hotplug: memory limits
///    are rounded up to whole guest memory blocks (and a request equal to
///    its limit follows), since Kata hot-adds whole blocks for them; the
///    Pod cgroup then holds the VM.
/// 5. The VM estimate, in the order the kubelet starts the containers (Go
///    hotplug: Kata's `Sandbox.updateResources` replayed container by
///    container; Go static: `CalculateSandboxSizing`; runtime-rs 4.x:
///    `InitialSizeManager::setup_config`; see [`KataRuntime`]) and the
///    Pod's scheduling footprint and cgroup
///    (Kubernetes' Pod rules: init containers take the maximum, sidecars
///    add, plus `podFixed` of `class`) go into the explanation; with
///    `guestMemory: Account`, a VM (and, with `sandbox_cgroup_only`, its
///    VMM) that outgrows the Pod cgroup is a warning.
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
        changes: Vec::new(),
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
        refused: Vec::new(),
    };
    let mut containers = effective_containers(input, settings, &mut out);
    let base = read_annotations(input, class, settings, &containers, &mut out);
    if class.guest_memory == GuestMemory::Account {
        round_memory_to_blocks(input, class, &mut containers, &mut out);
    }
    let labels = Labels::new(!input.init_containers.is_empty());
    let pod_limits = SandboxLimits::of(&containers);
    out.vm = match class.runtime {
        KataRuntime::Go => {
            let block = u64::try_from(class.memory_block_mib()).unwrap_or(u64::MAX);
            vm::go_hotplug(base, block, &containers, labels, &mut out.explanation)
        }
        KataRuntime::GoStatic => vm::go_static(base, pod_limits, labels, &mut out.explanation),
        KataRuntime::RuntimeRs => {
            vm::runtime_rs(class, base, pod_limits, labels, &mut out.explanation)
        }
    };
    if out.vm.memory_mib == 0 {
        refuse(
            &mut out,
            "the computed VM memory is 0 MiB: runtime-rs refuses the sandbox (\"computed sandbox memory \
             is 0 MiB\"); set a memory limit or a nonzero overheadMemory"
                .to_owned(),
        );
    }
    if !out.refused.is_empty() {
        out.explanation.note(terms![
            "Kata refuses to start this sandbox (see the warnings); the VM above is what boots once that \
             is fixed"
        ]);
    }
    let pod_fixed = size_runtime_class(class).pod_fixed;
    explain_footprint(class, &pod_fixed, &containers, &mut out);
    out
}

/// Records a reason Kata refuses the sandbox.
fn refuse(out: &mut KataPodSizing, reason: String) {
    out.warnings.push(reason.clone());
    out.refused.push(reason);
}

/// The containers in the order the kubelet starts them (init containers and
/// sidecars, then app containers), with their limits after filling and
/// negative values dropped (with a warning).
fn effective_containers(
    input: &KataPodInput,
    settings: &KataPodSettings,
    out: &mut KataPodSizing,
) -> Vec<PodContainer> {
    let lists = [
        (ContainerList::InitContainers, &input.init_containers),
        (ContainerList::Containers, &input.containers),
    ];
    let mut all = Vec::with_capacity(input.init_containers.len() + input.containers.len());
    for (list, containers) in lists {
        for (index, container) in containers.iter().enumerate() {
            let role = match list {
                ContainerList::Containers => Role::App,
                ContainerList::InitContainers if container.sidecar => Role::Sidecar,
                ContainerList::InitContainers => Role::Init,
            };
            all.push(effective_container(
                list, index, role, container, settings, out,
            ));
        }
    }
    all
}

/// One container's effective limits and requests (see
/// [`effective_containers`]).
fn effective_container(
    list: ContainerList,
    index: usize,
    role: Role,
    container: &ContainerResources,
    settings: &KataPodSettings,
    out: &mut KataPodSizing,
) -> PodContainer {
    for (kind, map) in [
        ("request", &container.requests),
        ("limit", &container.limits),
    ] {
        for (resource, quantity) in map.iter().filter(|(_, q)| q.is_negative()) {
            out.warnings.push(format!(
                "{} {} has a negative {resource} {kind} {quantity}: the API server rejects it; ignored",
                role.noun(),
                container.name
            ));
        }
    }
    let non_negative = |map: &std::collections::BTreeMap<String, Quantity>| {
        map.iter()
            .filter(|(_, q)| !q.is_negative())
            .map(|(name, q)| (name.clone(), *q))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let mut limits = non_negative(&container.limits);
    let mut requests = non_negative(&container.requests);
    for resource in ["cpu", "memory"] {
        let Some(request) = requests.get(resource).copied() else {
            continue;
        };
        if container.limits.contains_key(resource) {
            continue;
        }
        match settings.fill_limits {
            FillLimits::FromRequests => {
                let why = terms![
                    role.noun(),
                    " ",
                    container.name.clone(),
                    " ",
                    resource,
                    " limit := request ",
                    request,
                    ": Kata sizes the VM from limits only, a request-only container adds no VM \
                     capacity (kata#13823)"
                ];
                out.explanation.note(why.clone());
                out.changes.push(ResourceChange {
                    list,
                    container: index,
                    section: Section::Limits,
                    resource: resource.to_owned(),
                    old: None,
                    new: request,
                    why,
                });
                limits.insert(resource.to_owned(), request);
            }
            FillLimits::None => out.warnings.push(format!(
                "{} {} requests {resource} {request} without a limit: Kata adds no VM capacity for it \
                 (kata#13823)",
                role.noun(),
                container.name
            )),
        }
    }
    // The API server defaults a missing request to the limit.
    for (resource, limit) in &limits {
        requests.entry(resource.clone()).or_insert(*limit);
    }
    PodContainer {
        name: container.name.clone(),
        role,
        list,
        index,
        limits,
        requests,
    }
}

/// Reads the Pod's hypervisor annotations as the class's runtime does and
/// returns the VM's starting point: `default_vcpus` and `default_memory`,
/// from the class or from an annotation Kata reads.
fn read_annotations(
    input: &KataPodInput,
    class: &KataClass,
    settings: &KataPodSettings,
    containers: &[PodContainer],
    out: &mut KataPodSizing,
) -> Base {
    let mut base = class_base(class, &mut out.explanation);
    for key in input
        .annotations
        .keys()
        .filter(|key| key.starts_with(ANNOTATION_HYPERVISOR_PREFIX))
        .filter(|key| !class.enable_annotations.enables(key))
    {
        let patterns = class.enable_annotations.patterns().join(", ");
        let message = format!(
            "annotation {key} is not in enableAnnotations [{patterns}] of runtime class {}",
            class.handler
        );
        if class.runtime.is_go() {
            refuse(
                out,
                format!(
                    "{message}: Kata's Go runtime refuses the sandbox (\"annotation {key} is not enabled\")"
                ),
            );
        } else {
            out.warnings
                .push(format!("{message}: runtime-rs ignores it"));
        }
    }
    if let Some(text) = enabled(input, class, ANNOTATION_DEFAULT_VCPUS) {
        let reading = if class.runtime.is_go() {
            annotations::go_vcpus(text)
        } else {
            annotations::rs_vcpus(text)
        };
        if let Some(vcpus) = take(reading, ANNOTATION_DEFAULT_VCPUS, text, out) {
            base.vcpus = vcpus;
            warn_vcpus_and_cpu_limits(class, text, containers, out);
        }
    }
    if let Some(text) = enabled(input, class, ANNOTATION_DEFAULT_MEMORY) {
        let mib = if class.runtime.is_go() {
            go_memory(text, settings, out)
        } else {
            rs_memory(text, out)
        };
        if let Some(mib) = mib {
            base.memory_mib = mib;
        }
    }
    base
}

/// The annotation `key`'s value, if the Pod has it and the class's runtime
/// reads it.
fn enabled<'a>(input: &'a KataPodInput, class: &KataClass, key: &str) -> Option<&'a str> {
    input
        .annotations
        .get(key)
        .filter(|_| class.enable_annotations.enables(key))
        .map(String::as_str)
}

/// The value of an annotation Kata reads, or `None` with a warning (and a
/// refusal) saying what Kata does instead.
fn take<T>(reading: Reading<T>, key: &str, text: &str, out: &mut KataPodSizing) -> Option<T> {
    match reading {
        Reading::Value(value) => Some(value),
        Reading::Refused(why) => {
            refuse(
                out,
                format!("annotation {key}={text:?} {why}; left unchanged"),
            );
            None
        }
        Reading::Ignored(why) => {
            out.warnings
                .push(format!("annotation {key}={text:?} {why}; left unchanged"));
            None
        }
        Reading::Unmodeled(why) => {
            out.warnings.push(format!(
                "annotation {key}={text:?} {why}; the estimate leaves it out"
            ));
            None
        }
    }
}

/// The class's own `default_vcpus` and `default_memory` as Kata loads them:
/// 0 vCPUs loads as 1 (`defaultVCPUs`, `CpuInfo::adjust_config`); on the Go
/// runtimes a `default_memory` below 256 MiB loads as 2048.
fn class_base(class: &KataClass, explanation: &mut Explanation) -> Base {
    let vcpus = Vcpus::from_config(class.default_vcpus);
    let (memory_mib, remark) = class.effective_default_memory_mib();
    if let Some(remark) = remark {
        explanation.note(remark);
    }
    Base {
        vcpus: if vcpus.is_zero() { Vcpus::ONE } else { vcpus },
        memory_mib: u64::try_from(memory_mib).unwrap_or(0),
    }
}

/// Warns when the `default_vcpus` annotation Kata reads and CPU limits are
/// both set.
fn warn_vcpus_and_cpu_limits(
    class: &KataClass,
    text: &str,
    containers: &[PodContainer],
    out: &mut KataPodSizing,
) {
    let with_cpu_limit: Vec<&str> = containers
        .iter()
        .filter(|c| c.limits.contains_key("cpu"))
        .map(|c| c.name.as_str())
        .collect();
    if with_cpu_limit.is_empty() {
        return;
    }
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

/// The Go runtimes' `default_memory` annotation (`addHypervisorMemoryOverrides`):
/// raised to `minMemory` when below it (Kata refuses below 256 MiB), then
/// kept to its low 32 bits as Kata's `uint32(…)` does.
fn go_memory(text: &str, settings: &KataPodSettings, out: &mut KataPodSizing) -> Option<u64> {
    let mib = take(
        annotations::go_memory_mib(text),
        ANNOTATION_DEFAULT_MEMORY,
        text,
        out,
    )?;
    let min_mib =
        u64::try_from(ceil_div(settings.min_memory.value(), MIB_BYTES)).unwrap_or(u64::MAX);
    let mib = if mib >= min_mib {
        mib
    } else {
        out.warnings.push(format!(
            "annotation {ANNOTATION_DEFAULT_MEMORY}={mib} is below minMemory {} ({min_mib} MiB): the Go \
             runtime refuses a sandbox below {GO_MIN_MEMORY_MIB} MiB (\"less than minimum required \
             {GO_MIN_MEMORY_MIB}\"); raised to {min_mib}",
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
        min_mib
    };
    if i128::from(mib) < GO_MIN_MEMORY_MIB {
        refuse(
            out,
            format!(
                "annotation {ANNOTATION_DEFAULT_MEMORY}={mib} is below {GO_MIN_MEMORY_MIB} MiB: the Go runtime \
                 refuses the sandbox (\"less than minimum required {GO_MIN_MEMORY_MIB}\")"
            ),
        );
        return None;
    }
    let kept = mib & u64::from(u32::MAX);
    if kept != mib {
        out.warnings.push(format!(
            "annotation {ANNOTATION_DEFAULT_MEMORY}={mib} does not fit Kata's 32-bit MiB count: the Go \
             runtime keeps {kept} MiB"
        ));
    }
    Some(kept)
}

/// runtime-rs's `default_memory` annotation (`convert_to_megabytes`), refused
/// below [`RUNTIME_RS_MIN_MEMORY_MIB`].
fn rs_memory(text: &str, out: &mut KataPodSizing) -> Option<u64> {
    let mib = take(
        annotations::rs_memory_mib(text),
        ANNOTATION_DEFAULT_MEMORY,
        text,
        out,
    )?;
    if i128::from(mib) < RUNTIME_RS_MIN_MEMORY_MIB {
        refuse(
            out,
            format!(
                "annotation {ANNOTATION_DEFAULT_MEMORY}={text:?} is {mib} MiB, below {RUNTIME_RS_MIN_MEMORY_MIB} \
                 MiB: runtime-rs refuses the sandbox (\"memory specified in annotation … is less than \
                 minimum limitation\")"
            ),
        );
        return None;
    }
    Some(u64::from(mib))
}

/// `guestMemory: Account` on the Go runtime with hotplug, when the Pod
/// cgroup has a memory limit: each memory limit that is not a whole number
/// of guest memory blocks is rounded up to one, because Kata hot-adds whole
/// blocks for it (`calcHotplugMemMiBSize`); a request equal to the old limit
/// is raised with it, so the Pod keeps its QoS class. The VM then holds
/// `default_memory` + the Pod's memory limit exactly, which `podFixed`
/// (`vmm` + `default_memory`) and the limits cover.
fn round_memory_to_blocks(
    input: &KataPodInput,
    class: &KataClass,
    containers: &mut [PodContainer],
    out: &mut KataPodSizing,
) {
    let block_mib = class.memory_block_mib();
    let limited = pod_total(containers, |c| nanos_of(&c.limits, "memory")).every_container_set;
    if block_mib <= 0 || !limited {
        return;
    }
    let block_bytes = block_mib.saturating_mul(MIB_BYTES);
    for container in containers.iter_mut() {
        let Some(limit) = container.limits.get("memory").copied() else {
            continue;
        };
        let bytes = limit.value();
        if bytes.rem_euclid(block_bytes) == 0 {
            continue;
        }
        let rounded = Quantity::from_nanos(
            ceil_div(bytes, block_bytes)
                .saturating_mul(block_bytes)
                .saturating_mul(NANOS_PER_UNIT),
            Format::BinarySi,
        );
        record_rounded_limit(input, container, limit, rounded, block_mib, out);
    }
}

/// Records one container's memory limit rounded up to whole blocks (and its
/// request with it when the two were equal, so the QoS class stays), in the
/// changes and on the container the estimate reads.
fn record_rounded_limit(
    input: &KataPodInput,
    container: &mut PodContainer,
    limit: Quantity,
    rounded: Quantity,
    block_mib: i128,
    out: &mut KataPodSizing,
) {
    let why = terms![
        container.role.noun(),
        " ",
        container.name.clone(),
        " memory limit := ",
        rounded,
        " = ",
        limit,
        " rounded up to whole ",
        block_mib,
        " MiB guest memory blocks: Kata hot-adds whole blocks for it, and guestMemory Account makes \
         the pod cgroup hold them"
    ];
    out.explanation.note(why.clone());
    let source = match container.list {
        ContainerList::InitContainers => &input.init_containers[container.index],
        ContainerList::Containers => &input.containers[container.index],
    };
    let filled = out.changes.iter_mut().find(|change| {
        change.list == container.list
            && change.container == container.index
            && change.section == Section::Limits
            && change.resource == "memory"
    });
    match filled {
        Some(change) => {
            change.new = rounded;
            change.why = why;
        }
        None => out.changes.push(ResourceChange {
            list: container.list,
            container: container.index,
            section: Section::Limits,
            resource: "memory".to_owned(),
            old: Some(limit),
            new: rounded,
            why,
        }),
    }
    let request = source
        .requests
        .get("memory")
        .copied()
        .filter(|q| !q.is_negative());
    // A request that equals the limit the Pod was written with.
    let equal = request.filter(|r| {
        source
            .limits
            .get("memory")
            .is_some_and(|written| written.nanos() == r.nanos())
    });
    if let Some(request) = equal {
        out.changes.push(ResourceChange {
            list: container.list,
            container: container.index,
            section: Section::Requests,
            resource: "memory".to_owned(),
            old: Some(request),
            new: rounded,
            why: terms![
                container.role.noun(),
                " ",
                container.name.clone(),
                " memory request := ",
                rounded,
                ": it equalled the limit, and still does, so the Pod keeps its QoS class"
            ],
        });
    }
    if request.is_none() || equal.is_some() {
        container.requests.insert("memory".to_owned(), rounded);
    }
    container.limits.insert("memory".to_owned(), rounded);
}

/// Explains the Pod's scheduling footprint (the Pod's requests + `podFixed`)
/// and its cgroup memory limit compared with the VM; with `guestMemory:
/// Account`, a VM that still outgrows the cgroup is also a warning.
///
/// The Pod cgroup's memory limit is `PodLimits` + `podFixed`, set only when
/// every container has a memory limit as `ResourceConfigForPod` sees it.
/// It must hold the guest memory, and the VMM's own memory (`vmm`) when
/// `sandbox_cgroup_only` puts the VMM in the Pod cgroup.
fn explain_footprint(
    class: &KataClass,
    pod_fixed: &PodFixed,
    containers: &[PodContainer],
    out: &mut KataPodSizing,
) {
    let has_init = containers.iter().any(|c| c.role != Role::App);
    let cpu_requests = Quantity::from_nanos(
        pod_total(containers, |c| nanos_of(&c.requests, "cpu")).nanos,
        Format::DecimalSi,
    );
    let memory_requests = Quantity::from_nanos(
        pod_total(containers, |c| nanos_of(&c.requests, "memory")).nanos,
        Format::BinarySi,
    );
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
        pod_fixed.memory,
        has_init.then_some(" (init containers take the maximum, sidecars add)")
    ]);
    explain_cgroup(class, pod_fixed, containers, has_init, out);
}

/// The pod cgroup's memory limit against the VM that boots in it, when
/// every container has a memory limit: whether it holds the guest memory
/// (and the VMM, with `sandbox_cgroup_only`), and a warning when it does
/// not although the class accounts for the guest.
fn explain_cgroup(
    class: &KataClass,
    pod_fixed: &PodFixed,
    containers: &[PodContainer],
    has_init: bool,
    out: &mut KataPodSizing,
) {
    let memory = pod_total(containers, |c| nanos_of(&c.limits, "memory"));
    if !memory.every_container_set {
        return;
    }
    let limits = Quantity::from_nanos(memory.nanos, Format::BinarySi);
    let cgroup = add_bytes(limits, pod_fixed.memory);
    let guest_bytes = i128::from(out.vm.memory_mib).saturating_mul(MIB_BYTES);
    let vmm_bytes = if class.sandbox_cgroup_only {
        class.vmm.memory.value()
    } else {
        0
    };
    let outgrows = guest_bytes.saturating_add(vmm_bytes) > cgroup.value();
    let vmm_term: Option<Terms> = class.sandbox_cgroup_only.then(|| {
        terms![
            " and the VMM's ",
            class.vmm.memory,
            " (sandbox_cgroup_only)"
        ]
    });
    let verdict = if !outgrows {
        terms!["it holds the VM's guest memory", vmm_term]
    } else if guest_bytes > cgroup.value() {
        terms!["the VM's guest memory alone can outgrow it (kata#12786)"]
    } else {
        terms![
            "the VM's guest memory",
            vmm_term,
            " can outgrow it (kata#12786)"
        ]
    };
    out.explanation.note(terms![
        "pod cgroup memory limit ",
        cgroup,
        " = ",
        if has_init { "Pod limit " } else { "Σ limits " },
        limits,
        " + podFixed ",
        pod_fixed.memory,
        ": ",
        verdict
    ]);
    if outgrows && class.guest_memory == GuestMemory::Account {
        let vmm = if class.sandbox_cgroup_only {
            format!(
                ", plus the VMM's {} (sandbox_cgroup_only),",
                class.vmm.memory
            )
        } else {
            String::new()
        };
        out.warnings.push(format!(
            "the VM boots with {} MiB of guest memory{vmm} but the pod cgroup allows {cgroup} (runtime class \
             {} accounts for its own default memory and whole memory blocks, not this pod's \
             {ANNOTATION_DEFAULT_MEMORY} annotation or hugepages): the VMM can be OOM-killed (kata#12786)",
            out.vm.memory_mib, class.handler
        ));
    }
}
