//! The sizing policy (`SizingPolicy`, SPEC §2): strict parsing, whole-file
//! validation, profile inheritance and profile selection.
//!
//! A policy is one YAML document. [`ValidPolicy::from_yaml`] reads it in
//! three passes and reports **every** problem with its field path:
//!
//! 1. YAML syntax (and merge keys `<<`), into a YAML value tree;
//! 2. shape: the tree is deserialized into raw structs whose leaves stay YAML
//!    values; `serde_ignored` collects every unknown field, with the closest
//!    known name (`profiles.dev.cpuAllocationRatoi: unknown field (did you
//!    mean cpuAllocationRatio?)`), and `serde_path_to_error` names the path
//!    of each structural type error (the value is removed and the pass
//!    re-run, so one does not hide the next; see `shape`);
//! 3. semantics: every leaf is converted and checked on its own (types,
//!    ranges, quantities, globs, label selectors, references between rules
//!    and profiles), collecting all problems.
//!
//! Profiles inherit: a field a profile leaves out takes the `default`
//! profile's value, and `default`'s missing fields take KubeVirt's own
//! defaults (`cpuAllocationRatio` 10, `memoryOvercommit` 100, overhead
//! requested, overhead ratio 1.0, no margin, no limits, enforce). Rules select
//! a profile per Pod: first match wins, no match selects `default`; a Pod may
//! opt into one of its rule's `allowedProfiles` with the
//! [`PROFILE_ANNOTATION`] annotation.
//!
//! Nothing here reads files: the caller passes the text, and the digest of
//! those exact bytes is stamped on every decision.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, LazyLock};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use yaml_serde::Value;

mod baseline;
mod shape;

pub use baseline::KubevirtBaseline;
pub use shape::{UnknownField, closest_name, struct_fields};

use super::gofloat;
use super::kata::{FillLimits, GuestMemory, KataClass, KataRuntime, KataSettings, PodFixed};
use super::quantity::{Format, Quantity};

/// The only accepted `apiVersion`.
pub const API_VERSION: &str = "virt-sizer.io/v1alpha1";

/// The only accepted `kind`.
pub const KIND: &str = "SizingPolicy";

/// Name of the profile used when no rule matches; always present in a
/// [`ValidPolicy`].
pub const DEFAULT_PROFILE: &str = "default";

/// Pod annotation through which a VM opts into one of its rule's
/// `allowedProfiles` (KubeVirt copies VMI annotations onto the
/// virt-launcher Pod, reference §1.9).
pub const PROFILE_ANNOTATION: &str = "virt-sizer.io/profile";

/// The built-in policy text (`default-policy.yaml`): one `default` profile
/// equal to KubeVirt's defaults, i.e. a no-op.
pub const BUILTIN_POLICY_YAML: &str = include_str!("default-policy.yaml");

/// Kubernetes label values and names: at most 63 characters.
const MAX_NAME_LEN: usize = 63;
/// Nano units per unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// The largest quantity Kubernetes represents as an int64 scaled value: we
/// cap memory at `i64::MAX` bytes and CPU at `i64::MAX` millicores.
const MAX_UNITS: i128 = i64::MAX as i128;

// === Public types ===

/// A parsed, validated and fully resolved sizing policy. Every profile is
/// complete (inheritance applied), every rule refers to existing profiles,
/// every glob is compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPolicy {
    /// `apiVersion` (always [`API_VERSION`]).
    pub api_version: String,
    /// `kubevirt`: the KubeVirt installation the policy models.
    pub kubevirt: KubevirtSettings,
    /// `profiles`, resolved, by name; always contains [`DEFAULT_PROFILE`].
    pub profiles: BTreeMap<String, Profile>,
    /// `rules`, in file order.
    pub rules: Vec<Rule>,
    /// `onError`: what to do with a Pod that cannot be sized.
    pub on_error: OnError,
    /// `kata`: Kata Containers `RuntimeClasses` and sandbox Pods.
    pub kata: KataSettings,
    /// `sha256:` + lowercase hex SHA-256 of the exact policy bytes.
    pub digest: String,
    /// The cluster's KubeVirt CR in force under this policy, if any: what
    /// the policy leaves unset comes from it (see [`ValidPolicy::with_baseline`]).
    pub baseline: Option<Arc<KubevirtBaseline>>,
    /// What an operator should know that is not an error: a KubeVirt release
    /// newer than the overhead table, a policy value that differs from the
    /// KubeVirt CR's.
    pub warnings: Vec<String>,
    /// What the file itself wrote, so a new baseline re-resolves it.
    written: Arc<Written>,
}

/// The parts of a policy file that a baseline completes.
#[derive(Debug, Clone, PartialEq, Default)]
struct Written {
    kubevirt: KubevirtOverrides,
    profiles: BTreeMap<String, ProfileOverrides>,
}

/// `kubevirt` as the file wrote it, each `None` when absent or invalid.
#[derive(Debug, Clone, PartialEq, Default)]
struct KubevirtOverrides {
    release: Option<ReleaseName>,
    architecture: Option<String>,
    binding_plugins: BTreeMap<String, Quantity>,
    auto_cpu_limit_namespace_selector: Option<LabelSelector>,
    newer_release: Option<NewerRelease>,
}

/// A KubeVirt release as a policy names it or a cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseName {
    /// A line in the overhead table, and the text as written.
    Known(Release, String),
    /// A release beyond the table (e.g. `v1.10.0`), as written.
    Newer(String),
}

/// `kubevirt`: facts about the KubeVirt installation that the Pod does not
/// carry.
#[derive(Debug, Clone, PartialEq)]
pub struct KubevirtSettings {
    /// `release`: which overhead model to use when the Pod lacks
    /// `kubevirt.io/memory-overhead-bytes` (default `"1.9"`).
    pub release: Release,
    /// `release` as written (numbers as their shortest decimal text).
    pub release_text: String,
    /// `architecture` when the VMI names none: `amd64` (default), `arm64`,
    /// `s390x` or `ppc64le`.
    pub architecture: String,
    /// `bindingPlugins`: network binding plugin name → its
    /// `computeResourceOverhead.requests.memory` (KubeVirt CR
    /// `network.binding.<name>.computeResourceOverhead`), added once per
    /// plugin used (reference §1.5).
    pub binding_plugins: BTreeMap<String, Quantity>,
    /// `autoCPULimitNamespaceLabelSelector` (mirrors the KubeVirt CR field):
    /// namespaces whose labels match get automatic CPU limits (reference
    /// §1.2).
    pub auto_cpu_limit_namespace_selector: Option<LabelSelector>,
    /// `release_text` names a release newer than the overhead table;
    /// `release` is then the newest known line ([`Release::NEWEST`]).
    pub newer_than_table: bool,
    /// `newerRelease`: how a launcher Pod without
    /// `kubevirt.io/memory-overhead-bytes` is treated under such a release.
    pub newer_release: NewerRelease,
    /// The `additionalGuestMemoryOverheadRatio` KubeVirt itself applies (the
    /// KubeVirt CR's; 1.0 without one). The overhead a Pod reports was
    /// computed with it.
    pub cluster_overhead_ratio: OverheadRatio,
}

/// `kubevirt.newerRelease`: a KubeVirt release newer than virt-sizer's
/// overhead table, on a launcher Pod that does not report its overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewerRelease {
    /// Admit the Pod unchanged, with a warning (default): the overhead of
    /// an unknown release is not guessed. YAML `AdmitUnchanged`.
    AdmitUnchanged,
    /// Size it with the newest known line's formulas. YAML `NewestKnown`.
    NewestKnown,
}

/// The KubeVirt release line whose overhead formula applies (reference
/// §1.5, §1.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// v1.5: video RAM 32Mi, virtlogd 25Mi, virtqemud 40Mi, memory request
    /// defaulted into the VMI. Policy: `"1.5"`.
    V1_5,
    /// The v1.6–v1.9 line (QEMU 30Mi). Policy: `"1.6"`, `"1.7"`, `"1.8"` or
    /// `"1.9"`.
    V1_9,
    /// Current main (QEMU 50Mi, commit `c822873795`). Policy: `"main"`.
    Main,
}

