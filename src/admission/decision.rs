//! The decision for one request: how it ended, what changed and why, and
//! the one place the wire response is made from it
//! ([`Decision::response`]).

use std::fmt::Write as _;

use super::*;

/// How a request ended, with what each ending carries.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Allowed with this patch.
    Patched(json_patch::Patch),
    /// Allowed, already sized: no patch.
    Unchanged,
    /// Shadow mode: decided and reported, no patch; what the scheduler would
    /// reserve differently.
    Shadow(Delta),
    /// Not ours (other kind, operation or object): allowed unchanged, for
    /// this reason (not in the response: skipped requests are answered
    /// `allowed`, nothing else).
    Skipped(String),
    /// Could not be sized: allowed unchanged with a warning (`onError:
    /// Allow`) or denied (`onError: Deny`).
    Failed {
        /// Why.
        error: SizingError,
        /// Denied rather than allowed.
        denied: bool,
    },
}

/// The closed set of [`Outcome`]s, as metrics and logs label them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeLabel {
    /// [`Outcome::Patched`].
    Patched,
    /// [`Outcome::Unchanged`].
    Unchanged,
    /// [`Outcome::Shadow`].
    Shadow,
    /// [`Outcome::Skipped`].
    Skipped,
    /// [`Outcome::Failed`], allowed.
    ErrorAllowed,
    /// [`Outcome::Failed`], denied.
    ErrorDenied,
}

impl Outcome {
    /// Its label.
    #[must_use]
    pub fn label(&self) -> OutcomeLabel {
        match self {
            Outcome::Patched(_) => OutcomeLabel::Patched,
            Outcome::Unchanged => OutcomeLabel::Unchanged,
            Outcome::Shadow(_) => OutcomeLabel::Shadow,
            Outcome::Skipped(_) => OutcomeLabel::Skipped,
            Outcome::Failed { denied: false, .. } => OutcomeLabel::ErrorAllowed,
            Outcome::Failed { denied: true, .. } => OutcomeLabel::ErrorDenied,
        }
    }

    /// The label's spelling in metrics and logs.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        self.label().as_str()
    }
}

impl OutcomeLabel {
    /// Every label, for metrics exported from the start.
    pub const ALL: [OutcomeLabel; 6] = [
        OutcomeLabel::Patched,
        OutcomeLabel::Unchanged,
        OutcomeLabel::Shadow,
        OutcomeLabel::Skipped,
        OutcomeLabel::ErrorAllowed,
        OutcomeLabel::ErrorDenied,
    ];

    /// The spelling in metrics and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeLabel::Patched => "patched",
            OutcomeLabel::Unchanged => "unchanged",
            OutcomeLabel::Shadow => "shadow",
            OutcomeLabel::Skipped => "skipped",
            OutcomeLabel::ErrorAllowed => "error_allowed",
            OutcomeLabel::ErrorDenied => "error_denied",
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
    /// The request's uid, which the response carries.
    pub uid: String,
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
    /// The formula behind each value, as data: rendered only by
    /// [`Decision::explain`] (`--explain`) and the warnings that quote it.
    pub explanation: Explanation,
    /// Operator-facing warnings (the response's, ASCII).
    pub warnings: Vec<String>,
    /// The response's audit annotations.
    pub audit_annotations: BTreeMap<String, String>,
    /// Digest of the policy that decided.
    pub policy_digest: String,
    /// The namespace of the object under review ([`object_namespace`]):
    /// the one its profile is selected for. Empty when the request carried
    /// no object.
    pub namespace: String,
}

impl Decision {
    /// The AdmissionResponse: made here and nowhere else. Each warning and
    /// audit annotation is cut at
    /// [`MAX_LOG_FIELD_CHARS`](crate::telemetry::MAX_LOG_FIELD_CHARS)
    /// characters with a marker (a deny message by
    /// [`AdmissionResponse::deny`]), so no answer echoes megabytes of a
    /// client's values while a decision's own long warnings (two uids, a
    /// formula) stay whole.
    #[must_use]
    pub fn response(&self) -> AdmissionResponse {
        let capped = |text: &str| {
            crate::telemetry::capped_to(text, crate::telemetry::MAX_LOG_FIELD_CHARS).into_owned()
        };
        let mut response = match &self.outcome {
            Outcome::Failed {
                error,
                denied: true,
            } => {
                return AdmissionResponse::deny(&self.uid, 403, failure_message(error));
            }
            _ => AdmissionResponse::allow(&self.uid),
        };
        if let Outcome::Patched(patch) = &self.outcome {
            // A Patch of string-keyed JSON always serialises.
            let bytes = serde_json::to_vec(patch).unwrap_or_default();
            response.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
            response.patch_type = Some("JSONPatch".into());
        }
        response.audit_annotations = self
            .audit_annotations
            .iter()
            .map(|(key, value)| (key.clone(), capped(value)))
            .collect();
        response.warnings = self
            .warnings
            .iter()
            .map(|warning| capped(warning))
            .collect();
        response
    }

