//! KubeVirt's virt-launcher `compute` container sizing, reproduced exactly,
//! then extended by a sizing [`Profile`].
//!
//! The port follows virt-controller's resource renderer
//! (`pkg/virt-controller/services/renderresources.go`) option by option, in
//! the order `VMIResourcePredicates` applies them:
//!
//! 1. `WithMemoryRequests` — a memory limit without a request becomes the
//!    request; otherwise, with no request, `guest × 100 / memoryOvercommit`
//!    (truncating, in the guest quantity's format);
//! 2. `WithCPUPinning` (dedicated CPUs) or `WithoutDedicatedCPU` (the
//!    `cpuAllocationRatio` division, printed with Go's `%g`);
//! 3. `WithHugePages` or `WithMemoryOverhead`;
//! 4. `WithAutoMemoryLimits` when a ResourceQuota sets `limits.memory`;
//! 5. the merge: a value the VMI gave (or an earlier option wrote into the
//!    VMI's lists) beats a calculated one.
//!
//! The overhead is [`memory_overhead`] (`GetMemoryOverhead` + the network
//! binding calculator), unless the Pod carries KubeVirt's own figure in
//! `kubevirt.io/memory-overhead-bytes`, which is then authoritative.
//!
//! Quantities keep Go's formats (`Add` on a zero quantity takes the other
//! operand's format), so the printed strings match KubeVirt's too, not only
//! the values: `1Gi` + 268Mi prints `1292Mi`, `1G` + overhead prints
//! `1282971493`.
//!
//! The hard rules of the product hold whatever the profile says, and are
//! where virt-sizer deliberately differs from upstream:
//! * hugepages and dedicated-CPU VMIs are never memory-overcommitted
//!   (KubeVirt v1.7–v1.9 overcommits hugepages into a non page-multiple and
//!   the Pod is rejected; PR #18880);
//! * dedicated-CPU VMIs always request their overhead (KubeVirt's
//!   `overcommitGuestOverhead` would silently drop Guaranteed QoS);
//! * requests never exceed limits; hugepage requests equal limits and are
//!   whole pages;
//! * the memory request never drops below the memory-hotplug floor
//!   (VMI `requests.memory` + overhead), except when the VMI itself asks
//!   for `overcommitGuestOverhead`: the VM owner's choice wins, sized
//!   exactly as KubeVirt sizes it, with a warning that KubeVirt will refuse
//!   memory hotplug for that VM.
//!
//! Where the Pod reports KubeVirt's overhead, the profile's `overheadRatio`
//! multiplies only the part KubeVirt's own ratio multiplied
//! ([`reported_base_overhead`]); the network-binding memory is added back
//! as is, as `CalculateMemoryOverhead` adds it.

use std::collections::BTreeMap;

use super::error::SizingError;
use super::gofloat;
use super::policy::{GuestOverhead, KubevirtSettings, LimitsPolicy, Profile, Release};
use super::quantity::{Format, Quantity};
use super::vmi::{EMULATOR_THREAD_EVEN_PARITY_ANNOTATION, InterfaceBinding, VmiFacts};

/// Namespace label that sets KubeVirt's auto memory limit ratio.
pub const AUTO_MEMORY_LIMITS_RATIO_LABEL: &str = "alpha.kubevirt.io/auto-memory-limits-ratio";

/// KubeVirt's default auto memory limit ratio (`DefaultMemoryLimitOverheadRatio`).
const DEFAULT_AUTO_MEMORY_LIMITS_RATIO: &str = "2";

const MI: i64 = 1 << 20;

/// Which of KubeVirt's quota-driven automatic limits are in force for the
/// Pod's namespace (`WithAutoMemoryLimits`, auto CPU limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AutoLimits {
    /// A ResourceQuota sets `limits.cpu`, or the namespace matches
    /// `autoCPULimitNamespaceLabelSelector`.
    pub cpu: bool,
    /// A ResourceQuota sets `limits.memory`.
    pub memory: bool,
}

/// Everything [`size_launcher`] needs.
#[derive(Debug, Clone, Copy)]
pub struct LauncherInput<'a> {
    /// The VMI the Pod carries.
    pub vmi: &'a VmiFacts,
    /// The policy's KubeVirt model (release line, architecture, plugins).
    pub settings: &'a KubevirtSettings,
    /// The selected profile.
    pub profile: &'a Profile,
    /// The namespace's labels (auto memory limit ratio).
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// KubeVirt's automatic limits in force.
    pub auto_limits: AutoLimits,
    /// KubeVirt's own overhead for this VMI, when the Pod reports it.
    pub reported_overhead: Option<Quantity>,
}

/// The memory overhead of one VMI, with its terms for the explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overhead {
    /// The sum, in KubeVirt's quantity format.
    pub total: Quantity,
    /// `(term, amount)` in the order KubeVirt adds them.
    pub terms: Vec<(String, Quantity)>,
}

