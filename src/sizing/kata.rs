//! Kata Containers sandbox sizing: the `overhead.podFixed` of a Kata
//! `RuntimeClass` and the resources of a Pod that runs in a Kata sandbox.
//!
//! Kata boots one VM per Pod and sizes it from the container **limits** only
//! (requests add nothing), on top of a default VM (`default_vcpus`,
//! `default_memory`) on the Go runtime, or on top of `overhead_vcpus` /
//! `overhead_memory` on runtime-rs 4.x. The Pod cgroup, however, is sized by
//! Kubernetes as Σ container limits + the `RuntimeClass` `overhead.podFixed`.
//! When `podFixed` is smaller than the guest memory that no container limit
//! covers, the VMM is OOM-killed at the cgroup limit (kata#6533, kata#6129,
//! kata#12786). The functions here compute what the sandbox really boots and
//! size `podFixed` and the Pod's limits accordingly; they never write
//! `pod.spec.overhead` (the `RuntimeClass` admission plugin rejects a Pod whose
//! overhead differs from its class).
//!
//! Sources: Kata `src/runtime/virtcontainers/sandbox.go` (`updateResources`),
//! `src/runtime/pkg/oci/utils.go` (`CalculateSandboxSizing`),
//! `src/runtime/virtcontainers/hypervisor.go` (`MinHypervisorMemory`),
//! `src/runtime/pkg/katautils/config.go` (`defaultMemSz`), runtime-rs
//! `crates/resource/src/cpu_mem/initial_size.rs`, and kata-deploy's
//! `runtimeclasses.yaml`.
//!
//! Everything is pure: plain data in, values plus human explanations out.

use std::collections::BTreeMap;

use super::explain::{Explanation, ResourceField, Section, Terms};
use super::quantity::{Format, Quantity};
use super::spelling::{Spelled as _, spelled};
use crate::terms;

mod pod;

pub use pod::size_kata_pod;

/// Pod annotation that overrides the Go runtime's `default_vcpus` (a float32
/// number of vCPUs) for one sandbox. Kata's advice: set this **or** CPU
/// limits, not both. Source: Kata `src/runtime/pkg/oci/utils.go`.
pub const ANNOTATION_DEFAULT_VCPUS: &str = "io.katacontainers.config.hypervisor.default_vcpus";

/// Pod annotation that overrides `default_memory` (an integer number of MiB)
/// for one sandbox. Below 256 the Go runtime refuses the sandbox ("less than
/// minimum required 256"). Source: Kata `src/runtime/pkg/oci/utils.go`.
pub const ANNOTATION_DEFAULT_MEMORY: &str = "io.katacontainers.config.hypervisor.default_memory";

/// Kata's `MinHypervisorMemory` in MiB (Go runtime): a config-file
/// `default_memory` below it is silently replaced by
/// [`GO_FALLBACK_MEMORY_MIB`]; an annotation below it is an error.
/// Source: Kata `src/runtime/virtcontainers/hypervisor.go`.
pub const GO_MIN_MEMORY_MIB: i128 = 256;

/// Kata's `defaultMemSz` in MiB: what the Go runtime uses when the configured
/// `default_memory` is below [`GO_MIN_MEMORY_MIB`].
/// Source: Kata `src/runtime/pkg/katautils/config.go`.
pub const GO_FALLBACK_MEMORY_MIB: i128 = 2048;

/// Bytes in one MiB (2^20).
const MIB_BYTES: i128 = 1 << 20;
/// Nano units in one whole unit (one byte, one CPU).
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Nano units in one milli unit.
const NANOS_PER_MILLI: i128 = 1_000_000;

// === Configuration types (parsed and validated by `policy.rs`) ===

