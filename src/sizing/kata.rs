//! Kata Containers sandbox sizing: the `overhead.podFixed` of a Kata
//! `RuntimeClass` and the resources of a Pod that runs in a Kata sandbox.
//!
//! Kata boots one VM per Pod and sizes it from the container **limits** only
//! (requests add nothing), on top of a default VM (`default_vcpus`,
//! `default_memory`) on the Go runtime, or on top of `overhead_vcpus` /
//! `overhead_memory` on runtime-rs 4.x. The Pod cgroup, however, is sized by
//! Kubernetes from the Pod's limits + the `RuntimeClass` `overhead.podFixed`.
//! When `podFixed` is smaller than the guest memory that no container limit
//! covers, the VMM is OOM-killed at the cgroup limit (kata#6533, kata#6129,
//! kata#12786). The functions here compute what the sandbox really boots,
//! mode by mode and in the order the kubelet starts the containers, and size
//! `podFixed` and the Pod's limits accordingly; they never write
//! `pod.spec.overhead` (the `RuntimeClass` admission plugin rejects a Pod
//! whose overhead differs from its class).
//!
//! Sources, each cited again where its rule is implemented:
//! * Kata's Go runtime at tag 3.32.0: `src/runtime/virtcontainers/sandbox.go`
//!   (`Sandbox.updateResources`, `calculateSandboxCPUs`,
//!   `calculateSandboxMemory`), `src/runtime/virtcontainers/qemu.go`
//!   (`ResizeMemory`, `calcHotplugMemMiBSize`), `src/runtime/pkg/oci/utils.go`
//!   (`addAnnotations`, `addHypervisorCPUOverrides`,
//!   `addHypervisorMemoryOverrides`, `CalculateSandboxSizing`,
//!   `SandboxConfig`), `src/runtime/virtcontainers/hypervisor_config_linux.go`
//!   (`validateHypervisorConfig`), `src/runtime/pkg/katautils/config.go`
//!   (`defaultVCPUs`, `defaultMemSz`) and `src/runtime/Makefile`
//!   (`DEFENABLEANNOTATIONS`);
//! * runtime-rs at tag 4.1.0: `src/runtime-rs/crates/resource/src/cpu_mem/initial_size.rs`
//!   (`InitialSizeManager::setup_config`, `convert_memory_to_mb`),
//!   `src/libs/kata-types/src/annotations/mod.rs`
//!   (`Annotation::update_config_by_annotation`, `convert_to_megabytes`),
//!   `src/libs/kata-types/src/config/hypervisor/mod.rs`
//!   (`CpuInfo::adjust_config`, `SecurityInfo::is_annotation_enabled`) and
//!   `src/runtime-rs/Makefile` (`DEFENABLEANNOTATIONS`);
//! * the kubelet: `PodLimits` / `PodRequests` in
//!   `k8s.io/component-helpers/resource` (init containers take the maximum,
//!   sidecars add), `milliCPUToQuota` and `ResourceConfigForPod`;
//! * kata-deploy's `runtimeclasses.yaml` for the shipped `podFixed` values.
//!
//! Everything is pure: plain data in, values plus human explanations out.

use std::collections::BTreeMap;

use regex::RegexSet;

use super::explain::{Explanation, ResourceField, Section, Terms};
use super::quantity::{Format, Quantity};
use super::spelling::{Spelled as _, spelled};
use crate::terms;

mod annotations;
mod kubelet;
mod pod;
mod vcpus;
mod vm;

pub use pod::size_kata_pod;

/// The prefix of Kata's hypervisor annotations. Only those whose name after
/// the prefix matches the class's `enable_annotations` take effect: the Go
/// runtime refuses a sandbox carrying any other ("annotation … is not
/// enabled", `addAnnotations` in `src/runtime/pkg/oci/utils.go`, 3.32.0);
/// runtime-rs ignores it (`Annotation::update_config_by_annotation`,
/// `src/libs/kata-types/src/annotations/mod.rs`, 4.1.0).
pub const ANNOTATION_HYPERVISOR_PREFIX: &str = "io.katacontainers.config.hypervisor.";

