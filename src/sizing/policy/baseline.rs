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
    /// `sha256:` of the values above, as [`KubevirtBaseline::describe`]
    /// lists them: the decision annotation carries it.
    pub digest: String,
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
    /// the policy checker checks the policy field it stands for.
    ///
    /// # Errors
    /// Every problem, with its path in the CR.
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

        let cpu_allocation_ratio =
            at(&["developerConfiguration", "cpuAllocationRatio"]).and_then(|value| {
                checker.integer_at_least(
                    &format!("{CONFIG}.developerConfiguration.cpuAllocationRatio"),
                    value,
                    1,
                )
            });
        let memory_overcommit_percent = at(&["developerConfiguration", "memoryOvercommit"])
            .and_then(|value| {
                checker.integer_at_least(
                    &format!("{CONFIG}.developerConfiguration.memoryOvercommit"),
                    value,
                    10,
                )
            });
        let overhead_ratio = at(&["additionalGuestMemoryOverheadRatio"]).and_then(|value| {
            checker.overhead_ratio(
                &format!("{CONFIG}.additionalGuestMemoryOverheadRatio"),
                value,
            )
        });
        let auto_cpu_limit_namespace_selector = at(&["autoCPULimitNamespaceLabelSelector"])
            .and_then(|value| auto_cpu_limit_selector(&mut checker, value));
        let binding_plugins = binding_plugins(&mut checker, at(&["network", "binding"]));
        let release = observed_release(&mut checker, cr);
        if !checker.problems.is_empty() {
            return Err(checker.problems);
        }
        let mut baseline = KubevirtBaseline {
            source,
            cpu_allocation_ratio,
            memory_overcommit_percent,
            overhead_ratio,
            auto_cpu_limit_namespace_selector,
            binding_plugins,
            release,
            digest: String::new(),
        };
        baseline.digest = digest_of(&baseline.describe());
        Ok(baseline)
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
        out
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
    fn bad_values_are_reported_at_their_cr_path() {
        assert_eq!(
            problems(
                "{apiVersion: kubevirt.io/v1, kind: KubeVirt, spec: {configuration: {\
                 developerConfiguration: {cpuAllocationRatio: 0, memoryOvercommit: 5}, \
                 additionalGuestMemoryOverheadRatio: \"0.5\"}}, status: {observedKubeVirtVersion: v1.4.0}}"
            ),
            [
                "spec.configuration.developerConfiguration.cpuAllocationRatio: must be ≥ 1, got 0",
                "spec.configuration.developerConfiguration.memoryOvercommit: must be ≥ 10, got 5",
                "spec.configuration.additionalGuestMemoryOverheadRatio: must be ≥ 1.0, got \"0.5\"",
                "status.observedKubeVirtVersion: \"v1.4.0\" is not a KubeVirt release virt-sizer can size (v1.5 or later)",
            ]
        );
        assert_eq!(
            problems("{apiVersion: v1, kind: ConfigMap}"),
            [
                "kind: expected a KubeVirt object (apiVersion kubevirt.io/v1, kind KubeVirt), got \"v1\" \"ConfigMap\""
            ]
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
