//! What the launcher renderer needs from a VirtualMachineInstance, read from
//! its raw JSON, with virt-api's create-time defaults applied.
//!
//! KubeVirt sizes the launcher Pod from the *stored* VMI, i.e. after the
//! virt-api mutating webhook (`pkg/defaults/defaults.go`) has run. A VMI that
//! comes from a cluster already carries those defaults; a hand-written VMI in
//! a CI case does not. [`VmiFacts::from_value`] applies the same defaults, and
//! they are idempotent, so both give the same answer:
//!
//! * CPU: `limits.cpu` set and `requests.cpu` not ⇒ the request is the limit;
//! * topology: sockets, cores and threads all zero ⇒ `sockets =
//!   limits.cpu.Value()` (else `requests.cpu.Value()`, else 1), `cores =
//!   threads = 1` (`Value()` rounds up: `1500m` gives 2 sockets);
//! * guest memory: unset ⇒ `requests.memory`, else `limits.memory`, else the
//!   hugepage size.
//!
//! What sizing reads of the `spec` is one table (`SIZING_SPEC`): the reader
//! reads the spec only through it.
//!
//! A VMI source reads each VMI once, into a [`ReadVmi`] (its uid and its
//! facts, or why it cannot be sized): the watch cache when the watch
//! delivers it, a directory when it loads its files, a direct GET per
//! answer. Requests then size from those facts, never from JSON.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::error::SizingError;
use super::quantity::Quantity;

/// Annotation KubeVirt copies onto the VMI when the AlignCPUs feature gate is
/// on: the emulator thread completes the dedicated CPU count to an even number.
pub const EMULATOR_THREAD_EVEN_PARITY_ANNOTATION: &str =
    "alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity";

/// The VM's guest CPU topology (`spec.domain.cpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTopology {
    /// `sockets`.
    pub sockets: u32,
    /// `cores`.
    pub cores: u32,
    /// `threads`.
    pub threads: u32,
}

impl CpuTopology {
    /// KubeVirt's `hardware.GetNumberOfVCPUs`: the product of the non-zero
    /// factors (a zero factor is skipped, not multiplied).
    #[must_use]
    pub fn vcpus(&self) -> u64 {
        [self.sockets, self.cores, self.threads]
            .into_iter()
            .filter(|factor| *factor != 0)
            .fold(0_u64, |acc, factor| {
                if acc == 0 {
                    u64::from(factor)
                } else {
                    acc.saturating_mul(u64::from(factor))
                }
            })
    }
}

/// Launcher Pod annotation: KubeVirt's own computed overhead (v1.8+, with
/// its overhead report on), authoritative when KubeVirt wrote it.
pub const KUBEVIRT_OVERHEAD_ANNOTATION: &str = "kubevirt.io/memory-overhead-bytes";

/// Launcher Pod annotation: KubeVirt's figure, kept by virt-sizer when it
/// rewrites [`KUBEVIRT_OVERHEAD_ANNOTATION`], so that a reinvocation sizes
/// around KubeVirt's figure, not virt-sizer's.
pub const ORIGINAL_OVERHEAD_ANNOTATION: &str = "virt-sizer.io/kubevirt-memory-overhead-bytes";

/// Launcher Pod annotation recording the profile and policy digest of
/// virt-sizer's decision: on a Pod (and not copied from its VMI), it says
/// virt-sizer has sized this Pod before, in this admission.
pub const DECISION_ANNOTATION: &str = "virt-sizer.io/decision";

/// The VMI annotations sizing reads, the one list of them: [`VmiFacts`]
/// keeps these and no other (a cache of thousands of VMIs should not hold
/// kubectl's last-applied copy of each, or KubeVirt's bookkeeping).
///
/// KubeVirt copies every VMI annotation onto the launcher Pod, so the last
/// three are kept to tell a copy from a write: a Pod annotation with the
/// value its VMI carries is the VM owner's, never KubeVirt's or
/// virt-sizer's.
pub const SIZING_ANNOTATIONS: &[&str] = &[
    super::policy::PROFILE_ANNOTATION,
    EMULATOR_THREAD_EVEN_PARITY_ANNOTATION,
    KUBEVIRT_OVERHEAD_ANNOTATION,
    ORIGINAL_OVERHEAD_ANNOTATION,
    DECISION_ANNOTATION,
];

