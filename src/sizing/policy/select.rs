//! Profile selection: the first matching rule's profile, a Pod's opt-in
//! through [`PROFILE_ANNOTATION`], and the selectors rules match with.

use super::*;

impl ValidPolicy {
    /// Chooses the profile for one Pod.
    ///
    /// Who chooses: a namespace's name and labels are the cluster's; a VM's
    /// labels and annotations are its owner's (KubeVirt copies both onto
    /// the Pod). So the first rule *without* a `vmSelector` that matches,
    /// the *namespace rule*, bounds every choice the VM owner makes: its
    /// profile, or one in its `allowedProfiles` (with no namespace rule,
    /// `default` only).
    ///
    /// 1. The first matching rule applies. If it has a `vmSelector`, its
    ///    profile was chosen by VM labels: it applies only within that
    ///    bound; outside it is refused with a warning and the namespace
    ///    rule applies.
    /// 2. A [`PROFILE_ANNOTATION`] request replaces the profile when the
    ///    rule in force lists it in `allowedProfiles`, and the bound allows
    ///    it too; a refused request yields a warning.
    #[must_use]
    pub fn select(&self, target: &Subject<'_>) -> Selection<'_> {
        let first = self.rules.iter().find(|rule| rule.matches(target));
        let namespace_rule = match first {
            Some(rule) if rule.vm_selector.is_some() => self
                .rules
                .iter()
                .find(|rule| rule.vm_selector.is_none() && rule.matches(target)),
            other => other,
        };
        let mut warnings = Vec::new();
        let mut matched = first;
        // `{source} → {chosen}`, written at load.
        let mut reason =
            first.map_or_else(|| NO_RULE_MATCHED.to_owned(), |rule| rule.selected.clone());
        if let Some(rule) = first.filter(|rule| rule.vm_selector.is_some()) {
            match bound_refusal(namespace_rule, &rule.profile) {
                None if bound_profile(namespace_rule) != rule.profile => {
                    if let Some(bound) = namespace_rule {
                        reason.push_str(" (by VM labels, in allowedProfiles of ");
                        reason.push_str(bound.describe());
                        reason.push(')');
                    }
                }
                None => {}
                Some(why) => {
                    matched = namespace_rule;
                    reason = namespace_rule
                        .map_or_else(|| NO_RULE_MATCHED.to_owned(), |rule| rule.selected.clone());
                    warnings.push(format!(
                        "profile {:?} selected by VM labels ({}) refused: {why}; using {}",
                        rule.profile,
                        rule.describe(),
                        bound_profile(namespace_rule)
                    ));
                }
            }
        }
        let (mut chosen, source) = match matched {
            Some(rule) => (rule.profile.as_str(), rule.describe()),
            None => (DEFAULT_PROFILE, "no rule matched"),
        };

        if let Some(requested) = target.requested_profile.filter(|name| !name.is_empty()) {
            let refusal = match matched {
                _ if requested == chosen => None,
                Some(rule) if rule.allowed_profiles.iter().any(|p| p == requested) => {
                    if !self.profiles.contains_key(requested) {
                        Some(format!(
                            "in allowedProfiles of {} but not defined in the policy",
                            rule.describe()
                        ))
                    } else if rule.vm_selector.is_some() {
                        bound_refusal(namespace_rule, requested)
                    } else {
                        None
                    }
                }
                Some(rule) => Some(format!("not in allowedProfiles of {}", rule.describe())),
                None if first.is_some() => Some(NO_NAMESPACE_RULE.to_owned()),
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

    /// What `policy check` says about rules that let VM owners choose: a
    /// rule with a `vmSelector` selects by labels the VM owner sets, so it
    /// applies only where the namespace rule (a later rule without
    /// `vmSelector`) allows its profile. One that no later rule allows
    /// never applies.
    pub(super) fn tenant_choice_warnings(&self) -> Vec<String> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.vm_selector.is_some() && rule.profile != DEFAULT_PROFILE)
            .filter(|(index, rule)| {
                !self.rules[index + 1..].iter().any(|later| {
                    later.vm_selector.is_none() && bound_refusal(Some(later), &rule.profile).is_none()
                })
            })
            .map(|(_, rule)| {
                format!(
                    "{}: selects {:?} by VM labels, which the VM owner sets, so it applies only where \
                     the first matching rule without vmSelector allows {:?} (its profile or \
                     allowedProfiles); no later rule without vmSelector does, so this rule never \
                     applies",
                    rule.describe(),
                    rule.profile,
                    rule.profile
                )
            })
            .collect()
    }
}

/// Why the namespace rule (`None`: no rule without `vmSelector` matched)
/// does not let a VM owner choose `profile`, if it does not.
fn bound_refusal(namespace_rule: Option<&Rule>, profile: &str) -> Option<String> {
    match namespace_rule {
        Some(rule)
            if rule.profile == profile || rule.allowed_profiles.iter().any(|p| p == profile) =>
        {
            None
        }
        Some(rule) => Some(format!("not in allowedProfiles of {}", rule.describe())),
        None if profile == DEFAULT_PROFILE => None,
        None => Some(NO_NAMESPACE_RULE.to_owned()),
    }
}

/// The profile the namespace rule gives (`default` without one).
fn bound_profile(namespace_rule: Option<&Rule>) -> &str {
    namespace_rule.map_or(DEFAULT_PROFILE, |rule| rule.profile.as_str())
}

/// Why nothing a VM owner asks for is granted when no rule without
/// `vmSelector` matches.
const NO_NAMESPACE_RULE: &str =
    "no rule without vmSelector matched, so the VM owner may choose no profile";

impl ValidPolicy {
    /// How the rules name `namespace`: the namespace itself when a rule's
    /// `namespaces` lists it by name, else the first glob there that
    /// matches it, else `None`. Per-namespace metrics are labelled with
    /// this, so that their series are as many as the policy's names, never
    /// as many as the namespaces requests claim.
    #[must_use]
    pub fn named_namespace<'a>(&'a self, namespace: &'a str) -> Option<&'a str> {
        let patterns = || self.rules.iter().flat_map(|rule| &rule.namespaces);
        let literal =
            |pattern: &glob::Pattern| glob::Pattern::escape(pattern.as_str()) == pattern.as_str();
        if patterns().any(|pattern| literal(pattern) && pattern.as_str() == namespace) {
            return Some(namespace);
        }
        patterns()
            .find(|pattern| pattern.matches(namespace))
            .map(glob::Pattern::as_str)
    }
}

/// The selection reason when no rule matches: `no rule matched →` and
/// [`DEFAULT_PROFILE`] (a test holds the two together).
pub(super) const NO_RULE_MATCHED: &str = "no rule matched → default";

impl Rule {
    /// Whether every selector of this rule matches `target` (the
    /// annotation plays no part in matching).
    #[must_use]
    pub fn matches(&self, target: &Subject<'_>) -> bool {
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

    pub(super) fn render_description(&self) -> String {
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
    /// A selector of these terms.
    #[must_use]
    pub fn new(
        match_labels: BTreeMap<String, String>,
        match_expressions: Vec<LabelSelectorRequirement>,
    ) -> LabelSelector {
        let mut compiled: kube::core::Selector = match_labels.clone().into_iter().collect();
        compiled.extend(match_expressions.iter().map(|requirement| {
            let (key, values) = (requirement.key.clone(), requirement.values.iter().cloned());
            match requirement.operator {
                SelectorOperator::In => Expression::In(key, values.collect()),
                SelectorOperator::NotIn => Expression::NotIn(key, values.collect()),
                SelectorOperator::Exists => Expression::Exists(key),
                SelectorOperator::DoesNotExist => Expression::DoesNotExist(key),
            }
        }));
        LabelSelector {
            match_labels,
            match_expressions,
            compiled,
        }
    }

    /// Kubernetes label-selector matching: every `matchLabels` pair and
    /// every requirement must hold; an empty selector matches everything.
    /// `NotIn` also matches when the key is absent.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.compiled.matches(labels)
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
