//! The pure admission mapping: one AdmissionReview request in, one decision
//! (response, patch, explanation) out.
//!
//! The shell resolves what needs I/O before calling [`review`] — the launcher
//! Pod's VirtualMachineInstance ([`launcher_vmi`] says which), the
//! namespace's labels — and passes them in an [`Environment`]. Everything
//! else is decided here, so the server, `virt-sizer review` and `virt-sizer
//! test` give the same bytes for the same input.
//!
//! Errors are mapped to a response in exactly one place ([`review`]): a
//! request that cannot be sized follows the policy's `onError` (allowed and
//! unchanged with a warning, or denied), always with the request's uid.

pub mod patch;
pub mod review;

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use serde_json::Value;

use crate::sizing::kata::{self, ContainerResources, KataPodInput};
use crate::sizing::kubevirt::{self, AutoLimits, LauncherInput};
use crate::sizing::policy::{
    Mode, NewerRelease, OnError, PROFILE_ANNOTATION, Release, Target as PolicyTarget, ValidPolicy,
};
use crate::sizing::vmi::{VmiFacts, quantity_map, string_map};
use crate::sizing::{Format, Quantity, SizingError};

pub use patch::Change;
pub use review::{AdmissionRequest, AdmissionResponse, AdmissionReview, GroupVersionKind, Status};

use patch::PatchBuilder;

/// At most this many per-field warnings; the rest are counted in one line.
const MAX_CHANGE_WARNINGS: usize = 16;

/// Pod annotation recording the profile and policy digest of the decision.
pub const DECISION_ANNOTATION: &str = "virt-sizer.io/decision";
/// KubeVirt's own computed overhead (v1.8+), authoritative when present.
pub const KUBEVIRT_OVERHEAD_ANNOTATION: &str = "kubevirt.io/memory-overhead-bytes";
/// KubeVirt's original overhead, kept when virt-sizer rewrites the one above.
pub const ORIGINAL_OVERHEAD_ANNOTATION: &str = "virt-sizer.io/kubevirt-memory-overhead-bytes";
/// Launcher Pod annotation naming its VMI.
pub const DOMAIN_ANNOTATION: &str = "kubevirt.io/domain";
/// The container KubeVirt sizes (always `spec.containers[0]` in practice).
pub const COMPUTE_CONTAINER: &str = "compute";

/// What the shell resolved for one request.
#[derive(Debug, Clone, Copy)]
pub struct Environment<'a> {
    /// The policy in force.
    pub policy: &'a ValidPolicy,
    /// Labels of the request's namespace (empty if unknown).
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// ResourceQuota limits known to be in force; `None` infers them from
    /// the limits KubeVirt already rendered into the Pod.
    pub quota: Option<AutoLimits>,
    /// The launcher Pod's VirtualMachineInstance, if found.
    pub vmi: Option<&'a Value>,
    /// Why the VMI could not be looked up (timeout, API error), when `vmi`
    /// is `None` for a reason other than "does not exist".
    pub vmi_unavailable: Option<&'a str>,
}

/// A VirtualMachineInstance reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmiRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The uid the Pod's controller ownerReference names, when it has one:
    /// a VMI of that name with another uid is a different VMI (deleted and
    /// recreated), never a match.
    pub uid: Option<String>,
}

/// What kind of object a request was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A KubeVirt virt-launcher Pod.
    LauncherPod,
    /// A Pod running under a Kata RuntimeClass the policy knows.
    KataPod,
    /// A RuntimeClass whose handler the policy knows.
    RuntimeClass,
    /// Anything else: allowed unchanged.
    NotATarget,
}

impl TargetKind {
    /// Label for metrics and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::LauncherPod => "launcher_pod",
            TargetKind::KataPod => "kata_pod",
            TargetKind::RuntimeClass => "runtime_class",
            TargetKind::NotATarget => "other",
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with a patch.
    Patched,
    /// Allowed, already sized: empty patch.
    Unchanged,
    /// Shadow mode: decided and reported, no patch.
    Shadow,
    /// Not ours (other kind, operation or object): allowed unchanged;
    /// [`Decision::skip_reason`] says why.
    Skipped,
    /// Could not be sized; allowed unchanged per `onError: Allow`.
    ErrorAllowed,
    /// Could not be sized; denied per `onError: Deny`.
    ErrorDenied,
}

