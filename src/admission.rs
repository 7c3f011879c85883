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
mod overhead;
pub mod patch;
mod target;
pub mod wire;

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::sizing::explain::Explanation;
use crate::sizing::kata::{ContainerList, ContainerResources, KataClass, KataPodInput};
use crate::sizing::kubevirt::{self, AutoLimits, LauncherInput};
use crate::sizing::policy::{
    Mode, NewerRelease, OnError, PROFILE_ANNOTATION, Release, SettingsNeeds, Subject, ValidPolicy,
};
use crate::sizing::vmi::{InterfaceBinding, ReadVmi, quantity_map, string_map};
use crate::sizing::{Format, Quantity, SizingError};
use crate::terms;

pub use decision::{
    Decision, Delta, Outcome, OutcomeLabel, encode_response, failed, patched_object,
};
pub use patch::{Change, ResourceField, Section, Written, shown};
pub use target::{TargetKind, VmiRef, is_sized_pod, launcher_vmi};

use decision::*;
use facts::*;
use kata::*;
use launcher::*;
use overhead::*;
use target::*;
pub use wire::{AdmissionRequest, AdmissionResponse, AdmissionReview, GroupVersionKind, Status};

use patch::PatchBuilder;

/// At most this many per-field warnings; the rest are counted in one line.
const MAX_CHANGE_WARNINGS: usize = 16;

// The launcher Pod's overhead and decision annotations are defined with the
// VMI facts, which keep a VMI's own copy of each: KubeVirt copies VMI
// annotations onto the Pod, and a copy is the VM owner's, never KubeVirt's
// or virt-sizer's (see `PodOverhead`).
pub use crate::sizing::vmi::{
    DECISION_ANNOTATION, KUBEVIRT_OVERHEAD_ANNOTATION, ORIGINAL_OVERHEAD_ANNOTATION,
};
/// Launcher Pod annotation naming its VMI.
pub const DOMAIN_ANNOTATION: &str = "kubevirt.io/domain";
/// The container KubeVirt sizes (always `spec.containers[0]` in practice).
pub const COMPUTE_CONTAINER: &str = "compute";

/// What the shell resolved for one request.
#[derive(Debug, Clone, Copy)]
pub struct Environment<'a> {
    /// The policy in force.
    pub policy: &'a ValidPolicy,
    /// Labels of the request's namespace (empty if it has none).
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The launcher Pod's VirtualMachineInstance, as the lookup found it
    /// ([`launcher_vmi`] says which to look up).
    pub vmi: VmiLookup<'a>,
}

/// What looking up a launcher Pod's VirtualMachineInstance gave.
#[derive(Debug, Clone, Copy)]
pub enum VmiLookup<'a> {
    /// The VMI, as its source read it.
    Found(&'a ReadVmi),
    /// It does not exist (or nothing was looked up).
    NotFound,
    /// It could not be looked up (timeout, API error): why.
    Unavailable(&'a str),
}

impl<'a> VmiLookup<'a> {
    /// [`VmiLookup::Found`] or [`VmiLookup::NotFound`].
    #[must_use]
    pub fn of(found: Option<&'a ReadVmi>) -> VmiLookup<'a> {
        found.map_or(VmiLookup::NotFound, VmiLookup::Found)
    }
}

/// Decides one AdmissionReview request. Never fails: every error becomes a
/// deliberate response carrying the request's uid.
#[must_use]
pub fn review(env: &Environment<'_>, request: &AdmissionRequest) -> Decision {
    if let Some(why) = &request.object_over_bound {
        return over_bound(env.policy, request, why);
    }
    let (target, object) = match classify(env, request) {
        Ok(classified) => classified,
        Err((kind, reason)) => {
            let mut decision = skipped(&request.uid, env.policy, reason);
            decision.target = kind;
            return decision;
        }
    };
    let mut decision = skipped(&request.uid, env.policy, String::new());
    decision.target = target.kind();
    object_namespace(object, request).clone_into(&mut decision.namespace);
    let mut builder = PatchBuilder::new(object);
    let computed = match target {
        Target::LauncherPod => size_launcher_pod(env, request, object, &mut builder),
        Target::KataPod(class) => size_kata_pod(env, class, object, &mut builder),
        Target::RuntimeClass(class) => size_runtime_class(class, object, &mut builder),
    };
    match computed {
        Ok(computed) => finish(&mut decision, computed, builder, env.policy),
        Err(error) => fail(&mut decision, error, env.policy.on_error),
    }
    decision
}
