//! Shared builders for the integration tests: VirtualMachineInstances,
//! virt-launcher Pods shaped like KubeVirt's, AdmissionRequests, policies,
//! readers for what a decision produced, and the example webhook router
//! with the invariants of its every answer ([`webhook`]).
//!
//! Everything here is plain data; expected values are computed by the tests
//! themselves, never by the crate under test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use virt_sizer::admission::{self, AdmissionRequest, Decision, Environment, VmiLookup};
use virt_sizer::sizing::Quantity;
use virt_sizer::sizing::policy::ValidPolicy;
use virt_sizer::sizing::vmi::ReadVmi;

mod webhook;

pub(crate) use webhook::{
    Answer, EXAMPLE_REVIEW, EXAMPLE_RUNTIME_CLASS, check_answer, post, post_to, router,
};

/// Installs ring as the process's rustls provider (reqwest and kube build
/// their TLS from it), once, whichever test comes first.
pub(crate) fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The crypto provider the server is built with.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed serving pair for localhost and 127.0.0.1.
pub(crate) fn pair() -> virt_sizer::server::tls::SelfSigned {
    virt_sizer::server::tls::generate_self_signed(&["localhost", "127.0.0.1"])
        .expect("certificates")
}

/// 2^20 bytes.
pub(crate) const MI: u64 = 1 << 20;
/// 2^30 bytes.
pub(crate) const GI: u64 = 1 << 30;
/// Namespace of every test object.
pub(crate) const NAMESPACE: &str = "tenant-a";
/// uid of every test request (distinct from the crate's synthetic uid, so a
/// copied uid is really copied).
pub(crate) const UID: &str = "7d3b8a0e-5f1c-4c2e-9a6b-0000000000aa";
/// The opt-out label of the shipped webhook selectors
/// (`manifests/base/mutatingwebhookconfiguration.yaml`): a namespace or
/// object labelled `"true"` is never sent to virt-sizer.
pub(crate) const IGNORE_LABEL: &str = "virt-sizer.io/ignore";
/// uid of the test VMIs.
pub(crate) const VMI_UID: &str = "3f0c9a52-6b1e-4d27-8c11-000000000101";

/// KubeVirt's fixed overhead on the v1.6–v1.9 line (its overhead table, terms
/// 2–6): virt-launcher-monitor 25Mi + virt-launcher 100Mi + virtlogd 25Mi +
/// virtqemud 40Mi + QEMU 30Mi.
pub(crate) const FIXED_OVERHEAD_V1_9: u64 = (25 + 100 + 25 + 40 + 30) * MI;

// === VirtualMachineInstances ===

/// A memory quantity with the exact byte count the test expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mem {
    /// Exact bytes.
    pub(crate) bytes: u64,
    /// How it is written in the object.
    pub(crate) text: String,
}

/// How a memory quantity is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemFormat {
    /// `"512Mi"`.
    Mi,
    /// `"536870912"` (bytes, same value as `Mi`).
    Bytes,
    /// `"512M"` (decimal megabytes: a different value, N × 10^6).
    DecimalM,
}

impl Mem {
    /// `n` in the given format (`DecimalM` means n × 10^6 bytes).
    #[must_use]
    pub(crate) fn new(n: u64, format: MemFormat) -> Mem {
        match format {
            MemFormat::Mi => Mem {
                bytes: n * MI,
                text: format!("{n}Mi"),
            },
            MemFormat::Bytes => Mem {
                bytes: n * MI,
                text: (n * MI).to_string(),
            },
            MemFormat::DecimalM => Mem {
                bytes: n * 1_000_000,
                text: format!("{n}M"),
            },
        }
    }

    /// `n` MiB written as `"<n>Mi"`.
    #[must_use]
    pub(crate) fn mi(n: u64) -> Mem {
        Mem::new(n, MemFormat::Mi)
    }
}

/// A CPU quantity with its exact millicores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cpu {
    /// `"<n>m"`.
    Milli(u32),
    /// `"<n>"` whole CPUs.
    Whole(u32),
}

impl Cpu {
    /// Exact millicores.
    #[must_use]
    pub(crate) fn millis(self) -> u64 {
        match self {
            Cpu::Milli(n) => u64::from(n),
            Cpu::Whole(n) => u64::from(n) * 1000,
        }
    }