/// Pod annotation that overrides `default_vcpus` for one sandbox: a plain
/// number (Go `strconv.ParseFloat(v, 32)`, Rust `str::parse::<f32>`), not a
/// Kubernetes quantity. Kata's advice: set this **or** CPU limits, not both.
/// Sources: `addHypervisorCPUOverrides` (`src/runtime/pkg/oci/utils.go`,
/// 3.32.0) and `Annotation::update_config_by_annotation` (runtime-rs 4.1.0).
pub const ANNOTATION_DEFAULT_VCPUS: &str = "io.katacontainers.config.hypervisor.default_vcpus";

/// Pod annotation that overrides `default_memory` for one sandbox. The Go
/// runtime reads a whole number of MiB and refuses one below 256 ("less than
/// minimum required 256", `addHypervisorMemoryOverrides`,
/// `src/runtime/pkg/oci/utils.go`, 3.32.0); runtime-rs also takes a size
/// with a unit, `"2Gi"` being 2048 MiB (`convert_to_megabytes`,
/// `src/libs/kata-types/src/annotations/mod.rs`, 4.1.0).
pub const ANNOTATION_DEFAULT_MEMORY: &str = "io.katacontainers.config.hypervisor.default_memory";

/// The `enable_annotations` of the Go runtime's shipped configurations
/// (`DEFENABLEANNOTATIONS` in `src/runtime/Makefile`, 3.32.0; the TEE
/// configurations use a longer list). Neither `default_vcpus` nor
/// `default_memory` is in it.
pub const GO_ENABLE_ANNOTATIONS: &[&str] =
    &["enable_iommu", "kernel_params", "kernel_verity_params"];

/// The `enable_annotations` of runtime-rs's shipped configurations
/// (`DEFENABLEANNOTATIONS` in `src/runtime-rs/Makefile`, 4.1.0): the Go list
/// plus `default_vcpus` and `default_memory`.
pub const RUNTIME_RS_ENABLE_ANNOTATIONS: &[&str] = &[
    "enable_iommu",
    "kernel_params",
    "kernel_verity_params",
    "default_vcpus",
    "default_memory",
];

/// The guest memory block in MiB that a class assumes by default: the Go
/// runtime hot-adds memory in whole blocks of the size the guest kernel
/// reports in `/sys/devices/system/memory/block_size_bytes` (read by the
/// agent's `get_memory_info`, `src/agent/src/rpc.rs`, stored by
/// `Sandbox.getAndStoreGuestDetails`, and applied by `calcHotplugMemMiBSize`
/// in `src/runtime/virtcontainers/qemu.go`, 3.32.0). 128 MiB is Linux's
/// x86_64 memory block (`SECTION_SIZE_BITS` 27) for guests of Kata's size.
pub const DEFAULT_MEMORY_BLOCK_MIB: i128 = 128;

/// runtime-rs's smallest `default_memory` annotation for QEMU, Cloud
/// Hypervisor and Dragonball in MiB (`MIN_QEMU_MEMORY_SIZE_MB` and its
/// siblings in `src/libs/kata-types/src/config/default.rs`, 4.1.0; Firecracker's
/// is 128).
pub const RUNTIME_RS_MIN_MEMORY_MIB: i128 = 64;

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
    /// The VM boots with `default_vcpus` / `default_memory`; as each
    /// container starts, Kata hot-adds memory in whole guest memory blocks
    /// (never unplugged) and resizes the vCPUs to ceil(`default_vcpus` + Σ
    /// running containers' CPU limits, summed in float32). Policy YAML: `go`.
    Go,
    /// Go runtime with `static_sandbox_resource_mgmt = true` (FC, stratovirt,
    /// TEE and NVIDIA configs): sized once at boot from the kubelet's Pod
    /// limits (init containers take the maximum, sidecars add; memory limits
    /// only, no hugepages). Policy YAML: `go-static`.
    GoStatic,
    /// runtime-rs 4.x (static sizing, from the kubelet's Pod limits): with any
    /// limit, VM = max(`overhead_vcpus` + Pod CPU limit, 1) (ceil) and
    /// `overhead_memory` + Pod memory limit (MiB floor, rounded up to even);
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
    /// `overhead_memory` + 1 MiB (the even-MiB rounding) on runtime-rs. On
    /// the Go runtime with hotplug, a Kata Pod's memory limits are also
    /// rounded up to whole guest memory blocks, since Kata hot-adds whole
    /// blocks for them. Policy YAML: `Account`.
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
    /// `default_vcpus` in CPUs (a CPU quantity, read as Kata's float32;
    /// default `1`; 0 loads as 1 on every runtime: `defaultVCPUs` in
    /// `src/runtime/pkg/katautils/config.go`, 3.32.0, and
    /// `CpuInfo::adjust_config`, runtime-rs 4.1.0). Source: Kata
    /// `configuration-*.toml`.
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
    /// The guest memory block (`go` only; default
    /// [`DEFAULT_MEMORY_BLOCK_MIB`]): every memory hot-add is rounded up to
    /// a whole number of blocks. Zero means no rounding, as Kata does when
    /// the guest reports no block size. A whole number of MiB.
    pub memory_block_size: Quantity,
    /// Kata's `enable_annotations`: which hypervisor annotations the class's
    /// runtime reads (default [`GO_ENABLE_ANNOTATIONS`] on the Go runtimes,
    /// [`RUNTIME_RS_ENABLE_ANNOTATIONS`] on runtime-rs).
    pub enable_annotations: EnableAnnotations,
}

