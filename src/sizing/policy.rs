//! The sizing policy (`SizingPolicy`): strict parsing, whole-file
//! validation, profile inheritance and profile selection.
//!
//! A policy is one YAML document. [`ValidPolicy::from_yaml`] reads it in
//! three passes and reports **every** problem with its field path:
//!
//! 1. YAML syntax (and merge keys `<<`), into a YAML value tree;
//!    Aliases are expanded within a bound ([`yaml::Expansion::POLICY`]): a
//!    document that would expand past it is refused before it is built;
//! 2. shape: the tree is deserialized, in one pass, into raw structs whose
//!    leaves stay YAML values, collecting every unknown field with the
//!    closest known name (`profiles.dev.cpuAllocationRatoi: unknown field
//!    (did you mean cpuAllocationRatio?)`) and every structural type error
//!    with its path (the value is read as empty, so one does not hide the
//!    next; see `shape`);
//! 3. semantics: every leaf is converted and checked on its own (types,
//!    ranges, quantities, globs, label selectors, references between rules
//!    and profiles), collecting all problems.
//!
//! Every pass is linear in the (expanded) document, and at most
//! [`MAX_LISTED_PROBLEMS`] problems are listed; the rest are counted.
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
mod leaves;
mod parse;
mod resolve;
mod select;
mod shape;

use parse::{Checker, ProfileOverrides, QuantityKind, ROOT, RawLabelSelector, RawPolicy};

pub use baseline::{CrSetting, KubevirtBaseline, SettingsNeeds, UnknownSetting};
pub use shape::{UnknownField, closest_name, struct_fields};

use kube::core::{Expression, SelectorExt as _};

use super::gofloat;
use super::kata::{EnableAnnotations, KataClass, KataRuntime, KataSettings, PodFixed};
use super::quantity::{Format, Quantity};
use super::spelling::{Spelled, spelled};
use super::yaml::{self, Expansion, YamlError};

/// The only accepted `apiVersion`.
pub const API_VERSION: &str = "virt-sizer.io/v1alpha1";

/// The only accepted `kind`.
pub const KIND: &str = "SizingPolicy";

/// Name of the profile used when no rule matches; always present in a
/// [`ValidPolicy`].
pub const DEFAULT_PROFILE: &str = "default";

/// Pod annotation through which a VM opts into one of its rule's
/// `allowedProfiles` (KubeVirt copies VMI annotations onto the
/// virt-launcher Pod).
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
    /// plugin used (KubeVirt's `CalculateMemoryOverhead`).
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
    /// Why a Pod it matches gets its profile (`<description> → <profile>`),
    /// rendered once at load: the usual selection reason.
    selected: String,
}

/// A Kubernetes `metav1.LabelSelector` as the policy wrote it, matched by
/// kube's [`Selector`](kube::core::Selector) (Kubernetes' semantics). An
/// empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// `matchLabels`: every key must be present with exactly this value.
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`: every requirement must hold.
    pub match_expressions: Vec<LabelSelectorRequirement>,
    /// The two above, compiled once.
    compiled: kube::core::Selector,
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
pub struct Subject<'a> {
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

/// A policy's problems listed at most; past this they are only counted
/// (one mistake repeated down a long list would otherwise fill pages).
pub const MAX_LISTED_PROBLEMS: usize = 100;

/// Every problem found in a policy, in a stable order (unknown fields, then
/// structural type errors, then the checks from top to bottom): the first
/// [`MAX_LISTED_PROBLEMS`], and how many more there are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyErrors {
    /// The first problems, at most [`MAX_LISTED_PROBLEMS`].
    pub listed: Vec<FieldError>,
    /// How many more were found.
    pub n_more: usize,
}

static KUBEVIRT_DEFAULT_PROFILE: LazyLock<Profile> =
    LazyLock::new(|| Profile::kubevirt_defaults(DEFAULT_PROFILE));

/// KubeVirt's own settings (its `developerConfiguration` defaults) on the
/// v1.6–v1.9 line, amd64.
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

// === Public impls ===

spelled!(GuestOverhead { "Request" => GuestOverhead::Request, "Omit" => GuestOverhead::Omit });
spelled!(LimitsPolicy {
    "None" => LimitsPolicy::None,
    "EqualRequests" => LimitsPolicy::EqualRequests,
    "Ratio" => LimitsPolicy::Ratio,
});
spelled!(Mode { "Enforce" => Mode::Enforce, "Shadow" => Mode::Shadow });
spelled!(OnError { "Allow" => OnError::Allow, "Deny" => OnError::Deny });
spelled!(NewerRelease {
    "AdmitUnchanged" => NewerRelease::AdmitUnchanged,
    "NewestKnown" => NewerRelease::NewestKnown,
});
spelled!(SelectorOperator {
    "In" => SelectorOperator::In,
    "NotIn" => SelectorOperator::NotIn,
    "Exists" => SelectorOperator::Exists,
    "DoesNotExist" => SelectorOperator::DoesNotExist,
});

impl ValidPolicy {
    /// Parses and validates a policy, collecting every problem.
    ///
    /// # Errors
    /// [`PolicyErrors`] listing each problem with its field path.
    pub fn from_yaml(text: &str) -> Result<ValidPolicy, PolicyErrors> {
        let mut value: Value =
            yaml::from_str(text, Expansion::POLICY).map_err(|error| match error {
                YamlError::Syntax(message) => {
                    PolicyErrors::root(format!("invalid yaml: {message}"))
                }
                too_large @ YamlError::TooLarge { .. } => PolicyErrors::root(too_large.to_string()),
            })?;
        // Merging moves entries the tree already holds (the expansion bound
        // counted each alias in full): it adds nothing to it.
        if let Err(error) = value.apply_merge() {
            return Err(PolicyErrors::root(format!(
                "invalid yaml merge key: {error}"
            )));
        }
        if value.is_null() {
            value = Value::Mapping(yaml_serde::Mapping::new());
        }

        let shaped = shape::shape(&value);
        let Some(raw) = shaped.raw else {
            return Err(shaped.problems);
        };
        let mut checker = Checker {
            problems: shaped.problems,
            removed: shaped.removed,
        };
        let policy = checker.policy(&raw, digest_of(text));
        match policy {
            Some(policy) if checker.problems.is_empty() => Ok(policy),
            _ => Err(checker.problems),
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
    /// A profile equal to KubeVirt's defaults:
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
        let mut errors = Self::default();
        errors.push(FieldError::new(ROOT, message));
        errors
    }

    /// Adds a problem: listed while fewer than [`MAX_LISTED_PROBLEMS`] are,
    /// counted after.
    fn push(&mut self, error: FieldError) {
        if self.listed.len() < MAX_LISTED_PROBLEMS {
            self.listed.push(error);
        } else {
            self.n_more += 1;
        }
    }

    /// Adds `other`'s problems after these.
    fn extend(&mut self, other: PolicyErrors) {
        for error in other.listed {
            self.push(error);
        }
        self.n_more += other.n_more;
    }

    /// How many problems were found, listed or not.
    #[must_use]
    pub fn len(&self) -> usize {
        self.listed.len() + self.n_more
    }

    /// Whether none were.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.n_more == 0
    }
}

impl fmt::Display for PolicyErrors {
    /// One `path: message` line per listed problem, then how many more
    /// there are, if any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.listed.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        if self.n_more > 0 {
            write!(
                f,
                "\nand {} more problems (the first {MAX_LISTED_PROBLEMS} are listed)",
                self.n_more
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

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

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
