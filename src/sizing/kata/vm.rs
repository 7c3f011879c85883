//! The VM a Kata sandbox boots and runs, per runtime and mode, from the
//! containers as the kubelet starts them.

use super::kubelet::{CFS_PERIOD_US, PodContainer, Role, SandboxLimits};
use super::vcpus::Vcpus;
use super::{KataClass, MIB_BYTES, VmEstimate};
use crate::sizing::explain::{Explanation, Terms};
use crate::terms;

/// Kata's `acpiMemoryHotplugFactor`: one ACPI memory hot-add adds at most
/// 48 times the memory the guest already has (`src/runtime/virtcontainers/sandbox.go`,
/// 3.32.0).
const ACPI_MEMORY_HOTPLUG_FACTOR: u64 = 48;

/// The VM's starting point once configuration and annotations are read:
/// `NumVCPUsF` and `MemorySize`, before `validateHypervisorConfig`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Base {
    /// `default_vcpus`, or the annotation's value.
    pub(super) vcpus: Vcpus,
    /// `default_memory` in MiB, or the annotation's value.
    pub(super) memory_mib: u64,
}

/// How the explanation names the sums of limits: `Σ … limits` for a Pod
/// without init containers; with them, `Pod … limit` where Kubernetes'
/// init-container rules make the figure, and the running containers' sum
/// where Kata adds up the containers that still run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Labels {
    cpu: &'static str,
    memory: &'static str,
    running_cpu: &'static str,
    running_memory: &'static str,
}

impl Labels {
    /// The labels for a Pod with or without init containers.
    pub(super) fn new(has_init_containers: bool) -> Labels {
        if has_init_containers {
            Labels {
                cpu: "Pod cpu limit ",
                memory: "Pod memory limit ",
                running_cpu: "Σ cpu limits of sidecars and containers ",
                running_memory: "Σ memory limits of sidecars and containers ",
            }
        } else {
            Labels {
                cpu: "Σ cpu limits ",
                memory: "Σ memory limits ",
                running_cpu: "Σ cpu limits ",
                running_memory: "Σ memory limits ",
            }
        }
    }
}

/// `validateHypervisorConfig` (`src/runtime/virtcontainers/hypervisor_config_linux.go`,
/// 3.32.0): `NumVCPUsF == 0` becomes 1, `MemorySize == 0` becomes 2048.
fn validated(vcpus: Vcpus, memory_mib: u64) -> (Vcpus, u64) {
    let vcpus = if vcpus.is_zero() { Vcpus::ONE } else { vcpus };
    let memory_mib = if memory_mib == 0 {
        u64::try_from(super::GO_FALLBACK_MEMORY_MIB).unwrap_or(u64::MAX)
    } else {
        memory_mib
    };
    (vcpus, memory_mib)
}