/// Which Kata runtime serves a `RuntimeClass` handler: it decides how the VM is
/// sized (Kata's `configuration-*.toml` and the shims' sizing code above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KataRuntime {
    /// Go runtime (`containerd-shim-kata-v2`) with CPU/memory hotplug
    /// (`static_sandbox_resource_mgmt = false`, e.g. `kata-qemu` on x86).
    /// VM = `default_vcpus` + Σ CPU limits (ceil), `default_memory` + Σ memory
    /// and hugepage limits. Policy YAML: `go`.
    Go,
    /// Go runtime with `static_sandbox_resource_mgmt = true` (FC, stratovirt,
    /// TEE and NVIDIA configs): same sum, computed once at boot from the
    /// kubelet's sandbox annotations (memory limits only). Policy YAML:
    /// `go-static`.
    GoStatic,
    /// runtime-rs 4.x (static sizing): with any limit,
    /// VM = max(`overhead_vcpus` + Σ CPU limits, 1) (ceil) and
    /// `overhead_memory` + Σ memory limits (MiB floor, rounded up to even);
    /// without limits `default_vcpus` / `default_memory`. Policy YAML:
    /// `runtime-rs`.
    RuntimeRs,
}

/// Whether a `RuntimeClass`'s `podFixed` memory also pays for the guest memory
/// that no container limit covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMemory {
    /// `podFixed` = `vmm` (the host-side VMM cost only): what kata-deploy
    /// ships. Policy YAML: `Ignore`.
    Ignore,
    /// `podFixed.memory` = `vmm.memory` + the guest memory the container
    /// limits do not cover: the effective `default_memory` on the Go runtimes,
    /// `overhead_memory` on runtime-rs. Policy YAML: `Account`.
    Account,
}

/// A `RuntimeClass` `overhead.podFixed` (or a host-side VMM cost): CPU and
/// memory quantities, as in the Kubernetes `RuntimeClass` API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodFixed {
    /// CPU (e.g. `250m`).
    pub cpu: Quantity,
    /// Memory in bytes (e.g. `160Mi`).
    pub memory: Quantity,
}

/// The Kata sandbox model of one `RuntimeClass` handler (policy
/// `kata.runtimeClasses.<handler>`).
#[derive(Debug, Clone, PartialEq)]
pub struct KataClass {
    /// `RuntimeClass` `handler` (the map key in the policy).
    pub handler: String,
    /// Runtime serving the handler.
    pub runtime: KataRuntime,
    /// `default_vcpus` in CPUs (a CPU quantity; default `1`; 0 means 1 on the
    /// Go runtime). Source: Kata `configuration-*.toml`.
    pub default_vcpus: Quantity,
    /// `default_memory` (default `2048Mi`; a whole number of MiB). On the Go
    /// runtimes a value below 256 MiB is silently replaced by 2048 MiB.
    pub default_memory: Quantity,
    /// runtime-rs 4.x `overhead_vcpus` (default `200m` on runtime-rs; `None`
    /// on the Go runtimes).
    pub overhead_vcpus: Option<Quantity>,
    /// runtime-rs 4.x `overhead_memory` (default `32Mi` on runtime-rs; a whole
    /// number of MiB; `None` on the Go runtimes).
    pub overhead_memory: Option<Quantity>,
    /// `sandbox_cgroup_only` (default `false` on the Go runtimes, `true` on
    /// runtime-rs). `true`: VMM, vCPU and I/O threads are charged to the Pod
    /// cgroup. `false`: only the vCPU threads are; the rest runs in
    /// `/kata_overhead`. Reference §2.7.
    pub sandbox_cgroup_only: bool,
    /// Host-side VMM cost per sandbox (required): kata-deploy's `podFixed`,
    /// e.g. `kata-qemu` 250m/160Mi (3.x) or 250m/320Mi (4.x).
    pub vmm: PodFixed,
    /// Whether `podFixed` accounts for uncovered guest memory.
    pub guest_memory: GuestMemory,
}

/// How Kata sandbox Pods get limits filled in (policy `kata.pods.fillLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillLimits {
    /// Leave the Pod's limits alone (warn about request-only containers).
    /// Policy YAML: `None`.
    None,
    /// A container with a CPU/memory request and no limit gets limit =
    /// request, because Kata adds VM capacity for limits only (kata#13823).
    /// Policy YAML: `FromRequests` (the default).
    FromRequests,
}

