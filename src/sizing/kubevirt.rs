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

use super::explain::{Explanation, ResourceField, Section};
use crate::terms;
use std::collections::BTreeMap;

use super::error::SizingError;
use super::gofloat;
use super::policy::{KubevirtSettings, LimitsPolicy, Profile};
use super::quantity::Quantity;
use super::vmi::VmiFacts;
use render::{Rendered, Renderer};

mod overhead;
mod render;

pub use overhead::{
    Overhead, memory_overhead, multiply_memory, network_binding_memory, reported_base_overhead,
    unmultiply_memory,
};

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
    pub explanation: Explanation,
    /// Things an operator should know (refused profile features, …).
    pub warnings: Vec<String>,
}

/// Whether a container resource name is one virt-sizer sizes on a launcher
/// Pod. Everything else (device plugins, ephemeral storage) is left alone.
#[must_use]
pub fn is_managed_resource(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
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
/// KubeVirt's renderer options run in `VMIResourcePredicates` order, each a
/// step named after its Go counterpart (`WithMemoryRequests`,
/// `WithCPUPinning` or `WithoutDedicatedCPU`, `CalculateMemoryOverhead`,
/// `WithHugePages` or `WithMemoryOverhead`, `WithAutoMemoryLimits`, the
/// merge); then the profile's limits policy and the hard rules.
///
/// # Errors
/// Overflow on absurd quantities, or an [`SizingError::Invariant`] if a hard
/// rule would be broken.
pub fn size_launcher(input: &LauncherInput<'_>) -> Result<LauncherSizing, SizingError> {
    let vmi = input.vmi;
    let mut renderer = Renderer::new(input);
    let memory_base = renderer.with_memory_requests()?;
    if vmi.dedicated_cpus {
        renderer.with_cpu_pinning()?;
    } else {
        renderer.without_dedicated_cpu()?;
    }
    let (kubevirt_overhead, overhead) = renderer.calculate_memory_overhead()?;
    match vmi.hugepages_page_size.as_deref() {
        Some(page_size) => renderer.with_hugepages(page_size, overhead, memory_base)?,
        None => renderer.with_memory_overhead(overhead, memory_base)?,
    }
    if input.auto_limits.memory && !vmi.limits.contains_key("memory") {
        renderer.with_auto_memory_limits()?;
    }
    let Rendered {
        requests,
        mut limits,
        mut explanation,
        warnings,
    } = renderer.merge();

    // The profile's limits policy, where the VMI set no limit itself; then
    // the hard rules.
    if !vmi.dedicated_cpus {
        apply_limits_policy(input.profile, vmi, &requests, &mut limits, &mut explanation)?;
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

// === The profile layer and the hard rules ===

/// The profile's `limits` policy, for each of `cpu` and `memory` the VMI
/// set no limit for: `EqualRequests` (limit = request) or `Ratio` (request
/// × `limitsRatio`, rounded up to a whole millicore or byte).
fn apply_limits_policy(
    profile: &Profile,
    vmi: &VmiFacts,
    requests: &BTreeMap<String, Quantity>,
    limits: &mut BTreeMap<String, Quantity>,
    explanation: &mut Explanation,
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
                explanation.formula(
                    ResourceField::new(Section::Limits, resource),
                    terms![resource, " limit ", request],
                    " = ",
                    terms![
                        "request (profile ",
                        profile.name.clone(),
                        ": limits EqualRequests)"
                    ],
                );
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
                explanation.formula(
                    ResourceField::new(Section::Limits, resource),
                    terms![resource, " limit ", limit],
                    " = ",
                    terms![
                        "request ",
                        request,
                        " × limitsRatio ",
                        ratio,
                        " (profile ",
                        profile.name.clone(),
                        ")"
                    ],
                );
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