/// A resolved sizing profile (`profiles.<name>`); every field is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Profile name (the map key).
    pub name: String,
    /// `cpuAllocationRatio` (≥ 1): CPU request = vCPUs / ratio. KubeVirt
    /// default 10.
    pub cpu_allocation_ratio: u32,
    /// `memoryOvercommitPercent` (≥ 10, KubeVirt's CRD minimum): memory
    /// request = guest × 100 / percent. KubeVirt default 100.
    pub memory_overcommit_percent: u32,
    /// `guestOverhead`: whether the overhead is requested.
    pub guest_overhead: GuestOverhead,
    /// `overheadRatio` (≥ 1.0): multiplies the overhead like KubeVirt's
    /// `additionalGuestMemoryOverheadRatio`. Default `"1.0"`.
    pub overhead_ratio: OverheadRatio,
    /// `overheadMargin`: extra bytes of overhead (≥ 0, whole bytes).
    /// Default 0.
    pub overhead_margin: Quantity,
    /// `limits`: the limits policy. Default `None`.
    pub limits: LimitsPolicy,
    /// `limitsRatio`: limits as a multiple of requests (with
    /// `limits: Ratio`).
    pub limits_ratio: LimitsRatio,
    /// `mode`: enforce (patch) or shadow (report only). Default `Enforce`.
    pub mode: Mode,
}

/// `overheadRatio`: the text as written and the float64 Go's
/// `strconv.ParseFloat` makes of it (KubeVirt parses
/// `additionalGuestMemoryOverheadRatio` that way).
#[derive(Debug, Clone, PartialEq)]
pub struct OverheadRatio {
    /// As written (numbers as their shortest decimal text), e.g. `"1.0"`.
    pub text: String,
    /// The parsed float64.
    pub value: f64,
}

/// `limitsRatio`: per-resource limit / request ratios (exact decimals ≥ 1).
/// Each inherits from the `default` profile on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsRatio {
    /// `limitsRatio.cpu`.
    pub cpu: Option<Quantity>,
    /// `limitsRatio.memory`.
    pub memory: Option<Quantity>,
}

/// `guestOverhead`: whether the VM's memory overhead is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestOverhead {
    /// Request = base + overhead (KubeVirt's default). YAML `Request`.
    Request,
    /// Request = base only; the overhead goes to the limit (KubeVirt's
    /// `overcommitGuestOverhead: true`). YAML `Omit`.
    Omit,
}

/// `limits`: how the compute container's limits are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitsPolicy {
    /// Leave limits as KubeVirt renders them. YAML `None`.
    None,
    /// Limits = requests (Guaranteed `QoS` when CPU and memory both are).
    /// YAML `EqualRequests`.
    EqualRequests,
    /// Limits = requests × `limitsRatio`. YAML `Ratio`.
    Ratio,
}

/// `mode`: whether decisions are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Emit the patch. YAML `Enforce`.
    Enforce,
    /// Decide and report, emit no patch. YAML `Shadow`.
    Shadow,
}

/// `onError`: the answer for a Pod that cannot be sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Allowed, unchanged, with a warning (default). YAML `Allow`.
    Allow,
    /// Denied with the error. YAML `Deny`.
    Deny,
}

/// One entry of `rules`. It matches when every selector it has matches; a
/// rule without selectors matches everything.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Position in `rules` (for `rules[i]` in explanations).
    pub index: usize,
    /// `namespaces`: names or globs (`*`, `?`, `[...]`), compiled once;
    /// `Pattern::as_str` gives the source. Empty = any namespace.
    pub namespaces: Vec<glob::Pattern>,
    /// `namespaceSelector` on the Namespace's labels.
    pub namespace_selector: Option<LabelSelector>,
    /// `vmSelector` on the VMI / Pod labels.
    pub vm_selector: Option<LabelSelector>,
    /// `profile`: the profile this rule selects.
    pub profile: String,
    /// `allowedProfiles`: profiles a Pod may opt into with
    /// [`PROFILE_ANNOTATION`].
    pub allowed_profiles: Vec<String>,
    /// [`Rule::describe`], rendered once at load (every decision quotes it).
    description: String,
}

/// A Kubernetes `metav1.LabelSelector`. An empty selector matches
/// everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// `matchLabels`: every key must be present with exactly this value.
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`: every requirement must hold.
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: SelectorOperator,
    /// Values (non-empty for `In`/`NotIn`, empty otherwise).
    pub values: Vec<String>,
}

/// `matchExpressions[].operator`, with Kubernetes' semantics
/// (`k8s.io/apimachinery/pkg/labels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorOperator {
    /// The label is present with one of the values.
    In,
    /// The label is absent or has none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// What profile selection looks at for one Pod.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The Pod's namespace.
    pub namespace: &'a str,
    /// The Namespace's labels.
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The VMI's / Pod's labels.
    pub vm_labels: &'a BTreeMap<String, String>,
    /// The Pod's [`PROFILE_ANNOTATION`] value, if any.
    pub requested_profile: Option<&'a str>,
}

/// The outcome of [`ValidPolicy::select`].
#[derive(Debug, Clone, PartialEq)]
pub struct Selection<'a> {
    /// The profile to apply.
    pub profile: &'a Profile,
    /// Index of the matching rule, if any.
    pub rule: Option<usize>,
    /// Why, e.g. `rules[0] (namespaces prod-*) → production`.
    pub reason: String,
    /// E.g. a refused opt-in.
    pub warnings: Vec<String>,
}

/// One policy problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Field path, e.g. `profiles.dev.cpuAllocationRatio` or
    /// `rules[1].profile`; `(root)` for the document itself.
    pub path: String,
    /// What is wrong, lowercase, naming the value.
    pub message: String,
}

/// Every problem found in a policy, in a stable order (unknown fields, then
/// structural type errors, then the checks from top to bottom).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<FieldError>);

// === Public impls ===

impl ValidPolicy {
    /// Parses and validates a policy, collecting every problem.
    ///
    /// # Errors
    /// [`PolicyErrors`] listing each problem with its field path.
    pub fn from_yaml(text: &str) -> Result<ValidPolicy, PolicyErrors> {
        let mut value: Value = match yaml_serde::from_str(text) {
            Ok(value) => value,
            Err(error) => return Err(PolicyErrors::root(format!("invalid yaml: {error}"))),
        };
        if let Err(error) = value.apply_merge() {
            return Err(PolicyErrors::root(format!(
                "invalid yaml merge key: {error}"
            )));
        }
        if value.is_null() {
            value = Value::Mapping(yaml_serde::Mapping::new());
        }

        let mut shaped = shape::shape(&value);
        let Some(raw) = shaped.raw.take() else {
            return Err(PolicyErrors(shaped.errors));
        };
        let mut checker = Checker {
            errors: std::mem::take(&mut shaped.errors),
        };
        let n_shape_errors = checker.errors.len();
        let policy = checker.policy(&raw, digest_of(text));
        let checks = checker.errors.split_off(n_shape_errors);
        checker.errors.extend(
            checks
                .into_iter()
                .filter(|error| !shaped.is_consequence(&error.path)),
        );
        match policy {
            Some(policy) if checker.errors.is_empty() => Ok(policy),
            _ => Err(PolicyErrors(checker.errors)),
        }
    }

    /// The built-in policy ([`BUILTIN_POLICY_YAML`]): one `default` profile
    /// equal to KubeVirt's own defaults, release `"1.9"`, amd64, no rules,
    /// `onError: Allow`, no Kata classes. Sizing with it is a no-op.
    #[must_use]
    pub fn builtin() -> ValidPolicy {
        Self::from_yaml(BUILTIN_POLICY_YAML)
            .unwrap_or_else(|_| Self::kubevirt_defaults(digest_of(BUILTIN_POLICY_YAML)))
    }