/// The decision for a launcher Pod's `compute` container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LauncherSizing {
    /// Requests for the resources virt-sizer manages: `cpu`, `memory`,
    /// `hugepages-*`. A name absent here is absent from the container.
    pub requests: BTreeMap<String, Quantity>,
    /// Limits for the same resources.
    pub limits: BTreeMap<String, Quantity>,
    /// The overhead the Pod accounts for (published in
    /// `kubevirt.io/memory-overhead-bytes`).
    pub overhead: Quantity,
    /// KubeVirt's own overhead (reported or computed) before the profile.
    pub kubevirt_overhead: Quantity,
    /// One line per computed value, with the formula's terms.
    pub explanation: Vec<String>,
    /// Things an operator should know (refused profile features, …).
    pub warnings: Vec<String>,
}

/// Whether a container resource name is one virt-sizer sizes on a launcher
/// Pod. Everything else (device plugins, ephemeral storage) is left alone.
#[must_use]
pub fn is_managed_resource(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
}

/// Computes KubeVirt's memory overhead for a VMI (`GetMemoryOverhead` plus
/// the network binding memory), for the release line in `settings`, with
/// `ratio` as `additionalGuestMemoryOverheadRatio`.
///
/// Terms (binary units), v1.6–v1.9 line: page tables `ceil(R/1000)×1000/512`
/// bytes of the VMI's *explicit* memory request `R`; virt-launcher-monitor
/// 25Mi; virt-launcher 100Mi; virtlogd 25Mi; virtqemud 40Mi; QEMU 30Mi (50Mi
/// on main); 8Mi per vCPU; 8Mi IOThread; 32Mi video (16Mi on v1.5); 128Mi
/// arm64 pflash; 1Gi VFIO; 1Mi downward-metrics volume; 10Mi per exec
/// probe plus 100Mi once; 256Mi SEV; 53Mi TPM; 100Mi dedicated CPUs or
/// Guaranteed intent; `reservedOverhead.addedOverhead`. The ratio
/// multiplies all of these (`MultiplyMemory`: `+ int64(float64(ceil(total
/// /1000)) × (ratio − 1)) × 1000`); the [`network_binding_memory`] (passt
/// 250Mi once, v1.8+; each binding plugin once) is added after it.
///
/// `memory_request_for_page_tables` is the VMI's `requests.memory` as
/// KubeVirt sees it (on v1.5 the virt-api default; from v1.7 only an
/// explicit one).
///
/// # Errors
/// [`SizingError::Overflow`] on absurd quantities.
pub fn memory_overhead(
    vmi: &VmiFacts,
    settings: &KubevirtSettings,
    ratio: f64,
    memory_request_for_page_tables: Option<Quantity>,
) -> Result<Overhead, SizingError> {
    let release = settings.release;
    let mut terms: Vec<(String, Quantity)> = Vec::new();
    let mib = |n: i64| Quantity::from_int(n * MI, Format::BinarySi);

    let request_kilo = memory_request_for_page_tables.map_or(0, |request| request.scaled_value(3));
    let page_table_bytes = request_kilo
        .checked_mul(1000)
        .map(|bytes| bytes / 512)
        .and_then(|bytes| i64::try_from(bytes).ok())
        .ok_or_else(|| overflow("page table overhead"))?;
    terms.push((
        "page tables".into(),
        Quantity::from_int(page_table_bytes, Format::DecimalSi),
    ));
    terms.push(("virt-launcher-monitor".into(), mib(25)));
    terms.push(("virt-launcher".into(), mib(100)));
    terms.push(("virtlogd".into(), mib(25)));
    terms.push(("virtqemud".into(), mib(40)));
    terms.push((
        "QEMU".into(),
        mib(if release == Release::Main { 50 } else { 30 }),
    ));
    let vcpus = vmi.cpu.vcpus().max(1);
    let vcpu_bytes = i64::try_from(vcpus)
        .ok()
        .and_then(|n| n.checked_mul(8 * MI))
        .ok_or_else(|| overflow("vCPU overhead"))?;
    terms.push((
        format!("vCPUs ({vcpus} × 8Mi)"),
        Quantity::from_int(vcpu_bytes, Format::BinarySi),
    ));
    terms.push(("IOThread".into(), mib(8)));
    if vmi.graphics {
        terms.push((
            "video".into(),
            mib(if release == Release::V1_5 { 16 } else { 32 }),
        ));
    }
    let architecture = vmi
        .architecture
        .as_deref()
        .unwrap_or(settings.architecture.as_str());
    if architecture == "arm64" {
        terms.push(("arm64 pflash".into(), mib(128)));
    }
    if vmi.vfio {
        terms.push(("VFIO".into(), mib(1024)));
    }
    if vmi.downward_metrics {
        terms.push(("downward metrics".into(), mib(1)));
    }
    let n_exec_probes = i64::from(vmi.exec_liveness_probe) + i64::from(vmi.exec_readiness_probe);
    if n_exec_probes > 0 {
        terms.push((
            format!("exec probes ({n_exec_probes} × 10Mi + 100Mi)"),
            mib(10 * n_exec_probes + 100),
        ));
    }
    if vmi.sev {
        terms.push(("SEV".into(), mib(256)));
    }
    if vmi.tpm {
        terms.push(("TPM".into(), mib(53)));
    }
    if vmi.dedicated_cpus || vmi.wants_guaranteed_qos() {
        terms.push(("dedicated CPU / Guaranteed QoS".into(), mib(100)));
    }
    if let (Some(added), false) = (vmi.reserved_overhead, release == Release::V1_5) {
        terms.push(("reservedOverhead.addedOverhead".into(), added));
    }

    let mut total = Quantity::zero(Format::DecimalSi);
    for (_, amount) in &terms {
        total = total
            .checked_add(*amount)
            .ok_or_else(|| overflow("memory overhead"))?;
    }
    let before_ratio = total;
    total = multiply_memory(total, ratio)?;
    if total != before_ratio {
        terms.push((
            "additionalGuestMemoryOverheadRatio".into(),
            total
                .checked_sub(before_ratio)
                .ok_or_else(|| overflow("memory overhead"))?,
        ));
    }

    // Network bindings: after the ratio, so not multiplied.
    for (label, amount) in network_binding_memory(vmi, settings) {
        total = total
            .checked_add(amount)
            .ok_or_else(|| overflow("memory overhead"))?;
        terms.push((label, amount));
    }
    Ok(Overhead { total, terms })
}

