//! The raw (shape-only) policy and the semantic checks that turn it into a
//! [`ValidPolicy`]: every leaf converted and checked on its own, every
//! problem collected with its path. The leaf conversions are in
//! [`super::leaves`].

use super::*;

// === Raw (shape-only) policy ===
//
// Leaves stay YAML values so that each one is checked on its own and every
// problem is reported; unknown fields are collected through serde_ignored.

/// Path used for problems with the document as a whole.
pub(super) const ROOT: &str = "(root)";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a SizingPolicy mapping")]
pub(super) struct RawPolicy {
    pub(super) api_version: Option<Value>,
    pub(super) kind: Option<Value>,
    pub(super) kubevirt: Option<RawKubevirt>,
    pub(super) profiles: Option<BTreeMap<String, Option<RawProfile>>>,
    pub(super) rules: Option<Vec<RawRule>>,
    pub(super) on_error: Option<Value>,
    pub(super) kata: Option<RawKata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a kubevirt mapping")]
pub(super) struct RawKubevirt {
    pub(super) release: Option<Value>,
    pub(super) architecture: Option<Value>,
    pub(super) binding_plugins: Option<BTreeMap<String, Value>>,
    #[serde(rename = "autoCPULimitNamespaceLabelSelector")]
    pub(super) auto_cpu_limit_namespace_label_selector: Option<RawLabelSelector>,
    pub(super) newer_release: Option<Value>,
}

/// The fields of a profile, each written once: its YAML name, its type and
/// how the checker reads it. From this list come the raw shape
/// ([`RawProfile`]), a profile's own values ([`ProfileOverrides`]), the
/// checker's reading of them, in the order listed (`Checker::profile_fields`),
/// and inheritance (`ProfileOverrides::over`). `limitsRatio`, a nested map
/// whose two values inherit separately, is written out in the macro, at its
/// place in the list.
macro_rules! profile_fields {
    (
        [$($field:ident: $type:ty = $yaml:literal, |$checker:ident, $path:ident, $value:ident| $read:expr;)+]
        limitsRatio;
        [$($after:ident: $after_type:ty = $after_yaml:literal, |$after_checker:ident, $after_path:ident, $after_value:ident| $after_read:expr;)*]
    ) => {
        #[derive(Deserialize)]
        #[serde(expecting = "a profile mapping")]
        pub(super) struct RawProfile {
            $(#[serde(rename = $yaml)] pub(super) $field: Option<Value>,)+
            #[serde(rename = "limitsRatio")]
            pub(super) limits_ratio: Option<RawLimitsRatio>,
            $(#[serde(rename = $after_yaml)] pub(super) $after: Option<Value>,)*
        }

        /// A profile's own (not inherited) values, each `None` when absent
        /// or invalid.
        #[derive(Debug, Clone, PartialEq, Default)]
        pub(super) struct ProfileOverrides {
            $(pub(super) $field: Option<$type>,)+
            pub(super) limits_ratio_cpu: Option<Quantity>,
            pub(super) limits_ratio_memory: Option<Quantity>,
            $(pub(super) $after: Option<$after_type>,)*
        }

        impl Checker {
            /// Reads each field the profile at `base` has, in the order listed.
            fn profile_fields(&mut self, base: &str, raw: &RawProfile, own: &mut ProfileOverrides) {
                $(if let Some($value) = &raw.$field {
                    let $path = &format!("{base}.{}", $yaml);
                    let $checker = &mut *self;
                    own.$field = $read;
                })+
                if let Some(ratio) = &raw.limits_ratio {
                    if let Some(v) = &ratio.cpu {
                        own.limits_ratio_cpu = self.ratio_decimal(&format!("{base}.limitsRatio.cpu"), v);
                    }
                    if let Some(v) = &ratio.memory {
                        own.limits_ratio_memory =
                            self.ratio_decimal(&format!("{base}.limitsRatio.memory"), v);
                    }
                }
                $(if let Some($after_value) = &raw.$after {
                    let $after_path = &format!("{base}.{}", $after_yaml);
                    let $after_checker = &mut *self;
                    own.$after = $after_read;
                })*
            }
        }

        impl ProfileOverrides {
            /// The profile `name`: these values over `base`'s.
            pub(super) fn over(&self, name: &str, base: &Profile) -> Profile {
                Profile {
                    name: name.to_owned(),
                    $($field: self.$field.clone().unwrap_or_else(|| base.$field.clone()),)+
                    limits_ratio: LimitsRatio {
                        cpu: self.limits_ratio_cpu.or(base.limits_ratio.cpu),
                        memory: self.limits_ratio_memory.or(base.limits_ratio.memory),
                    },
                    $($after: self.$after.clone().unwrap_or_else(|| base.$after.clone()),)*
                }
            }
        }
    };
}

profile_fields! {
    [cpu_allocation_ratio: u32 = "cpuAllocationRatio", |c, path, v| c.integer_at_least(path, v, 1);
    memory_overcommit_percent: u32 = "memoryOvercommitPercent", |c, path, v| c.integer_at_least(path, v, 10);
    guest_overhead: GuestOverhead = "guestOverhead", |c, path, v| c.keyword(path, v);
    overhead_ratio: OverheadRatio = "overheadRatio", |c, path, v| c.overhead_ratio(path, v);
    overhead_margin: Quantity = "overheadMargin", |c, path, v| c.quantity(path, v, QuantityKind::Memory);
    limits: LimitsPolicy = "limits", |c, path, v| c.keyword(path, v);]
    limitsRatio;
    [mode: Mode = "mode", |c, path, v| c.keyword(path, v);]
}

#[derive(Deserialize)]
#[serde(expecting = "a limitsRatio mapping {cpu, memory}")]
pub(super) struct RawLimitsRatio {
    pub(super) cpu: Option<Value>,
    pub(super) memory: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a rule mapping")]
pub(super) struct RawRule {
    pub(super) namespaces: Option<Vec<Value>>,
    pub(super) namespace_selector: Option<RawLabelSelector>,
    pub(super) vm_selector: Option<RawLabelSelector>,
    pub(super) profile: Option<Value>,
    pub(super) allowed_profiles: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a label selector mapping {matchLabels, matchExpressions}"
)]
pub(super) struct RawLabelSelector {
    pub(super) match_labels: Option<BTreeMap<String, Value>>,
    pub(super) match_expressions: Option<Vec<RawRequirement>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a selector requirement mapping {key, operator, values}")]
pub(super) struct RawRequirement {
    pub(super) key: Option<Value>,
    pub(super) operator: Option<Value>,
    pub(super) values: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a kata mapping")]
pub(super) struct RawKata {
    pub(super) runtime_classes: Option<BTreeMap<String, Option<RawKataClass>>>,
    pub(super) pods: Option<RawKataPods>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a kata runtime class mapping")]
pub(super) struct RawKataClass {
    pub(super) runtime: Option<Value>,
    pub(super) default_vcpus: Option<Value>,
    pub(super) default_memory: Option<Value>,
    pub(super) overhead_vcpus: Option<Value>,
    pub(super) overhead_memory: Option<Value>,
    pub(super) sandbox_cgroup_only: Option<Value>,
    pub(super) vmm: Option<RawVmm>,
    pub(super) guest_memory: Option<Value>,
    pub(super) memory_block_size: Option<Value>,
    pub(super) enable_annotations: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a vmm mapping {cpu, memory}")]
pub(super) struct RawVmm {
    pub(super) cpu: Option<Value>,
    pub(super) memory: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a kata pods mapping")]
pub(super) struct RawKataPods {
    pub(super) fill_limits: Option<Value>,
    pub(super) min_memory: Option<Value>,
}

/// What kind of quantity a field holds, for its checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum QuantityKind {
    /// CPU: ≥ 0, at most `i64::MAX` millicores.
    Cpu,
    /// Memory: ≥ 0, whole bytes, at most `i64::MAX` bytes.
    Memory,
    /// Memory in whole MiB (Kata's `default_memory`, `overhead_memory`).
    MemoryMib,
}

// === Semantic checks ===

/// Collects problems while converting the raw policy.
#[derive(Default)]
pub(super) struct Checker {
    pub(super) problems: PolicyErrors,
    /// The values the shape pass read as empty for their type: what is
    /// found at or below one only restates its type error, and is dropped.
    pub(super) removed: shape::Removed,
}

impl Checker {
    pub(super) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        if !self.removed.covers(&path) {
            self.problems.push(FieldError::new(path, message));
        }
    }

    /// A problem with a mapping key (a profile's name): the key stays when
    /// the value under it is removed, so it is dropped only below one.
    pub(super) fn key_error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        if !self.removed.is_below(&path) {
            self.problems.push(FieldError::new(path, message));
        }
    }

    /// Converts the whole raw policy; `None` only when a required part could
    /// not be built (the errors say why).
    pub(super) fn policy(&mut self, raw: &RawPolicy, digest: String) -> Option<ValidPolicy> {
        let api_version = self.fixed_string("apiVersion", raw.api_version.as_ref(), API_VERSION);
        self.fixed_string("kind", raw.kind.as_ref(), KIND);
        let written = Written {
            kubevirt: self.kubevirt(raw.kubevirt.as_ref()),
            profiles: self.profiles(raw.profiles.as_ref()),
        };
        let rules = self.rules(raw.rules.as_deref().unwrap_or_default(), &written.profiles);
        let on_error = raw
            .on_error
            .as_ref()
            .map_or(Some(OnError::Allow), |v| self.keyword("onError", v));
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
    pub(super) fn fixed_string(
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

    pub(super) fn kubevirt(&mut self, raw: Option<&RawKubevirt>) -> KubevirtOverrides {
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
            own.newer_release = self.keyword("kubevirt.newerRelease", value);
        }
        own
    }

    /// A release line: `"1.5"` … `"1.9"`, `"main"`, `v1.9.0`, or a release
    /// beyond the table (`"1.10"`, `v1.10.0`, `v2.0.0`), which is accepted
    /// and sized as [`ReleaseName::Newer`].
    pub(super) fn release(&mut self, path: &str, value: &Value) -> Option<ReleaseName> {
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
    pub(super) fn profiles(
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

    pub(super) fn profile_overrides(&mut self, base: &str, raw: &RawProfile) -> ProfileOverrides {
        let mut own = ProfileOverrides::default();
        self.profile_fields(base, raw, &mut own);
        own
    }

    /// `overheadRatio`: a Go float ≥ 1.0, finite.
    pub(super) fn overhead_ratio(&mut self, path: &str, value: &Value) -> Option<OverheadRatio> {
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
    pub(super) fn ratio_decimal(&mut self, path: &str, value: &Value) -> Option<Quantity> {
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

    /// `rules`, in file order.
    pub(super) fn rules(
        &mut self,
        raw: &[RawRule],
        profiles: &BTreeMap<String, ProfileOverrides>,
    ) -> Vec<Rule> {
        raw.iter()
            .enumerate()
            .map(|(index, rule)| self.rule(index, rule, profiles))
            .collect()
    }

    /// One rule: what it matches (namespace globs, namespace and VM
    /// selectors) and the profiles it names, which must exist.
    fn rule(
        &mut self,
        index: usize,
        raw: &RawRule,
        profiles: &BTreeMap<String, ProfileOverrides>,
    ) -> Rule {
        let base = format!("rules[{index}]");
        let namespaces = match &raw.namespaces {
            Some(list) => self.namespace_globs(&base, list),
            None => Vec::new(),
        };
        let namespace_selector = raw
            .namespace_selector
            .as_ref()
            .map(|s| self.selector(&format!("{base}.namespaceSelector"), s));
        let vm_selector = raw
            .vm_selector
            .as_ref()
            .map(|s| self.selector(&format!("{base}.vmSelector"), s));
        let profile = match &raw.profile {
            None => {
                self.error(format!("{base}.profile"), "required");
                String::new()
            }
            Some(value) => {
                let name = self
                    .string(&format!("{base}.profile"), value)
                    .unwrap_or_default();
                if !name.is_empty() && !profiles.contains_key(&name) {
                    self.error(format!("{base}.profile"), unknown_profile(&name, profiles));
                }
                name
            }
        };
        let mut allowed_profiles = Vec::new();
        for (i, value) in raw.allowed_profiles.iter().flatten().enumerate() {
            let path = format!("{base}.allowedProfiles[{i}]");
            let Some(name) = self.string(&path, value) else {
                continue;
            };
            if profiles.contains_key(&name) {
                allowed_profiles.push(name);
            } else {
                self.error(&path, unknown_profile(&name, profiles));
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
            selected: String::new(),
        };
        rule.description = rule.render_description();
        rule.selected = format!("{} → {}", rule.description, rule.profile);
        rule
    }

    /// A rule's `namespaces`: non-empty, each a non-empty glob.
    fn namespace_globs(&mut self, base: &str, list: &[Value]) -> Vec<glob::Pattern> {
        if list.is_empty() {
            self.error(
                format!("{base}.namespaces"),
                "must not be empty (leave the field out to match every namespace)",
            );
        }
        let mut namespaces = Vec::new();
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
        namespaces
    }

    /// A `metav1.LabelSelector` with Kubernetes' validation
    /// (`ValidateLabelSelector`).
    pub(super) fn selector(&mut self, base: &str, raw: &RawLabelSelector) -> LabelSelector {
        let (mut match_labels, mut match_expressions) = (BTreeMap::new(), Vec::new());
        for (key, value) in raw.match_labels.iter().flatten() {
            let path = format!("{base}.matchLabels.{key}");
            self.label_key(&path, key);
            let Some(text) = self.string(&path, value) else {
                continue;
            };
            self.label_value(&path, &text);
            match_labels.insert(key.clone(), text);
        }
        for (index, requirement) in raw.match_expressions.iter().flatten().enumerate() {
            let path = format!("{base}.matchExpressions[{index}]");
            if let Some(parsed) = self.requirement(&path, requirement) {
                match_expressions.push(parsed);
            }
        }
        LabelSelector::new(match_labels, match_expressions)
    }

    /// One `matchExpressions` entry, with Kubernetes' checks on the values.
    pub(super) fn requirement(
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
            Some(v) => self.keyword(&format!("{path}.operator"), v),
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

    pub(super) fn kata(&mut self, raw: Option<&RawKata>) -> KataSettings {
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
                    .keyword("kata.pods.fillLimits", v)
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

    pub(super) fn kata_class(
        &mut self,
        base: &str,
        handler: &str,
        raw: &RawKataClass,
    ) -> Option<KataClass> {
        let path = |field: &str| format!("{base}.{field}");
        let runtime = match &raw.runtime {
            None => {
                self.error(path("runtime"), "required: go, go-static or runtime-rs");
                None
            }
            Some(v) => self.keyword::<KataRuntime>(&path("runtime"), v),
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
        let guest_memory = raw
            .guest_memory
            .as_ref()
            .and_then(|v| self.keyword(&path("guestMemory"), v));
        let memory_block_size = self.optional_quantity(
            &path("memoryBlockSize"),
            raw.memory_block_size.as_ref(),
            QuantityKind::MemoryMib,
        );
        let enable_annotations = raw
            .enable_annotations
            .as_deref()
            .and_then(|list| self.enable_annotations(&path("enableAnnotations"), list));

        let runtime = runtime?;
        self.runtime_rs_only(base, runtime, raw);
        self.go_hotplug_only(base, runtime, raw);
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
        if let Some(block) = memory_block_size {
            class.memory_block_size = block;
        }
        if let Some(list) = enable_annotations {
            class.enable_annotations = list;
        }
        Some(class)
    }

    /// `enableAnnotations`: a list of regular expressions, as Kata's
    /// `enable_annotations` (matched anywhere in an annotation's name after
    /// `io.katacontainers.config.hypervisor.`). An empty list enables none.
    fn enable_annotations(&mut self, path: &str, list: &[Value]) -> Option<EnableAnnotations> {
        let mut patterns = Vec::with_capacity(list.len());
        let mut ok = true;
        for (index, value) in list.iter().enumerate() {
            let item = format!("{path}[{index}]");
            let Some(pattern) = self.string(&item, value) else {
                ok = false;
                continue;
            };
            if let Err(error) = regex::Regex::new(&pattern) {
                self.error(
                    &item,
                    format!("not a regular expression ({error}), got {pattern:?}"),
                );
                ok = false;
                continue;
            }
            patterns.push(pattern);
        }
        if !ok {
            return None;
        }
        match EnableAnnotations::new(&patterns) {
            Ok(list) => Some(list),
            Err((index, error)) => {
                self.error(
                    format!("{path}[{index}]"),
                    format!("not a regular expression ({error})"),
                );
                None
            }
        }
    }

    /// `memoryBlockSize` applies only to the Go runtime with hotplug: the
    /// static modes never hot-add memory.
    fn go_hotplug_only(&mut self, base: &str, runtime: KataRuntime, raw: &RawKataClass) {
        if runtime != KataRuntime::Go && raw.memory_block_size.is_some() {
            self.error(
                format!("{base}.memoryBlockSize"),
                format!(
                    "only valid with runtime: go (hotplug), not {}: the static modes never hot-add memory",
                    runtime.as_str()
                ),
            );
        }
    }

    /// `overheadVcpus` and `overheadMemory` exist only on runtime-rs 4.x.
    fn runtime_rs_only(&mut self, base: &str, runtime: KataRuntime, raw: &RawKataClass) {
        if runtime == KataRuntime::RuntimeRs {
            return;
        }
        for (field, value) in [
            ("overheadVcpus", &raw.overhead_vcpus),
            ("overheadMemory", &raw.overhead_memory),
        ] {
            if value.is_some() {
                self.error(
                    format!("{base}.{field}"),
                    format!(
                        "only valid with runtime: runtime-rs (4.x), not {}",
                        runtime.as_str()
                    ),
                );
            }
        }
    }

    /// `vmm`: required, with both `cpu` and `memory`.
    pub(super) fn vmm(&mut self, base: &str, raw: Option<&RawVmm>) -> Option<PodFixed> {
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
}

/// Profile names an unknown-profile message lists at most.
const MAX_NAMED_PROFILES: usize = 16;

/// The message for a rule naming a profile the policy does not define.
fn unknown_profile(name: &str, profiles: &BTreeMap<String, ProfileOverrides>) -> String {
    let mut known = profiles
        .keys()
        .take(MAX_NAMED_PROFILES)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if profiles.len() > MAX_NAMED_PROFILES {
        let _ = write!(known, " and {} more", profiles.len() - MAX_NAMED_PROFILES);
    }
    format!("unknown profile {name:?} (profiles: {known})")
}