    /// Chooses the profile for one Pod: the first matching rule's profile
    /// (or `default`), replaced by the [`PROFILE_ANNOTATION`] request when
    /// the matched rule's `allowedProfiles` contains it; a refused request
    /// yields a warning.
    #[must_use]
    pub fn select(&self, target: &Target<'_>) -> Selection<'_> {
        let matched = self.rules.iter().find(|rule| rule.matches(target));
        let (mut chosen, source) = match matched {
            Some(rule) => (rule.profile.as_str(), rule.describe()),
            None => (DEFAULT_PROFILE, "no rule matched"),
        };
        let mut reason = format!("{source} → {chosen}");
        let mut warnings = Vec::new();

        if let Some(requested) = target.requested_profile.filter(|name| !name.is_empty()) {
            let refusal = match matched {
                _ if requested == chosen => None,
                Some(rule) if rule.allowed_profiles.iter().any(|p| p == requested) => {
                    if self.profiles.contains_key(requested) {
                        None
                    } else {
                        Some(format!(
                            "in allowedProfiles of {} but not defined in the policy",
                            rule.describe()
                        ))
                    }
                }
                Some(rule) => Some(format!("not in allowedProfiles of {}", rule.describe())),
                None => Some("no rule matched, so no profile may be requested".to_owned()),
            };
            match refusal {
                None if requested == chosen => {
                    reason.push_str(" (also requested by annotation ");
                    reason.push_str(PROFILE_ANNOTATION);
                    reason.push(')');
                }
                None => {
                    chosen = requested;
                    reason = format!(
                        "{source} → {requested} (requested by annotation {PROFILE_ANNOTATION}, in allowedProfiles)"
                    );
                }
                Some(why) => warnings.push(format!(
                    "profile {requested:?} requested by annotation {PROFILE_ANNOTATION} refused: {why}; \
                     using {chosen}"
                )),
            }
        }

        let found = self
            .profiles
            .get(chosen)
            .or_else(|| self.profiles.get(DEFAULT_PROFILE));
        let profile = if let Some(profile) = found {
            profile
        } else {
            // Unreachable for a policy built by `from_yaml`; a hand-built one
            // may lack profiles.
            warnings.push(format!(
                "profile {chosen:?} missing from the policy; using KubeVirt's defaults"
            ));
            &KUBEVIRT_DEFAULT_PROFILE
        };
        Selection {
            profile,
            rule: matched.map(|rule| rule.index),
            reason,
            warnings,
        }
    }

    /// The kubevirt-defaults policy with a given digest (the built-in
    /// policy's content).
    fn kubevirt_defaults(digest: String) -> ValidPolicy {
        ValidPolicy {
            api_version: API_VERSION.to_owned(),
            kubevirt: KUBEVIRT_DEFAULT_SETTINGS.clone(),
            profiles: BTreeMap::from([(
                DEFAULT_PROFILE.to_owned(),
                Profile::kubevirt_defaults(DEFAULT_PROFILE),
            )]),
            rules: Vec::new(),
            on_error: OnError::Allow,
            kata: KataSettings::default(),
            digest,
            baseline: None,
            warnings: Vec::new(),
            written: Arc::new(Written {
                kubevirt: KubevirtOverrides::default(),
                profiles: BTreeMap::from([(
                    DEFAULT_PROFILE.to_owned(),
                    ProfileOverrides::default(),
                )]),
            }),
        }
    }

    /// This policy over the cluster's KubeVirt CR: every field the file
    /// leaves unset takes the CR's value, then KubeVirt's default. The file
    /// wins where both set a value; each such conflict is a warning.
    #[must_use]
    pub fn with_baseline(&self, baseline: Option<Arc<KubevirtBaseline>>) -> ValidPolicy {
        let mut policy = ValidPolicy {
            baseline,
            ..self.clone()
        };
        policy.resolve();
        policy
    }

    /// The digest of the effective settings: the policy's own digest, plus
    /// the baseline's when a KubeVirt CR is in force. Stamped on decisions.
    #[must_use]
    pub fn settings_digest(&self) -> Option<&str> {
        self.baseline
            .as_ref()
            .map(|baseline| baseline.digest.as_str())
    }

    /// Recomputes `kubevirt`, `profiles` and `warnings` from what the file
    /// wrote and the baseline.
    fn resolve(&mut self) {
        let written = &self.written;
        let cr = self.baseline.as_deref();
        let mut warnings = Vec::new();
        let mut conflicts = Vec::new();
        let mut conflict = |path: &str, ours: String, field: &str, theirs: String| {
            if ours != theirs
                && let Some(cr) = cr
            {
                conflicts.push(format!(
                    "{path}: the policy's {ours} differs from the KubeVirt CR {} ({field} {theirs}); the policy wins",
                    cr.source
                ));
            }
        };

        let mut settings = KUBEVIRT_DEFAULT_SETTINGS.clone();
        let own = &written.kubevirt;
        let release = own
            .release
            .clone()
            .or_else(|| cr.and_then(|cr| cr.release.clone()));
        if let (Some(ours), Some(theirs)) = (&own.release, cr.and_then(|cr| cr.release.as_ref())) {
            conflict(
                "kubevirt.release",
                ours.text().to_owned(),
                "status.observedKubeVirtVersion",
                theirs.text().to_owned(),
            );
        }
        match release {
            Some(ReleaseName::Known(line, text)) => {
                settings.release = line;
                settings.release_text = text;
            }
            Some(ReleaseName::Newer(text)) => {
                settings.release = Release::NEWEST;
                settings.newer_than_table = true;
                warnings.push(format!(
                    "KubeVirt {text} is newer than virt-sizer's overhead table (1.5, 1.6-1.9, main): \
                     a launcher Pod's kubevirt.io/memory-overhead-bytes is used as reported and the {} \
                     line's formulas size the rest; a Pod without it is {}",
                    Release::NEWEST.as_str(),
                    match own.newer_release.unwrap_or(NewerRelease::AdmitUnchanged) {
                        NewerRelease::AdmitUnchanged => {
                            "admitted unchanged (kubevirt.newerRelease: AdmitUnchanged)"
                        }
                        NewerRelease::NewestKnown => {
                            "sized with those formulas too (kubevirt.newerRelease: NewestKnown)"
                        }
                    }
                ));
                settings.release_text = text;
            }
            None => {}
        }
        if let Some(architecture) = &own.architecture {
            settings.architecture.clone_from(architecture);
        }
        if let Some(cr) = cr {
            settings.binding_plugins.clone_from(&cr.binding_plugins);
        }
        for (name, memory) in &own.binding_plugins {
            if let Some(theirs) = cr.and_then(|cr| cr.binding_plugins.get(name)) {
                conflict(
                    &format!("kubevirt.bindingPlugins.{name}"),
                    memory.to_string(),
                    &format!("network.binding.{name}.computeResourceOverhead.requests.memory"),
                    theirs.to_string(),
                );
            }
            settings.binding_plugins.insert(name.clone(), *memory);
        }
        settings.auto_cpu_limit_namespace_selector = own
            .auto_cpu_limit_namespace_selector
            .clone()
            .or_else(|| cr.and_then(|cr| cr.auto_cpu_limit_namespace_selector.clone()));
        if let (Some(ours), Some(theirs)) = (
            &own.auto_cpu_limit_namespace_selector,
            cr.and_then(|cr| cr.auto_cpu_limit_namespace_selector.as_ref()),
        ) {
            conflict(
                "kubevirt.autoCPULimitNamespaceLabelSelector",
                ours.to_string(),
                "autoCPULimitNamespaceLabelSelector",
                theirs.to_string(),
            );
        }
        settings.newer_release = own.newer_release.unwrap_or(NewerRelease::AdmitUnchanged);

        // `default`'s unset fields: the CR's values, then KubeVirt's.
        let mut base = Profile::kubevirt_defaults(DEFAULT_PROFILE);
        if let Some(cr) = cr {
            let default = &written.profiles[DEFAULT_PROFILE];
            if let Some(ratio) = cr.cpu_allocation_ratio {
                base.cpu_allocation_ratio = ratio;
                if let Some(ours) = default.cpu_allocation_ratio {
                    conflict(
                        "profiles.default.cpuAllocationRatio",
                        ours.to_string(),
                        "developerConfiguration.cpuAllocationRatio",
                        ratio.to_string(),
                    );
                }
            }
            if let Some(percent) = cr.memory_overcommit_percent {
                base.memory_overcommit_percent = percent;
                if let Some(ours) = default.memory_overcommit_percent {
                    conflict(
                        "profiles.default.memoryOvercommitPercent",
                        ours.to_string(),
                        "developerConfiguration.memoryOvercommit",
                        percent.to_string(),
                    );
                }
            }
            if let Some(ratio) = &cr.overhead_ratio {
                base.overhead_ratio = ratio.clone();
                settings.cluster_overhead_ratio = ratio.clone();
                if let Some(ours) = &default.overhead_ratio {
                    conflict(
                        "profiles.default.overheadRatio",
                        ours.text.clone(),
                        "additionalGuestMemoryOverheadRatio",
                        ratio.text.clone(),
                    );
                }
            }
        }
        let default = resolve(DEFAULT_PROFILE, &base, &written.profiles[DEFAULT_PROFILE]);
        self.profiles = written
            .profiles
            .iter()
            .map(|(name, own)| {
                let profile = if name == DEFAULT_PROFILE {
                    default.clone()
                } else {
                    resolve(name, &default, own)
                };
                (name.clone(), profile)
            })
            .collect();
        warnings.append(&mut conflicts);
        self.kubevirt = settings;
        self.warnings = warnings;
    }
}

impl ReleaseName {
    /// The release as written or reported.
    #[must_use]
    pub fn text(&self) -> &str {
        match self {
            ReleaseName::Known(_, text) | ReleaseName::Newer(text) => text,
        }
    }
}

impl OverheadRatio {
    /// Whether the ratio is exactly 1 (no extra overhead).
    #[must_use]
    pub fn is_one(&self) -> bool {
        self.value.to_bits() == 1.0_f64.to_bits()
    }