/// The Go runtime with hotplug (`static_sandbox_resource_mgmt = false`).
///
/// The VM boots with `NumVCPUsF` / `MemorySize` (after
/// `validateHypervisorConfig`: 0 vCPUs become 1). Then, as the kubelet
/// creates and starts each container, `Sandbox.updateResources`
/// (`src/runtime/virtcontainers/sandbox.go`, 3.32.0) runs over the
/// containers not stopped (`calculateSandboxCPUs`, `calculateSandboxMemory`:
/// an init container that has exited no longer counts):
/// * vCPUs: `RoundUpNumVCPUs(Σ quota/period + NumVCPUsF)`, the sum in
///   float32 in creation order; vCPUs are hot-added and hot-removed to that.
/// * memory: `(MemorySize << 20 + Σ memory limits + Σ hugepage limits) >> 20`
///   MiB. When that is above the VM's memory, Kata hot-adds the difference
///   in steps of at most 48 × the current memory, each step rounded up to a
///   whole number of guest memory blocks (`ResizeMemory`,
///   `calcHotplugMemMiBSize`, `src/runtime/virtcontainers/qemu.go`). Below
///   it, nothing happens: memory is never unplugged, so an init container's
///   memory stays in the VM.
///
/// `default_maxvcpus`, `default_maxmemory` and `memory_slots` (which cap or
/// refuse hot-adds on a given node) are not modelled.
pub(super) fn go_hotplug(
    base: Base,
    block_mib: u64,
    containers: &[PodContainer],
    labels: Labels,
    explanation: &mut Explanation,
) -> VmEstimate {
    let (base_vcpus, base_mib) = validated(base.vcpus, base.memory_mib);
    let mut vcpus = base_vcpus.ceil();
    let mut memory_mib = base_mib;
    explanation.note(terms![
        "Go runtime, hotplug: the VM starts with ",
        vcpus,
        " vCPUs (default_vcpus ",
        base_vcpus.to_string(),
        ") and ",
        memory_mib,
        " MiB (default_memory); as the kubelet starts each container, Kata hot-adds memory in whole ",
        block_mib,
        " MiB blocks and never unplugs it, and resizes the vCPUs"
    ]);
    let mut peak_vcpus = vcpus;
    // Containers in creation order, with whether they still run.
    let mut running: Vec<&PodContainer> = Vec::with_capacity(containers.len());
    let mut cpu_sum = Vcpus::ZERO;
    let mut bytes_sum: i128 = 0;
    let mut hugepages_sum: i128 = 0;
    for container in containers {
        // The init container before this one has exited.
        if running.last().is_some_and(|last| last.role == Role::Init) {
            running.pop();
        }
        running.push(container);
        cpu_sum = Vcpus::ZERO;
        bytes_sum = 0;
        hugepages_sum = 0;
        for c in &running {
            cpu_sum = cpu_sum.plus(Vcpus::go_quota(c.cpu_quota(), CFS_PERIOD_US));
            bytes_sum = bytes_sum.saturating_add(c.memory_bytes());
            hugepages_sum = hugepages_sum.saturating_add(c.hugepages_bytes());
        }
        let target_vcpus = cpu_sum.plus(base_vcpus).ceil();
        let target_bytes = i128::from(base_mib)
            .saturating_mul(MIB_BYTES)
            .saturating_add(bytes_sum)
            .saturating_add(hugepages_sum);
        let target_mib = u64::try_from(target_bytes.div_euclid(MIB_BYTES)).unwrap_or(u64::MAX);
        let before = memory_mib;
        memory_mib = hot_add(memory_mib, target_mib, block_mib);
        let memory_part = memory_step(before, memory_mib, target_mib, block_mib);
        if target_vcpus != vcpus || memory_mib != before || target_mib < memory_mib {
            explanation.note(terms![
                container.role.noun(),
                " ",
                container.name.clone(),
                " starts: Kata ",
                memory_part,
                ", ",
                target_vcpus,
                " vCPUs = ceil(",
                cpu_sum.to_string(),
                " + ",
                base_vcpus.to_string(),
                ")"
            ]);
        }
        vcpus = target_vcpus;
        peak_vcpus = peak_vcpus.max(vcpus);
    }
    explanation.note(hotplug_summary(
        HotplugEnd {
            vcpus,
            peak_vcpus,
            memory_mib,
            cpu_sum,
            bytes_sum,
            hugepages_sum,
        },
        base_vcpus,
        base_mib,
        labels,
    ));
    VmEstimate { vcpus, memory_mib }
}

/// What one container's start did to the VM's memory, `before` →
/// `after` MiB, towards `target`.
fn memory_step(before: u64, after: u64, target: u64, block_mib: u64) -> Terms {
    if after > before {
        let rounded = (after - before != target - before).then(|| {
            terms![
                " (",
                target - before,
                " MiB rounded up to whole ",
                block_mib,
                " MiB blocks)"
            ]
        });
        terms![
            "hot-adds ",
            after - before,
            " MiB",
            rounded,
            " → ",
            after,
            " MiB"
        ]
    } else if target < after {
        terms![
            "memory stays ",
            after,
            " MiB (needs ",
            target,
            "; never unplugged)"
        ]
    } else {
        terms!["memory stays ", after, " MiB"]
    }
}

/// Where the hotplug replay ended, once every container has started.
struct HotplugEnd {
    vcpus: u64,
    peak_vcpus: u64,
    memory_mib: u64,
    cpu_sum: Vcpus,
    bytes_sum: i128,
    hugepages_sum: i128,
}