/// The network-binding memory KubeVirt adds to the overhead *after*
/// `additionalGuestMemoryOverheadRatio` (`pkg/network/resources/memory.go`,
/// `MemoryCalculator.Calculate`), as `(term, amount)` pairs:
///
/// * passt: 250Mi once if any interface has `passtBinding`
///   (`vmispec.HasPasstBinding`; v1.8+, so not on the `"1.5"` line);
/// * each *distinct* binding plugin an interface names and the policy's
///   `kubevirt.bindingPlugins` registers: its
///   `computeResourceOverhead.requests.memory`, once.
#[must_use]
pub fn network_binding_memory(
    vmi: &VmiFacts,
    settings: &KubevirtSettings,
) -> Vec<(String, Quantity)> {
    let mut terms: Vec<(String, Quantity)> = Vec::new();
    if settings.release != Release::V1_5 && vmi.interfaces.contains(&InterfaceBinding::Passt) {
        terms.push((
            "passt".into(),
            Quantity::from_int(250 * MI, Format::BinarySi),
        ));
    }
    let mut plugins_seen: Vec<&str> = Vec::new();
    for interface in &vmi.interfaces {
        if let InterfaceBinding::Plugin(name) = interface
            && !plugins_seen.contains(&name.as_str())
        {
            plugins_seen.push(name);
            if let Some(memory) = settings.binding_plugins.get(name) {
                terms.push((format!("binding plugin {name}"), *memory));
            }
        }
    }
    terms
}

/// The part of KubeVirt's reported overhead
/// (`kubevirt.io/memory-overhead-bytes`) that its
/// `additionalGuestMemoryOverheadRatio` multiplied: the reported
/// figure less the network-binding memory, which `CalculateMemoryOverhead`
/// adds after the ratio. A profile's `overheadRatio`
/// multiplies only this part.
///
/// `None` when the reported figure is smaller than `network_memory`: the
/// policy's `bindingPlugins` then disagree with the cluster's, and there is
/// no base to split off.
///
/// Example: passt VMI, 1 vCPU, guest 1Gi, v1.9: reported 543162368, i.e.
/// 268Mi plus passt's 250Mi ⇒ base 281018368 (268Mi).
#[must_use]
pub fn reported_base_overhead(reported: Quantity, network_memory: Quantity) -> Option<Quantity> {
    reported
        .checked_sub(network_memory)
        .filter(|base| !base.is_negative())
}

