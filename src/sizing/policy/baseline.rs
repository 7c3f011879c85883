//! The cluster's KubeVirt CR as the policy's baseline: whatever
//! the policy leaves unset comes from the `kubevirt.io/v1` KubeVirt object,
//! then from KubeVirt's own defaults.
//!
//! Read from the CR, each at the path KubeVirt defines it:
//!
//! | CR field | becomes |
//! |---|---|
//! | `spec.configuration.developerConfiguration.cpuAllocationRatio` | `profiles.default.cpuAllocationRatio` |
//! | `spec.configuration.developerConfiguration.memoryOvercommit` | `profiles.default.memoryOvercommitPercent` |
//! | `spec.configuration.additionalGuestMemoryOverheadRatio` | `profiles.default.overheadRatio`, and the ratio a reported overhead was computed with |
//! | `spec.configuration.autoCPULimitNamespaceLabelSelector` | `kubevirt.autoCPULimitNamespaceLabelSelector` |
//! | `spec.configuration.network.binding.<name>.computeResourceOverhead.requests.memory` | `kubevirt.bindingPlugins.<name>` |
//! | `status.observedKubeVirtVersion` | `kubevirt.release` |

use std::collections::BTreeMap;
use std::fmt::Write as _;

use yaml_serde::Value;

use super::{
    Checker, LabelSelector, OverheadRatio, PolicyErrors, QuantityKind, RawLabelSelector,
    ReleaseName, digest_of, parse_release,
};
use crate::sizing::Quantity;

/// What virt-sizer takes from a KubeVirt CR. `None` (or empty) where the CR
/// leaves a field unset, so KubeVirt's default applies.
#[derive(Debug, Clone, PartialEq)]
pub struct KubevirtBaseline {
    /// `namespace/name` of the CR, for messages.
    pub source: String,
    /// `developerConfiguration.cpuAllocationRatio`.
    pub cpu_allocation_ratio: Option<u32>,
    /// `developerConfiguration.memoryOvercommit`.
    pub memory_overcommit_percent: Option<u32>,
    /// `additionalGuestMemoryOverheadRatio`.
    pub overhead_ratio: Option<OverheadRatio>,
    /// `autoCPULimitNamespaceLabelSelector`.
    pub auto_cpu_limit_namespace_selector: Option<LabelSelector>,
    /// `network.binding.<name>.computeResourceOverhead.requests.memory`.
    pub binding_plugins: BTreeMap<String, Quantity>,
    /// `status.observedKubeVirtVersion`.
    pub release: Option<ReleaseName>,
    /// The settings the CR could not give (a value virt-sizer cannot use,
    /// or a CR that could not be read at all), each with why. Their field
    /// above is `None`, which here means "unknown", not "KubeVirt's
    /// default": a decision that needs one sizes nothing.
    pub unknown: Vec<UnknownSetting>,
    /// `sha256:` of the values above, as [`KubevirtBaseline::describe`]
    /// lists them: the decision annotation carries it.
    pub digest: String,
}

/// A setting virt-sizer takes from the KubeVirt CR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CrSetting {
    /// `status.observedKubeVirtVersion`.
    Release,
    /// `developerConfiguration.cpuAllocationRatio`.
    CpuAllocationRatio,
    /// `developerConfiguration.memoryOvercommit`.
    MemoryOvercommit,
    /// `additionalGuestMemoryOverheadRatio`.
    OverheadRatio,
    /// `autoCPULimitNamespaceLabelSelector`.
    AutoCpuLimitSelector,
    /// `network.binding.<name>.computeResourceOverhead`.
    BindingPlugins,
}

impl CrSetting {
    /// Every setting, in the order they are read and listed.
    pub const ALL: [CrSetting; 6] = [
        CrSetting::Release,
        CrSetting::CpuAllocationRatio,
        CrSetting::MemoryOvercommit,
        CrSetting::OverheadRatio,
        CrSetting::AutoCpuLimitSelector,
        CrSetting::BindingPlugins,
    ];

    /// Its field in the CR, as messages name it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CrSetting::Release => "observedKubeVirtVersion",
            CrSetting::CpuAllocationRatio => "cpuAllocationRatio",
            CrSetting::MemoryOvercommit => "memoryOvercommit",
            CrSetting::OverheadRatio => "additionalGuestMemoryOverheadRatio",
            CrSetting::AutoCpuLimitSelector => "autoCPULimitNamespaceLabelSelector",
            CrSetting::BindingPlugins => "network.binding",
        }
    }
}