    /// As written in the object.
    #[must_use]
    pub(crate) fn text(self) -> String {
        match self {
            Cpu::Milli(n) => format!("{n}m"),
            Cpu::Whole(n) => n.to_string(),
        }
    }

    /// Whether it is a whole number of CPUs.
    #[must_use]
    pub(crate) fn is_whole(self) -> bool {
        self.millis().is_multiple_of(1000)
    }

    /// Go's `Value()`: whole CPUs, rounded up.
    #[must_use]
    pub(crate) fn value(self) -> u64 {
        self.millis().div_ceil(1000)
    }
}

/// A hugepage size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageSize {
    /// `2Mi`.
    TwoMi,
    /// `1Gi`.
    OneGi,
}

impl PageSize {
    /// Bytes per page.
    #[must_use]
    pub(crate) fn bytes(self) -> u64 {
        match self {
            PageSize::TwoMi => 2 * MI,
            PageSize::OneGi => GI,
        }
    }

    /// As written in `pageSize` (and in the `hugepages-<size>` resource).
    #[must_use]
    pub(crate) fn text(self) -> &'static str {
        match self {
            PageSize::TwoMi => "2Mi",
            PageSize::OneGi => "1Gi",
        }
    }
}

/// The shape of a VMI: everything the tests vary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmiSpec {
    /// `metadata.name`.
    pub(crate) name: String,
    /// `spec.domain.cpu.sockets` (0 = unset).
    pub(crate) sockets: u32,
    /// `spec.domain.cpu.cores` (0 = unset).
    pub(crate) cores: u32,
    /// `spec.domain.cpu.threads` (0 = unset).
    pub(crate) threads: u32,
    /// `dedicatedCpuPlacement`.
    pub(crate) dedicated: bool,
    /// `isolateEmulatorThread` (only with `dedicated`).
    pub(crate) isolate_emulator_thread: bool,
    /// The AlignCPUs even-parity annotation.
    pub(crate) even_parity: bool,
    /// `ioThreads.supplementalPoolThreadCount`.
    pub(crate) io_threads: Option<u32>,
    /// `spec.domain.memory.guest`.
    pub(crate) guest: Option<Mem>,
    /// `resources.requests.memory`.
    pub(crate) requests_memory: Option<Mem>,
    /// `resources.limits.memory`.
    pub(crate) limits_memory: Option<Mem>,
    /// `resources.requests.cpu`.
    pub(crate) requests_cpu: Option<Cpu>,
    /// `resources.limits.cpu`.
    pub(crate) limits_cpu: Option<Cpu>,
    /// `memory.hugepages.pageSize`.
    pub(crate) hugepages: Option<PageSize>,
    /// `resources.overcommitGuestOverhead`.
    pub(crate) overcommit_guest_overhead: bool,
    /// Number of device-plugin GPUs (`nvidia.com/GH100`).
    pub(crate) gpus: u32,
    /// Number of host devices.
    pub(crate) host_devices: u32,
    /// An exec liveness probe.
    pub(crate) liveness_exec: bool,
    /// An exec readiness probe.
    pub(crate) readiness_exec: bool,
    /// `spec.architecture`.
    pub(crate) architecture: Option<&'static str>,
    /// `devices.autoattachGraphicsDevice` (unset = true).
    pub(crate) graphics: Option<bool>,
}

impl VmiSpec {
    /// 1 socket × 1 core × 1 thread, `guest: <guest_mib>Mi`, nothing else.
    #[must_use]
    pub(crate) fn simple(name: &str, guest_mib: u64) -> VmiSpec {
        VmiSpec {
            name: name.to_owned(),
            sockets: 1,
            cores: 1,
            threads: 1,
            dedicated: false,
            isolate_emulator_thread: false,
            even_parity: false,
            io_threads: None,
            guest: Some(Mem::mi(guest_mib)),
            requests_memory: None,
            limits_memory: None,
            requests_cpu: None,
            limits_cpu: None,
            hugepages: None,
            overcommit_guest_overhead: false,
            gpus: 0,
            host_devices: 0,
            liveness_exec: false,
            readiness_exec: false,
            architecture: None,
            graphics: None,
        }
    }