/// A VirtualMachineInstance as a VMI source read it, once: what the uid
/// check and sizing need, so that a request sizes from facts read when the
/// VMI arrived (a watch event, a file, a GET) instead of reading its JSON
/// again. An invalid VMI is kept with its error, which every request that
/// names it reports exactly as reading it afresh would.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadVmi {
    /// `metadata.uid`: what a launcher Pod's owner reference must match.
    pub uid: Option<String>,
    /// The VMI's facts ([`VmiFacts::from_value`]), or why it cannot be sized.
    pub facts: Result<VmiFacts, SizingError>,
}

impl ReadVmi {
    /// Reads `vmi` (a VirtualMachineInstance object): its uid and its facts.
    #[must_use]
    pub fn from_value(vmi: &Value) -> ReadVmi {
        ReadVmi {
            uid: vmi
                .get("metadata")
                .and_then(|metadata| metadata.get("uid"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            facts: VmiFacts::from_value(vmi),
        }
    }
}

/// How one network interface is bound (`spec.domain.devices.interfaces[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceBinding {
    /// Core `passtBinding` (KubeVirt v1.8+: 250Mi of overhead).
    Passt,
    /// A network binding plugin, `binding.name`.
    Plugin(String),
    /// `sriov`: needs VFIO.
    Sriov,
    /// bridge, masquerade, … : no memory overhead.
    Other,
}

/// Everything about a VMI that changes the launcher Pod's `compute` container.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VmiFacts {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (may be empty in a dry run).
    pub namespace: String,
    /// `metadata.annotations`: those in [`SIZING_ANNOTATIONS`] only.
    pub annotations: BTreeMap<String, String>,
    /// `spec.domain.resources.requests` after defaulting (every resource name).
    pub requests: BTreeMap<String, Quantity>,
    /// `spec.domain.resources.limits` (every resource name).
    pub limits: BTreeMap<String, Quantity>,
    /// `spec.domain.resources.requests.memory` *as the user gave it*: the
    /// page-table term of the overhead reads it (v1.7+ never defaults it).
    pub explicit_memory_request: Option<Quantity>,
    /// `spec.domain.resources.overcommitGuestOverhead`.
    pub overcommit_guest_overhead: bool,
    /// `spec.domain.cpu` topology after defaulting.
    pub cpu: CpuTopology,
    /// `spec.domain.cpu.dedicatedCpuPlacement`.
    pub dedicated_cpus: bool,
    /// `spec.domain.cpu.isolateEmulatorThread`.
    pub isolate_emulator_thread: bool,
    /// `spec.domain.ioThreads.supplementalPoolThreadCount` (0 when unset).
    pub io_thread_supplemental: u32,
    /// `spec.domain.memory.guest` after defaulting.
    pub guest: Option<Quantity>,
    /// `spec.domain.memory.maxGuest`: memory hotplug is possible.
    pub max_guest: Option<Quantity>,
    /// `spec.domain.memory.hugepages.pageSize`, verbatim.
    pub hugepages_page_size: Option<String>,
    /// `spec.domain.memory.reservedOverhead.addedOverhead` (v1.8+).
    pub reserved_overhead: Option<Quantity>,
    /// `spec.architecture`.
    pub architecture: Option<String>,
    /// `spec.domain.devices.autoattachGraphicsDevice` (unset = true).
    pub graphics: bool,
    /// Any `hostDevices`, `gpus` or SR-IOV interface: 1Gi of VFIO overhead.
    pub vfio: bool,
    /// A `downwardMetrics` volume (KubeVirt's `HasDownwardMetricDisk`: 1Mi
    /// of overhead). The `devices.downwardMetrics` virtio-serial device does
    /// not count.
    pub downward_metrics: bool,
    /// `spec.livenessProbe.exec` is set.
    pub exec_liveness_probe: bool,
    /// `spec.readinessProbe.exec` is set.
    pub exec_readiness_probe: bool,
    /// SEV, SEV-ES or SEV-SNP launch security.
    pub sev: bool,
    /// A TPM device.
    pub tpm: bool,
    /// Interface bindings, in order.
    pub interfaces: Vec<InterfaceBinding>,
}

// === What sizing reads of a VMI ===