/// The smallest `base` whose [`multiply_memory`] by `ratio` reaches
/// `multiplied`: the overhead before KubeVirt applied the cluster's
/// `additionalGuestMemoryOverheadRatio`. Exact whenever `multiplied` is
/// something `MultiplyMemory` produced (it is monotone, so a binary search
/// over whole bytes finds it).
///
/// # Errors
/// [`SizingError::Overflow`] on absurd quantities.
pub fn unmultiply_memory(multiplied: Quantity, ratio: f64) -> Result<Quantity, SizingError> {
    let target = i64::try_from(multiplied.value()).map_err(|_| overflow("overhead ratio"))?;
    let (mut low, mut high) = (0_i64, target.max(0));
    while low < high {
        let middle = low + (high - low) / 2;
        let product = multiply_memory(Quantity::from_int(middle, Format::DecimalSi), ratio)?;
        if product.value() >= i128::from(target) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(Quantity::from_int(low, Format::DecimalSi))
}

/// KubeVirt's `MultiplyMemory`: `mem + int64(float64(mem.ScaledValue(Kilo))
/// × (ratio − 1.0))` kilobytes, reproduced in integer arithmetic.
///
/// # Errors
/// [`SizingError::Overflow`] when the product leaves `i64`.
pub fn multiply_memory(memory: Quantity, ratio: f64) -> Result<Quantity, SizingError> {
    let kilo = u64::try_from(memory.scaled_value(3)).map_err(|_| overflow("overhead ratio"))?;
    let addition_kilo = gofloat::multiply_memory_addition_kilo(kilo, ratio)
        .ok_or_else(|| overflow("overhead ratio"))?;
    memory
        .checked_add(Quantity::from_scaled(addition_kilo, 3))
        .ok_or_else(|| overflow("overhead ratio"))
}

/// KubeVirt's CPU request for `vcpus` at `ratio`: `float64(vcpus) /
/// float64(ratio)`, printed with `%g` (or `%gm` of the value × 1000 below
/// one CPU), then parsed. 1/10 ⇒ `100m`, 16/10 ⇒ `1600m`, 1/3 ⇒ `333333334n`.
///
/// # Errors
/// [`SizingError::Overflow`] if the printed value does not parse back.
pub fn cpu_request_for_ratio(vcpus: u64, ratio: u32) -> Result<Quantity, SizingError> {
    let text = gofloat::cpu_ratio_text(vcpus, ratio);
    Quantity::parse(&text).map_err(|_| overflow("cpu allocation ratio"))
}

/// Sizes the launcher Pod's `compute` container for `input.vmi` under
/// `input.profile`.
///
/// # Errors
/// Overflow on absurd quantities, or an [`SizingError::Invariant`] if a hard
/// rule would be broken.
#[expect(
    clippy::too_many_lines,
    reason = "one renderer pass, kept in KubeVirt's option order so it can be read against the Go source"
)]
pub fn size_launcher(input: &LauncherInput<'_>) -> Result<LauncherSizing, SizingError> {
    let LauncherInput {
        vmi,
        settings,
        profile,
        namespace_labels,
        auto_limits,
        reported_overhead,
    } = *input;
    let release = settings.release;
    let hugepages = vmi.has_hugepages();
    let dedicated = vmi.dedicated_cpus;
    let mut explanation = Vec::new();
    let mut warnings = Vec::new();

    // The renderer's four lists. `vm_*` start as the VMI's and win the merge.
    let mut vm_requests = vmi.requests.clone();
    let mut vm_limits = vmi.limits.clone();
    let mut calc_requests: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut calc_limits: BTreeMap<String, Quantity> = BTreeMap::new();

    // 1. WithMemoryRequests (v1.7+; on v1.5 virt-api wrote the same value
    //    into the VMI, where the page-table term then reads it).
    let mut memory_base_note = String::new();
    let limit = vm_limits.get("memory").copied();
    let has_request = vm_requests.get("memory").is_some_and(|r| !r.is_zero());
    if let (Some(limit), false) = (limit, has_request)
        && !limit.is_zero()
    {
        vm_requests.insert("memory".into(), limit);
        memory_base_note = format!("limit {limit}");
    }
    if !vm_requests.contains_key("memory") {
        if let Some(guest) = vmi.guest.filter(|guest| guest.value() > 0) {
            let percent = profile.memory_overcommit_percent;
            if percent == 100 || hugepages || dedicated {
                vm_requests.insert("memory".into(), guest);
                memory_base_note = format!("guest {guest}");
                if percent != 100 {
                    warnings.push(format!(
                        "memoryOvercommitPercent {percent} not applied: {} memory is never overcommitted",
                        if hugepages { "hugepages" } else { "dedicated-CPU" }
                    ));
                }
            } else {
                let guest_bytes = guest.value();
                let value = guest_bytes
                    .checked_mul(100)
                    .map(|scaled| scaled / i128::from(percent))
                    .and_then(|bytes| i64::try_from(bytes).ok())
                    .ok_or_else(|| overflow("memory overcommit"))?;
                let overcommitted = Quantity::from_int(value, guest.format());
                vm_requests.insert("memory".into(), overcommitted);
                memory_base_note = format!("guest {guest} × 100/{percent} = {overcommitted}");
            }
        }
    } else if memory_base_note.is_empty()
        && let Some(request) = vm_requests.get("memory")
    {
        memory_base_note = format!("VMI request {request}");
    }
    let page_table_request = match release {
        Release::V1_5 => vm_requests.get("memory").copied(),
        Release::V1_9 | Release::Main => vmi.explicit_memory_request,
    };

    // 2. CPU.
    let io_threads = u64::from(vmi.io_thread_supplemental);
    if dedicated {
        let vcpus = vmi.cpu.vcpus();
        if vcpus != 0 {
            let total = cpu_count(vcpus + io_threads)?;
            vm_limits.insert("cpu".into(), total);
            vm_requests.insert("cpu".into(), total);
        } else {
            let io = cpu_count(io_threads)?;
            for list in [&mut vm_limits, &mut vm_requests] {
                if let Some(cpu) = list.get_mut("cpu") {
                    *cpu = cpu.checked_add(io).ok_or_else(|| overflow("cpu"))?;
                }
            }
        }
        let mut cpu_note = format!(
            "{vcpus} dedicated vCPU{}",
            if io_threads > 0 {
                format!(" + {io_threads} IOThread")
            } else {
                String::new()
            }
        );
        if vmi.isolate_emulator_thread {
            let limit_cpus = vm_limits.get("cpu").map_or(0, Quantity::value);
            let even_parity = vmi
                .annotations
                .contains_key(EMULATOR_THREAD_EVEN_PARITY_ANNOTATION);
            let emulator = if even_parity && (limit_cpus + i128::from(io_threads)) % 2 == 0 {
                2
            } else {
                1
            };
            let emulator_cpus = cpu_count(emulator)?;
            let limit_cpu = vm_limits
                .get("cpu")
                .copied()
                .unwrap_or(Quantity::zero(Format::BinarySi));
            vm_limits.insert(
                "cpu".into(),
                limit_cpu
                    .checked_add(emulator_cpus)
                    .ok_or_else(|| overflow("cpu"))?,
            );
            if let Some(cpu) = vm_requests.get_mut("cpu") {
                *cpu = cpu
                    .checked_add(emulator_cpus)
                    .ok_or_else(|| overflow("cpu"))?;
            }
            cpu_note.push_str(&format!(" + {emulator} emulator thread"));
        }
        if let Some(cpu) = vm_requests.get("cpu") {
            explanation.push(format!(
                "cpu request = limit {cpu}: {cpu_note} (dedicated CPUs are never overcommitted)"
            ));
        }
        if let Some(memory) = vm_requests.get("memory").copied() {
            vm_limits.insert("memory".into(), memory);
        }
    } else {
        let total = if release == Release::V1_5 {
            vmi.cpu.vcpus()
        } else {
            vmi.cpu.vcpus() + io_threads
        };
        let ratio = profile.cpu_allocation_ratio;
        if total != 0 && ratio > 0 {
            let computed = cpu_request_for_ratio(total, ratio)?;
            calc_requests.insert("cpu".into(), computed);
            let with_cpu_limits = auto_limits.cpu && !vmi.limits.contains_key("cpu");
            if with_cpu_limits {
                calc_limits.insert(
                    "cpu".into(),
                    cpu_count(total)?.with_format(Format::DecimalSi),
                );
            }
            let terms = if io_threads > 0 && release != Release::V1_5 {
                format!("({} vCPU + {io_threads} IOThread)", vmi.cpu.vcpus())
            } else {
                format!("{total} vCPU")
            };
            match vm_requests.get("cpu") {
                Some(explicit) => explanation.push(format!(
                    "cpu request {explicit}: the VMI's own request beats {terms} / cpuAllocationRatio {ratio} = {computed}"
                )),
                None => explanation.push(format!(
                    "cpu request {computed} = {terms} / cpuAllocationRatio {ratio}"
                )),
            }
            if with_cpu_limits {
                explanation.push(format!(
                    "cpu limit {total}: KubeVirt's automatic CPU limit (namespace quota or autoCPULimitNamespaceLabelSelector)"
                ));
            }
        }
    }

    // 3. Overhead, then hugepages or WithMemoryOverhead.
    let (kubevirt_overhead, overhead_terms) = match reported_overhead {
        Some(reported) => overhead_from_reported(reported, vmi, settings, profile, &mut warnings)?,
        None => {
            let computed = memory_overhead(
                vmi,
                settings,
                profile.overhead_ratio.value,
                page_table_request,
            )?;
            let terms = computed
                .terms
                .iter()
                .filter(|(_, amount)| !amount.is_zero())
                .map(|(label, amount)| format!("{label} {amount}"))
                .collect::<Vec<_>>()
                .join(" + ");
            (computed.total, terms)
        }
    };
    let overhead = kubevirt_overhead
        .checked_add(profile.overhead_margin)
        .ok_or_else(|| overflow("memory overhead"))?;
    explanation.push(if profile.overhead_margin.is_zero() {
        format!(
            "overhead {overhead} = {overhead_terms} (KubeVirt {})",
            release.as_str()
        )
    } else {
        format!(
            "overhead {overhead} = {kubevirt_overhead} [{overhead_terms}] + overheadMargin {}",
            profile.overhead_margin
        )
    });

    let omit_overhead =
        vmi.overcommit_guest_overhead || profile.guest_overhead == GuestOverhead::Omit;
    if let Some(page_size) = vmi.hugepages_page_size.as_deref() {
        let page_size_quantity =
            Quantity::parse(page_size).map_err(|source| SizingError::InvalidQuantity {
                field: "spec.domain.memory.hugepages.pageSize".into(),
                source,
            })?;
        let resource = format!("hugepages-{page_size}");
        let mut hugepages_amount = vm_requests
            .get("memory")
            .copied()
            .unwrap_or(Quantity::zero(Format::DecimalSi));
        if let Some(guest) = vmi.guest
            && hugepages_amount.value() > guest.value()
        {
            hugepages_amount = guest;
        }
        let page_bytes = page_size_quantity.value();
        if page_bytes <= 0 {
            return Err(SizingError::InvalidField {
                field: "spec.domain.memory.hugepages.pageSize".into(),
                message: format!("page size {page_size} is not positive"),
            });
        }
        let amount_bytes = hugepages_amount.value();
        if amount_bytes % page_bytes != 0 {
            let pages = ceil_div(amount_bytes, page_bytes);
            let rounded = i64::try_from(pages * page_bytes).map_err(|_| overflow("hugepages"))?;
            let rounded = Quantity::from_int(rounded, Format::BinarySi);
            warnings.push(format!(
                "{resource} {hugepages_amount} is not a whole number of {page_size} pages: rounded up to {rounded}"
            ));
            hugepages_amount = rounded;
        }
        calc_requests.insert(resource.clone(), hugepages_amount);
        calc_limits.insert(resource.clone(), hugepages_amount);
        explanation.push(format!(
            "{resource} request = limit {hugepages_amount}: {memory_base_note} in {page_size} pages (never overcommitted)"
        ));

        let guest_value = vmi.guest.map(|guest| guest.value());
        let mut request_diff = Quantity::zero(Format::DecimalSi);
        let mut limit_diff = Quantity::zero(Format::DecimalSi);
        if let (Some(guest), Some(guest_value)) = (vmi.guest, guest_value) {
            if let Some(request) = vm_requests
                .get("memory")
                .filter(|r| r.value() > guest_value)
            {
                request_diff = diff(*request, guest)?;
            }
            if let Some(limit) = vm_limits.get("memory").filter(|l| l.value() > guest_value) {
                limit_diff = diff(*limit, guest)?;
            }
        }
        let request = request_diff
            .checked_add(overhead)
            .ok_or_else(|| overflow("memory"))?;
        vm_requests.insert("memory".into(), request);
        explanation.push(format!(
            "memory request {request} = overhead {overhead}{} (guest memory is in hugepages)",
            if request_diff.is_zero() {
                String::new()
            } else {
                format!(" + request above guest {request_diff}")
            }
        ));
        if vm_limits.contains_key("memory") {
            let limit = limit_diff
                .checked_add(overhead)
                .ok_or_else(|| overflow("memory"))?;
            vm_limits.insert("memory".into(), limit);
        }
        if profile.guest_overhead == GuestOverhead::Omit || vmi.overcommit_guest_overhead {
            warnings.push(
                "guestOverhead Omit ignored: hugepage VMIs always request their overhead".into(),
            );
        }
    } else {
        let base = vm_requests
            .get("memory")
            .copied()
            .unwrap_or(Quantity::zero(Format::DecimalSi));
        let omit = omit_overhead && !dedicated;
        if omit_overhead && dedicated {
            warnings.push(
                "guestOverhead Omit ignored: dedicated-CPU VMIs keep Guaranteed QoS and request their overhead"
                    .into(),
            );
        }
        let mut request = if omit {
            base
        } else {
            base.checked_add(overhead)
                .ok_or_else(|| overflow("memory"))?
        };
        // The memory-hotplug floor: virt-handler's `hotplugMemory`
        // (pkg/virt-handler/migration-target.go) refuses a hotplug unless
        // the Pod's request ≥ VMI requests.memory + overhead. A profile's
        // `guestOverhead: Omit` never goes below it; a VMI that asks for
        // `overcommitGuestOverhead` itself is sized as KubeVirt sizes it,
        // below the floor, and told what that costs.
        if let Some(explicit) = vmi.explicit_memory_request {
            let floor = explicit
                .checked_add(overhead)
                .ok_or_else(|| overflow("memory"))?;
            if request < floor && vmi.overcommit_guest_overhead {
                warnings.push(format!(
                    "KubeVirt will refuse memory hotplug for this VM: the VMI asks for overcommitGuestOverhead, so the memory request {request} is below the VMI request {explicit} + overhead {overhead} = {floor} that virt-handler's hotplug check needs"
                ));
            } else if request < floor {
                warnings.push(format!(
                    "memory request raised from {request} to {floor}: memory hotplug needs the VMI request {explicit} + overhead {overhead}"
                ));
                request = floor;
            }
        }
        vm_requests.insert("memory".into(), request);
        explanation.push(if omit && request == base {
            format!(
                "memory request {request} = {memory_base_note} (overhead not requested: {})",
                if vmi.overcommit_guest_overhead {
                    "VMI overcommitGuestOverhead"
                } else {
                    "profile guestOverhead Omit"
                }
            )
        } else {
            format!("memory request {request} = {memory_base_note} + overhead {overhead}")
        });
        if let Some(limit) = vm_limits.get("memory").copied() {
            let limit = limit
                .checked_add(overhead)
                .ok_or_else(|| overflow("memory"))?;
            vm_limits.insert("memory".into(), limit);
            explanation.push(format!(
                "memory limit {limit} = limit + overhead {overhead}"
            ));
        }
    }

    // 4. WithAutoMemoryLimits.
    if auto_limits.memory && !vmi.limits.contains_key("memory") {
        let label = namespace_labels.get(AUTO_MEMORY_LIMITS_RATIO_LABEL);
        let ratio_text = label
            .filter(|text| gofloat::parse(text).is_some_and(|ratio| ratio >= 1.0))
            .map_or(DEFAULT_AUTO_MEMORY_LIMITS_RATIO, String::as_str);
        let ratio =
            gofloat::parse(ratio_text).ok_or_else(|| overflow("auto memory limit ratio"))?;
        let request = vm_requests
            .get("memory")
            .copied()
            .unwrap_or(Quantity::zero(Format::DecimalSi));
        let request_bytes = u64::try_from(request.value()).map_err(|_| overflow("memory"))?;
        let value = gofloat::mul_trunc(request_bytes, ratio)
            .ok_or_else(|| overflow("auto memory limit"))?;
        let limit = Quantity::from_int(value, request.format());
        calc_limits.insert("memory".into(), limit);
        explanation.push(format!(
            "memory limit {limit} = request × {ratio_text} (KubeVirt's automatic memory limit)"
        ));
    }

    // 5. The merge: the VMI's (and pinned/overhead-adjusted) values win.
    let mut requests = calc_requests;
    requests.extend(vm_requests);
    let mut limits = calc_limits;
    limits.extend(vm_limits);
    requests.retain(|name, _| is_managed_resource(name));
    limits.retain(|name, _| is_managed_resource(name));

    // 6. The profile's limits policy, where the VMI set no limit itself.
    if !dedicated {
        apply_limits_policy(profile, vmi, &requests, &mut limits, &mut explanation)?;
    }

    check_invariants(vmi, &requests, &limits)?;
    Ok(LauncherSizing {
        requests,
        limits,
        overhead,
        kubevirt_overhead,
        explanation,
        warnings,
    })
}