impl Outcome {
    /// Label for metrics and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Unchanged => "unchanged",
            Outcome::Shadow => "shadow",
            Outcome::Skipped => "skipped",
            Outcome::ErrorAllowed => "error_allowed",
            Outcome::ErrorDenied => "error_denied",
        }
    }
}

/// Change in what the scheduler reserves (shadow-mode metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta {
    /// CPU request change in millicores (new − old).
    pub cpu_millicores: i128,
    /// Memory request change in bytes (new − old).
    pub memory_bytes: i128,
}

/// The whole decision for one request.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The response to send (uid copied).
    pub response: AdmissionResponse,
    /// How it ended.
    pub outcome: Outcome,
    /// What the object was.
    pub target: TargetKind,
    /// The profile applied, if any.
    pub profile: Option<String>,
    /// Why that profile (rule, opt-in, default).
    pub selected_by: Option<String>,
    /// Every field changed (or, in shadow mode, that would change).
    pub changes: Vec<Change>,
    /// The formula behind each value.
    pub explanation: Vec<String>,
    /// Operator-facing warnings (also in the response).
    pub warnings: Vec<String>,
    /// The JSON Patch, if one is sent.
    pub patch: Option<json_patch::Patch>,
    /// Why it could not be sized.
    pub error: Option<SizingError>,
    /// Requests delta, for shadow-mode metrics.
    pub delta: Delta,
    /// Why the request was [`Outcome::Skipped`] (`Pods are sized on CREATE
    /// only`, …). Not in the response: skipped requests are answered
    /// `allowed`, nothing else.
    pub skip_reason: Option<String>,
    /// Digest of the policy that decided.
    pub policy_digest: String,
}

impl Decision {
    /// The multi-line explanation printed by `--explain` and logged.
    #[must_use]
    pub fn explain(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "outcome: {} ({})",
            self.outcome.as_str(),
            self.target.as_str()
        ));
        if let Some(reason) = &self.skip_reason {
            out.push_str(&format!(": {reason}"));
        }
        out.push('\n');
        if let Some(profile) = &self.profile {
            out.push_str(&format!("profile: {profile}"));
            if let Some(selected_by) = &self.selected_by {
                out.push_str(&format!("  [{selected_by}]"));
            }
            out.push('\n');
        }
        out.push_str(&format!("policy: {}\n", self.policy_digest));
        if let Some(error) = &self.error {
            out.push_str(&format!("error: {error}\n"));
        }
        if !self.explanation.is_empty() {
            out.push_str("sizing:\n");
            for line in &self.explanation {
                out.push_str(&format!("  {line}\n"));
            }
        }
        if self.changes.is_empty() {
            out.push_str("changes: none\n");
        } else {
            out.push_str("changes:\n");
            for change in &self.changes {
                out.push_str(&format!(
                    "  {}: {} → {}\n",
                    change.field,
                    change.old.as_deref().unwrap_or("(none)"),
                    change.new.as_deref().unwrap_or("(removed)")
                ));
            }
        }
        for warning in &self.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        out
    }
}

/// The VMI a virt-launcher Pod belongs to: its controller owner reference of
/// kind VirtualMachineInstance, else the `kubevirt.io/domain` annotation.
/// `None` for anything that is not a launcher Pod.
#[must_use]
pub fn launcher_vmi(request: &AdmissionRequest) -> Option<VmiRef> {
    let pod = request.object.as_ref()?;
    if request.kind.kind != "Pod" || !is_launcher(pod) {
        return None;
    }
    let metadata = pod.get("metadata")?;
    let namespace = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or(&request.namespace)
        .to_owned();
    let owner = metadata
        .get("ownerReferences")
        .and_then(Value::as_array)
        .and_then(|owners| {
            owners.iter().find(|owner| {
                owner.get("kind").and_then(Value::as_str) == Some("VirtualMachineInstance")
            })
        });
    let uid = owner
        .and_then(|owner| owner.get("uid").and_then(Value::as_str))
        .filter(|uid| !uid.is_empty())
        .map(str::to_owned);
    let owner = owner.and_then(|owner| owner.get("name").and_then(Value::as_str));
    let name = owner.or_else(|| {
        metadata
            .get("annotations")
            .and_then(|annotations| annotations.get(DOMAIN_ANNOTATION))
            .and_then(Value::as_str)
    })?;
    Some(VmiRef {
        namespace,
        name: name.to_owned(),
        uid,
    })
}