/// Settings for Kata sandbox Pods (policy `kata.pods`).
#[derive(Debug, Clone, PartialEq)]
pub struct KataPodSettings {
    /// Limit filling (default [`FillLimits::FromRequests`]).
    pub fill_limits: FillLimits,
    /// Minimum VM memory enforced on the `default_memory` annotation on the Go
    /// runtimes (default `256Mi`, Kata's `MinHypervisorMemory`).
    pub min_memory: Quantity,
}

/// The policy's Kata section (`kata`).
#[derive(Debug, Clone, PartialEq)]
pub struct KataSettings {
    /// Kata classes by `RuntimeClass` handler (`kata.runtimeClasses`).
    pub runtime_classes: BTreeMap<String, KataClass>,
    /// Pod settings (`kata.pods`).
    pub pods: KataPodSettings,
}

// === Sizing inputs and outputs ===

/// The `overhead.podFixed` computed for one `RuntimeClass`, with the terms.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeClassSizing {
    /// The value to set as `overhead.podFixed`.
    pub pod_fixed: PodFixed,
    /// Human-readable derivation, one line per term or remark.
    pub explanation: Explanation,
}

/// One container's resources as read from the Pod spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerResources {
    /// Container name.
    pub name: String,
    /// `resources.requests` (resource name → quantity).
    pub requests: BTreeMap<String, Quantity>,
    /// `resources.limits` (resource name → quantity).
    pub limits: BTreeMap<String, Quantity>,
}

/// What [`size_kata_pod`] needs from a Pod.
#[derive(Debug, Clone, PartialEq)]
pub struct KataPodInput {
    /// `spec.containers`, in order (indices are reported back).
    pub containers: Vec<ContainerResources>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// One limit set on a container.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitChange {
    /// Index into `spec.containers`.
    pub container: usize,
    /// `"cpu"` or `"memory"`.
    pub resource: String,
    /// Previous limit (`None` = absent).
    pub old: Option<Quantity>,
    /// New limit.
    pub new: Quantity,
    /// Why, for the explanation (the formula of its limit line).
    pub why: Terms,
}

/// The VM a sandbox boots with (as far as the Pod spec determines it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmEstimate {
    /// vCPUs at boot.
    pub vcpus: u64,
    /// Guest memory at boot, MiB.
    pub memory_mib: u64,
}

/// The changes [`size_kata_pod`] wants on a Kata sandbox Pod.
#[derive(Debug, Clone, PartialEq)]
pub struct KataPodSizing {
    /// Container limits to set.
    pub limit_changes: Vec<LimitChange>,
    /// Pod annotations to set (key, new value).
    pub annotation_changes: Vec<(String, String)>,
    /// Things the user should know (`AdmissionResponse` warnings).
    pub warnings: Vec<String>,
    /// Full derivation, including the VM estimate.
    pub explanation: Explanation,
    /// The VM the sandbox boots after the changes.
    pub vm: VmEstimate,
}

// === impls ===

spelled!(KataRuntime {
    "go" => KataRuntime::Go,
    "go-static" => KataRuntime::GoStatic,
    "runtime-rs" => KataRuntime::RuntimeRs,
});
spelled!(GuestMemory { "Ignore" => GuestMemory::Ignore, "Account" => GuestMemory::Account });
spelled!(FillLimits { "None" => FillLimits::None, "FromRequests" => FillLimits::FromRequests });

impl KataRuntime {
    /// Whether this is one of the Go runtimes (`go`, `go-static`).
    #[must_use]
    pub fn is_go(self) -> bool {
        matches!(self, Self::Go | Self::GoStatic)
    }
}