/// The parts of a VMI's `spec` that sizing reads, the one list of them:
/// [`VmiFacts::from_value`] reads the spec only through this table's
/// [`Shape::keep`], so a field the reader needs and the table lacks is
/// missing everywhere (and the tests see it).
const SIZING_SPEC: Shape = Shape::Fields(&[
    ("architecture", Shape::All),
    (
        "domain",
        Shape::Fields(&[
            // sockets, cores, threads, dedicatedCpuPlacement,
            // isolateEmulatorThread
            ("cpu", Shape::All),
            // guest, maxGuest, hugepages.pageSize,
            // reservedOverhead.addedOverhead
            ("memory", Shape::All),
            // requests, limits, overcommitGuestOverhead
            ("resources", Shape::All),
            // supplementalPoolThreadCount
            ("ioThreads", Shape::All),
            // sev, snp
            ("launchSecurity", Shape::All),
            (
                "devices",
                Shape::Fields(&[
                    ("interfaces", Shape::Items(&INTERFACE)),
                    ("hostDevices", Shape::All),
                    ("gpus", Shape::All),
                    ("autoattachGraphicsDevice", Shape::All),
                    ("tpm", Shape::All),
                ]),
            ),
        ]),
    ),
    ("volumes", Shape::ItemsWith("downwardMetrics")),
    ("livenessProbe", Shape::Fields(&[("exec", Shape::All)])),
    ("readinessProbe", Shape::Fields(&[("exec", Shape::All)])),
]);

/// What [`interface_binding`] reads of one interface.
const INTERFACE: Shape = Shape::Fields(&[
    ("passtBinding", Shape::All),
    ("sriov", Shape::All),
    ("binding", Shape::All),
]);