/// Whether `request` is a Pod CREATE that virt-sizer sizes (a launcher Pod,
/// or a Pod of a Kata class the policy knows): the requests whose profile
/// can depend on the namespace's labels.
#[must_use]
pub fn is_sized_pod(policy: &ValidPolicy, request: &AdmissionRequest) -> bool {
    let Some(pod) = request.object.as_ref() else {
        return false;
    };
    request.operation == "CREATE"
        && request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && (is_launcher(pod) || kata_class_of_policy(policy, pod).is_some())
}

fn is_launcher(pod: &Value) -> bool {
    pod.pointer("/metadata/labels/kubevirt.io")
        .and_then(Value::as_str)
        == Some("virt-launcher")
}

/// Decides one AdmissionReview request. Never fails: every error becomes a
/// deliberate response carrying the request's uid.
#[must_use]
pub fn review(env: &Environment<'_>, request: &AdmissionRequest) -> Decision {
    let mut decision = empty_decision(&request.uid, env.policy);
    let operation = request.operation.as_str();
    if operation != "CREATE" && operation != "UPDATE" {
        decision.skip_reason = Some(format!(
            "{operation} is not sized (only CREATE, and UPDATE of RuntimeClasses)"
        ));
        return decision;
    }
    let Some(object) = request.object.as_ref() else {
        decision.skip_reason = Some("the request carries no object".to_owned());
        return decision;
    };
    let kind = &request.kind;
    decision.target = match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") if is_launcher(object) => TargetKind::LauncherPod,
        ("", "Pod") if kata_class_of(env, object).is_some() => TargetKind::KataPod,
        ("node.k8s.io", "RuntimeClass")
            if object
                .get("handler")
                .and_then(Value::as_str)
                .is_some_and(|handler| env.policy.kata.runtime_classes.contains_key(handler)) =>
        {
            TargetKind::RuntimeClass
        }
        _ => {
            decision.skip_reason = Some(not_a_target(kind, object));
            return decision;
        }
    };
    // Pods are sized on CREATE only: their resources are immutable afterwards
    // (KubeVirt's own launcher webhook is CREATE-only too). RuntimeClasses
    // are sized on UPDATE as well.
    if decision.target != TargetKind::RuntimeClass && operation != "CREATE" {
        decision.skip_reason = Some("Pods are sized on CREATE only".to_owned());
        return decision;
    }

    let mut builder = PatchBuilder::new(object);
    let sized = match decision.target {
        TargetKind::LauncherPod => size_launcher_pod(env, request, object, &mut builder),
        TargetKind::KataPod => size_kata_pod(env, object, &mut builder),
        TargetKind::RuntimeClass => size_runtime_class(env, object, &mut builder),
        TargetKind::NotATarget => return decision,
    };
    match sized {
        Ok(sized) => finish(&mut decision, sized, builder, env.policy),
        Err(error) => fail(&mut decision, error, env.policy.on_error),
    }
    decision
}

/// Why an object is not sized: its kind, or what it lacks to be a target.
fn not_a_target(kind: &GroupVersionKind, object: &Value) -> String {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => match object.pointer("/spec/runtimeClassName").and_then(Value::as_str) {
            Some(class) => format!(
                "not a launcher Pod (label kubevirt.io=virt-launcher missing), and runtimeClassName \
                 {class:?} is not in the policy's kata.runtimeClasses"
            ),
            None => "not a launcher Pod: label kubevirt.io=virt-launcher missing".to_owned(),
        },
        ("node.k8s.io", "RuntimeClass") => match object.get("handler").and_then(Value::as_str) {
            Some(handler) => {
                format!("handler {handler:?} is not in the policy's kata.runtimeClasses")
            }
            None => "the RuntimeClass has no handler".to_owned(),
        },
        ("", kind) => format!("kind {kind} is not sized (only Pods and RuntimeClasses)"),
        (group, kind) => format!("kind {kind}.{group} is not sized (only Pods and RuntimeClasses)"),
    }
}