    /// The VMI as stored JSON.
    #[must_use]
    pub(crate) fn to_json(&self) -> Value {
        let mut cpu = Map::new();
        for (key, value) in [
            ("sockets", self.sockets),
            ("cores", self.cores),
            ("threads", self.threads),
        ] {
            if value != 0 {
                cpu.insert(key.into(), json!(value));
            }
        }
        if self.dedicated {
            cpu.insert("dedicatedCpuPlacement".into(), json!(true));
        }
        if self.isolate_emulator_thread {
            cpu.insert("isolateEmulatorThread".into(), json!(true));
        }
        let mut memory = Map::new();
        if let Some(guest) = &self.guest {
            memory.insert("guest".into(), json!(guest.text));
        }
        if let Some(page) = self.hugepages {
            memory.insert("hugepages".into(), json!({"pageSize": page.text()}));
        }
        let mut requests = Map::new();
        let mut limits = Map::new();
        if let Some(memory) = &self.requests_memory {
            requests.insert("memory".into(), json!(memory.text));
        }
        if let Some(memory) = &self.limits_memory {
            limits.insert("memory".into(), json!(memory.text));
        }
        if let Some(cpu) = self.requests_cpu {
            requests.insert("cpu".into(), json!(cpu.text()));
        }
        if let Some(cpu) = self.limits_cpu {
            limits.insert("cpu".into(), json!(cpu.text()));
        }
        let mut resources = Map::new();
        if !requests.is_empty() {
            resources.insert("requests".into(), Value::Object(requests));
        }
        if !limits.is_empty() {
            resources.insert("limits".into(), Value::Object(limits));
        }
        if self.overcommit_guest_overhead {
            resources.insert("overcommitGuestOverhead".into(), json!(true));
        }
        let mut devices = json!({
            "disks": [{"name": "rootdisk", "disk": {"bus": "virtio"}}],
            "interfaces": [{"name": "default", "masquerade": {}}],
        });
        if let Some(graphics) = self.graphics {
            devices["autoattachGraphicsDevice"] = json!(graphics);
        }
        if self.gpus > 0 {
            devices["gpus"] = Value::Array(
                (0..self.gpus)
                    .map(|i| json!({"name": format!("gpu{i}"), "deviceName": "nvidia.com/GH100"}))
                    .collect(),
            );
        }
        if self.host_devices > 0 {
            devices["hostDevices"] = Value::Array(
                (0..self.host_devices)
                    .map(|i| json!({"name": format!("hostdev{i}"), "deviceName": "intel.com/qat"}))
                    .collect(),
            );
        }
        let mut domain = json!({
            "cpu": cpu,
            "memory": memory,
            "resources": resources,
            "devices": devices,
            "machine": {"type": "q35"},
        });
        if let Some(count) = self.io_threads {
            domain["ioThreads"] = json!({"supplementalPoolThreadCount": count});
        }
        let mut spec = json!({
            "domain": domain,
            "networks": [{"name": "default", "pod": {}}],
            "volumes": [{"name": "rootdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}],
        });
        if let Some(arch) = self.architecture {
            spec["architecture"] = json!(arch);
        }
        let probe = json!({"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 10});
        if self.liveness_exec {
            spec["livenessProbe"] = probe.clone();
        }
        if self.readiness_exec {
            spec["readinessProbe"] = probe;
        }
        let mut annotations = json!({"kubevirt.io/latest-observed-api-version": "v1"});
        if self.even_parity {
            annotations["alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity"] = json!("");
        }
        json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": self.name,
                "namespace": NAMESPACE,
                "uid": VMI_UID,
                "labels": {"kubevirt.io/domain": self.name},
                "annotations": annotations,
            },
            "spec": spec,
        })
    }

    /// vCPUs as KubeVirt counts them after virt-api's defaulting (reference
    /// §1.1, §1.2): the product of the non-zero topology factors; with no
    /// topology at all, `limits.cpu.Value()` else `requests.cpu.Value()`
    /// else 1.
    #[must_use]
    pub(crate) fn vcpus(&self) -> u64 {
        let factors: Vec<u64> = [self.sockets, self.cores, self.threads]
            .into_iter()
            .filter(|factor| *factor != 0)
            .map(u64::from)
            .collect();
        if factors.is_empty() {
            self.limits_cpu
                .or(self.requests_cpu)
                .map_or(1, Cpu::value)
                .max(1)
        } else {
            factors.into_iter().product()
        }
    }

    /// Whether KubeVirt's VMI admission (`vmi-create-admitter.go`) would
    /// accept this VMI, for the rules the generated shapes can break.
    #[must_use]
    pub(crate) fn kubevirt_accepts(&self) -> bool {
        let memory_set =
            self.guest.is_some() || self.requests_memory.is_some() || self.limits_memory.is_some();
        let memory_order = match (&self.requests_memory, &self.limits_memory) {
            (Some(request), Some(limit)) => request.bytes <= limit.bytes,
            _ => true,
        };
        // guest must not exceed the memory limit.
        let guest_under_limit = match (&self.guest, &self.limits_memory) {
            (Some(guest), Some(limit)) => guest.bytes <= limit.bytes,
            _ => true,
        };
        let cpu_order = match (self.requests_cpu, self.limits_cpu) {
            (Some(request), Some(limit)) => request.millis() <= limit.millis(),
            _ => true,
        };
        let dedicated_ok = !self.dedicated
            || (self.requests_cpu.is_none_or(Cpu::is_whole)
                && self.limits_cpu.is_none_or(Cpu::is_whole)
                && match (self.requests_cpu, self.limits_cpu) {
                    (Some(request), Some(limit)) => request == limit,
                    _ => true,
                }
                && match (&self.requests_memory, &self.limits_memory) {
                    (Some(request), Some(limit)) => request.bytes == limit.bytes,
                    _ => true,
                }
                // CPU values must match the topology when both are given.
                && [self.requests_cpu, self.limits_cpu]
                    .into_iter()
                    .flatten()
                    .all(|cpu| cpu.millis() == self.vcpus() * 1000));
        let emulator_ok = !self.isolate_emulator_thread || self.dedicated;
        let hugepages_ok = self.hugepages.is_none_or(|page| {
            [&self.guest, &self.requests_memory, &self.limits_memory]
                .into_iter()
                .flatten()
                .all(|memory| {
                    memory.bytes >= page.bytes() && memory.bytes.is_multiple_of(page.bytes())
                })
        });
        memory_set
            && memory_order
            && guest_under_limit
            && cpu_order
            && dedicated_ok
            && emulator_ok
            && hugepages_ok
    }
}

// === Pods and other objects ===

/// A virt-launcher Pod as KubeVirt's virt-controller renders it for VMI
/// `vmi`, as KubeVirt renders it: labels, controller owner reference to the VMI,
/// `kubevirt.io/domain`, the `compute` container with `compute_resources`,
/// and a `guest-console-log` container with KubeVirt's default resources.
#[must_use]
pub(crate) fn launcher_pod(vmi: &str, compute_resources: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("virt-launcher-{vmi}-"),
            "namespace": NAMESPACE,
            "labels": {
                "kubevirt.io": "virt-launcher",
                "kubevirt.io/created-by": VMI_UID,
                "vm.kubevirt.io/name": vmi,
                "vmi.kubevirt.io/id": vmi,
            },
            "annotations": {
                "kubevirt.io/domain": vmi,
                "kubectl.kubernetes.io/default-container": "compute",
                "kubevirt.io/migrationTransportUnix": "true",
            },
            "ownerReferences": [{
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "name": vmi,
                "uid": VMI_UID,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [
                {
                    "name": "compute",
                    "image": "quay.io/kubevirt/virt-launcher:v1.9.0",
                    "command": ["/usr/bin/virt-launcher-monitor", "--name", vmi],
                    "resources": compute_resources,
                },
                {
                    "name": "guest-console-log",
                    "image": "quay.io/kubevirt/virt-launcher:v1.9.0",
                    "command": ["/usr/bin/virt-tail"],
                    "resources": {
                        "requests": {"cpu": "5m", "memory": "35M"},
                        "limits": {"cpu": "15m", "memory": "60M"},
                    },
                },
            ],
            "restartPolicy": "Never",
            "nodeSelector": {"kubevirt.io/schedulable": "true"},
        },
    })
}

