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

use super::quantity::{Format, Quantity};
use super::spelling::{Spelled as _, spelled};

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
    pub explanation: Vec<String>,
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
    /// Why, for the explanation.
    pub why: String,
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
    pub explanation: Vec<String>,
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
    pub fn effective_default_memory_mib(&self) -> (i128, Option<String>) {
        let configured = self.default_memory.value().div_euclid(MIB_BYTES);
        if self.runtime.is_go() && configured < GO_MIN_MEMORY_MIB {
            let remark = format!(
                "default_memory {} is below Kata's minimum of {GO_MIN_MEMORY_MIB} MiB: the Go runtime \
                 silently boots with {GO_FALLBACK_MEMORY_MIB} MiB instead (MinHypervisorMemory, defaultMemSz)",
                self.default_memory
            );
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
    let mut explanation = vec![
        format!(
            "runtime class {}: runtime {}, {}",
            class.handler,
            class.runtime,
            cgroup_remark(class.sandbox_cgroup_only)
        ),
        format!("cpu {} = vmm {}", class.vmm.cpu, class.vmm.cpu),
    ];
    let memory = match class.guest_memory {
        GuestMemory::Ignore => {
            explanation.push(format!(
                "memory {} = vmm {} (guestMemory Ignore: guest memory not covered by container limits is \
                 not accounted, as kata-deploy ships)",
                class.vmm.memory, class.vmm.memory
            ));
            class.vmm.memory
        }
        GuestMemory::Account if class.runtime.is_go() => {
            let (default_mib, remark) = class.effective_default_memory_mib();
            explanation.extend(remark);
            let total = add_bytes(class.vmm.memory, mib_quantity(default_mib));
            // Kata's default_memory is a MiB count: print it as such.
            explanation.push(format!(
                "memory {total} = vmm {} + default_memory {default_mib}Mi (guest memory not covered by \
                 container limits; kata#6533)",
                class.vmm.memory
            ));
            total
        }
        GuestMemory::Account => {
            let overhead = class.effective_overhead_memory();
            let total = add_bytes(class.vmm.memory, overhead);
            explanation.push(format!(
                "memory {total} = vmm {} + overhead_memory {overhead} (runtime-rs 4.x boots overhead_memory \
                 on top of the container limits; kata#6533)",
                class.vmm.memory
            ));
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

// === Pod sizing ===

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
/// 4. The VM estimate ([`estimate_vm`]) and the Pod's scheduling
///    footprint (requests + `podFixed` of `class`) go into the explanation;
///    with `guestMemory: Account`, a VM that outgrows the Pod cgroup is a
///    warning.
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
        explanation: vec![format!(
            "kata sandbox pod on runtime class {} (runtime {}, fillLimits {}, minMemory {})",
            class.handler,
            class.runtime,
            settings.fill_limits.as_str(),
            settings.min_memory
        )],
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
                    let why = format!(
                        "container {} {resource} limit := request {request}: Kata sizes the VM from limits \
                         only, a request-only container adds no VM capacity (kata#13823)",
                        container.name
                    );
                    out.explanation.push(why.clone());
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
    out.explanation.push(format!(
        "annotation {ANNOTATION_DEFAULT_MEMORY} {mib} → {min_mib} (minMemory {})",
        settings.min_memory
    ));
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
fn estimate_vm(
    class: &KataClass,
    sums: &LimitSums,
    vcpus_override_millis: Option<i128>,
    memory_override_mib: Option<i128>,
    explanation: &mut Vec<String>,
) -> VmEstimate {
    let default_millis = match vcpus_override_millis {
        Some(millis) if millis > 0 => millis,
        _ => class.default_vcpus.milli_value(),
    };
    let default_mib = if let Some(mib) = memory_override_mib {
        mib
    } else {
        let (mib, remark) = class.effective_default_memory_mib();
        explanation.extend(remark);
        mib
    };
    let cpu_limits = milli_text(sums.cpu_millis);
    let (vcpus, memory_mib) = if class.runtime.is_go() {
        // Go: vCPUs = ceil(default_vcpus + Σ quota/period), rounded up once;
        // memory = (default_memory << 20 + Σ limit bytes [+ Σ hugepages]) >> 20.
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
        let hugepages_term = if hugepages > 0 {
            format!(
                " + Σ hugepages limits {} MiB",
                hugepages.div_euclid(MIB_BYTES)
            )
        } else {
            String::new()
        };
        explanation.push(format!(
            "VM boots with {vcpus} vCPUs = ceil(default_vcpus {} + Σ cpu limits {cpu_limits}) and {memory_mib} \
             MiB = default_memory {default_mib} MiB + Σ memory limits {} MiB{hugepages_term} (Go runtime{})",
            milli_text(default_millis),
            sums.memory_bytes.div_euclid(MIB_BYTES),
            if class.runtime == KataRuntime::GoStatic {
                ", static"
            } else {
                ", hotplug"
            },
        ));
        (vcpus, memory_mib)
    } else if sums.any_limit {
        // runtime-rs 4.x: max(overhead_vcpus + Σ cpu, 1) → ceil;
        // overhead_memory + even(floor(Σ memory / MiB)).
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
        let even_note = if workload_mib == workload_floor {
            String::new()
        } else {
            format!(", {workload_floor} rounded up to even")
        };
        explanation.push(format!(
            "VM boots with {vcpus} vCPUs = ceil(max(overhead_vcpus {} + Σ cpu limits {cpu_limits}, 1)) and \
             {memory_mib} MiB = overhead_memory {overhead_mib} MiB + Σ memory limits {workload_mib} MiB \
             (MiB floor{even_note}; runtime-rs 4.x)",
            milli_text(overhead_millis),
        ));
        (vcpus, memory_mib)
    } else {
        let vcpus = ceil_div(default_millis.max(0), 1000);
        explanation.push(format!(
            "VM boots with {vcpus} vCPUs = ceil(default_vcpus {}) and {default_mib} MiB = default_memory \
             (no container limits; runtime-rs 4.x)",
            milli_text(default_millis)
        ));
        (vcpus, default_mib)
    };
    if memory_mib == 0 {
        explanation.push("a computed VM memory of 0 MiB is refused by Kata".to_owned());
    }
    VmEstimate {
        vcpus: u64::try_from(vcpus).unwrap_or(u64::MAX),
        memory_mib: u64::try_from(memory_mib).unwrap_or(u64::MAX),
    }
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
    out.explanation.push(format!(
        "scheduler reserves cpu {cpu_total} = requests {cpu_requests} + podFixed {}, memory {memory_total} = \
         requests {memory_requests} + podFixed {}",
        pod_fixed.cpu, pod_fixed.memory
    ));
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
    out.explanation.push(format!(
        "pod cgroup memory limit {cgroup} = Σ limits {limits} + podFixed {}: {verdict}",
        pod_fixed.memory
    ));
    if outgrows && class.guest_memory == GuestMemory::Account {
        out.warnings.push(format!(
            "the VM boots with {} MiB of guest memory but the pod cgroup allows {cgroup} (runtime class {} \
             accounts for its own default memory, not this pod's {ANNOTATION_DEFAULT_MEMORY} annotation): the \
             VMM can be OOM-killed (kata#12786)",
            out.vm.memory_mib, class.handler
        ));
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

/// Millicores as a canonical CPU quantity string (`1`, `250m`, `2200m`).
fn milli_text(millis: i128) -> String {
    Quantity::from_nanos(millis.saturating_mul(NANOS_PER_MILLI), Format::DecimalSi).to_string()
}

#[cfg(test)]
#[path = "kata_tests.rs"]
mod tests;