/// The decision for a request that failed outside [`review`] (a caught
/// panic, say): the policy's `onError`, with the request's uid.
#[must_use]
pub fn failed(uid: &str, policy: &ValidPolicy, error: SizingError) -> Decision {
    let mut decision = empty_decision(uid, policy);
    fail(&mut decision, error, policy.on_error);
    decision
}

/// The response body, byte for byte what the server sends and what
/// `virt-sizer review` prints.
///
/// # Errors
/// Serialisation failure (not expected: every map key is a string).
pub fn encode_response(decision: &Decision) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&review::AdmissionReviewOut {
        api_version: review::ADMISSION_API_VERSION,
        kind: "AdmissionReview",
        response: &decision.response,
    })
}

fn empty_decision(uid: &str, policy: &ValidPolicy) -> Decision {
    Decision {
        response: AdmissionResponse::allow(uid),
        outcome: Outcome::Skipped,
        target: TargetKind::NotATarget,
        profile: None,
        selected_by: None,
        changes: Vec::new(),
        explanation: Vec::new(),
        warnings: Vec::new(),
        patch: None,
        error: None,
        delta: Delta::default(),
        policy_digest: policy.digest.clone(),
        skip_reason: None,
    }
}

/// What a sizing path hands back to [`finish`].
struct Sized {
    profile: Option<String>,
    selected_by: Option<String>,
    mode: Mode,
    explanation: Vec<String>,
    warnings: Vec<String>,
}