/// The "VM boots with" line of the hotplug replay.
fn hotplug_summary(end: HotplugEnd, base_vcpus: Vcpus, base_mib: u64, labels: Labels) -> Terms {
    let HotplugEnd {
        vcpus,
        peak_vcpus,
        memory_mib,
        cpu_sum,
        bytes_sum,
        hugepages_sum,
    } = end;
    let kept = memory_mib.saturating_sub(
        base_mib
            .saturating_add(mib_floor(bytes_sum))
            .saturating_add(mib_floor(hugepages_sum)),
    );
    let hugepages_term = (hugepages_sum > 0)
        .then(|| terms![" + Σ hugepages limits ", mib_floor(hugepages_sum), " MiB"]);
    let kept_term = (kept > 0).then(|| {
        terms![
            " + ",
            kept,
            " MiB hot-added beyond them (whole blocks, and init containers' memory, are never \
             unplugged)"
        ]
    });
    let peak_term =
        (peak_vcpus > vcpus).then(|| terms![" (", peak_vcpus, " vCPUs while init containers ran)"]);
    terms![
        "VM boots with ",
        vcpus,
        " vCPUs = ceil(default_vcpus ",
        base_vcpus.to_string(),
        " + ",
        labels.running_cpu,
        cpu_sum.to_string(),
        ")",
        peak_term,
        " and ",
        memory_mib,
        " MiB = default_memory ",
        base_mib,
        " MiB + ",
        labels.running_memory,
        mib_floor(bytes_sum),
        " MiB",
        hugepages_term,
        kept_term,
        " (Go runtime, hotplug, once every container has started)"
    ]
}

/// One `updateResources` memory pass: from `current` MiB towards `target`
/// MiB, in steps of at most [`ACPI_MEMORY_HOTPLUG_FACTOR`] × the current
/// memory, each rounded up to `block` MiB (`calcHotplugMemMiBSize`; no
/// rounding for a block of 0). Never below `current`. Saturates where
/// Kata's `uint32` arithmetic would wrap (beyond 4 PiB).
pub(super) fn hot_add(current: u64, target: u64, block: u64) -> u64 {
    let mut current = current;
    loop {
        // At least 1 MiB per step, so the loop ends even from 0.
        let max_step = current.saturating_mul(ACPI_MEMORY_HOTPLUG_FACTOR).max(1);
        let next = if target > current && target - current > max_step {
            current.saturating_add(max_step)
        } else {
            target
        };
        if next > current {
            let add = next - current;
            let rounded = if block == 0 {
                add
            } else {
                add.div_ceil(block).saturating_mul(block)
            };
            current = current.saturating_add(rounded);
        }
        if next == target {
            return current;
        }
    }
}

/// The Go runtime with `static_sandbox_resource_mgmt = true`, sized once at
/// boot from the kubelet's Pod limits (the CRI sandbox annotations):
/// `CalculateSandboxSizing` (`src/runtime/pkg/oci/utils.go`, 3.32.0) gives
/// `quota/period` in float32 and the memory limit floored to MiB (no
/// hugepages); `SandboxConfig` adds them to `NumVCPUsF` and `MemorySize`, so
/// a `default_vcpus` annotation of 0 leaves no base vCPU; then
/// `validateHypervisorConfig` turns 0 vCPUs into 1.
pub(super) fn go_static(
    base: Base,
    pod: SandboxLimits,
    labels: Labels,
    explanation: &mut Explanation,
) -> VmEstimate {
    let workload_vcpus = Vcpus::go_quota(pod.cpu_quota, CFS_PERIOD_US);
    let workload_mib = mib_floor(pod.memory_bytes);
    let (vcpus_f, memory_mib) = validated(
        base.vcpus.plus(workload_vcpus),
        base.memory_mib.saturating_add(workload_mib),
    );
    let vcpus = vcpus_f.ceil();
    explanation.note(terms![
        "VM boots with ",
        vcpus,
        " vCPUs = ceil(default_vcpus ",
        base.vcpus.to_string(),
        " + ",
        labels.cpu,
        workload_vcpus.to_string(),
        ") and ",
        memory_mib,
        " MiB = default_memory ",
        base.memory_mib,
        " MiB + ",
        labels.memory,
        workload_mib,
        " MiB (Go runtime, static: sized once at boot from the kubelet's Pod limits, and never resized)"
    ]);
    VmEstimate { vcpus, memory_mib }
}