/// A setting the KubeVirt CR could not give, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSetting {
    /// Which.
    pub setting: CrSetting,
    /// Why, for the warning and `/readyz`.
    pub reason: String,
}

/// A string field, or `""`.
fn text(value: Option<&Value>) -> &str {
    value.and_then(Value::as_str).unwrap_or_default()
}

/// Where the CR's settings live; the paths in messages start with it.
const CONFIG: &str = "spec.configuration";

/// `autoCPULimitNamespaceLabelSelector`, checked as a policy selector.
fn auto_cpu_limit_selector(checker: &mut Checker, value: &Value) -> Option<LabelSelector> {
    let path = format!("{CONFIG}.autoCPULimitNamespaceLabelSelector");
    match yaml_serde::from_value::<RawLabelSelector>(value.clone()) {
        Ok(raw) => Some(checker.selector(&path, &raw)),
        Err(error) => {
            checker.error(&path, error.to_string());
            None
        }
    }
}

/// `network.binding.<name>.computeResourceOverhead.requests.memory` of
/// each binding plugin that declares it.
fn binding_plugins(checker: &mut Checker, bindings: Option<&Value>) -> BTreeMap<String, Quantity> {
    let mut plugins = BTreeMap::new();
    let Some(Value::Mapping(bindings)) = bindings else {
        return plugins;
    };
    for (name, binding) in bindings {
        let Some(name) = name.as_str() else { continue };
        let memory = ["computeResourceOverhead", "requests", "memory"]
            .iter()
            .try_fold(binding, |value, key| value.get(*key));
        let path =
            format!("{CONFIG}.network.binding.{name}.computeResourceOverhead.requests.memory");
        if let Some(memory) = memory
            && let Some(memory) = checker.quantity(&path, memory, QuantityKind::Memory)
        {
            plugins.insert(name.to_owned(), memory);
        }
    }
    plugins
}

/// Records `setting` as unknown when the checker reported problems since
/// `before` (the problems are its reason), and moves `before` on.
fn unknown_since(
    checker: &mut Checker,
    before: &mut usize,
    setting: CrSetting,
    unknown: &mut Vec<UnknownSetting>,
) {
    if checker.problems.listed.len() > *before {
        let reason = checker.problems.listed[*before..]
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        unknown.push(UnknownSetting { setting, reason });
    }
    *before = checker.problems.listed.len();
}

/// `status.observedKubeVirtVersion`, if reported: a release virt-sizer can
/// size.
fn observed_release(checker: &mut Checker, cr: &Value) -> Option<ReleaseName> {
    let observed = text(
        cr.get("status")
            .and_then(|status| status.get("observedKubeVirtVersion")),
    );
    if observed.is_empty() {
        return None;
    }
    let release = parse_release(observed);
    if release.is_none() {
        checker.error(
            "status.observedKubeVirtVersion",
            format!("{observed:?} is not a KubeVirt release virt-sizer can size (v1.5 or later)"),
        );
    }
    release
}

