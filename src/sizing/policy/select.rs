//! Profile selection: the first matching rule's profile, a Pod's opt-in
//! through [`PROFILE_ANNOTATION`], and the selectors rules match with.

use super::*;

impl ValidPolicy {
    /// Chooses the profile for one Pod: the first matching rule's profile
    /// (or `default`), replaced by the [`PROFILE_ANNOTATION`] request when
    /// the matched rule's `allowedProfiles` contains it; a refused request
    /// yields a warning.
    #[must_use]
    pub fn select(&self, target: &Subject<'_>) -> Selection<'_> {
        let matched = self.rules.iter().find(|rule| rule.matches(target));
        let (mut chosen, source) = match matched {
            Some(rule) => (rule.profile.as_str(), rule.describe()),
            None => (DEFAULT_PROFILE, "no rule matched"),
        };
        // `{source} → {chosen}`, written at load.
        let mut reason =
            matched.map_or_else(|| NO_RULE_MATCHED.to_owned(), |rule| rule.selected.clone());
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
}

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