    /// Marks a decision made from inputs that may not be current (a cache
    /// not synced or failing, a silent apiserver): a warning and the audit
    /// annotation `stale-inputs` say why. A skipped request read nothing
    /// and is left as it is.
    pub fn note_stale_inputs(&mut self, reason: &str) {
        if matches!(self.outcome, Outcome::Skipped(_)) {
            return;
        }
        self.warnings.push(ascii(&format!(
            "virt-sizer: decided from inputs that may not be current: {reason}"
        )));
        self.audit_annotations
            .insert("stale-inputs".into(), reason.to_owned());
    }

    /// The JSON Patch, if one is sent.
    #[must_use]
    pub fn patch(&self) -> Option<&json_patch::Patch> {
        match &self.outcome {
            Outcome::Patched(patch) => Some(patch),
            _ => None,
        }
    }

    /// Why it could not be sized.
    #[must_use]
    pub fn error(&self) -> Option<&SizingError> {
        match &self.outcome {
            Outcome::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Why it was skipped.
    #[must_use]
    pub fn skip_reason(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Skipped(reason) => Some(reason),
            _ => None,
        }
    }

    /// What shadow mode would have changed in the scheduler's reservation.
    #[must_use]
    pub fn shadow_delta(&self) -> Option<Delta> {
        match &self.outcome {
            Outcome::Shadow(delta) => Some(*delta),
            _ => None,
        }
    }

    /// The multi-line explanation printed by `--explain` and logged.
    #[must_use]
    pub fn explain(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "outcome: {} ({})",
            self.outcome.as_str(),
            self.target.as_str()
        ));
        if let Some(reason) = self.skip_reason() {
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
        if let Some(error) = self.error() {
            out.push_str(&format!("error: {error}\n"));
        }
        if !self.explanation.is_empty() {
            out.push_str("sizing:\n");
            for line in self.explanation.iter() {
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
                    shown(change.old.as_ref(), "(none)"),
                    shown(change.new.as_ref(), "(removed)")
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
    let mut decision = skipped(uid, policy, String::new());
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
        response: &decision.response(),
    })
}

/// A decision that skips the request for `reason` (refined as the request
/// is classified and sized).
pub(crate) fn skipped(uid: &str, policy: &ValidPolicy, reason: String) -> Decision {
    Decision {
        uid: uid.to_owned(),
        outcome: Outcome::Skipped(reason),
        target: TargetKind::NotATarget,
        profile: None,
        selected_by: None,
        changes: Vec::new(),
        explanation: Explanation::new(),
        warnings: Vec::new(),
        audit_annotations: BTreeMap::new(),
        policy_digest: policy.digest.clone(),
        namespace: String::new(),
    }
}

/// What a sizing path hands back to [`finish`].
pub(crate) struct Computed {
    pub(crate) profile: Option<String>,
    pub(crate) selected_by: Option<String>,
    pub(crate) mode: Mode,
    pub(crate) explanation: Explanation,
    pub(crate) warnings: Vec<String>,
}

pub(crate) fn finish(
    decision: &mut Decision,
    sized: Computed,
    builder: PatchBuilder<'_>,
    policy: &ValidPolicy,
) {
    let Computed {
        profile,
        selected_by,
        mode,
        explanation,
        mut warnings,
    } = sized;
    let resource_changes: Vec<&Change> = builder
        .changes
        .iter()
        .filter(|change| !change.field.starts_with("metadata."))
        .collect();
    let shadow = mode == Mode::Shadow;
    for change in resource_changes.iter().take(MAX_CHANGE_WARNINGS) {
        let mut warning = String::with_capacity(160);
        warning.push_str("virt-sizer");
        if let Some(profile) = &profile {
            let _ = write!(warning, " [profile {profile}]");
        }
        if shadow {
            warning.push_str(" shadow, not applied");
        }
        let _ = write!(
            warning,
            ": {} {} → {}",
            change.label,
            shown(change.old.as_ref(), "none"),
            shown(change.new.as_ref(), "none"),
        );
        if let Some(formula) = change
            .resource
            .as_ref()
            .and_then(|field| explanation.formula_for(field))
        {
            let _ = write!(warning, " ({formula})");
        }
        warnings.push(warning);
    }
    if resource_changes.len() > MAX_CHANGE_WARNINGS {
        warnings.push(format!(
            "virt-sizer: and {} more changes (see the audit annotations or `virt-sizer review --explain`)",
            resource_changes.len() - MAX_CHANGE_WARNINGS
        ));
    }
    let audit = &mut decision.audit_annotations;
    if let Some(profile) = &profile {
        audit.insert("profile".into(), profile.clone());
    }
    if let Some(selected_by) = &selected_by {
        audit.insert("selected-by".into(), ascii(selected_by));
    }
    audit.insert("policy-digest".into(), policy.digest.clone());
    if let Some(digest) = policy.settings_digest() {
        audit.insert("kubevirt-digest".into(), digest.to_owned());
    }
    audit.insert(
        "mode".into(),
        if shadow { "Shadow" } else { "Enforce" }.into(),
    );
    if !resource_changes.is_empty() {
        // Written in ASCII (`->`) at once: these are the only symbols.
        let mut summary = String::with_capacity(80 * resource_changes.len());
        for (index, change) in resource_changes.iter().enumerate() {
            let _ = write!(
                summary,
                "{}{} {}->{}",
                if index == 0 { "" } else { "; " },
                change.field,
                shown(change.old.as_ref(), "none"),
                shown(change.new.as_ref(), "none")
            );
        }
        audit.insert("changes".into(), ascii(&summary));
    }
    // Warnings travel in HTTP Warning headers: keep them ASCII.
    decision.warnings = warnings.iter().map(|warning| ascii(warning)).collect();
    decision.outcome = if shadow {
        Outcome::Shadow(delta(&builder.changes))
    } else if builder.ops.is_empty() {
        Outcome::Unchanged
    } else {
        Outcome::Patched(json_patch::Patch(builder.ops))
    };
    decision.profile = profile;
    decision.selected_by = selected_by;
    decision.changes = builder.changes;
    decision.explanation = explanation;
}

/// Replaces the few non-ASCII symbols the explanations use, in one pass.
pub(crate) fn ascii(text: &str) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(at) = rest.find(['→', '×', '≠']) {
        out.push_str(&rest[..at]);
        let symbol = rest[at..].chars().next().unwrap_or_default();
        out.push_str(match symbol {
            '→' => "->",
            '×' => "x",
            _ => "!=",
        });
        rest = &rest[at + symbol.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// What `onError` makes of a request that could not be sized: allowed
/// unchanged with a warning, or denied.
pub(crate) fn fail(decision: &mut Decision, error: SizingError, on_error: OnError) {
    let denied = on_error == OnError::Deny;
    decision.audit_annotations.clear();
    decision.warnings.clear();
    if !denied {
        decision.warnings.push(ascii(&format!(
            "{}; admitted unchanged (onError: Allow)",
            failure_message(&error)
        )));
        decision
            .audit_annotations
            .insert("error".into(), error.to_string());
    }
    decision.outcome = Outcome::Failed { error, denied };
}

fn failure_message(error: &SizingError) -> String {
    format!("virt-sizer could not size this object: {error}")
}

/// What the changes to requests add to what the scheduler reserves.
pub(crate) fn delta(changes: &[Change]) -> Delta {
    let mut delta = Delta::default();
    for change in changes {
        let Some(field) = &change.resource else {
            continue;
        };
        let nanos = |value: &Option<Written>| {
            value
                .as_ref()
                .and_then(Written::quantity)
                .map_or(0, |quantity| quantity.nanos())
        };
        let diff = nanos(&change.new) - nanos(&change.old);
        match (field.section, field.name.as_str()) {
            (Section::Requests, "cpu") => delta.cpu_millicores += diff / 1_000_000,
            (Section::Requests, "memory") => delta.memory_bytes += diff / 1_000_000_000,
            _ => {}
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
    if let Some(patch) = decision.patch() {
        json_patch::patch(&mut object, patch)?;
    }
    Ok(Some(object))
}

#[cfg(test)]
mod tests {
    use super::ascii;

    /// Warnings travel in HTTP headers: the explanation's three symbols
    /// become ASCII, everything else (an object's own non-ASCII) stays.
    #[test]
    fn ascii_replaces_the_explanations_symbols_only() {
        assert_eq!(ascii("plain"), "plain");
        assert_eq!(
            ascii("800m → 8 (request × 2, 1 ≠ 2) é"),
            "800m -> 8 (request x 2, 1 != 2) é"
        );
        assert_eq!(ascii("→×≠"), "->x!=");
    }
}