    /// `"1.0"`: no extra overhead (KubeVirt's default).
    #[must_use]
    pub fn one() -> OverheadRatio {
        OverheadRatio {
            text: "1.0".to_owned(),
            value: 1.0,
        }
    }
}

impl Release {
    /// The newest line in the table: what sizes a release beyond it.
    pub const NEWEST: Release = Release::Main;

    /// The canonical policy spelling: `"1.5"`, `"1.9"` or `"main"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_5 => "1.5",
            Self::V1_9 => "1.9",
            Self::Main => "main",
        }
    }
}

impl Profile {
    /// A profile equal to KubeVirt's defaults (reference §1.10):
    /// `cpuAllocationRatio` 10, `memoryOvercommit` 100, overhead requested,
    /// overhead ratio `"1.0"`, margin 0, no limits, no limit ratios, enforce.
    #[must_use]
    pub fn kubevirt_defaults(name: &str) -> Profile {
        Profile {
            name: name.to_owned(),
            cpu_allocation_ratio: 10,
            memory_overcommit_percent: 100,
            guest_overhead: GuestOverhead::Request,
            overhead_ratio: OverheadRatio::one(),
            overhead_margin: Quantity::from_int(0, Format::BinarySi),
            limits: LimitsPolicy::None,
            limits_ratio: LimitsRatio {
                cpu: None,
                memory: None,
            },
            mode: Mode::Enforce,
        }
    }
}

impl GuestOverhead {
    /// The policy spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "Request",
            Self::Omit => "Omit",
        }
    }
}

impl LimitsPolicy {
    /// The policy spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::EqualRequests => "EqualRequests",
            Self::Ratio => "Ratio",
        }
    }
}

impl Mode {
    /// The policy spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "Enforce",
            Self::Shadow => "Shadow",
        }
    }
}

impl OnError {
    /// The policy spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Deny => "Deny",
        }
    }
}

impl Rule {
    /// Whether every selector of this rule matches `target` (the
    /// annotation plays no part in matching).
    #[must_use]
    pub fn matches(&self, target: &Target<'_>) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|p| p.matches(target.namespace)))
            && self
                .namespace_selector
                .as_ref()
                .is_none_or(|s| s.matches(target.namespace_labels))
            && self
                .vm_selector
                .as_ref()
                .is_none_or(|s| s.matches(target.vm_labels))
    }

    /// Short text for explanations, e.g. `rules[0] (namespaces prod-*)` or
    /// `rules[1] (namespaceSelector tier=dev, vmSelector class=batch)`.
    #[must_use]
    pub fn describe(&self) -> &str {
        &self.description
    }

    fn render_description(&self) -> String {
        let mut parts = Vec::new();
        if !self.namespaces.is_empty() {
            let names: Vec<&str> = self.namespaces.iter().map(glob::Pattern::as_str).collect();
            parts.push(format!("namespaces {}", names.join(",")));
        }
        if let Some(selector) = &self.namespace_selector {
            parts.push(format!("namespaceSelector {selector}"));
        }
        if let Some(selector) = &self.vm_selector {
            parts.push(format!("vmSelector {selector}"));
        }
        if parts.is_empty() {
            parts.push("matches everything".to_owned());
        }
        format!("rules[{}] ({})", self.index, parts.join(", "))
    }
}

impl LabelSelector {
    /// Kubernetes label-selector matching: every `matchLabels` pair and
    /// every requirement must hold; an empty selector matches everything.
    /// `NotIn` also matches when the key is absent.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector has no terms (matches everything).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

impl fmt::Display for LabelSelector {
    /// Kubernetes' selector string: `tier=dev,env in (a,b),!legacy`; `{}`
    /// when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("{}");
        }
        let mut terms: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        terms.extend(self.match_expressions.iter().map(ToString::to_string));
        f.write_str(&terms.join(","))
    }
}

impl LabelSelectorRequirement {
    /// Whether `labels` satisfy this requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for LabelSelectorRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            SelectorOperator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            SelectorOperator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            SelectorOperator::Exists => f.write_str(&self.key),
            SelectorOperator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

impl SelectorOperator {
    /// The Kubernetes spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        }
    }
}

impl FieldError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl PolicyErrors {
    fn root(message: String) -> Self {
        Self(vec![FieldError::new(ROOT, message)])
    }
}