/// KubeVirt's device resources in the `compute` container (limits only;
/// the apiserver defaults requests to them) plus the 50M ephemeral-storage
/// request, around the given cpu/memory `requests`.
#[must_use]
pub(crate) fn compute_resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Value {
    let mut request_map = Map::new();
    let mut limit_map = Map::new();
    for (name, value) in [
        ("devices.kubevirt.io/kvm", "1"),
        ("devices.kubevirt.io/tun", "1"),
    ] {
        request_map.insert(name.into(), json!(value));
        limit_map.insert(name.into(), json!(value));
    }
    request_map.insert("ephemeral-storage".into(), json!("50M"));
    for (name, value) in requests {
        request_map.insert((*name).into(), json!(value));
    }
    for (name, value) in limits {
        limit_map.insert((*name).into(), json!(value));
    }
    json!({"requests": request_map, "limits": limit_map})
}

/// A Pod that is not a launcher Pod.
#[must_use]
pub(crate) fn plain_pod(runtime_class: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": NAMESPACE, "labels": {"app": "web"}},
        "spec": {"containers": [{
            "name": "web",
            "image": "nginx:1.27",
            "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}},
        }]},
    });
    if let Some(class) = runtime_class {
        pod["spec"]["runtimeClassName"] = json!(class);
    }
    pod
}