/// The profile's overhead from KubeVirt's reported one, with its
/// explanation: `overheadRatio` multiplies the [`reported_base_overhead`]
/// (`MultiplyMemory`), and the network-binding memory is added back
/// unmultiplied, as KubeVirt adds it after its own ratio.
fn overhead_from_reported(
    reported: Quantity,
    vmi: &VmiFacts,
    settings: &KubevirtSettings,
    profile: &Profile,
    warnings: &mut Vec<String>,
) -> Result<(Quantity, String), SizingError> {
    let ratio_text = &profile.overhead_ratio.text;
    let cluster = &settings.cluster_overhead_ratio;
    if profile.overhead_ratio.value.to_bits() == cluster.value.to_bits() {
        // The ratio KubeVirt already applied (the KubeVirt CR's, 1.0
        // without one): the reported figure is the answer.
        return Ok((reported, format!("KubeVirt's reported overhead {reported}")));
    }
    let network_terms = network_binding_memory(vmi, settings);
    let mut network = Quantity::zero(Format::DecimalSi);
    for (_, amount) in &network_terms {
        network = network
            .checked_add(*amount)
            .ok_or_else(|| overflow("memory overhead"))?;
    }
    let base = match reported_base_overhead(reported, network) {
        Some(base) => base,
        None => {
            warnings.push(format!(
                "KubeVirt's reported overhead {reported} is below the network binding memory {network} the policy computes for this VMI (check kubevirt.bindingPlugins): overheadRatio multiplies all of it"
            ));
            network = Quantity::zero(Format::DecimalSi);
            reported
        }
    };
    // KubeVirt multiplied the base by the cluster's ratio; undo that first.
    let (base, rebased) = if cluster.is_one() {
        (base, String::new())
    } else {
        let unmultiplied = unmultiply_memory(base, cluster.value)?;
        let note = format!(
            " (base {unmultiplied} before the cluster's additionalGuestMemoryOverheadRatio {})",
            cluster.text
        );
        (unmultiplied, note)
    };
    let total = multiply_memory(base, profile.overhead_ratio.value)?
        .checked_add(network)
        .ok_or_else(|| overflow("memory overhead"))?;
    let terms = if !rebased.is_empty() {
        format!(
            "KubeVirt's reported overhead {reported}{rebased} × overheadRatio {ratio_text}{}",
            if network.is_zero() {
                String::new()
            } else {
                format!(" + network bindings {network} (not multiplied)")
            }
        )
    } else if network.is_zero() {
        format!("KubeVirt's reported overhead {reported} × overheadRatio {ratio_text}")
    } else {
        let labels = network_terms
            .iter()
            .map(|(label, amount)| format!("{label} {amount}"))
            .collect::<Vec<_>>()
            .join(" + ");
        format!(
            "(KubeVirt's reported overhead {reported} − {labels}) × overheadRatio {ratio_text} + {labels} (network bindings are not multiplied)"
        )
    };
    Ok((total, terms))
}