/// Kata's `enable_annotations`: regular expressions matched, unanchored,
/// against a hypervisor annotation's name after
/// [`ANNOTATION_HYPERVISOR_PREFIX`] (Go `regexpContains` in
/// `src/runtime/pkg/oci/utils.go`, 3.32.0; runtime-rs
/// `SecurityInfo::is_annotation_enabled`, 4.1.0).
#[derive(Debug, Clone)]
pub struct EnableAnnotations {
    patterns: Vec<String>,
    set: RegexSet,
}

/// How Kata sandbox Pods get limits filled in (policy `kata.pods.fillLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillLimits {
    /// Leave the Pod's limits alone (warn about request-only containers).
    /// Policy YAML: `None`.
    None,
    /// A container, init container or sidecar with a CPU/memory request
    /// and no limit gets limit = request, because Kata adds VM capacity for
    /// limits only (kata#13823). Policy YAML: `FromRequests` (the default).
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
    /// `restartPolicy: Always` on an init container: a sidecar, which keeps
    /// running beside the app containers. Always `false` in
    /// `spec.containers`.
    pub sidecar: bool,
}

/// What [`size_kata_pod`] needs from a Pod.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KataPodInput {
    /// `spec.initContainers`, in order (sidecars among them).
    pub init_containers: Vec<ContainerResources>,
    /// `spec.containers`, in order.
    pub containers: Vec<ContainerResources>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// Which list of the Pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerList {
    /// `spec.initContainers` (init containers and sidecars).
    InitContainers,
    /// `spec.containers`.
    Containers,
}

/// One request or limit set on a container.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceChange {
    /// The list the container is in.
    pub list: ContainerList,
    /// Index into that list.
    pub container: usize,
    /// [`Section::Requests`] or [`Section::Limits`].
    pub section: Section,
    /// `"cpu"` or `"memory"`.
    pub resource: String,
    /// Previous value (`None` = absent).
    pub old: Option<Quantity>,
    /// New value.
    pub new: Quantity,
    /// Why, for the explanation (the formula of its line).
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
    /// Container requests and limits to set.
    pub changes: Vec<ResourceChange>,
    /// Pod annotations to set (key, new value).
    pub annotation_changes: Vec<(String, String)>,
    /// Things the user should know (`AdmissionResponse` warnings).
    pub warnings: Vec<String>,
    /// Full derivation, including the VM estimate.
    pub explanation: Explanation,
    /// The VM the sandbox boots after the changes.
    pub vm: VmEstimate,
    /// Why Kata refuses to start the sandbox at all (each one is also a
    /// warning); empty when it starts. [`KataPodSizing::vm`] is then what
    /// boots once those are fixed.
    pub refused: Vec<String>,
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

    /// The `enable_annotations` Kata ships for this runtime.
    #[must_use]
    pub fn shipped_enable_annotations(self) -> &'static [&'static str] {
        if self.is_go() {
            GO_ENABLE_ANNOTATIONS
        } else {
            RUNTIME_RS_ENABLE_ANNOTATIONS
        }
    }
}