/// A RuntimeClass as kata-deploy ships it.
#[must_use]
pub(crate) fn runtime_class(handler: &str, pod_fixed: Option<(&str, &str)>) -> Value {
    let mut class = json!({
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": handler},
        "handler": handler,
        "scheduling": {"nodeSelector": {"katacontainers.io/kata-runtime": "true"}},
    });
    if let Some((cpu, memory)) = pod_fixed {
        class["overhead"] = json!({"podFixed": {"cpu": cpu, "memory": memory}});
    }
    class
}

/// Sets `value` at the JSON pointer `path`, creating missing parent maps.
pub(crate) fn set(object: &mut Value, path: &str, value: Value) {
    let tokens: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut current = object;
    for token in &tokens[..tokens.len() - 1] {
        current = match current {
            Value::Array(items) => &mut items[token.parse::<usize>().expect("array index")],
            Value::Object(map) => map.entry(token.clone()).or_insert_with(|| json!({})),
            other => panic!("cannot descend into {other} at {token}"),
        };
    }
    let last = tokens.last().expect("non-empty pointer").clone();
    match current {
        Value::Array(items) => items[last.parse::<usize>().expect("array index")] = value,
        Value::Object(map) => {
            map.insert(last, value);
        }
        other => panic!("cannot set {last} in {other}"),
    }
}

/// Removes the value at the JSON pointer `path` (if present).
pub(crate) fn remove(object: &mut Value, path: &str) {
    let (parent, last) = path.rsplit_once('/').expect("a pointer");
    let last = last.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(map)) = object.pointer_mut(parent) {
        map.remove(&last);
    }
}

// === Requests, policies, decisions ===

/// The request the apiserver sends for `object` on `operation` in
/// [`NAMESPACE`], with uid [`UID`].
#[must_use]
pub(crate) fn request(object: Value, operation: &str) -> AdmissionRequest {
    let mut request = virt_sizer::commands::request_for_object(object, NAMESPACE, operation);
    request.uid = UID.to_owned();
    request
}

/// A policy from YAML text (panics with every field error if invalid).
#[must_use]
pub(crate) fn policy(text: &str) -> ValidPolicy {
    ValidPolicy::from_yaml(text)
        .unwrap_or_else(|errors| panic!("invalid test policy: {errors}\n{text}"))
}

/// A policy whose `default` profile has the given YAML lines (indented by
/// the caller's choice; each line becomes a field of `default`).
#[must_use]
pub(crate) fn policy_with_default(release: &str, default_fields: &[&str]) -> ValidPolicy {
    let mut text = format!(
        "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nkubevirt:\n  release: \"{release}\"\n  architecture: amd64\nprofiles:\n  default:\n"
    );
    if default_fields.is_empty() {
        text.push_str("    cpuAllocationRatio: 10\n");
    }
    for field in default_fields {
        text.push_str("    ");
        text.push_str(field);
        text.push('\n');
    }
    policy(&text)
}

/// Reviews `request` with `policy`, the launcher Pod's VMI `vmi`, no
/// namespace labels and quota inferred from the Pod.
#[must_use]
pub(crate) fn review(
    policy: &ValidPolicy,
    vmi: Option<&Value>,
    request: &AdmissionRequest,
) -> Decision {
    let labels = BTreeMap::new();
    review_in(policy, vmi, &labels, request)
}