fn apply_limits_policy(
    profile: &Profile,
    vmi: &VmiFacts,
    requests: &BTreeMap<String, Quantity>,
    limits: &mut BTreeMap<String, Quantity>,
    explanation: &mut Vec<String>,
) -> Result<(), SizingError> {
    for (resource, ratio, unit_nanos) in [
        ("cpu", profile.limits_ratio.cpu, 1_000_000_i128),
        ("memory", profile.limits_ratio.memory, 1_000_000_000_i128),
    ] {
        if vmi.limits.contains_key(resource) {
            continue;
        }
        let Some(request) = requests.get(resource).copied() else {
            continue;
        };
        let limit = match profile.limits {
            LimitsPolicy::None => continue,
            LimitsPolicy::EqualRequests => {
                explanation.push(format!(
                    "{resource} limit {request} = request (profile {}: limits EqualRequests)",
                    profile.name
                ));
                request
            }
            LimitsPolicy::Ratio => {
                let Some(ratio) = ratio else { continue };
                // request × ratio, rounded up to a whole milli-CPU or byte.
                let product = request
                    .nanos()
                    .checked_mul(ratio.nanos())
                    .ok_or_else(|| overflow("limits ratio"))?;
                let nanos = ceil_div(product, 1_000_000_000);
                let nanos = ceil_div(nanos, unit_nanos) * unit_nanos;
                let limit = Quantity::from_nanos(nanos, request.format());
                explanation.push(format!(
                    "{resource} limit {limit} = request {request} × limitsRatio {ratio} (profile {})",
                    profile.name
                ));
                limit
            }
        };
        limits.insert(resource.into(), limit);
    }
    Ok(())
}