impl ContainerList {
    /// The Pod spec field (`initContainers`, `containers`).
    #[must_use]
    pub fn field(self) -> &'static str {
        match self {
            Self::InitContainers => "initContainers",
            Self::Containers => "containers",
        }
    }
}

impl EnableAnnotations {
    /// The list `patterns`, each a regular expression.
    ///
    /// # Errors
    /// The first pattern that is not a valid regular expression, with the
    /// reason.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, (usize, regex::Error)> {
        for (index, pattern) in patterns.iter().enumerate() {
            regex::Regex::new(pattern.as_ref()).map_err(|error| (index, error))?;
        }
        let patterns: Vec<String> = patterns.iter().map(|p| p.as_ref().to_owned()).collect();
        let set = RegexSet::new(&patterns).map_err(|error| (0, error))?;
        Ok(Self { patterns, set })
    }

    /// The list Kata ships for `runtime`.
    #[must_use]
    pub fn shipped(runtime: KataRuntime) -> Self {
        let patterns: Vec<String> = runtime
            .shipped_enable_annotations()
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        // Plain words: always valid expressions. An empty set, which
        // enables nothing, is the fallback that cannot fail.
        let set = RegexSet::new(&patterns).unwrap_or_else(|_| RegexSet::empty());
        Self { patterns, set }
    }

    /// The patterns, as written.
    #[must_use]
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether the annotation `key` is enabled: `false` for a key without
    /// [`ANNOTATION_HYPERVISOR_PREFIX`], else whether any pattern matches
    /// (anywhere) in the name after it.
    #[must_use]
    pub fn enables(&self, key: &str) -> bool {
        key.strip_prefix(ANNOTATION_HYPERVISOR_PREFIX)
            .is_some_and(|name| self.set.is_match(name))
    }
}

impl PartialEq for EnableAnnotations {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl KataClass {
    /// A class with Kata's defaults for `runtime`: `default_vcpus` 1,
    /// `default_memory` 2048Mi, `overhead_vcpus`/`overhead_memory` 200m/32Mi
    /// on runtime-rs (none on Go), `sandbox_cgroup_only` true on runtime-rs
    /// (false on Go), guest memory ignored (kata-deploy's behaviour), a
    /// 128 MiB guest memory block and the runtime's shipped
    /// `enable_annotations`. Sources: Kata 4.0.0's `configuration-*.toml`.
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
            memory_block_size: mib_quantity(DEFAULT_MEMORY_BLOCK_MIB),
            enable_annotations: EnableAnnotations::shipped(runtime),
        }
    }

    /// The guest memory block in MiB that hot-adds are rounded up to: the
    /// class's `memory_block_size` on the Go runtime with hotplug, 0 (no
    /// hot-add) otherwise.
    #[must_use]
    pub fn memory_block_mib(&self) -> i128 {
        if self.runtime == KataRuntime::Go {
            self.memory_block_size.value().div_euclid(MIB_BYTES)
        } else {
            0
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
///   `overhead_memory` (32Mi by default) + 1Mi, because `convert_memory_to_mb`
///   (`initial_size.rs`, 4.1.0) floors the Pod memory limit to MiB and then
///   rounds an odd count up, at most 1 MiB above the limit.
///   `podFixed.cpu` stays `vmm.cpu`. On the Go runtime with hotplug, the
///   rounding of hot-adds to whole guest memory blocks depends on the Pod;
///   [`size_kata_pod`] covers it by rounding the Pod's memory limits.
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
            let total = add_bytes(add_bytes(class.vmm.memory, overhead), mib_quantity(1));
            explanation.formula(
                pod_fixed_memory,
                terms!["memory ", total],
                " = ",
                terms![
                    "vmm ",
                    class.vmm.memory,
                    " + overhead_memory ",
                    overhead,
                    " + 1Mi (runtime-rs 4.x boots overhead_memory on top of the Pod memory limit, \
                     which it rounds up to an even MiB; kata#6533)"
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

#[cfg(test)]
#[path = "kata_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "kata_tests_sandbox.rs"]
mod sandbox_tests;