impl fmt::Display for PolicyErrors {
    /// One `path: message` line per problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

// === Raw (shape-only) policy ===
//
// Leaves stay YAML values so that each one is checked on its own and every
// problem is reported; unknown fields are collected through serde_ignored.

/// Path used for problems with the document as a whole.
const ROOT: &str = "(root)";

static KUBEVIRT_DEFAULT_PROFILE: LazyLock<Profile> =
    LazyLock::new(|| Profile::kubevirt_defaults(DEFAULT_PROFILE));

/// KubeVirt's own settings (reference §1.10) on the v1.6–v1.9 line, amd64.
static KUBEVIRT_DEFAULT_SETTINGS: LazyLock<KubevirtSettings> = LazyLock::new(|| KubevirtSettings {
    release: Release::V1_9,
    release_text: "1.9".to_owned(),
    architecture: "amd64".to_owned(),
    binding_plugins: BTreeMap::new(),
    auto_cpu_limit_namespace_selector: None,
    newer_than_table: false,
    newer_release: NewerRelease::AdmitUnchanged,
    cluster_overhead_ratio: OverheadRatio::one(),
});

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a SizingPolicy mapping")]
struct RawPolicy {
    api_version: Option<Value>,
    kind: Option<Value>,
    kubevirt: Option<RawKubevirt>,
    profiles: Option<BTreeMap<String, Option<RawProfile>>>,
    rules: Option<Vec<RawRule>>,
    on_error: Option<Value>,
    kata: Option<RawKata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a kubevirt mapping")]
struct RawKubevirt {
    release: Option<Value>,
    architecture: Option<Value>,
    binding_plugins: Option<BTreeMap<String, Value>>,
    #[serde(rename = "autoCPULimitNamespaceLabelSelector")]
    auto_cpu_limit_namespace_label_selector: Option<RawLabelSelector>,
    newer_release: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a profile mapping")]
struct RawProfile {
    cpu_allocation_ratio: Option<Value>,
    memory_overcommit_percent: Option<Value>,
    guest_overhead: Option<Value>,
    overhead_ratio: Option<Value>,
    overhead_margin: Option<Value>,
    limits: Option<Value>,
    limits_ratio: Option<RawLimitsRatio>,
    mode: Option<Value>,
}

#[derive(Deserialize)]
#[serde(expecting = "a limitsRatio mapping {cpu, memory}")]
struct RawLimitsRatio {
    cpu: Option<Value>,
    memory: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a rule mapping")]
struct RawRule {
    namespaces: Option<Vec<Value>>,
    namespace_selector: Option<RawLabelSelector>,
    vm_selector: Option<RawLabelSelector>,
    profile: Option<Value>,
    allowed_profiles: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a label selector mapping {matchLabels, matchExpressions}"
)]
struct RawLabelSelector {
    match_labels: Option<BTreeMap<String, Value>>,
    match_expressions: Option<Vec<RawRequirement>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a selector requirement mapping {key, operator, values}")]
struct RawRequirement {
    key: Option<Value>,
    operator: Option<Value>,
    values: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a kata mapping")]
struct RawKata {
    runtime_classes: Option<BTreeMap<String, Option<RawKataClass>>>,
    pods: Option<RawKataPods>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a kata runtime class mapping")]
struct RawKataClass {
    runtime: Option<Value>,
    default_vcpus: Option<Value>,
    default_memory: Option<Value>,
    overhead_vcpus: Option<Value>,
    overhead_memory: Option<Value>,
    sandbox_cgroup_only: Option<Value>,
    vmm: Option<RawVmm>,
    guest_memory: Option<Value>,
}

#[derive(Deserialize)]
#[serde(expecting = "a vmm mapping {cpu, memory}")]
struct RawVmm {
    cpu: Option<Value>,
    memory: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a kata pods mapping")]
struct RawKataPods {
    fill_limits: Option<Value>,
    min_memory: Option<Value>,
}

/// A profile's own (not inherited) values, each `None` when absent or
/// invalid.
#[derive(Debug, Clone, PartialEq, Default)]
struct ProfileOverrides {
    cpu_allocation_ratio: Option<u32>,
    memory_overcommit_percent: Option<u32>,
    guest_overhead: Option<GuestOverhead>,
    overhead_ratio: Option<OverheadRatio>,
    overhead_margin: Option<Quantity>,
    limits: Option<LimitsPolicy>,
    limits_ratio_cpu: Option<Quantity>,
    limits_ratio_memory: Option<Quantity>,
    mode: Option<Mode>,
}

/// What kind of quantity a field holds, for its checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QuantityKind {
    /// CPU: ≥ 0, at most `i64::MAX` millicores.
    Cpu,
    /// Memory: ≥ 0, whole bytes, at most `i64::MAX` bytes.
    Memory,
    /// Memory in whole MiB (Kata's `default_memory`, `overhead_memory`).
    MemoryMib,
}

// === Semantic checks ===

/// Collects problems while converting the raw policy.
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }

    /// Converts the whole raw policy; `None` only when a required part could
    /// not be built (the errors say why).
    fn policy(&mut self, raw: &RawPolicy, digest: String) -> Option<ValidPolicy> {
        let api_version = self.fixed_string("apiVersion", raw.api_version.as_ref(), API_VERSION);
        self.fixed_string("kind", raw.kind.as_ref(), KIND);
        let written = Written {
            kubevirt: self.kubevirt(raw.kubevirt.as_ref()),
            profiles: self.profiles(raw.profiles.as_ref()),
        };
        let rules = self.rules(raw.rules.as_deref().unwrap_or_default(), &written.profiles);
        let on_error = raw.on_error.as_ref().map_or(Some(OnError::Allow), |v| {
            self.keyword(
                "onError",
                v,
                &[("Allow", OnError::Allow), ("Deny", OnError::Deny)],
            )
        });
        let kata = self.kata(raw.kata.as_ref());
        let mut policy = ValidPolicy {
            api_version: api_version?,
            kubevirt: KUBEVIRT_DEFAULT_SETTINGS.clone(),
            profiles: BTreeMap::new(),
            rules,
            on_error: on_error?,
            kata,
            digest,
            baseline: None,
            warnings: Vec::new(),
            written: Arc::new(written),
        };
        policy.resolve();
        Some(policy)
    }

    /// A required string field with exactly one allowed value.
    fn fixed_string(
        &mut self,
        path: &str,
        value: Option<&Value>,
        expected: &str,
    ) -> Option<String> {
        let Some(value) = value else {
            self.error(path, format!("required, must be {expected:?}"));
            return None;
        };
        let text = self.string(path, value)?;
        if text == expected {
            Some(text)
        } else {
            self.error(path, format!("must be {expected:?}, got {text:?}"));
            None
        }
    }

    fn kubevirt(&mut self, raw: Option<&RawKubevirt>) -> KubevirtOverrides {
        let mut own = KubevirtOverrides::default();
        let Some(raw) = raw else { return own };
        if let Some(value) = &raw.release {
            own.release = self.release("kubevirt.release", value);
        }
        if let Some(value) = &raw.architecture
            && let Some(arch) = self.string("kubevirt.architecture", value)
        {
            if ["amd64", "arm64", "s390x", "ppc64le"].contains(&arch.as_str()) {
                own.architecture = Some(arch);
            } else {
                self.error(
                    "kubevirt.architecture",
                    format!("must be one of amd64, arm64, s390x, ppc64le, got {arch:?}"),
                );
            }
        }
        for (name, value) in raw.binding_plugins.iter().flatten() {
            let path = format!("kubevirt.bindingPlugins.{name}");
            if name.is_empty() {
                self.error(&path, "binding plugin name must not be empty");
            }
            if let Some(q) = self.quantity(&path, value, QuantityKind::Memory) {
                own.binding_plugins.insert(name.clone(), q);
            }
        }
        own.auto_cpu_limit_namespace_selector = raw
            .auto_cpu_limit_namespace_label_selector
            .as_ref()
            .map(|s| self.selector("kubevirt.autoCPULimitNamespaceLabelSelector", s));
        if let Some(value) = &raw.newer_release {
            own.newer_release = self.keyword(
                "kubevirt.newerRelease",
                value,
                &[
                    ("AdmitUnchanged", NewerRelease::AdmitUnchanged),
                    ("NewestKnown", NewerRelease::NewestKnown),
                ],
            );
        }
        own
    }

    /// A release line: `"1.5"` … `"1.9"`, `"main"`, `v1.9.0`, or a release
    /// beyond the table (`"1.10"`, `v1.10.0`, `v2.0.0`), which is accepted
    /// and sized as [`ReleaseName::Newer`].
    fn release(&mut self, path: &str, value: &Value) -> Option<ReleaseName> {
        let (text, is_number) = self.scalar_text(path, value)?;
        if let Some(release) = parse_release(&text) {
            return Some(release);
        }
        let hint = if is_number {
            format!(
                " (read as the YAML number {text}; write the release quoted, e.g. release: \"1.9\")"
            )
        } else {
            String::new()
        };
        self.error(
            path,
            format!(
                "must be one of \"1.5\", \"1.6\", \"1.7\", \"1.8\", \"1.9\", \"main\" or a newer \"1.N\", got {text:?}{hint}"
            ),
        );
        None
    }