impl KubevirtBaseline {
    /// Reads a KubeVirt CR (as YAML or JSON, parsed), checking each field as
    /// the policy checker checks the policy field it stands for. A field
    /// that fails its check is an [`UnknownSetting`] naming the problem at
    /// its path in the CR; the others are read as usual. The settings that
    /// do not depend on the release (`cpuAllocationRatio`,
    /// `memoryOvercommit`, `additionalGuestMemoryOverheadRatio`) are read
    /// whatever `observedKubeVirtVersion` says.
    ///
    /// # Errors
    /// Not a KubeVirt object at all.
    pub fn from_value(cr: &Value) -> Result<KubevirtBaseline, PolicyErrors> {
        let mut checker = Checker::default();
        let kind = text(cr.get("kind"));
        let api_version = text(cr.get("apiVersion"));
        if kind != "KubeVirt" || !api_version.starts_with("kubevirt.io/") {
            checker.error(
                "kind",
                format!(
                    "expected a KubeVirt object (apiVersion kubevirt.io/v1, kind KubeVirt), got {api_version:?} {kind:?}"
                ),
            );
            return Err(checker.problems);
        }
        let metadata = cr.get("metadata");
        let source = format!(
            "{}/{}",
            text(metadata.and_then(|m| m.get("namespace"))),
            text(metadata.and_then(|m| m.get("name")))
        );
        let configuration = cr.get("spec").and_then(|spec| spec.get("configuration"));
        let at = |path: &[&str]| {
            path.iter()
                .try_fold(configuration?, |value, key| value.get(*key))
                .filter(|value| !value.is_null())
        };
        let mut unknown = Vec::new();
        let mut before = 0;

        let cpu_allocation_ratio =
            at(&["developerConfiguration", "cpuAllocationRatio"]).and_then(|value| {
                checker.integer_at_least(
                    &format!("{CONFIG}.developerConfiguration.cpuAllocationRatio"),
                    value,
                    1,
                )
            });
        unknown_since(
            &mut checker,
            &mut before,
            CrSetting::CpuAllocationRatio,
            &mut unknown,
        );
        let memory_overcommit_percent = at(&["developerConfiguration", "memoryOvercommit"])
            .and_then(|value| {
                checker.integer_at_least(
                    &format!("{CONFIG}.developerConfiguration.memoryOvercommit"),
                    value,
                    10,
                )
            });
        unknown_since(
            &mut checker,
            &mut before,
            CrSetting::MemoryOvercommit,
            &mut unknown,
        );
        let overhead_ratio = at(&["additionalGuestMemoryOverheadRatio"]).and_then(|value| {
            checker.overhead_ratio(
                &format!("{CONFIG}.additionalGuestMemoryOverheadRatio"),
                value,
            )
        });
        unknown_since(
            &mut checker,
            &mut before,
            CrSetting::OverheadRatio,
            &mut unknown,
        );
        let auto_cpu_limit_namespace_selector = at(&["autoCPULimitNamespaceLabelSelector"])
            .and_then(|value| auto_cpu_limit_selector(&mut checker, value));
        unknown_since(
            &mut checker,
            &mut before,
            CrSetting::AutoCpuLimitSelector,
            &mut unknown,
        );
        let plugins = binding_plugins(&mut checker, at(&["network", "binding"]));
        unknown_since(
            &mut checker,
            &mut before,
            CrSetting::BindingPlugins,
            &mut unknown,
        );
        let release = observed_release(&mut checker, cr);
        unknown_since(&mut checker, &mut before, CrSetting::Release, &mut unknown);
        unknown.sort_by_key(|unknown| unknown.setting);
        let mut baseline = KubevirtBaseline {
            source,
            cpu_allocation_ratio,
            memory_overcommit_percent,
            overhead_ratio,
            auto_cpu_limit_namespace_selector,
            binding_plugins: plugins,
            release,
            unknown,
            digest: String::new(),
        };
        baseline.digest = digest_of(&baseline.describe());
        Ok(baseline)
    }

    /// A KubeVirt CR that could not be read (forbidden, or the API failing
    /// before a first list), for `reason`: every setting it would give is
    /// unknown.
    #[must_use]
    pub fn unread(reason: &str) -> KubevirtBaseline {
        let mut baseline = KubevirtBaseline {
            source: "(not read)".to_owned(),
            cpu_allocation_ratio: None,
            memory_overcommit_percent: None,
            overhead_ratio: None,
            auto_cpu_limit_namespace_selector: None,
            binding_plugins: BTreeMap::new(),
            release: None,
            unknown: CrSetting::ALL
                .iter()
                .map(|&setting| UnknownSetting {
                    setting,
                    reason: reason.to_owned(),
                })
                .collect(),
            digest: String::new(),
        };
        baseline.digest = digest_of(&baseline.describe());
        baseline
    }

    /// Whether `setting` is unknown.
    #[must_use]
    pub fn is_unknown(&self, setting: CrSetting) -> bool {
        self.unknown
            .iter()
            .any(|unknown| unknown.setting == setting)
    }

    /// Reads a KubeVirt CR from JSON (as the Kubernetes API serves it).
    ///
    /// # Errors
    /// As [`KubevirtBaseline::from_value`].
    pub fn from_json(cr: &serde_json::Value) -> Result<KubevirtBaseline, PolicyErrors> {
        let value = yaml_serde::to_value(cr)
            .map_err(|error| PolicyErrors::root(format!("unreadable KubeVirt object: {error}")))?;
        Self::from_value(&value)
    }