fn finish(decision: &mut Decision, sized: Sized, builder: PatchBuilder<'_>, policy: &ValidPolicy) {
    let Sized {
        profile,
        selected_by,
        mode,
        explanation,
        mut warnings,
    } = sized;
    decision.delta = delta(&builder.changes);
    let resource_changes: Vec<&Change> = builder
        .changes
        .iter()
        .filter(|change| !change.field.starts_with("metadata."))
        .collect();
    let shadow = mode == Mode::Shadow;
    // One formula per distinct label (a Kata Pod can have thousands of
    // changes, all "memory limit").
    let mut formulas: HashMap<&str, String> = HashMap::new();
    for change in resource_changes.iter().take(MAX_CHANGE_WARNINGS) {
        let formula = formulas
            .entry(change.label.as_str())
            .or_insert_with(|| {
                explanation
                    .iter()
                    .find_map(|line| formula_for(line, &change.label))
                    .map(|formula| format!(" ({formula})"))
                    .unwrap_or_default()
            })
            .clone();
        warnings.push(format!(
            "virt-sizer{}{}: {} {} → {}{formula}",
            profile
                .as_deref()
                .map(|profile| format!(" [profile {profile}]"))
                .unwrap_or_default(),
            if shadow { " shadow, not applied" } else { "" },
            change.label,
            change.old.as_deref().unwrap_or("none"),
            change.new.as_deref().unwrap_or("none"),
        ));
    }
    if resource_changes.len() > MAX_CHANGE_WARNINGS {
        warnings.push(format!(
            "virt-sizer: and {} more changes (see the audit annotations or `virt-sizer review --explain`)",
            resource_changes.len() - MAX_CHANGE_WARNINGS
        ));
    }
    let response = &mut decision.response;
    if let Some(profile) = &profile {
        response
            .audit_annotations
            .insert("profile".into(), profile.clone());
    }
    if let Some(selected_by) = &selected_by {
        response
            .audit_annotations
            .insert("selected-by".into(), ascii(selected_by));
    }
    response
        .audit_annotations
        .insert("policy-digest".into(), policy.digest.clone());
    if let Some(digest) = policy.settings_digest() {
        response
            .audit_annotations
            .insert("kubevirt-digest".into(), digest.to_owned());
    }
    response.audit_annotations.insert(
        "mode".into(),
        if shadow { "Shadow" } else { "Enforce" }.into(),
    );
    if !resource_changes.is_empty() {
        let summary = resource_changes
            .iter()
            .map(|change| {
                format!(
                    "{} {}→{}",
                    change.field,
                    change.old.as_deref().unwrap_or("none"),
                    change.new.as_deref().unwrap_or("none")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        response
            .audit_annotations
            .insert("changes".into(), ascii(&summary));
    }
    // Warnings travel in HTTP Warning headers: keep them ASCII.
    response.warnings = warnings.iter().map(|warning| ascii(warning)).collect();

    decision.outcome = if shadow {
        Outcome::Shadow
    } else if builder.ops.is_empty() {
        Outcome::Unchanged
    } else {
        let patch = json_patch::Patch(builder.ops);
        match serde_json::to_vec(&patch) {
            Ok(bytes) => {
                response.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
                response.patch_type = Some("JSONPatch".into());
                decision.patch = Some(patch);
                Outcome::Patched
            }
            Err(error) => {
                fail(
                    decision,
                    SizingError::Invariant(format!("patch does not serialise: {error}")),
                    policy.on_error,
                );
                return;
            }
        }
    };
    decision.profile = profile;
    decision.selected_by = selected_by;
    decision.changes = builder.changes;
    decision.explanation = explanation;
    decision.warnings.clone_from(&decision.response.warnings);
}

/// Replaces the few non-ASCII symbols the explanations use.
fn ascii(text: &str) -> String {
    text.replace('→', "->").replace('×', "x").replace('≠', "!=")
}

fn fail(decision: &mut Decision, error: SizingError, on_error: OnError) {
    let uid = decision.response.uid.clone();
    let message = format!("virt-sizer could not size this object: {error}");
    decision.response = match on_error {
        OnError::Allow => {
            let mut response = AdmissionResponse::allow(&uid);
            response.warnings.push(ascii(&format!(
                "{message}; admitted unchanged (onError: Allow)"
            )));
            response
                .audit_annotations
                .insert("error".into(), error.to_string());
            decision.outcome = Outcome::ErrorAllowed;
            response
        }
        OnError::Deny => {
            decision.outcome = Outcome::ErrorDenied;
            AdmissionResponse::deny(&uid, 403, message)
        }
    };
    decision.warnings.clone_from(&decision.response.warnings);
    decision.patch = None;
    decision.error = Some(error);
}

/// The formula part of an explanation line that starts with `label`:
/// `memory request 986Mi = guest 1Gi × 100/150 + overhead 268Mi` → the text
/// after ` = `.
fn formula_for(line: &str, label: &str) -> Option<String> {
    let rest = line.strip_prefix(label)?.strip_prefix(' ')?;
    let (_, formula) = rest.split_once(" = ").or_else(|| rest.split_once(": "))?;
    Some(formula.to_owned())
}

fn delta(changes: &[Change]) -> Delta {
    let mut delta = Delta::default();
    for change in changes {
        let parse = |value: &Option<String>| {
            value
                .as_deref()
                .and_then(|text| Quantity::parse(text).ok())
                .map_or(0, |quantity| quantity.nanos())
        };
        let diff = parse(&change.new) - parse(&change.old);
        if change.field.ends_with("requests.cpu") {
            delta.cpu_millicores += diff / 1_000_000;
        } else if change.field.ends_with("requests.memory") {
            delta.memory_bytes += diff / 1_000_000_000;
        }
    }
    delta
}

fn size_launcher_pod(
    env: &Environment<'_>,
    request: &AdmissionRequest,
    pod: &Value,
    builder: &mut PatchBuilder<'_>,
) -> Result<Sized, SizingError> {
    let containers = containers_of(pod)?;
    let index = containers
        .iter()
        .position(|container| {
            container.get("name").and_then(Value::as_str) == Some(COMPUTE_CONTAINER)
        })
        .ok_or_else(|| SizingError::InvalidField {
            field: "spec.containers".into(),
            message: "no container named compute".into(),
        })?;
    let resources_path = format!("spec.containers[{index}].resources");
    let resources = containers[index].get("resources");
    expect_map(resources, &resources_path)?;
    expect_map(pod.pointer("/metadata/annotations"), "metadata.annotations")?;
    let current_requests = quantity_map(
        resources.and_then(|r| r.get("requests")),
        &format!("{resources_path}.requests"),
    )?;
    let current_limits = quantity_map(
        resources.and_then(|r| r.get("limits")),
        &format!("{resources_path}.limits"),
    )?;

    let vmi_ref = launcher_vmi(request);
    let vmi_value = env.vmi.ok_or_else(|| {
        let namespace = vmi_ref
            .as_ref()
            .map_or_else(|| request.namespace.clone(), |r| r.namespace.clone());
        let name = vmi_ref.map_or_else(
            || "(unnamed: no owner reference or kubevirt.io/domain)".into(),
            |r| r.name,
        );
        match env.vmi_unavailable {
            Some(reason) => SizingError::VmiUnavailable {
                namespace,
                name,
                reason: reason.to_owned(),
            },
            None => SizingError::VmiNotFound { namespace, name },
        }
    })?;
    let vmi = VmiFacts::from_value(vmi_value)?;

    let pod_labels = string_map(pod.pointer("/metadata/labels"));
    let annotations = string_map(pod.pointer("/metadata/annotations"));
    let requested = annotations
        .get(PROFILE_ANNOTATION)
        .or_else(|| vmi.annotations.get(PROFILE_ANNOTATION))
        .map(String::as_str);
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or(&request.namespace);
    let policy = env.policy;
    let selection = policy.select(&PolicyTarget {
        namespace,
        namespace_labels: env.namespace_labels,
        vm_labels: &pod_labels,
        requested_profile: requested,
    });
    let profile = selection.profile;

    let auto_cpu_by_selector = policy
        .kubevirt
        .auto_cpu_limit_namespace_selector
        .as_ref()
        .is_some_and(|selector| selector.matches(env.namespace_labels));
    let inferred = AutoLimits {
        cpu: !vmi.dedicated_cpus
            && !vmi.limits.contains_key("cpu")
            && current_limits.contains_key("cpu"),
        memory: !vmi.dedicated_cpus
            && !vmi.limits.contains_key("memory")
            && current_limits.contains_key("memory"),
    };
    let mut auto_limits = env.quota.unwrap_or(inferred);
    auto_limits.cpu |= auto_cpu_by_selector;

    let reported_text = annotations
        .get(ORIGINAL_OVERHEAD_ANNOTATION)
        .or_else(|| annotations.get(KUBEVIRT_OVERHEAD_ANNOTATION));
    let reported_overhead = reported_text
        .map(|text| {
            let field = format!(
                "metadata.annotations[{}]",
                if annotations.contains_key(ORIGINAL_OVERHEAD_ANNOTATION) {
                    ORIGINAL_OVERHEAD_ANNOTATION
                } else {
                    KUBEVIRT_OVERHEAD_ANNOTATION
                }
            );
            let quantity =
                Quantity::parse(text).map_err(|source| SizingError::InvalidQuantity {
                    field: field.clone(),
                    source,
                })?;
            if quantity.is_negative() {
                return Err(SizingError::Negative {
                    field,
                    value: text.clone(),
                });
            }
            // KubeVirt writes whole bytes; anything finer is rounded up
            // like `Value()` does.
            i64::try_from(quantity.value())
                .map(|bytes| Quantity::from_int(bytes, Format::DecimalSi))
                .map_err(|_| SizingError::Overflow { what: field })
        })
        .transpose()?;

    let mut warnings = selection.warnings;
    if policy.kubevirt.newer_than_table {
        let release = &policy.kubevirt.release_text;
        if reported_overhead.is_none()
            && policy.kubevirt.newer_release == NewerRelease::AdmitUnchanged
        {
            warnings.push(format!(
                "KubeVirt {release} is newer than virt-sizer's overhead table and this Pod does not \
                 report {KUBEVIRT_OVERHEAD_ANNOTATION}: admitted unchanged (set kubevirt.newerRelease: \
                 NewestKnown to size it with the {} line's formulas)",
                Release::NEWEST.as_str()
            ));
            return Ok(Sized {
                profile: Some(profile.name.clone()),
                selected_by: Some(selection.reason),
                mode: profile.mode,
                explanation: vec![format!(
                    "KubeVirt {release}: newer than the overhead table; not sized"
                )],
                warnings,
            });
        }
        warnings.push(format!(
            "KubeVirt {release} is newer than virt-sizer's overhead table: the {} line's formulas \
             size this Pod{}",
            Release::NEWEST.as_str(),
            if reported_overhead.is_some() {
                format!(" around its reported {KUBEVIRT_OVERHEAD_ANNOTATION}")
            } else {
                String::new()
            }
        ));
    }

    let sizing = kubevirt::size_launcher(&LauncherInput {
        vmi: &vmi,
        settings: &policy.kubevirt,
        profile,
        namespace_labels: env.namespace_labels,
        auto_limits,
        reported_overhead,
    })?;

    let index_token = index.to_string();
    for (section, desired, current, noun) in [
        ("requests", &sizing.requests, &current_requests, "request"),
        ("limits", &sizing.limits, &current_limits, "limit"),
    ] {
        let parent = [
            "spec",
            "containers",
            index_token.as_str(),
            "resources",
            section,
        ];
        let names: std::collections::BTreeSet<&String> = desired
            .keys()
            .chain(
                current
                    .keys()
                    .filter(|name| kubevirt::is_managed_resource(name)),
            )
            .collect();
        for name in names {
            builder.set_quantity(
                &parent,
                name,
                desired.get(name).copied(),
                &format!("{name} {noun}"),
            );
        }
    }

    let annotations_path = ["metadata", "annotations"];
    if let Some(current) = annotations.get(KUBEVIRT_OVERHEAD_ANNOTATION) {
        let overhead_bytes = sizing.overhead.value().to_string();
        // Compared by value: "268Mi" and "281018368" are the same overhead.
        let same = Quantity::parse(current).is_ok_and(|current| current == sizing.overhead);
        if !same {
            if !annotations.contains_key(ORIGINAL_OVERHEAD_ANNOTATION) {
                builder.set_string(
                    &annotations_path,
                    ORIGINAL_OVERHEAD_ANNOTATION,
                    current,
                    "KubeVirt's overhead",
                );
            }
            builder.set_string(
                &annotations_path,
                KUBEVIRT_OVERHEAD_ANNOTATION,
                &overhead_bytes,
                "overhead annotation",
            );
        }
    }
    let mut decision = format!("profile={},policy={}", profile.name, policy.digest);
    if let Some(digest) = policy.settings_digest() {
        decision.push_str(",kubevirt=");
        decision.push_str(digest);
    }
    builder.set_string(&annotations_path, DECISION_ANNOTATION, &decision, "decision");

    warnings.extend(sizing.warnings);
    let mut explanation = vec![format!(
        "VMI {}/{}: {} vCPU, guest {}, KubeVirt {} model",
        vmi.namespace,
        vmi.name,
        vmi.cpu.vcpus(),
        vmi.guest
            .map_or_else(|| "unset".to_owned(), |guest| guest.to_string()),
        policy.kubevirt.release_text,
    )];
    explanation.extend(sizing.explanation);
    Ok(Sized {
        profile: Some(profile.name.clone()),
        selected_by: Some(selection.reason),
        mode: profile.mode,
        explanation,
        warnings,
    })
}

/// `spec.containers`, which every Pod path needs.
fn containers_of(pod: &Value) -> Result<&Vec<Value>, SizingError> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .ok_or_else(|| SizingError::InvalidField {
            field: "spec.containers".into(),
            message: "missing or not a list".into(),
        })
}

/// A field the patch may write into must be a map (or absent / null);
/// anything else is refused rather than patched around.
fn expect_map(value: Option<&Value>, field: &str) -> Result<(), SizingError> {
    match value {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(other) => Err(SizingError::InvalidField {
            field: field.to_owned(),
            message: format!("expected a map, got {other}"),
        }),
    }
}

fn kata_class_of<'p>(env: &Environment<'p>, pod: &Value) -> Option<&'p kata::KataClass> {
    kata_class_of_policy(env.policy, pod)
}