    /// Every profile's own values, checked; resolution against `default`
    /// and the baseline happens in [`ValidPolicy::resolve`].
    fn profiles(
        &mut self,
        raw: Option<&BTreeMap<String, Option<RawProfile>>>,
    ) -> BTreeMap<String, ProfileOverrides> {
        let empty = BTreeMap::new();
        let raw = raw.unwrap_or(&empty);
        let mut overrides: BTreeMap<String, ProfileOverrides> = BTreeMap::new();
        for (name, profile) in raw {
            self.name(&format!("profiles.{name}"), name, "profile name");
            let parsed = profile
                .as_ref()
                .map(|p| self.profile_overrides(&format!("profiles.{name}"), p))
                .unwrap_or_default();
            overrides.insert(name.clone(), parsed);
        }
        overrides.entry(DEFAULT_PROFILE.to_owned()).or_default();

        // Report a ratio-less `limits: Ratio` where it is written (or on
        // `default`): a profile that inherits it shares default's problem.
        // No baseline field bears on limits, so this holds under any.
        let default = &overrides[DEFAULT_PROFILE];
        for (name, own) in &overrides {
            let limits = own.limits.or(default.limits);
            let has_ratio = own.limits_ratio_cpu.is_some()
                || own.limits_ratio_memory.is_some()
                || default.limits_ratio_cpu.is_some()
                || default.limits_ratio_memory.is_some();
            if limits == Some(LimitsPolicy::Ratio)
                && !has_ratio
                && (name == DEFAULT_PROFILE || own.limits.is_some())
            {
                self.error(
                    format!("profiles.{name}.limitsRatio"),
                    "limits: Ratio needs limitsRatio.cpu or limitsRatio.memory (set here or in profile default)",
                );
            }
        }
        overrides
    }

    fn profile_overrides(&mut self, base: &str, raw: &RawProfile) -> ProfileOverrides {
        let path = |field: &str| format!("{base}.{field}");
        let mut own = ProfileOverrides::default();
        if let Some(v) = &raw.cpu_allocation_ratio {
            own.cpu_allocation_ratio = self.integer_at_least(&path("cpuAllocationRatio"), v, 1);
        }
        if let Some(v) = &raw.memory_overcommit_percent {
            own.memory_overcommit_percent =
                self.integer_at_least(&path("memoryOvercommitPercent"), v, 10);
        }
        if let Some(v) = &raw.guest_overhead {
            own.guest_overhead = self.keyword(
                &path("guestOverhead"),
                v,
                &[
                    ("Request", GuestOverhead::Request),
                    ("Omit", GuestOverhead::Omit),
                ],
            );
        }
        if let Some(v) = &raw.overhead_ratio {
            own.overhead_ratio = self.overhead_ratio(&path("overheadRatio"), v);
        }
        if let Some(v) = &raw.overhead_margin {
            own.overhead_margin = self.quantity(&path("overheadMargin"), v, QuantityKind::Memory);
        }
        if let Some(v) = &raw.limits {
            own.limits = self.keyword(
                &path("limits"),
                v,
                &[
                    ("None", LimitsPolicy::None),
                    ("EqualRequests", LimitsPolicy::EqualRequests),
                    ("Ratio", LimitsPolicy::Ratio),
                ],
            );
        }
        if let Some(ratio) = &raw.limits_ratio {
            if let Some(v) = &ratio.cpu {
                own.limits_ratio_cpu = self.ratio_decimal(&path("limitsRatio.cpu"), v);
            }
            if let Some(v) = &ratio.memory {
                own.limits_ratio_memory = self.ratio_decimal(&path("limitsRatio.memory"), v);
            }
        }
        if let Some(v) = &raw.mode {
            own.mode = self.keyword(
                &path("mode"),
                v,
                &[("Enforce", Mode::Enforce), ("Shadow", Mode::Shadow)],
            );
        }
        own
    }

    /// `overheadRatio`: a Go float ≥ 1.0, finite.
    fn overhead_ratio(&mut self, path: &str, value: &Value) -> Option<OverheadRatio> {
        let (text, _) = self.scalar_text(path, value)?;
        // gofloat::parse refuses NaN, infinities and negative values.
        let Some(value) = gofloat::parse(&text) else {
            self.error(
                path,
                format!("must be a decimal number ≥ 1.0, got {text:?}"),
            );
            return None;
        };
        if value < 1.0 {
            self.error(path, format!("must be ≥ 1.0, got {text:?}"));
            return None;
        }
        Some(OverheadRatio { text, value })
    }

    /// `limitsRatio.*`: a plain decimal ≥ 1 (`"1.5"`, `2`), kept exact.
    fn ratio_decimal(&mut self, path: &str, value: &Value) -> Option<Quantity> {
        let (text, _) = self.scalar_text(path, value)?;
        let (whole, fraction) = text.split_once('.').unwrap_or((text.as_str(), "0"));
        let plain = !whole.is_empty()
            && !fraction.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && fraction.bytes().all(|b| b.is_ascii_digit());
        let quantity = if plain {
            Quantity::parse(&text).ok()
        } else {
            None
        };
        match quantity {
            Some(q) if q.nanos() >= NANOS_PER_UNIT && q.value() <= 1_000_000 => Some(q),
            Some(_) => {
                self.error(path, format!("must be between 1 and 1000000, got {text:?}"));
                None
            }
            None => {
                self.error(
                    path,
                    format!("must be a plain decimal number ≥ 1 such as \"1.5\", got {text:?}"),
                );
                None
            }
        }
    }