    /// One line per value the CR sets, `field=value`, in a fixed order: the
    /// text the digest is taken of, and what `/readyz` shows.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut out = format!("source={}\n", self.source);
        if let Some(release) = &self.release {
            let _ = writeln!(out, "observedKubeVirtVersion={}", release.text());
        }
        if let Some(ratio) = self.cpu_allocation_ratio {
            let _ = writeln!(out, "cpuAllocationRatio={ratio}");
        }
        if let Some(percent) = self.memory_overcommit_percent {
            let _ = writeln!(out, "memoryOvercommit={percent}");
        }
        if let Some(ratio) = &self.overhead_ratio {
            let _ = writeln!(out, "additionalGuestMemoryOverheadRatio={}", ratio.text);
        }
        if let Some(selector) = &self.auto_cpu_limit_namespace_selector {
            let _ = writeln!(out, "autoCPULimitNamespaceLabelSelector={selector}");
        }
        for (name, memory) in &self.binding_plugins {
            let _ = writeln!(out, "binding.{name}={memory}");
        }
        for unknown in &self.unknown {
            let _ = writeln!(out, "unknown={}", unknown.setting.as_str());
        }
        out
    }
}

/// What one launcher decision reads of the KubeVirt settings beyond what
/// every decision reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct SettingsNeeds<'a> {
    /// The Pod reports KubeVirt's overhead, which was computed with the
    /// cluster's `additionalGuestMemoryOverheadRatio`.
    pub reported_overhead: bool,
    /// The network binding plugins the VMI uses.
    pub binding_plugins: &'a [&'a str],
}