/// runtime-rs 4.x (`InitialSizeManager::setup_config`,
/// `src/runtime-rs/crates/resource/src/cpu_mem/initial_size.rs`, 4.1.0),
/// from the kubelet's Pod limits: the vCPU fraction `quota/period` and the
/// memory limit floored to MiB and rounded up to an even number
/// (`convert_memory_to_mb`). With either nonzero: vCPUs =
/// ceil(max(`overhead_vcpus` + fraction, 1)) and memory = `overhead_memory`
/// + MiB; otherwise `default_vcpus` (0 loads as 1) and `default_memory`.
pub(super) fn runtime_rs(
    class: &KataClass,
    base: Base,
    pod: SandboxLimits,
    labels: Labels,
    explanation: &mut Explanation,
) -> VmEstimate {
    let workload_vcpus = Vcpus::rs_quota(pod.cpu_quota, CFS_PERIOD_US);
    let floor_mib = mib_floor(pod.memory_bytes);
    let workload_mib = floor_mib.saturating_add(floor_mib % 2);
    if !workload_vcpus.is_positive() && workload_mib == 0 {
        let default_vcpus = if base.vcpus.is_zero() {
            Vcpus::ONE
        } else {
            base.vcpus
        };
        let vcpus = default_vcpus.ceil();
        explanation.note(terms![
            "VM boots with ",
            vcpus,
            " vCPUs = ceil(default_vcpus ",
            default_vcpus.to_string(),
            ") and ",
            base.memory_mib,
            " MiB = default_memory (no container limits; runtime-rs 4.x)"
        ]);
        return VmEstimate {
            vcpus,
            memory_mib: base.memory_mib,
        };
    }
    let overhead_vcpus = Vcpus::from_config(class.effective_overhead_vcpus());
    let overhead_mib = u64::try_from(
        class
            .effective_overhead_memory()
            .value()
            .div_euclid(MIB_BYTES),
    )
    .unwrap_or(u64::MAX);
    let vcpus = overhead_vcpus.plus(workload_vcpus).at_least_one().ceil();
    let memory_mib = overhead_mib.saturating_add(workload_mib);
    let even_note: Option<Terms> =
        (workload_mib != floor_mib).then(|| terms![", ", floor_mib, " rounded up to even"]);
    explanation.note(terms![
        "VM boots with ",
        vcpus,
        " vCPUs = ceil(max(overhead_vcpus ",
        overhead_vcpus.to_string(),
        " + ",
        labels.cpu,
        workload_vcpus.to_string(),
        ", 1)) and ",
        memory_mib,
        " MiB = overhead_memory ",
        overhead_mib,
        " MiB + ",
        labels.memory,
        workload_mib,
        " MiB (MiB floor",
        even_note,
        "; runtime-rs 4.x, from the kubelet's Pod limits)"
    ]);
    VmEstimate { vcpus, memory_mib }
}

/// Whole MiB in `bytes` (floor; 0 below zero, saturating).
fn mib_floor(bytes: i128) -> u64 {
    u64::try_from(bytes.max(0).div_euclid(MIB_BYTES)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `calcHotplugMemMiBSize`: 2048 + 100 → one step of 100 rounded up to
    /// 128 → 2176.
    #[test]
    fn a_hot_add_is_rounded_up_to_the_block() {
        assert_eq!(hot_add(2048, 2048 + 100, 128), 2048 + 128);
        assert_eq!(hot_add(2048, 2048 + 100, 0), 2048 + 100);
        assert_eq!(hot_add(2048, 2048 + 256, 128), 2048 + 256);
    }

    #[test]
    fn memory_is_never_unplugged() {
        assert_eq!(hot_add(6144, 3072, 128), 6144);
    }

    /// From 256 MiB, one ACPI step adds at most 48 × 256 = 12288 MiB
    /// (Kata's comment: "a 256 MiB guest should be able to accommodate
    /// hotplugging 12 GiB"). 256 → 20000 takes 256 + 12288 = 12544, then
    /// 20000 - 12544 = 7456 (≤ 48 × 12544) rounded up to 7552 (59 blocks)
    /// → 20096.
    #[test]
    fn large_hot_adds_go_in_acpi_steps_each_rounded() {
        assert_eq!(hot_add(256, 20_000, 128), 256 + 12_288 + 59 * 128);
        assert_eq!(59 * 128, 7552);
    }
}