    fn rules(
        &mut self,
        raw: &[RawRule],
        profiles: &BTreeMap<String, ProfileOverrides>,
    ) -> Vec<Rule> {
        let known = || {
            profiles
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut rules = Vec::with_capacity(raw.len());
        for (index, rule) in raw.iter().enumerate() {
            let base = format!("rules[{index}]");
            let mut namespaces = Vec::new();
            if let Some(list) = &rule.namespaces {
                if list.is_empty() {
                    self.error(
                        format!("{base}.namespaces"),
                        "must not be empty (leave the field out to match every namespace)",
                    );
                }
                for (i, value) in list.iter().enumerate() {
                    let path = format!("{base}.namespaces[{i}]");
                    let Some(text) = self.string(&path, value) else {
                        continue;
                    };
                    if text.is_empty() {
                        self.error(&path, "must not be empty");
                        continue;
                    }
                    match glob::Pattern::new(&text) {
                        Ok(pattern) => namespaces.push(pattern),
                        Err(error) => self.error(
                            &path,
                            format!(
                                "invalid glob {text:?}: {} at position {}",
                                error.msg, error.pos
                            ),
                        ),
                    }
                }
            }
            let namespace_selector = rule
                .namespace_selector
                .as_ref()
                .map(|s| self.selector(&format!("{base}.namespaceSelector"), s));
            let vm_selector = rule
                .vm_selector
                .as_ref()
                .map(|s| self.selector(&format!("{base}.vmSelector"), s));
            let profile = match &rule.profile {
                None => {
                    self.error(format!("{base}.profile"), "required");
                    String::new()
                }
                Some(value) => {
                    let name = self
                        .string(&format!("{base}.profile"), value)
                        .unwrap_or_default();
                    if !name.is_empty() && !profiles.contains_key(&name) {
                        self.error(
                            format!("{base}.profile"),
                            format!("unknown profile {name:?} (profiles: {})", known()),
                        );
                    }
                    name
                }
            };
            let mut allowed_profiles = Vec::new();
            for (i, value) in rule.allowed_profiles.iter().flatten().enumerate() {
                let path = format!("{base}.allowedProfiles[{i}]");
                let Some(name) = self.string(&path, value) else {
                    continue;
                };
                if profiles.contains_key(&name) {
                    allowed_profiles.push(name);
                } else {
                    self.error(
                        &path,
                        format!("unknown profile {name:?} (profiles: {})", known()),
                    );
                }
            }
            let mut rule = Rule {
                index,
                namespaces,
                namespace_selector,
                vm_selector,
                profile,
                allowed_profiles,
                description: String::new(),
            };
            rule.description = rule.render_description();
            rules.push(rule);
        }
        rules
    }

    /// A `metav1.LabelSelector` with Kubernetes' validation
    /// (`ValidateLabelSelector`).
    fn selector(&mut self, base: &str, raw: &RawLabelSelector) -> LabelSelector {
        let mut selector = LabelSelector::default();
        for (key, value) in raw.match_labels.iter().flatten() {
            let path = format!("{base}.matchLabels.{key}");
            self.label_key(&path, key);
            let Some(text) = self.string(&path, value) else {
                continue;
            };
            self.label_value(&path, &text);
            selector.match_labels.insert(key.clone(), text);
        }
        for (index, requirement) in raw.match_expressions.iter().flatten().enumerate() {
            let path = format!("{base}.matchExpressions[{index}]");
            if let Some(parsed) = self.requirement(&path, requirement) {
                selector.match_expressions.push(parsed);
            }
        }
        selector
    }

    /// One `matchExpressions` entry, with Kubernetes' checks on the values.
    fn requirement(
        &mut self,
        path: &str,
        raw: &RawRequirement,
    ) -> Option<LabelSelectorRequirement> {
        let key = match &raw.key {
            None => {
                self.error(format!("{path}.key"), "required");
                None
            }
            Some(v) => self
                .string(&format!("{path}.key"), v)
                .inspect(|k| self.label_key(&format!("{path}.key"), k)),
        };
        let operator = match &raw.operator {
            None => {
                self.error(format!("{path}.operator"), "required");
                None
            }
            Some(v) => self.keyword(
                &format!("{path}.operator"),
                v,
                &[
                    ("In", SelectorOperator::In),
                    ("NotIn", SelectorOperator::NotIn),
                    ("Exists", SelectorOperator::Exists),
                    ("DoesNotExist", SelectorOperator::DoesNotExist),
                ],
            ),
        };
        let mut values = Vec::new();
        for (i, value) in raw.values.iter().flatten().enumerate() {
            let value_path = format!("{path}.values[{i}]");
            if let Some(text) = self.string(&value_path, value) {
                self.label_value(&value_path, &text);
                values.push(text);
            }
        }
        let n_values = raw.values.as_ref().map_or(0, Vec::len);
        match operator {
            Some(SelectorOperator::In | SelectorOperator::NotIn) if n_values == 0 => {
                self.error(
                    format!("{path}.values"),
                    "must be specified when operator is In or NotIn",
                );
            }
            Some(SelectorOperator::Exists | SelectorOperator::DoesNotExist) if n_values > 0 => {
                self.error(
                    format!("{path}.values"),
                    "may not be specified when operator is Exists or DoesNotExist",
                );
            }
            _ => {}
        }
        Some(LabelSelectorRequirement {
            key: key?,
            operator: operator?,
            values,
        })
    }

    fn kata(&mut self, raw: Option<&RawKata>) -> KataSettings {
        let mut settings = KataSettings::default();
        let Some(raw) = raw else { return settings };
        for (handler, class) in raw.runtime_classes.iter().flatten() {
            let base = format!("kata.runtimeClasses.{handler}");
            self.dns_label(&base, handler);
            let Some(class) = class else {
                self.error(format!("{base}.runtime"), "required");
                self.error(format!("{base}.vmm"), "required");
                continue;
            };
            if let Some(parsed) = self.kata_class(&base, handler, class) {
                settings.runtime_classes.insert(handler.clone(), parsed);
            }
        }
        if let Some(pods) = &raw.pods {
            if let Some(v) = &pods.fill_limits {
                settings.pods.fill_limits = self
                    .keyword(
                        "kata.pods.fillLimits",
                        v,
                        &[
                            ("None", FillLimits::None),
                            ("FromRequests", FillLimits::FromRequests),
                        ],
                    )
                    .unwrap_or(settings.pods.fill_limits);
            }
            if let Some(v) = &pods.min_memory {
                settings.pods.min_memory = self
                    .quantity("kata.pods.minMemory", v, QuantityKind::Memory)
                    .unwrap_or(settings.pods.min_memory);
            }
        }
        settings
    }

    fn kata_class(&mut self, base: &str, handler: &str, raw: &RawKataClass) -> Option<KataClass> {
        let path = |field: &str| format!("{base}.{field}");
        let runtime = match &raw.runtime {
            None => {
                self.error(path("runtime"), "required: go, go-static or runtime-rs");
                None
            }
            Some(v) => self.keyword(
                &path("runtime"),
                v,
                &[
                    ("go", KataRuntime::Go),
                    ("go-static", KataRuntime::GoStatic),
                    ("runtime-rs", KataRuntime::RuntimeRs),
                ],
            ),
        };
        let vmm = self.vmm(base, raw.vmm.as_ref());
        let default_vcpus = self.optional_quantity(
            &path("defaultVcpus"),
            raw.default_vcpus.as_ref(),
            QuantityKind::Cpu,
        );
        let default_memory = self.optional_quantity(
            &path("defaultMemory"),
            raw.default_memory.as_ref(),
            QuantityKind::MemoryMib,
        );
        let overhead_vcpus = self.optional_quantity(
            &path("overheadVcpus"),
            raw.overhead_vcpus.as_ref(),
            QuantityKind::Cpu,
        );
        let overhead_memory = self.optional_quantity(
            &path("overheadMemory"),
            raw.overhead_memory.as_ref(),
            QuantityKind::MemoryMib,
        );
        let sandbox_cgroup_only = raw
            .sandbox_cgroup_only
            .as_ref()
            .and_then(|v| self.boolean(&path("sandboxCgroupOnly"), v));
        let guest_memory = raw.guest_memory.as_ref().and_then(|v| {
            self.keyword(
                &path("guestMemory"),
                v,
                &[
                    ("Ignore", GuestMemory::Ignore),
                    ("Account", GuestMemory::Account),
                ],
            )
        });

        let runtime = runtime?;
        if runtime != KataRuntime::RuntimeRs {
            for (field, value) in [
                ("overheadVcpus", &raw.overhead_vcpus),
                ("overheadMemory", &raw.overhead_memory),
            ] {
                if value.is_some() {
                    self.error(
                        path(field),
                        format!(
                            "only valid with runtime: runtime-rs (4.x), not {}",
                            runtime.as_str()
                        ),
                    );
                }
            }
        }
        let mut class = KataClass::with_defaults(handler, runtime, vmm?);
        if let Some(q) = default_vcpus {
            class.default_vcpus = q;
        }
        if let Some(q) = default_memory {
            class.default_memory = q;
        }
        if runtime == KataRuntime::RuntimeRs {
            class.overhead_vcpus = overhead_vcpus.or(class.overhead_vcpus);
            class.overhead_memory = overhead_memory.or(class.overhead_memory);
        }
        if let Some(flag) = sandbox_cgroup_only {
            class.sandbox_cgroup_only = flag;
        }
        if let Some(mode) = guest_memory {
            class.guest_memory = mode;
        }
        Some(class)
    }

    /// `vmm`: required, with both `cpu` and `memory`.
    fn vmm(&mut self, base: &str, raw: Option<&RawVmm>) -> Option<PodFixed> {
        let Some(vmm) = raw else {
            self.error(
                format!("{base}.vmm"),
                "required: the host-side VMM cost {cpu, memory}",
            );
            return None;
        };
        let cpu = self.required_quantity(
            &format!("{base}.vmm.cpu"),
            vmm.cpu.as_ref(),
            QuantityKind::Cpu,
        );
        let memory = self.required_quantity(
            &format!("{base}.vmm.memory"),
            vmm.memory.as_ref(),
            QuantityKind::Memory,
        );
        Some(PodFixed {
            cpu: cpu?,
            memory: memory?,
        })
    }

    // --- leaf conversions ---

    fn string(&mut self, path: &str, value: &Value) -> Option<String> {
        if let Value::String(text) = value {
            Some(text.clone())
        } else {
            let hint = if matches!(value, Value::Number(_) | Value::Bool(_)) {
                " (quote it)"
            } else {
                ""
            };
            self.error(
                path,
                format!("expected a string, got {}{hint}", describe(value)),
            );
            None
        }
    }

    /// A string or a number, as text (numbers in their shortest decimal
    /// form), and whether it was a number.
    fn scalar_text(&mut self, path: &str, value: &Value) -> Option<(String, bool)> {
        match value {
            Value::String(text) => Some((text.clone(), false)),
            Value::Number(number) => Some((number.to_string(), true)),
            other => {
                self.error(
                    path,
                    format!("expected a string or a number, got {}", describe(other)),
                );
                None
            }
        }
    }

    fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        if let Value::Bool(flag) = value {
            Some(*flag)
        } else {
            self.error(
                path,
                format!("expected true or false, got {}", describe(value)),
            );
            None
        }
    }

