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

mod decision;
pub mod facts;
mod kata;
mod launcher;
pub mod patch;
pub mod wire;
mod target;

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use serde_json::Value;

use crate::sizing::kata::{ContainerResources, KataClass, KataPodInput};
use crate::sizing::kubevirt::{self, AutoLimits, LauncherInput};
use crate::sizing::policy::{
    Mode, NewerRelease, OnError, PROFILE_ANNOTATION, Release, Target as PolicyTarget, ValidPolicy,
};
use crate::sizing::vmi::{VmiFacts, quantity_map, string_map};
use crate::sizing::{Format, Quantity, SizingError};

pub use decision::{Decision, Delta, Outcome, OutcomeLabel, encode_response, failed, patched_object};
pub use patch::Change;
pub use wire::{SYNTHETIC_UID, request_for_object};
pub use target::{TargetKind, VmiRef, is_sized_pod, launcher_vmi};

use decision::*;
use facts::*;
use kata::*;
use launcher::*;
pub use wire::{AdmissionRequest, AdmissionResponse, AdmissionReview, GroupVersionKind, Status};
use target::*;

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

/// Decides one AdmissionReview request. Never fails: every error becomes a
/// deliberate response carrying the request's uid.
#[must_use]
pub fn review(env: &Environment<'_>, request: &AdmissionRequest) -> Decision {
    let operation = request.operation.as_str();
    if operation != "CREATE" && operation != "UPDATE" {
        let reason = format!("{operation} is not sized (only CREATE, and UPDATE of RuntimeClasses)");
        return skipped(&request.uid, env.policy, reason);
    }
    let Some(object) = request.object.as_ref() else {
        return skipped(&request.uid, env.policy, "the request carries no object".to_owned());
    };
    let mut decision = skipped(&request.uid, env.policy, String::new());
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
        _ => return skipped(&request.uid, env.policy, not_a_target(kind, object)),
    };
    // Pods are sized on CREATE only: their resources are immutable afterwards
    // (KubeVirt's own launcher webhook is CREATE-only too). RuntimeClasses
    // are sized on UPDATE as well.
    if decision.target != TargetKind::RuntimeClass && operation != "CREATE" {
        decision.outcome = Outcome::Skipped("Pods are sized on CREATE only".to_owned());
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
