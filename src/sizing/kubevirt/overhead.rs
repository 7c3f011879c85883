//! KubeVirt's memory overhead of one VMI: `GetMemoryOverhead`
//! (`pkg/hypervisor/kvm/hypervisorbackend.go` from v1.8, before that
//! `renderresources.go`) plus the network binding memory
//! (`pkg/network/resources/memory.go`), as `CalculateMemoryOverhead` adds
//! them; and the overhead the profile puts on a Pod that reports KubeVirt's
//! own figure in `kubevirt.io/memory-overhead-bytes`.
//!
//! The table, for the release lines virt-sizer models:
//!
//! | term | amount | when |
//! |---|---|---|
//! | page tables | `ceil(R/1000)×1000/512` bytes | `R` = the VMI's memory request |
//! | virt-launcher-monitor, virt-launcher, virtlogd, virtqemud | 25Mi, 100Mi, 25Mi, 40Mi | always |
//! | QEMU | 30Mi (50Mi on main) | always |
//! | vCPUs, IOThread | 8Mi each | always |
//! | video | 32Mi (16Mi on 1.5) | `autoattachGraphicsDevice` unset or true |
//! | arm64 pflash | 128Mi | arm64 |
//! | VFIO | 1Gi once | host devices, GPUs, SR-IOV |
//! | downward metrics | 1Mi | a `downwardMetrics` volume |
//! | exec probes | 10Mi each + 100Mi once | exec liveness/readiness probes |
//! | SEV, TPM | 256Mi, 53Mi | SEV/SNP launch security, a TPM |
//! | dedicated CPU / Guaranteed QoS | 100Mi | |
//! | `reservedOverhead.addedOverhead` | as given | v1.8+ |
//! | × `additionalGuestMemoryOverheadRatio` | `MultiplyMemory` | all of the above |
//! | network bindings | passt 250Mi (v1.8+), each plugin once | after the ratio |

use super::{MI, overflow};
use crate::sizing::error::SizingError;
use crate::sizing::explain::Terms;
use crate::sizing::gofloat;
use crate::sizing::policy::{KubevirtSettings, Profile, Release};
use crate::sizing::quantity::{Format, Quantity};
use crate::sizing::vmi::{InterfaceBinding, VmiFacts};
use crate::terms;

/// One overhead term: its label and amount.
type Term = (Terms, Quantity);

/// The memory overhead of one VMI, with its terms for the explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overhead {
    /// The sum, in KubeVirt's quantity format.
    pub total: Quantity,
    /// `(term, amount)` in the order KubeVirt adds them.
    pub terms: Vec<Term>,
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
    let mut terms = process_terms(vmi, settings.release, memory_request_for_page_tables)?;
    terms.extend(feature_terms(vmi, settings));

    let before_ratio = sum(&terms)?;
    let mut total = multiply_memory(before_ratio, ratio)?;
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

/// The terms every VMI pays, in `GetMemoryOverhead`'s order: page tables
/// (one byte per 512 bytes of the memory request, in whole kilobytes), the
/// launcher's processes (virt-launcher-monitor, virt-launcher, virtlogd,
/// virtqemud, QEMU), 8Mi per vCPU and 8Mi for the IOThread.
fn process_terms(
    vmi: &VmiFacts,
    release: Release,
    memory_request_for_page_tables: Option<Quantity>,
) -> Result<Vec<Term>, SizingError> {
    let request_kilo = memory_request_for_page_tables.map_or(0, |request| request.scaled_value(3));
    let page_table_bytes = request_kilo
        .checked_mul(1000)
        .map(|bytes| bytes / 512)
        .and_then(|bytes| i64::try_from(bytes).ok())
        .ok_or_else(|| overflow("page table overhead"))?;
    let vcpus = vmi.cpu.vcpus().max(1);
    let vcpu_bytes = i64::try_from(vcpus)
        .ok()
        .and_then(|n| n.checked_mul(8 * MI))
        .ok_or_else(|| overflow("vCPU overhead"))?;
    let qemu_mib = if release == Release::Main { 50 } else { 30 };
    Ok(vec![
        (
            "page tables".into(),
            Quantity::from_int(page_table_bytes, Format::DecimalSi),
        ),
        ("virt-launcher-monitor".into(), mib(25)),
        ("virt-launcher".into(), mib(100)),
        ("virtlogd".into(), mib(25)),
        ("virtqemud".into(), mib(40)),
        ("QEMU".into(), mib(qemu_mib)),
        (
            terms!["vCPUs (", vcpus, " × 8Mi)"],
            Quantity::from_int(vcpu_bytes, Format::BinarySi),
        ),
        ("IOThread".into(), mib(8)),
    ])
}