impl KataClass {
    /// A class with Kata's defaults for `runtime`: `default_vcpus` 1,
    /// `default_memory` 2048Mi, `overhead_vcpus`/`overhead_memory` 200m/32Mi
    /// on runtime-rs (none on Go), `sandbox_cgroup_only` true on runtime-rs
    /// (false on Go), guest memory ignored (kata-deploy's behaviour).
    /// Sources: Kata 4.0.0's `configuration-*.toml`.
    #[must_use]
    pub fn with_defaults(handler: &str, runtime: KataRuntime, vmm: PodFixed) -> Self {
        let is_rs = runtime == KataRuntime::RuntimeRs;
        Self {
            handler: handler.to_owned(),
            runtime,
            default_vcpus: Quantity::from_int(1, Format::DecimalSi),
            default_memory: mib_quantity(2048),
            overhead_vcpus: is_rs
                .then(|| Quantity::from_nanos(200 * NANOS_PER_MILLI, Format::DecimalSi)),
            overhead_memory: is_rs.then(|| mib_quantity(32)),
            sandbox_cgroup_only: is_rs,
            vmm,
            guest_memory: GuestMemory::Ignore,
        }
    }

    /// The `default_memory` Kata actually boots with, in MiB, and a remark
    /// when it differs from the configured value: on the Go runtimes a value
    /// below 256 MiB is silently replaced by 2048 MiB (`MinHypervisorMemory`,
    /// `defaultMemSz`). The configured value is floored to MiB.
    #[must_use]
    pub fn effective_default_memory_mib(&self) -> (i128, Option<Terms>) {
        let configured = self.default_memory.value().div_euclid(MIB_BYTES);
        if self.runtime.is_go() && configured < GO_MIN_MEMORY_MIB {
            let remark = terms![
                "default_memory ",
                self.default_memory,
                " is below Kata's minimum of ",
                GO_MIN_MEMORY_MIB,
                " MiB: the Go runtime silently boots with ",
                GO_FALLBACK_MEMORY_MIB,
                " MiB instead (MinHypervisorMemory, defaultMemSz)"
            ];
            (GO_FALLBACK_MEMORY_MIB, Some(remark))
        } else {
            (configured, None)
        }
    }

    /// `overhead_vcpus` with the runtime-rs default (200m) when unset.
    #[must_use]
    pub fn effective_overhead_vcpus(&self) -> Quantity {
        self.overhead_vcpus
            .unwrap_or_else(|| Quantity::from_nanos(200 * NANOS_PER_MILLI, Format::DecimalSi))
    }

    /// `overhead_memory` with the runtime-rs default (32Mi) when unset.
    #[must_use]
    pub fn effective_overhead_memory(&self) -> Quantity {
        self.overhead_memory.unwrap_or_else(|| mib_quantity(32))
    }
}

impl Default for KataPodSettings {
    /// `fillLimits: FromRequests`, `minMemory: 256Mi`.
    fn default() -> Self {
        Self {
            fill_limits: FillLimits::FromRequests,
            min_memory: mib_quantity(256),
        }
    }
}

impl Default for KataSettings {
    /// No Kata classes; default Pod settings.
    fn default() -> Self {
        Self {
            runtime_classes: BTreeMap::new(),
            pods: KataPodSettings::default(),
        }
    }
}

// === RuntimeClass sizing ===

