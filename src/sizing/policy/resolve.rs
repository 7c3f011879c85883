//! Resolution: what the policy file wrote, over the KubeVirt CR baseline,
//! over KubeVirt's defaults, gives every profile and the KubeVirt settings.

use super::*;

impl ValidPolicy {
    /// Recomputes `kubevirt`, `profiles` and `warnings` from what the file
    /// wrote and the baseline.
    pub(super) fn resolve(&mut self) {
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

/// Applies a profile's own values over `base`.
pub(super) fn resolve(name: &str, base: &Profile, own: &ProfileOverrides) -> Profile {
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