/// [`review`] with namespace labels.
#[must_use]
pub(crate) fn review_in(
    policy: &ValidPolicy,
    vmi: Option<&Value>,
    namespace_labels: &BTreeMap<String, String>,
    request: &AdmissionRequest,
) -> Decision {
    // Read as a VMI source reads it.
    let vmi = vmi.map(ReadVmi::from_value);
    let env = Environment {
        policy,
        namespace_labels,
        vmi: VmiLookup::of(vmi.as_ref()),
    };
    admission::review(&env, request)
}

/// The JSON Patch ops of the response, decoded from the base64 `patch`
/// (empty without a patch).
#[must_use]
pub(crate) fn patch_ops(decision: &Decision) -> Vec<Value> {
    let Some(encoded) = &decision.response().patch else {
        return Vec::new();
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("patch is base64");
    let value: Value = serde_json::from_slice(&bytes).expect("patch is JSON");
    value.as_array().expect("patch is a JSON array").clone()
}

/// The op paths of the response's patch.
#[must_use]
pub(crate) fn op_paths(decision: &Decision) -> Vec<String> {
    patch_ops(decision)
        .iter()
        .map(|op| op["path"].as_str().expect("op path").to_owned())
        .collect()
}

/// The object after the decision's patch.
#[must_use]
pub(crate) fn patched(request: &AdmissionRequest, decision: &Decision) -> Value {
    admission::patched_object(request, decision)
        .expect("the patch applies")
        .expect("the request has an object")
}

/// A ResourceList read as quantities (missing map = empty).
#[must_use]
pub(crate) fn quantities(list: Option<&Value>) -> BTreeMap<String, Quantity> {
    list.and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(name, value)| {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    let quantity = Quantity::parse(&text).unwrap_or_else(|error| {
                        panic!("{name}: {text:?} is not a quantity: {error}")
                    });
                    (name.clone(), quantity)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Requests and limits of the Pod's container `index`.
#[must_use]
pub(crate) fn container_resources(
    pod: &Value,
    index: usize,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let resources = pod.pointer(&format!("/spec/containers/{index}/resources"));
    (
        quantities(resources.and_then(|r| r.get("requests"))),
        quantities(resources.and_then(|r| r.get("limits"))),
    )
}

/// A quantity from text (panics if invalid).
#[must_use]
pub(crate) fn q(text: &str) -> Quantity {
    Quantity::parse(text).unwrap_or_else(|error| panic!("{text:?}: {error}"))
}

/// A quantity's exact value in whole bytes (or CPUs); panics on a fraction.
#[must_use]
pub(crate) fn whole(quantity: Quantity) -> u64 {
    let nanos = quantity.nanos();
    assert_eq!(nanos % 1_000_000_000, 0, "{quantity} is not whole");
    u64::try_from(nanos / 1_000_000_000).expect("non-negative")
}

/// A quantity's exact value in millicores; panics below a milli.
#[must_use]
pub(crate) fn millis(quantity: Quantity) -> u64 {
    let nanos = quantity.nanos();
    assert_eq!(nanos % 1_000_000, 0, "{quantity} is not whole millis");
    u64::try_from(nanos / 1_000_000).expect("non-negative")
}

/// A path inside the repository.
pub(crate) fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Whether an AdmissionReview response body answers a request that was
/// sized (a profile decided it, with or without a patch), rather than one
/// that failed (`error`) or was skipped.
pub(crate) fn was_sized(body: &Value) -> bool {
    let audit = &body["response"]["auditAnnotations"];
    audit["profile"].is_string() && audit.get("error").is_none()
}

/// The `warnings` of an AdmissionReview response body.
pub(crate) fn response_warnings(body: &Value) -> Vec<String> {
    body["response"]["warnings"]
        .as_array()
        .map(|warnings| {
            warnings
                .iter()
                .filter_map(|warning| warning.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /readyz` through `router` (the TLS app or the probe app): the
/// status and the JSON body.
pub(crate) async fn readyz_of(router: axum::Router) -> (axum::http::StatusCode, Value) {
    use tower::ServiceExt as _;
    let response = router
        .oneshot(
            axum::http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&body).expect("/readyz is JSON"),
    )
}