/// Computes a `RuntimeClass`'s `overhead.podFixed` from its Kata class.
///
/// * `guestMemory: Ignore` — `podFixed = vmm`, which reproduces kata-deploy's
///   classes when `vmm` is set to their numbers (`kata-qemu` 250m/160Mi on
///   3.x, 250m/320Mi on 4.x; `kata-clh` 250m/130Mi; `kata-qemu-tdx` 1/2048Mi).
/// * `guestMemory: Account` — `podFixed.memory = vmm.memory + uncovered guest
///   memory`: on the Go runtimes the effective `default_memory` (the VM boots
///   with it on top of the container limits, so the Pod cgroup must hold it:
///   kata#6533, e.g. 160Mi + 2048Mi = 2208Mi); on runtime-rs 4.x
///   `overhead_memory` (32Mi by default). `podFixed.cpu` stays `vmm.cpu`.
///
/// The class's quantities are validated by the policy (non-negative, at most
/// `i64::MAX` bytes), so the sum cannot overflow; out-of-range values in a
/// hand-built class saturate.
#[must_use]
pub fn size_runtime_class(class: &KataClass) -> RuntimeClassSizing {
    let mut explanation = Explanation::new();
    explanation.note(terms![
        "runtime class ",
        class.handler.clone(),
        ": runtime ",
        class.runtime.as_str(),
        ", ",
        cgroup_remark(class.sandbox_cgroup_only)
    ]);
    let cpu = class.vmm.cpu;
    explanation.formula(
        ResourceField::new(Section::PodFixed, "cpu"),
        terms!["cpu ", cpu],
        " = ",
        terms!["vmm ", cpu],
    );
    let pod_fixed_memory = ResourceField::new(Section::PodFixed, "memory");
    let memory = match class.guest_memory {
        GuestMemory::Ignore => {
            explanation.formula(
                pod_fixed_memory,
                terms!["memory ", class.vmm.memory],
                " = ",
                terms![
                    "vmm ",
                    class.vmm.memory,
                    " (guestMemory Ignore: guest memory not covered by container limits is \
                     not accounted, as kata-deploy ships)"
                ],
            );
            class.vmm.memory
        }
        GuestMemory::Account if class.runtime.is_go() => {
            let (default_mib, remark) = class.effective_default_memory_mib();
            if let Some(remark) = remark {
                explanation.note(remark);
            }
            let total = add_bytes(class.vmm.memory, mib_quantity(default_mib));
            // Kata's default_memory is a MiB count: print it as such.
            explanation.formula(
                pod_fixed_memory,
                terms!["memory ", total],
                " = ",
                terms![
                    "vmm ",
                    class.vmm.memory,
                    " + default_memory ",
                    default_mib,
                    "Mi (guest memory not covered by container limits; kata#6533)"
                ],
            );
            total
        }
        GuestMemory::Account => {
            let overhead = class.effective_overhead_memory();
            let total = add_bytes(class.vmm.memory, overhead);
            explanation.formula(
                pod_fixed_memory,
                terms!["memory ", total],
                " = ",
                terms![
                    "vmm ",
                    class.vmm.memory,
                    " + overhead_memory ",
                    overhead,
                    " (runtime-rs 4.x boots overhead_memory on top of the container limits; \
                     kata#6533)"
                ],
            );
            total
        }
    };
    RuntimeClassSizing {
        pod_fixed: PodFixed {
            cpu: class.vmm.cpu,
            memory,
        },
        explanation,
    }
}

// === helpers ===

fn cgroup_remark(sandbox_cgroup_only: bool) -> &'static str {
    if sandbox_cgroup_only {
        "sandbox_cgroup_only=true (VMM, vCPU and I/O threads are charged to the pod cgroup)"
    } else {
        "sandbox_cgroup_only=false (only vCPU threads are charged to the pod cgroup; the VMM runs in /kata_overhead)"
    }
}

/// `a + b` as a binary-SI memory quantity (saturating).
fn add_bytes(a: Quantity, b: Quantity) -> Quantity {
    Quantity::from_nanos(a.nanos().saturating_add(b.nanos()), Format::BinarySi)
}

/// `mib` MiB as a binary-SI quantity (saturating).
fn mib_quantity(mib: i128) -> Quantity {
    Quantity::from_nanos(
        mib.saturating_mul(MIB_BYTES).saturating_mul(NANOS_PER_UNIT),
        Format::BinarySi,
    )
}

/// `numerator / denominator` rounded towards +∞ (`denominator > 0`).
fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator.div_euclid(denominator);
    if numerator.rem_euclid(denominator) == 0 {
        quotient
    } else {
        quotient + 1
    }
}

/// Millicores as a CPU quantity, shown canonically (`1`, `250m`, `2200m`).
fn millicores(millis: i128) -> Quantity {
    Quantity::from_nanos(millis.saturating_mul(NANOS_PER_MILLI), Format::DecimalSi)
}

#[cfg(test)]
#[path = "kata_tests.rs"]
mod tests;