fn check_invariants(
    vmi: &VmiFacts,
    requests: &BTreeMap<String, Quantity>,
    limits: &BTreeMap<String, Quantity>,
) -> Result<(), SizingError> {
    for (name, quantity) in requests.iter().chain(limits) {
        // Kubernetes keeps resource values in int64 units.
        if quantity.value() > i128::from(i64::MAX) {
            return Err(SizingError::Overflow {
                what: format!("{name} {quantity}"),
            });
        }
    }
    for (name, request) in requests {
        if request.is_negative() {
            return Err(SizingError::Negative {
                field: format!("requests.{name}"),
                value: request.to_string(),
            });
        }
        if let Some(limit) = limits.get(name)
            && request > limit
        {
            return Err(SizingError::Invariant(format!(
                "{name} request {request} exceeds limit {limit}"
            )));
        }
        if name.starts_with("hugepages-") && limits.get(name) != Some(request) {
            return Err(SizingError::Invariant(format!(
                "{name} request {request} differs from its limit"
            )));
        }
    }
    if vmi.dedicated_cpus {
        for name in ["cpu", "memory"] {
            if let (Some(request), Some(limit)) = (requests.get(name), limits.get(name))
                && request != limit
            {
                return Err(SizingError::Invariant(format!(
                    "dedicated-CPU VMI lost Guaranteed QoS: {name} {request} ≠ {limit}"
                )));
            }
        }
    }
    Ok(())
}

fn diff(minuend: Quantity, subtrahend: Quantity) -> Result<Quantity, SizingError> {
    minuend
        .checked_sub(subtrahend)
        .ok_or_else(|| overflow("memory"))
}

fn cpu_count(count: u64) -> Result<Quantity, SizingError> {
    i64::try_from(count)
        .map(|count| Quantity::from_int(count, Format::BinarySi))
        .map_err(|_| overflow("cpu"))
}

/// `⌈numerator / denominator⌉` for a non-negative numerator and a positive
/// denominator (`i128::div_ceil` is not stable).
fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    numerator / denominator + i128::from(numerator % denominator != 0)
}

fn overflow(what: &str) -> SizingError {
    SizingError::Overflow { what: what.into() }
}

#[cfg(test)]
#[path = "kubevirt_tests.rs"]
mod tests;