/// Which parts of a JSON value to keep.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// The whole value.
    All,
    /// Only these keys of a map, each with its own shape.
    Fields(&'static [(&'static str, Shape)]),
    /// Every item of a list, each with this shape.
    Items(&'static Shape),
    /// Only the items of a list that have this key, whole.
    ItemsWith(&'static str),
}

impl Shape {
    /// The part of `value` this shape keeps, in `value`'s key order. A value
    /// of another type than the shape expects is kept whole: the reader
    /// then treats it as it would in the full object.
    fn keep(self, value: &Value) -> Value {
        match (self, value) {
            (Shape::Fields(fields), Value::Object(object)) => Value::Object(
                object
                    .iter()
                    .filter_map(|(key, item)| {
                        let (_, shape) = fields.iter().find(|(name, _)| name == key)?;
                        Some((key.clone(), shape.keep(item)))
                    })
                    .collect(),
            ),
            (Shape::Items(shape), Value::Array(items)) => {
                Value::Array(items.iter().map(|item| shape.keep(item)).collect())
            }
            (Shape::ItemsWith(key), Value::Array(items)) => Value::Array(
                items
                    .iter()
                    .filter(|item| item.get(key).is_some())
                    .cloned()
                    .collect(),
            ),
            _ => value.clone(),
        }
    }
}

impl VmiFacts {
    /// Reads a VMI from its raw JSON (or YAML converted to JSON). Of the
    /// `spec` it sees only what the table of sizing fields keeps (the
    /// module's `SIZING_SPEC`).
    ///
    /// # Errors
    /// A quantity that does not parse, or a field of the wrong type, named by
    /// its path (`spec.domain.memory.guest: invalid quantity "1.5.5Gi": …`).
    pub fn from_value(vmi: &Value) -> Result<VmiFacts, SizingError> {
        check_kind(vmi)?;
        let metadata = vmi.get("metadata").unwrap_or(&Value::Null);
        let spec = SIZING_SPEC.keep(vmi.get("spec").unwrap_or(&Value::Null));
        let domain = field(&spec, "domain");
        let (resources, cpu) = (field(domain, "resources"), field(domain, "cpu"));
        let (memory, devices) = (field(domain, "memory"), field(domain, "devices"));

        let (requests, limits) = read_resources(resources)?;
        let explicit_memory_request = requests.get("memory").copied();
        let topology = read_topology(cpu, &requests, &limits)?;
        let hugepages_page_size = memory
            .get("hugepages")
            .and_then(|hugepages| hugepages.get("pageSize"))
            .map(|size| string(size, "spec.domain.memory.hugepages.pageSize"))
            .transpose()?;
        let guest = read_guest(memory, &requests, &limits, hugepages_page_size.as_deref())?;
        let interfaces: Vec<InterfaceBinding> = devices
            .get("interfaces")
            .and_then(Value::as_array)
            .map(|list| list.iter().map(interface_binding).collect())
            .unwrap_or_default();
        let launch_security = field(domain, "launchSecurity");

        // Struct fields evaluate in order: the first bad field is reported.
        Ok(VmiFacts {
            name: text(metadata, "name"),
            namespace: text(metadata, "namespace"),
            annotations: string_map(metadata.get("annotations"))
                .into_iter()
                .filter(|(key, _)| SIZING_ANNOTATIONS.contains(&key.as_str()))
                .collect(),
            requests,
            limits,
            explicit_memory_request,
            overcommit_guest_overhead: flag(resources, "overcommitGuestOverhead"),
            cpu: topology,
            dedicated_cpus: flag(cpu, "dedicatedCpuPlacement"),
            isolate_emulator_thread: flag(cpu, "isolateEmulatorThread"),
            io_thread_supplemental: uint(
                field(domain, "ioThreads"),
                "supplementalPoolThreadCount",
                "spec.domain.ioThreads.supplementalPoolThreadCount",
            )?,
            guest,
            max_guest: optional_quantity(memory.get("maxGuest"), "spec.domain.memory.maxGuest")?,
            hugepages_page_size,
            reserved_overhead: optional_quantity(
                memory
                    .get("reservedOverhead")
                    .and_then(|reserved| reserved.get("addedOverhead")),
                "spec.domain.memory.reservedOverhead.addedOverhead",
            )?,
            architecture: spec
                .get("architecture")
                .and_then(Value::as_str)
                .filter(|arch| !arch.is_empty())
                .map(str::to_owned),
            graphics: devices
                .get("autoattachGraphicsDevice")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            vfio: has_items(devices, "hostDevices")
                || has_items(devices, "gpus")
                || interfaces.contains(&InterfaceBinding::Sriov),
            downward_metrics: has_downward_metrics_volume(&spec),
            exec_liveness_probe: has_exec_probe(&spec, "livenessProbe"),
            exec_readiness_probe: has_exec_probe(&spec, "readinessProbe"),
            sev: launch_security.get("sev").is_some() || launch_security.get("snp").is_some(),
            tpm: has_tpm(devices),
            interfaces,
        })
    }

    /// Whether the VMI's pages are hugepages.
    #[must_use]
    pub fn has_hugepages(&self) -> bool {
        self.hugepages_page_size.is_some()
    }

    /// KubeVirt's `WantsToHaveQOSGuaranteed` (v1.7+): memory request (or,
    /// without one, the memory limit) equals a memory limit, and a non-zero
    /// CPU request equals the CPU limit.
    #[must_use]
    pub fn wants_guaranteed_qos(&self) -> bool {
        let memory_request = self
            .explicit_memory_request
            .or_else(|| self.limits.get("memory").copied());
        let memory = match (memory_request, self.limits.get("memory")) {
            (Some(request), Some(limit)) => !request.is_zero() && request == *limit,
            _ => false,
        };
        let cpu = match (self.requests.get("cpu"), self.limits.get("cpu")) {
            (Some(request), Some(limit)) => !request.is_zero() && request == limit,
            _ => false,
        };
        memory && cpu
    }
}

// === Reading steps ===

/// A `ResourceList`: resource name → quantity.
type ResourceList = BTreeMap<String, Quantity>;

/// Refuses an object that says it is something other than a VMI (a missing
/// `kind` is accepted: a bare spec in a test case).
fn check_kind(vmi: &Value) -> Result<(), SizingError> {
    let kind = vmi.get("kind").and_then(Value::as_str).unwrap_or("");
    if !kind.is_empty() && kind != "VirtualMachineInstance" {
        return Err(SizingError::InvalidField {
            field: "kind".into(),
            message: format!("expected VirtualMachineInstance, got {kind}"),
        });
    }
    Ok(())
}

/// `spec.domain.resources.requests` and `limits`, with virt-api's default:
/// a CPU limit without a request becomes the request.
fn read_resources(resources: &Value) -> Result<(ResourceList, ResourceList), SizingError> {
    let mut requests = quantity_map(resources.get("requests"), "spec.domain.resources.requests")?;
    let limits = quantity_map(resources.get("limits"), "spec.domain.resources.limits")?;
    if let (Some(limit), false) = (limits.get("cpu"), requests.contains_key("cpu")) {
        requests.insert("cpu".into(), *limit);
    }
    Ok((requests, limits))
}

/// `spec.domain.cpu`'s topology, with virt-api's default: sockets, cores
/// and threads all zero ⇒ `sockets = limits.cpu.Value()` (else
/// `requests.cpu.Value()`, else 1), `cores = threads = 1`.
fn read_topology(
    cpu: &Value,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Result<CpuTopology, SizingError> {
    let topology = CpuTopology {
        sockets: uint(cpu, "sockets", "spec.domain.cpu.sockets")?,
        cores: uint(cpu, "cores", "spec.domain.cpu.cores")?,
        threads: uint(cpu, "threads", "spec.domain.cpu.threads")?,
    };
    if topology != CpuTopology::default() {
        return Ok(topology);
    }
    let from_resources = limits.get("cpu").or_else(|| requests.get("cpu"));
    let sockets = from_resources.map_or(1, Quantity::value);
    Ok(CpuTopology {
        sockets: u32::try_from(sockets.max(1)).map_err(|_| SizingError::InvalidField {
            field: "spec.domain.resources.limits.cpu".into(),
            message: format!("{sockets} CPUs is out of range"),
        })?,
        cores: 1,
        threads: 1,
    })
}

/// `spec.domain.memory.guest`, with virt-api's default: unset ⇒
/// `requests.memory`, else `limits.memory`, else the hugepage size.
fn read_guest(
    memory: &Value,
    requests: &ResourceList,
    limits: &ResourceList,
    hugepages_page_size: Option<&str>,
) -> Result<Option<Quantity>, SizingError> {
    if let Some(guest) = optional_quantity(memory.get("guest"), "spec.domain.memory.guest")? {
        return Ok(Some(guest));
    }
    match (requests.get("memory"), limits.get("memory")) {
        (Some(request), _) => Ok(Some(*request)),
        (None, Some(limit)) => Ok(Some(*limit)),
        (None, None) => hugepages_page_size
            .map(|size| {
                Quantity::parse(size).map_err(|source| SizingError::InvalidQuantity {
                    field: "spec.domain.memory.hugepages.pageSize".into(),
                    source,
                })
            })
            .transpose(),
    }
}

/// A `downwardMetrics` volume (KubeVirt's `HasDownwardMetricDisk` reads
/// volumes only; the virtio-serial `devices.downwardMetrics` device adds no
/// overhead).
fn has_downward_metrics_volume(spec: &Value) -> bool {
    spec.get("volumes")
        .and_then(Value::as_array)
        .is_some_and(|volumes| {
            volumes
                .iter()
                .any(|volume| volume.get("downwardMetrics").is_some())
        })
}

/// `spec.<probe>.exec` is set.
fn has_exec_probe(spec: &Value, probe: &str) -> bool {
    spec.get(probe)
        .is_some_and(|probe| probe.get("exec").is_some())
}

/// A TPM device: `tpm: {enabled: false}` disables it; `tpm: {}` enables it.
fn has_tpm(devices: &Value) -> bool {
    devices
        .get("tpm")
        .is_some_and(|tpm| tpm.get("enabled").and_then(Value::as_bool) != Some(false))
}

fn interface_binding(interface: &Value) -> InterfaceBinding {
    if interface.get("passtBinding").is_some() {
        InterfaceBinding::Passt
    } else if interface.get("sriov").is_some() {
        InterfaceBinding::Sriov
    } else if let Some(name) = interface
        .get("binding")
        .and_then(|binding| binding.get("name"))
        .and_then(Value::as_str)
    {
        InterfaceBinding::Plugin(name.to_owned())
    } else {
        InterfaceBinding::Other
    }
}

/// `object.key`, or null.
fn field<'v>(object: &'v Value, key: &str) -> &'v Value {
    object.get(key).unwrap_or(&Value::Null)
}

