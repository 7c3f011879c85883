//! The decision for one request: how it ended, what changed, why, and the
//! one place the wire response is made from it.

use super::*;

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
    serde_json::to_vec(&wire::AdmissionReviewOut {
        api_version: wire::ADMISSION_API_VERSION,
        kind: "AdmissionReview",
        response: &decision.response,
    })
}

pub(crate) fn empty_decision(uid: &str, policy: &ValidPolicy) -> Decision {
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
pub(crate) struct Sized {
    pub(crate) profile: Option<String>,
    pub(crate) selected_by: Option<String>,
    pub(crate) mode: Mode,
    pub(crate) explanation: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

pub(crate) fn finish(
    decision: &mut Decision,
    sized: Sized,
    builder: PatchBuilder<'_>,
    policy: &ValidPolicy,
) {
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
pub(crate) fn ascii(text: &str) -> String {
    text.replace('→', "->").replace('×', "x").replace('≠', "!=")
}

pub(crate) fn fail(decision: &mut Decision, error: SizingError, on_error: OnError) {
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
pub(crate) fn formula_for(line: &str, label: &str) -> Option<String> {
    let rest = line.strip_prefix(label)?.strip_prefix(' ')?;
    let (_, formula) = rest.split_once(" = ").or_else(|| rest.split_once(": "))?;
    Some(formula.to_owned())
}

pub(crate) fn delta(changes: &[Change]) -> Delta {
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
