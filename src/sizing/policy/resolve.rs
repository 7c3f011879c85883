//! Resolution: what the policy file wrote, over the KubeVirt CR baseline,
//! over KubeVirt's defaults, gives every profile and the KubeVirt settings.

use super::*;

impl ValidPolicy {
    /// Recomputes `kubevirt`, `profiles` and `warnings` from what the file
    /// wrote and the baseline.
    pub(super) fn resolve(&mut self) {
        let written = &self.written;
        let mut resolver = Resolver {
            cr: self.baseline.as_deref(),
            warnings: Vec::new(),
            conflicts: Vec::new(),
        };
        let mut settings = resolver.kubevirt_settings(&written.kubevirt);
        let own_default = &written.profiles[DEFAULT_PROFILE];
        let base = resolver.default_base(own_default, &mut settings);
        let default = resolve(DEFAULT_PROFILE, &base, own_default);
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
        self.kubevirt = settings;
        self.warnings = resolver.into_warnings();
        if let Some(cr) = self.baseline.as_deref() {
            for unknown in &cr.unknown {
                self.warnings.push(format!(
                    "KubeVirt CR {}: {} is unknown ({}): a launcher Pod whose decision needs it, \
                     and that the policy does not set, is admitted unchanged",
                    cr.source,
                    unknown.setting.as_str(),
                    unknown.reason
                ));
            }
        }
        self.warnings.extend(self.tenant_choice_warnings());
    }
}

/// Applies a profile's own values over `base`.
pub(super) fn resolve(name: &str, base: &Profile, own: &ProfileOverrides) -> Profile {
    own.over(name, base)
}

/// One resolution against the KubeVirt CR, if any: what to warn about, and
/// where the policy overrides a value the CR sets (reported after the
/// warnings, in the order the fields are resolved).
struct Resolver<'a> {
    cr: Option<&'a KubevirtBaseline>,
    warnings: Vec<String>,
    conflicts: Vec<String>,
}

impl Resolver<'_> {
    /// `kubevirt`: each field the file wrote, else the CR's, else
    /// KubeVirt's default.
    fn kubevirt_settings(&mut self, own: &KubevirtOverrides) -> KubevirtSettings {
        let mut settings = KUBEVIRT_DEFAULT_SETTINGS.clone();
        self.release(own, &mut settings);
        if let Some(architecture) = &own.architecture {
            settings.architecture.clone_from(architecture);
        }
        self.binding_plugins(own, &mut settings);
        let cr_selector = self
            .cr
            .and_then(|cr| cr.auto_cpu_limit_namespace_selector.as_ref());
        settings.auto_cpu_limit_namespace_selector = own
            .auto_cpu_limit_namespace_selector
            .clone()
            .or_else(|| cr_selector.cloned());
        if let (Some(ours), Some(theirs)) = (&own.auto_cpu_limit_namespace_selector, cr_selector) {
            self.conflict(
                "kubevirt.autoCPULimitNamespaceLabelSelector",
                ours.to_string(),
                "autoCPULimitNamespaceLabelSelector",
                theirs.to_string(),
            );
        }
        settings.newer_release = own.newer_release.unwrap_or(NewerRelease::AdmitUnchanged);
        settings
    }

    /// `kubevirt.release` (else the CR's `observedKubeVirtVersion`): a line
    /// of the overhead table, or a newer release sized with the newest
    /// line's formulas, with a warning.
    fn release(&mut self, own: &KubevirtOverrides, settings: &mut KubevirtSettings) {
        let cr_release = self.cr.and_then(|cr| cr.release.as_ref());
        if let (Some(ours), Some(theirs)) = (&own.release, cr_release) {
            self.conflict(
                "kubevirt.release",
                ours.text().to_owned(),
                "status.observedKubeVirtVersion",
                theirs.text().to_owned(),
            );
        }
        match own.release.clone().or_else(|| cr_release.cloned()) {
            Some(ReleaseName::Known(line, text)) => {
                settings.release = line;
                settings.release_text = text;
            }
            Some(ReleaseName::Newer(text)) => {
                settings.release = Release::NEWEST;
                settings.newer_than_table = true;
                self.warnings.push(format!(
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
    }

    /// `kubevirt.bindingPlugins`: the CR's plugins, with the file's over
    /// them.
    fn binding_plugins(&mut self, own: &KubevirtOverrides, settings: &mut KubevirtSettings) {
        if let Some(cr) = self.cr {
            settings.binding_plugins.clone_from(&cr.binding_plugins);
        }
        for (name, memory) in &own.binding_plugins {
            if let Some(theirs) = self.cr.and_then(|cr| cr.binding_plugins.get(name)) {
                self.conflict(
                    &format!("kubevirt.bindingPlugins.{name}"),
                    memory.to_string(),
                    &format!("network.binding.{name}.computeResourceOverhead.requests.memory"),
                    theirs.to_string(),
                );
            }
            settings.binding_plugins.insert(name.clone(), *memory);
        }
    }

    /// What `default`'s unset fields take: the CR's values, then
    /// KubeVirt's. The CR's `additionalGuestMemoryOverheadRatio` is also
    /// the ratio KubeVirt applied to a reported overhead
    /// (`settings.cluster_overhead_ratio`).
    fn default_base(
        &mut self,
        own_default: &ProfileOverrides,
        settings: &mut KubevirtSettings,
    ) -> Profile {
        let mut base = Profile::kubevirt_defaults(DEFAULT_PROFILE);
        let Some(cr) = self.cr else { return base };
        if let Some(ratio) = cr.cpu_allocation_ratio {
            base.cpu_allocation_ratio = ratio;
            if let Some(ours) = own_default.cpu_allocation_ratio {
                self.conflict(
                    "profiles.default.cpuAllocationRatio",
                    ours.to_string(),
                    "developerConfiguration.cpuAllocationRatio",
                    ratio.to_string(),
                );
            }
        }
        if let Some(percent) = cr.memory_overcommit_percent {
            base.memory_overcommit_percent = percent;
            if let Some(ours) = own_default.memory_overcommit_percent {
                self.conflict(
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
            if let Some(ours) = &own_default.overhead_ratio {
                self.conflict(
                    "profiles.default.overheadRatio",
                    ours.text.clone(),
                    "additionalGuestMemoryOverheadRatio",
                    ratio.text.clone(),
                );
            }
        }
        base
    }

    /// Records that the policy's `ours` at `path` overrides the CR's
    /// `theirs` at `field`, when there is a CR and they differ.
    fn conflict(&mut self, path: &str, ours: String, field: &str, theirs: String) {
        if ours != theirs
            && let Some(cr) = self.cr
        {
            self.conflicts.push(format!(
                "{path}: the policy's {ours} differs from the KubeVirt CR {} ({field} {theirs}); the policy wins",
                cr.source
            ));
        }
    }

    /// The warnings, then the conflicts.
    fn into_warnings(mut self) -> Vec<String> {
        self.warnings.append(&mut self.conflicts);
        self.warnings
    }
}