fn kata_class_of_policy<'p>(policy: &'p ValidPolicy, pod: &Value) -> Option<&'p kata::KataClass> {
    let class_name = pod
        .pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)?;
    policy.kata.runtime_classes.get(class_name)
}

fn size_kata_pod(
    env: &Environment<'_>,
    pod: &Value,
    builder: &mut PatchBuilder<'_>,
) -> Result<Sized, SizingError> {
    let class = kata_class_of(env, pod).ok_or_else(|| SizingError::InvalidField {
        field: "spec.runtimeClassName".into(),
        message: "not a Kata class of the policy".into(),
    })?;
    let containers = containers_of(pod)?;
    let mut input = KataPodInput {
        containers: Vec::with_capacity(containers.len()),
        annotations: string_map(pod.pointer("/metadata/annotations")),
    };
    expect_map(pod.pointer("/metadata/annotations"), "metadata.annotations")?;
    for (index, container) in containers.iter().enumerate() {
        let resources = container.get("resources");
        let path = format!("spec.containers[{index}].resources");
        expect_map(resources, &path)?;
        input.containers.push(ContainerResources {
            name: container
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            requests: quantity_map(
                resources.and_then(|r| r.get("requests")),
                &format!("{path}.requests"),
            )?,
            limits: quantity_map(
                resources.and_then(|r| r.get("limits")),
                &format!("{path}.limits"),
            )?,
        });
    }
    let sizing = kata::size_kata_pod(&input, class, &env.policy.kata.pods);
    for change in &sizing.limit_changes {
        let index = change.container.to_string();
        builder.set_quantity(
            &["spec", "containers", index.as_str(), "resources", "limits"],
            &change.resource,
            Some(change.new),
            &format!("{} limit", change.resource),
        );
    }
    for (key, value) in &sizing.annotation_changes {
        builder.set_string(&["metadata", "annotations"], key, value, key);
    }
    let mut explanation = sizing.explanation;
    explanation.extend(
        sizing
            .limit_changes
            .iter()
            .map(|change| format!("{} limit {} = {}", change.resource, change.new, change.why)),
    );
    Ok(Sized {
        profile: None,
        selected_by: Some(format!("runtimeClassName {}", class.handler)),
        mode: Mode::Enforce,
        explanation,
        warnings: sizing.warnings,
    })
}