/// A string field, or `""`.
fn text(object: &Value, key: &str) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `object.key` is a non-empty list.
fn has_items(object: &Value, key: &str) -> bool {
    object
        .get(key)
        .and_then(Value::as_array)
        .is_some_and(|list| !list.is_empty())
}

fn flag(object: &Value, key: &str) -> bool {
    object.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn uint(object: &Value, key: &str, field: &str) -> Result<u32, SizingError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value
            .as_u64()
            .and_then(|number| u32::try_from(number).ok())
            .ok_or_else(|| SizingError::InvalidField {
                field: field.into(),
                message: format!("expected a non-negative integer, got {value}"),
            }),
    }
}

fn string(value: &Value, field: &str) -> Result<String, SizingError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| SizingError::InvalidField {
            field: field.into(),
            message: format!("expected a string, got {value}"),
        })
}

/// Reads a `map[string]string` leniently: non-string values are skipped
/// (labels and annotations are strings in every valid object).
pub(crate) fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|object| {
            object
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a quantity that may be a JSON string or number; a negative one
/// is an error (no resource in a Pod or VMI can be negative). `field` names
/// it in an error, and is only written out then.
pub(crate) fn quantity_at(
    value: &Value,
    field: impl fmt::Display,
) -> Result<Quantity, SizingError> {
    let text = match value {
        Value::String(text) => Cow::Borrowed(text.as_str()),
        Value::Number(number) => Cow::Owned(number.to_string()),
        other => {
            return Err(SizingError::InvalidField {
                field: field.to_string(),
                message: format!("expected a quantity, got {other}"),
            });
        }
    };
    let quantity = Quantity::parse(&text).map_err(|source| SizingError::InvalidQuantity {
        field: field.to_string(),
        source,
    })?;
    if quantity.is_negative() {
        return Err(SizingError::Negative {
            field: field.to_string(),
            value: text.into_owned(),
        });
    }
    Ok(quantity)
}

fn optional_quantity(value: Option<&Value>, field: &str) -> Result<Option<Quantity>, SizingError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => quantity_at(value, field).map(Some),
    }
}