    fn integer_at_least(&mut self, path: &str, value: &Value, minimum: u32) -> Option<u32> {
        let parsed = match value {
            Value::Number(n) => n.as_u64().map(|n| u32::try_from(n).ok()),
            _ => None,
        };
        match parsed {
            Some(Some(n)) if n >= minimum => Some(n),
            Some(Some(n)) => {
                self.error(path, format!("must be ≥ {minimum}, got {n}"));
                None
            }
            Some(None) => {
                self.error(
                    path,
                    format!("must be at most {}, got {}", u32::MAX, describe(value)),
                );
                None
            }
            None => {
                self.error(
                    path,
                    format!("expected an integer ≥ {minimum}, got {}", describe(value)),
                );
                None
            }
        }
    }

    fn keyword<T: Copy>(&mut self, path: &str, value: &Value, allowed: &[(&str, T)]) -> Option<T> {
        let names = || {
            allowed
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Value::String(text) = value else {
            self.error(
                path,
                format!("must be one of {}, got {}", names(), describe(value)),
            );
            return None;
        };
        if let Some((_, item)) = allowed.iter().find(|(name, _)| name == text) {
            return Some(*item);
        }
        let hint = closest_name(
            text,
            &allowed.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        )
        .map(|name| format!(" (did you mean {name}?)"))
        .unwrap_or_default();
        self.error(
            path,
            format!("must be one of {}, got {text:?}{hint}", names()),
        );
        None
    }

    fn required_quantity(
        &mut self,
        path: &str,
        value: Option<&Value>,
        kind: QuantityKind,
    ) -> Option<Quantity> {
        if value.is_none() {
            self.error(path, "required");
        }
        self.optional_quantity(path, value, kind)
    }

    fn optional_quantity(
        &mut self,
        path: &str,
        value: Option<&Value>,
        kind: QuantityKind,
    ) -> Option<Quantity> {
        value.and_then(|v| self.quantity(path, v, kind))
    }

    /// A Kubernetes quantity (string or number) with the checks of `kind`.
    fn quantity(&mut self, path: &str, value: &Value, kind: QuantityKind) -> Option<Quantity> {
        let (text, _) = self.scalar_text(path, value)?;
        let quantity = match Quantity::parse(&text) {
            Ok(q) => q,
            Err(error) => {
                self.error(path, format!("invalid quantity {text:?}: {}", error.reason));
                return None;
            }
        };
        let nanos = quantity.nanos();
        let problem = if quantity.is_negative() {
            Some("must not be negative")
        } else if kind != QuantityKind::Cpu && nanos % NANOS_PER_UNIT != 0 {
            Some("must be a whole number of bytes")
        } else if kind == QuantityKind::MemoryMib && quantity.value() % (1 << 20) != 0 {
            Some("must be a whole number of MiB (Kata reads it in MiB)")
        } else if (kind == QuantityKind::Cpu && quantity.milli_value() > MAX_UNITS)
            || (kind != QuantityKind::Cpu && quantity.value() > MAX_UNITS)
        {
            Some("is larger than a Kubernetes quantity can be")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(path, format!("{problem}, got {text:?}"));
            return None;
        }
        Some(quantity)
    }

    /// A profile name: like a Kubernetes label value, non-empty.
    fn name(&mut self, path: &str, name: &str, what: &str) {
        if name.is_empty() || !is_label_value(name) {
            self.error(
                path,
                format!(
                    "invalid {what} {name:?}: must be 1–{MAX_NAME_LEN} characters of [A-Za-z0-9-_.], \
                     starting and ending with a letter or digit"
                ),
            );
        }
    }

    /// A `RuntimeClass` handler: an RFC 1123 DNS label.
    fn dns_label(&mut self, path: &str, name: &str) {
        if !is_dns_label(name) {
            self.error(
                path,
                format!(
                    "invalid runtime class handler {name:?}: must be a DNS label (1–63 lowercase letters, digits \
                     or '-', starting and ending with a letter or digit)"
                ),
            );
        }
    }

    /// A label key: `[prefix/]name` (`IsQualifiedName`).
    fn label_key(&mut self, path: &str, key: &str) {
        let (prefix, name) = match key.split_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key),
        };
        let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_dns_label));
        if !prefix_ok || name.is_empty() || !is_label_value(name) || name.contains('/') {
            self.error(
                path,
                format!(
                    "invalid label key {key:?}: must be [DNS-subdomain prefix/]name, name 1–{MAX_NAME_LEN} \
                     characters of [A-Za-z0-9-_.] starting and ending with a letter or digit"
                ),
            );
        }
    }

    /// A label value (`IsValidLabelValue`): empty, or up to 63 characters.
    fn label_value(&mut self, path: &str, value: &str) {
        if !value.is_empty() && !is_label_value(value) {
            self.error(
                path,
                format!(
                    "invalid label value {value:?}: must be at most {MAX_NAME_LEN} characters of [A-Za-z0-9-_.], \
                     starting and ending with a letter or digit"
                ),
            );
        }
    }
}

/// Applies a profile's own values over `base`.
fn resolve(name: &str, base: &Profile, own: &ProfileOverrides) -> Profile {
    Profile {
        name: name.to_owned(),
        cpu_allocation_ratio: own
            .cpu_allocation_ratio
            .unwrap_or(base.cpu_allocation_ratio),
        memory_overcommit_percent: own
            .memory_overcommit_percent
            .unwrap_or(base.memory_overcommit_percent),
        guest_overhead: own.guest_overhead.unwrap_or(base.guest_overhead),
        overhead_ratio: own
            .overhead_ratio
            .clone()
            .unwrap_or_else(|| base.overhead_ratio.clone()),
        overhead_margin: own.overhead_margin.unwrap_or(base.overhead_margin),
        limits: own.limits.unwrap_or(base.limits),
        limits_ratio: LimitsRatio {
            cpu: own.limits_ratio_cpu.or(base.limits_ratio.cpu),
            memory: own.limits_ratio_memory.or(base.limits_ratio.memory),
        },
        mode: own.mode.unwrap_or(base.mode),
    }
}

/// Reads a KubeVirt release as a policy writes it (`"1.9"`, `"main"`) or a
/// cluster reports it (`v1.9.0`, `v1.10.0-rc.1`). `None` for anything else,
/// lines older than the table included.
pub fn parse_release(text: &str) -> Option<ReleaseName> {
    if text == "main" {
        return Some(ReleaseName::Known(Release::Main, text.to_owned()));
    }
    let version = text.strip_prefix('v').unwrap_or(text);
    let mut parts = version.splitn(3, '.');
    let number = |part: Option<&str>| {
        part.filter(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|part| part.parse::<u64>().ok())
    };
    let major = number(parts.next())?;
    let minor = number(parts.next())?;
    if let Some(patch) = parts.next() {
        // A patch number, then (as clusters report it, `v1.10.0-rc.1`) an
        // optional pre-release or build suffix.
        let digits = patch.split(['-', '+']).next().unwrap_or_default();
        let suffix_ok = patch.len() == digits.len() || text.starts_with('v');
        if number(Some(digits)).is_none() || !suffix_ok {
            return None;
        }
    }
    let release = match (major, minor) {
        (1, 5) => Release::V1_5,
        (1, 6..=9) => Release::V1_9,
        (1, 10..) | (2.., _) => return Some(ReleaseName::Newer(text.to_owned())),
        _ => return None,
    };
    Some(ReleaseName::Known(release, text.to_owned()))
}

/// `sha256:` + lowercase hex of SHA-256(`text`).
fn digest_of(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A YAML value for an error message: `string "x"`, `number 3`, …
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("boolean {flag}"),
        Value::Number(number) => format!("number {number}"),
        Value::String(text) => format!("string {text:?}"),
        Value::Sequence(_) => "a sequence".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn is_label_value(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    let ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes.first().is_some_and(ok)
        && bytes.last().is_some_and(ok)
        && bytes.iter().all(|b| ok(b) || *b == b'-')
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