fn size_runtime_class(
    env: &Environment<'_>,
    runtime_class: &Value,
    builder: &mut PatchBuilder<'_>,
) -> Result<Sized, SizingError> {
    let handler = runtime_class
        .get("handler")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let class = env
        .policy
        .kata
        .runtime_classes
        .get(handler)
        .ok_or_else(|| SizingError::InvalidField {
            field: "handler".into(),
            message: format!("{handler} is not a Kata class of the policy"),
        })?;
    // Validate what is there before patching next to it.
    expect_map(runtime_class.get("overhead"), "overhead")?;
    quantity_map(
        runtime_class.pointer("/overhead/podFixed"),
        "overhead.podFixed",
    )?;
    let sizing = kata::size_runtime_class(class);
    let parent = ["overhead", "podFixed"];
    builder.set_quantity(&parent, "cpu", Some(sizing.pod_fixed.cpu), "overhead cpu");
    builder.set_quantity(
        &parent,
        "memory",
        Some(sizing.pod_fixed.memory),
        "overhead memory",
    );
    Ok(Sized {
        profile: None,
        selected_by: Some(format!("handler {handler}")),
        mode: Mode::Enforce,
        explanation: sizing.explanation,
        warnings: Vec::new(),
    })
}

/// The uid given to reviews made up from a bare object.
pub const SYNTHETIC_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Wraps a bare object (Pod, RuntimeClass) in an admission request, as the
/// apiserver would send it: `kind` from the object's `apiVersion`/`kind`,
/// its namespace (else `namespace`), the given `operation`.
#[must_use]
pub fn request_for_object(object: Value, namespace: &str, operation: &str) -> AdmissionRequest {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = GroupVersionKind {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    let metadata = object.get("metadata");
    let object_namespace = metadata
        .and_then(|meta| meta.get("namespace"))
        .and_then(Value::as_str)
        .filter(|namespace| !namespace.is_empty());
    let cluster_scoped = kind.kind == "RuntimeClass";
    AdmissionRequest {
        uid: SYNTHETIC_UID.to_owned(),
        resource: Value::Null,
        sub_resource: None,
        name: metadata
            .and_then(|meta| meta.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        namespace: if cluster_scoped {
            String::new()
        } else {
            object_namespace.unwrap_or(namespace).to_owned()
        },
        operation: operation.to_owned(),
        user_info: Value::Null,
        object: Some(object),
        old_object: None,
        dry_run: Value::Null,
        options: Value::Null,
        kind,
    }
}

/// The object as the apiserver will store it: the request's object with the
/// decision's patch applied (unchanged without a patch).
///
/// # Errors
/// The patch does not apply (a bug: every operation is built against this
/// very object).
pub fn patched_object(
    request: &AdmissionRequest,
    decision: &Decision,
) -> Result<Option<Value>, json_patch::PatchError> {
    let Some(mut object) = request.object.clone() else {
        return Ok(None);
    };
    if let Some(patch) = &decision.patch {
        json_patch::patch(&mut object, patch)?;
    }
    Ok(Some(object))
}