/// The terms a VMI pays for what it uses, in `GetMemoryOverhead`'s order:
/// video RAM, arm64 pflash, VFIO, the downward-metrics volume, exec probes,
/// SEV, TPM, dedicated CPUs / Guaranteed QoS, `reservedOverhead`.
fn feature_terms(vmi: &VmiFacts, settings: &KubevirtSettings) -> Vec<Term> {
    let release = settings.release;
    let architecture = vmi
        .architecture
        .as_deref()
        .unwrap_or(settings.architecture.as_str());
    let n_exec_probes = i64::from(vmi.exec_liveness_probe) + i64::from(vmi.exec_readiness_probe);
    let video_mib = if release == Release::V1_5 { 16 } else { 32 };
    let optional_terms = [
        vmi.graphics.then(|| ("video".into(), mib(video_mib))),
        (architecture == "arm64").then(|| ("arm64 pflash".into(), mib(128))),
        vmi.vfio.then(|| ("VFIO".into(), mib(1024))),
        vmi.downward_metrics
            .then(|| ("downward metrics".into(), mib(1))),
        (n_exec_probes > 0).then(|| {
            (
                terms![
                    "exec probes (",
                    n_exec_probes.unsigned_abs(),
                    " × 10Mi + 100Mi)"
                ],
                mib(10 * n_exec_probes + 100),
            )
        }),
        vmi.sev.then(|| ("SEV".into(), mib(256))),
        vmi.tpm.then(|| ("TPM".into(), mib(53))),
        (vmi.dedicated_cpus || vmi.wants_guaranteed_qos())
            .then(|| ("dedicated CPU / Guaranteed QoS".into(), mib(100))),
        vmi.reserved_overhead
            .filter(|_| release != Release::V1_5)
            .map(|added| ("reservedOverhead.addedOverhead".into(), added)),
    ];
    optional_terms.into_iter().flatten().collect()
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
pub fn network_binding_memory(vmi: &VmiFacts, settings: &KubevirtSettings) -> Vec<Term> {
    let mut terms: Vec<Term> = Vec::new();
    if settings.release != Release::V1_5 && vmi.interfaces.contains(&InterfaceBinding::Passt) {
        terms.push(("passt".into(), mib(250)));
    }
    let mut plugins_seen: Vec<&str> = Vec::new();
    for interface in &vmi.interfaces {
        if let InterfaceBinding::Plugin(name) = interface
            && !plugins_seen.contains(&name.as_str())
        {
            plugins_seen.push(name);
            if let Some(memory) = settings.binding_plugins.get(name) {
                terms.push((terms!["binding plugin ", name.clone()], *memory));
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

/// The profile's overhead from KubeVirt's reported one, with its
/// explanation: `overheadRatio` multiplies the [`reported_base_overhead`]
/// (`MultiplyMemory`), and the network-binding memory is added back
/// unmultiplied, as KubeVirt adds it after its own ratio.
pub(super) fn overhead_from_reported(
    reported: Quantity,
    vmi: &VmiFacts,
    settings: &KubevirtSettings,
    profile: &Profile,
    warnings: &mut Vec<String>,
) -> Result<(Quantity, Terms), SizingError> {
    let cluster = &settings.cluster_overhead_ratio;
    if profile.overhead_ratio.value.to_bits() == cluster.value.to_bits() {
        // The ratio KubeVirt already applied (the KubeVirt CR's, 1.0
        // without one): the reported figure is the answer.
        return Ok((reported, terms!["KubeVirt's reported overhead ", reported]));
    }
    let network_terms = network_binding_memory(vmi, settings);
    let mut network = sum(&network_terms)?;
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
        (base, Terms::new())
    } else {
        let unmultiplied = unmultiply_memory(base, cluster.value)?;
        let note = terms![
            " (base ",
            unmultiplied,
            " before the cluster's additionalGuestMemoryOverheadRatio ",
            cluster.text.clone(),
            ")"
        ];
        (unmultiplied, note)
    };
    let total = multiply_memory(base, profile.overhead_ratio.value)?
        .checked_add(network)
        .ok_or_else(|| overflow("memory overhead"))?;
    let terms = reported_terms(reported, rebased, profile, network, network_terms);
    Ok((total, terms))
}

/// The explanation of [`overhead_from_reported`]'s figure: the reported
/// overhead (rebased before the cluster's ratio when there is one) times
/// the profile's ratio, with the network bindings named apart.
fn reported_terms(
    reported: Quantity,
    rebased: Terms,
    profile: &Profile,
    network: Quantity,
    network_terms: Vec<Term>,
) -> Terms {
    let ratio_text = profile.overhead_ratio.text.clone();
    if !rebased.is_empty() {
        terms![
            "KubeVirt's reported overhead ",
            reported,
            rebased,
            " × overheadRatio ",
            ratio_text,
            (!network.is_zero()).then(|| terms![
                " + network bindings ",
                network,
                " (not multiplied)"
            ])
        ]
    } else if network.is_zero() {
        terms![
            "KubeVirt's reported overhead ",
            reported,
            " × overheadRatio ",
            ratio_text
        ]
    } else {
        let labels = Terms::joined(
            network_terms
                .into_iter()
                .map(|(label, amount)| terms![label, " ", amount]),
            " + ",
        );
        terms![
            "(KubeVirt's reported overhead ",
            reported,
            " − ",
            labels.clone(),
            ") × overheadRatio ",
            ratio_text,
            " + ",
            labels,
            " (network bindings are not multiplied)"
        ]
    }
}

/// Σ of the terms' amounts, starting from a zero `DecimalSI` quantity (Go's
/// `Add` on a zero quantity takes the other operand's format).
fn sum(terms: &[Term]) -> Result<Quantity, SizingError> {
    terms
        .iter()
        .try_fold(Quantity::zero(Format::DecimalSi), |total, (_, amount)| {
            total.checked_add(*amount)
        })
        .ok_or_else(|| overflow("memory overhead"))
}

/// `n` MiB as a `BinarySI` quantity.
fn mib(n: i64) -> Quantity {
    Quantity::from_int(n * MI, Format::BinarySi)
}