impl super::ValidPolicy {
    /// The KubeVirt settings a launcher decision under `profile` needs and
    /// does not know: each one the KubeVirt CR could not give (see
    /// [`KubevirtBaseline::unknown`]) that the policy file does not set
    /// itself. Empty when the decision can be made.
    #[must_use]
    pub fn unknown_settings(
        &self,
        profile: &str,
        needs: SettingsNeeds<'_>,
    ) -> Vec<&UnknownSetting> {
        let Some(baseline) = self.baseline.as_deref() else {
            return Vec::new();
        };
        let written = &self.written;
        let own = [
            written.profiles.get(profile),
            written.profiles.get(super::DEFAULT_PROFILE),
        ];
        let profile_sets = |set: &dyn Fn(&super::ProfileOverrides) -> bool| {
            own.iter().flatten().any(|overrides| set(overrides))
        };
        baseline
            .unknown
            .iter()
            .filter(|unknown| match unknown.setting {
                CrSetting::Release => written.kubevirt.release.is_none(),
                CrSetting::CpuAllocationRatio => {
                    !profile_sets(&|own| own.cpu_allocation_ratio.is_some())
                }
                CrSetting::MemoryOvercommit => {
                    !profile_sets(&|own| own.memory_overcommit_percent.is_some())
                }
                // A reported overhead was computed with the cluster's own
                // ratio, which only the CR gives.
                CrSetting::OverheadRatio => {
                    needs.reported_overhead || !profile_sets(&|own| own.overhead_ratio.is_some())
                }
                CrSetting::AutoCpuLimitSelector => {
                    written.kubevirt.auto_cpu_limit_namespace_selector.is_none()
                }
                CrSetting::BindingPlugins => needs
                    .binding_plugins
                    .iter()
                    .any(|name| !written.kubevirt.binding_plugins.contains_key(*name)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;

    use super::*;
    use crate::sizing::policy::{NewerRelease, Release, ValidPolicy};

    /// A KubeVirt CR setting every field virt-sizer reads.
    const CR: &str = r#"
apiVersion: kubevirt.io/v1
kind: KubeVirt
metadata: {name: kubevirt, namespace: kubevirt}
spec:
  configuration:
    developerConfiguration: {cpuAllocationRatio: 20, memoryOvercommit: 150}
    additionalGuestMemoryOverheadRatio: "1.5"
    autoCPULimitNamespaceLabelSelector: {matchLabels: {autocpulimit: "true"}}
    network:
      binding:
        mybinding:
          sidecarImage: example.org/binding:1
          computeResourceOverhead: {requests: {memory: 96Mi}}
        nomemory: {sidecarImage: example.org/other:1}
status:
  observedKubeVirtVersion: v1.9.0
"#;

    fn baseline(text: &str) -> Arc<KubevirtBaseline> {
        Arc::new(KubevirtBaseline::from_value(&yaml_serde::from_str(text).unwrap()).unwrap())
    }

    fn problems(text: &str) -> Vec<String> {
        KubevirtBaseline::from_value(&yaml_serde::from_str(text).unwrap())
            .unwrap_err()
            .listed
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The settings a CR leaves unknown, with why.
    fn unknown(text: &str) -> Vec<(CrSetting, String)> {
        baseline(text)
            .unknown
            .iter()
            .map(|unknown| (unknown.setting, unknown.reason.clone()))
            .collect()
    }

    #[test]
    fn reads_every_field_at_kubevirts_path() {
        let cr = baseline(CR);
        assert_eq!(cr.source, "kubevirt/kubevirt");
        assert_eq!(cr.cpu_allocation_ratio, Some(20));
        assert_eq!(cr.memory_overcommit_percent, Some(150));
        assert_eq!(cr.overhead_ratio.as_ref().unwrap().text, "1.5");
        assert_eq!(
            cr.auto_cpu_limit_namespace_selector
                .as_ref()
                .unwrap()
                .to_string(),
            "autocpulimit=true"
        );
        // Only plugins that declare memory count; 96Mi = 100663296 bytes.
        assert_eq!(cr.binding_plugins.len(), 1);
        assert_eq!(cr.binding_plugins["mybinding"].value(), 96 << 20);
        assert_eq!(
            cr.release,
            Some(ReleaseName::Known(Release::V1_9, "v1.9.0".to_owned()))
        );
    }

    #[test]
    fn an_empty_cr_sets_nothing() {
        let cr = baseline(
            "{apiVersion: kubevirt.io/v1, kind: KubeVirt, metadata: {name: kv, namespace: kubevirt}}",
        );
        assert_eq!(cr.cpu_allocation_ratio, None);
        assert_eq!(cr.memory_overcommit_percent, None);
        assert!(cr.overhead_ratio.is_none() && cr.release.is_none());
        let policy = ValidPolicy::builtin().with_baseline(Some(cr));
        assert_eq!(
            policy.profiles,
            ValidPolicy::builtin().profiles,
            "KubeVirt's defaults stay"
        );
        assert!(policy.warnings.is_empty());
    }

    #[test]
    fn the_builtin_policy_takes_the_crs_settings() {
        let policy = ValidPolicy::builtin().with_baseline(Some(baseline(CR)));
        let default = &policy.profiles["default"];
        assert_eq!(default.cpu_allocation_ratio, 20);
        assert_eq!(default.memory_overcommit_percent, 150);
        assert_eq!(default.overhead_ratio.text, "1.5");
        assert_eq!(policy.kubevirt.cluster_overhead_ratio.text, "1.5");
        assert_eq!(policy.kubevirt.release, Release::V1_9);
        assert_eq!(policy.kubevirt.release_text, "v1.9.0");
        assert_eq!(
            policy.kubevirt.binding_plugins["mybinding"].value(),
            96 << 20
        );
        assert!(policy.kubevirt.auto_cpu_limit_namespace_selector.is_some());
        assert!(policy.warnings.is_empty(), "{:?}", policy.warnings);
        assert_eq!(policy.settings_digest(), Some(baseline(CR).digest.as_str()));
        // Without the CR again: KubeVirt's defaults.
        let back = policy.with_baseline(None);
        assert_eq!(back.profiles["default"].cpu_allocation_ratio, 10);
        assert_eq!(back.settings_digest(), None);
        assert_eq!(back, ValidPolicy::builtin());
    }

    #[test]
    fn the_policy_wins_where_it_sets_a_value_and_says_so() {
        let policy = ValidPolicy::from_yaml(
            "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n\
             kubevirt: {release: \"main\", bindingPlugins: {mybinding: 100Mi}}\n\
             profiles:\n  default: {cpuAllocationRatio: 10}\n  dev: {memoryOvercommitPercent: 200}\n",
        )
        .unwrap()
        .with_baseline(Some(baseline(CR)));
        let (default, dev) = (&policy.profiles["default"], &policy.profiles["dev"]);
        assert_eq!(default.cpu_allocation_ratio, 10, "written in the policy");
        assert_eq!(default.memory_overcommit_percent, 150, "from the CR");
        // dev inherits default (10 from the policy, overhead ratio from the
        // CR) and sets its own overcommit.
        assert_eq!(
            (dev.cpu_allocation_ratio, dev.memory_overcommit_percent),
            (10, 200)
        );
        assert_eq!(dev.overhead_ratio.text, "1.5");
        assert_eq!(policy.kubevirt.release, Release::Main);
        assert_eq!(
            policy.kubevirt.binding_plugins["mybinding"].value(),
            100 << 20
        );
        assert_eq!(
            policy.warnings,
            [
                "kubevirt.release: the policy's main differs from the KubeVirt CR kubevirt/kubevirt \
                 (status.observedKubeVirtVersion v1.9.0); the policy wins",
                "kubevirt.bindingPlugins.mybinding: the policy's 100Mi differs from the KubeVirt CR \
                 kubevirt/kubevirt (network.binding.mybinding.computeResourceOverhead.requests.memory 96Mi); \
                 the policy wins",
                "profiles.default.cpuAllocationRatio: the policy's 10 differs from the KubeVirt CR \
                 kubevirt/kubevirt (developerConfiguration.cpuAllocationRatio 20); the policy wins",
            ]
        );
    }

    #[test]
    fn a_release_newer_than_the_table_is_accepted_with_a_warning() {
        let policy = ValidPolicy::builtin().with_baseline(Some(baseline(
            "{apiVersion: kubevirt.io/v1, kind: KubeVirt, metadata: {name: kv, namespace: kubevirt}, \
             status: {observedKubeVirtVersion: v1.10.0-rc.1}}",
        )));
        assert!(policy.kubevirt.newer_than_table);
        assert_eq!(policy.kubevirt.release, Release::NEWEST);
        assert_eq!(policy.kubevirt.release_text, "v1.10.0-rc.1");
        assert_eq!(policy.kubevirt.newer_release, NewerRelease::AdmitUnchanged);
        assert_eq!(policy.warnings.len(), 1);
        assert!(
            policy.warnings[0]
                .starts_with("KubeVirt v1.10.0-rc.1 is newer than virt-sizer's overhead table"),
            "{}",
            policy.warnings[0]
        );
        assert!(
            policy.warnings[0]
                .ends_with("admitted unchanged (kubevirt.newerRelease: AdmitUnchanged)")
        );
    }

    #[test]
    fn bad_values_are_unknown_settings_named_at_their_cr_path() {
        assert_eq!(
            unknown(
                "{apiVersion: kubevirt.io/v1, kind: KubeVirt, spec: {configuration: {\
                 developerConfiguration: {cpuAllocationRatio: 0, memoryOvercommit: 5}, \
                 additionalGuestMemoryOverheadRatio: \"0.5\"}}, status: {observedKubeVirtVersion: v1.4.0}}"
            ),
            [
                (
                    CrSetting::Release,
                    "status.observedKubeVirtVersion: \"v1.4.0\" is not a KubeVirt release virt-sizer can size (v1.5 or later)".to_owned()
                ),
                (
                    CrSetting::CpuAllocationRatio,
                    "spec.configuration.developerConfiguration.cpuAllocationRatio: must be ≥ 1, got 0".to_owned()
                ),
                (
                    CrSetting::MemoryOvercommit,
                    "spec.configuration.developerConfiguration.memoryOvercommit: must be ≥ 10, got 5".to_owned()
                ),
                (
                    CrSetting::OverheadRatio,
                    "spec.configuration.additionalGuestMemoryOverheadRatio: must be ≥ 1.0, got \"0.5\"".to_owned()
                ),
            ]
        );
        assert_eq!(
            problems("{apiVersion: v1, kind: ConfigMap}"),
            [
                "kind: expected a KubeVirt object (apiVersion kubevirt.io/v1, kind KubeVirt), got \"v1\" \"ConfigMap\""
            ]
        );
    }

    /// An old release leaves the overhead model unknown, but the settings
    /// that do not depend on it are read: a decision needs the release
    /// unless the policy names one.
    #[test]
    fn an_unsupported_release_keeps_the_release_independent_settings() {
        let cr = baseline(
            "{apiVersion: kubevirt.io/v1, kind: KubeVirt, metadata: {name: kv, namespace: kubevirt}, \
             spec: {configuration: {developerConfiguration: {cpuAllocationRatio: 20, memoryOvercommit: 150}, \
             additionalGuestMemoryOverheadRatio: \"1.5\"}}, status: {observedKubeVirtVersion: v1.4.2}}",
        );
        assert_eq!(cr.cpu_allocation_ratio, Some(20));
        assert_eq!(cr.memory_overcommit_percent, Some(150));
        assert_eq!(cr.overhead_ratio.as_ref().unwrap().text, "1.5");
        assert_eq!(cr.release, None);
        assert!(cr.is_unknown(CrSetting::Release));
        assert!(cr.describe().contains("unknown=observedKubeVirtVersion\n"));

        let policy = ValidPolicy::builtin().with_baseline(Some(cr));
        let needs = SettingsNeeds::default();
        let unknown: Vec<CrSetting> = policy
            .unknown_settings("default", needs)
            .iter()
            .map(|unknown| unknown.setting)
            .collect();
        assert_eq!(unknown, [CrSetting::Release]);
        assert!(
            policy.warnings.iter().any(|warning| warning
                .starts_with("KubeVirt CR kubevirt/kv: observedKubeVirtVersion is unknown")),
            "{:?}",
            policy.warnings
        );
        // A policy naming its release needs nothing from the CR's.
        let named = ValidPolicy::from_yaml(
            "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nkubevirt: {release: \"1.9\"}\n",
        )
        .unwrap()
        .with_baseline(policy.baseline);
        assert!(named.unknown_settings("default", needs).is_empty());
    }

    /// A CR that could not be read leaves every setting unknown; what the
    /// policy sets itself is known, what only the cluster knows (the ratio
    /// a reported overhead was computed with) never is.
    #[test]
    fn an_unread_cr_leaves_every_setting_the_policy_does_not_set_unknown() {
        let unread = Arc::new(KubevirtBaseline::unread("forbidden"));
        let builtin = ValidPolicy::builtin().with_baseline(Some(unread.clone()));
        assert_eq!(
            builtin
                .unknown_settings("default", SettingsNeeds::default())
                .len(),
            CrSetting::ALL.len() - 1,
            "binding plugins are needed only by a VMI that uses one"
        );
        let explicit = ValidPolicy::from_yaml(
            "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n\
             kubevirt: {release: \"1.9\", autoCPULimitNamespaceLabelSelector: {matchLabels: {a: b}}}\n\
             profiles:\n  default: {cpuAllocationRatio: 10, memoryOvercommitPercent: 100, overheadRatio: \"1.0\"}\n",
        )
        .unwrap()
        .with_baseline(Some(unread));
        assert!(
            explicit
                .unknown_settings("default", SettingsNeeds::default())
                .is_empty()
        );
        let reported = SettingsNeeds {
            reported_overhead: true,
            binding_plugins: &["mybinding"],
        };
        let unknown: Vec<CrSetting> = explicit
            .unknown_settings("default", reported)
            .iter()
            .map(|unknown| unknown.setting)
            .collect();
        assert_eq!(
            unknown,
            [CrSetting::OverheadRatio, CrSetting::BindingPlugins]
        );
    }

    #[test]
    fn the_digest_follows_the_values() {
        let cr = baseline(CR);
        assert_eq!(cr.digest, baseline(CR).digest);
        assert!(cr.digest.starts_with("sha256:") && cr.digest.len() == 7 + 64);
        let changed = baseline(&CR.replace("cpuAllocationRatio: 20", "cpuAllocationRatio: 10"));
        assert_ne!(changed.digest, cr.digest);
        // Fields virt-sizer does not read do not change it.
        let unread =
            baseline(&CR.replace("sidecarImage: example.org/binding:1", "sidecarImage: x"));
        assert_eq!(unread.digest, cr.digest);
    }

    #[test]
    fn release_names() {
        use crate::sizing::policy::parse_release;
        let known = |text: &str| match parse_release(text) {
            Some(ReleaseName::Known(release, _)) => Some(release),
            _ => None,
        };
        assert_eq!(known("1.5"), Some(Release::V1_5));
        assert_eq!(known("v1.6.3"), Some(Release::V1_9));
        assert_eq!(known("v1.9.0-rc.0"), Some(Release::V1_9));
        assert_eq!(known("main"), Some(Release::Main));
        for newer in ["1.10", "v1.10.0", "v1.12.1+abc", "v2.0.0"] {
            assert_eq!(
                parse_release(newer),
                Some(ReleaseName::Newer(newer.to_owned())),
                "{newer}"
            );
        }
        // Older than the table, malformed, or a suffix without the v of a
        // reported version.
        for refused in ["1.4", "v0.59.0", "1", "1.x", "", "1.9.0-rc.1", "latest"] {
            assert_eq!(parse_release(refused), None, "{refused}");
        }
    }
}