/// Reads a `ResourceList` (`{name: quantity}`), naming the bad entry.
pub(crate) fn quantity_map(
    value: Option<&Value>,
    field: impl fmt::Display,
) -> Result<BTreeMap<String, Quantity>, SizingError> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let object = value.as_object().ok_or_else(|| SizingError::InvalidField {
        field: field.to_string(),
        message: format!("expected a map of quantities, got {value}"),
    })?;
    object
        .iter()
        .map(|(name, quantity)| {
            quantity_at(quantity, format_args!("{field}.{name}"))
                .map(|parsed| (name.clone(), parsed))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A source's read VMI carries the uid and exactly the facts (or the
    /// error) reading the object gives.
    #[test]
    fn a_read_vmi_holds_the_uid_and_the_facts() {
        let vmi = json!({
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "a", "namespace": "b", "uid": "u"},
            "spec": {"domain": {"memory": {"guest": "1Gi"}}},
        });
        let read = ReadVmi::from_value(&vmi);
        assert_eq!(read.uid.as_deref(), Some("u"));
        assert_eq!(read.facts, VmiFacts::from_value(&vmi));
        assert_eq!(read.facts.expect("valid").name, "a");
    }

    /// An invalid VMI is read once too, and keeps the error every request
    /// naming it reports.
    #[test]
    fn an_invalid_vmi_keeps_its_error() {
        let vmi = json!({"spec": {"domain": {"memory": {"guest": "1.5.5Gi"}}}});
        let read = ReadVmi::from_value(&vmi);
        assert_eq!(read.uid, None);
        let error = read.facts.expect_err("invalid");
        assert_eq!(Err(error.clone()), VmiFacts::from_value(&vmi));
        assert!(
            error.to_string().starts_with("spec.domain.memory.guest"),
            "{error}"
        );
    }

    /// Only the annotations sizing reads are facts: not kubectl's
    /// last-applied copy of the object, nor anything else.
    #[test]
    fn only_the_annotations_sizing_reads_are_kept() {
        let facts = VmiFacts::from_value(&json!({
            "metadata": {"annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{…}",
                "kubevirt.io/latest-observed-api-version": "v1",
                "virt-sizer.io/profile": "dev",
            }},
        }))
        .expect("valid");
        assert_eq!(
            facts.annotations,
            BTreeMap::from([("virt-sizer.io/profile".to_owned(), "dev".to_owned())])
        );
    }
}
