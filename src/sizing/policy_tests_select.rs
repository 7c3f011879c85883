//! Rules, globs, selectors and opt-in by annotation.

use super::*;

// === rules, globs, selectors ===

#[test]
fn first_matching_rule_wins() {
    let policy = parse(
        r#"
profiles: {a: {}, b: {}, c: {}}
rules:
  - {namespaces: [team-x], profile: a}
  - {namespaces: ["team-*"], profile: b}
  - {profile: c}
"#,
    );
    let none = BTreeMap::new();
    let pick = |namespace| {
        let selection = policy.select(&Subject {
            namespace,
            namespace_labels: &none,
            vm_labels: &none,
            requested_profile: None,
        });
        (selection.profile.name.clone(), selection.rule)
    };
    assert_eq!(pick("team-x"), ("a".to_owned(), Some(0)));
    assert_eq!(pick("team-y"), ("b".to_owned(), Some(1)));
    // a rule without selectors matches everything
    assert_eq!(pick("kube-public"), ("c".to_owned(), Some(2)));
    assert_eq!(policy.rules[2].describe(), "rules[2] (matches everything)");
}

#[rstest]
#[case::exact("prod", "prod", true)]
#[case::exact_other("prod", "prod-a", false)]
#[case::star("prod-*", "prod-eu-1", true)]
#[case::star_empty("prod-*", "prod-", true)]
#[case::star_prefix_only("prod-*", "preprod-a", false)]
#[case::question("team-?", "team-a", true)]
#[case::question_one_char("team-?", "team-ab", false)]
#[case::class("[ab]-ns", "b-ns", true)]
#[case::class_miss("[ab]-ns", "c-ns", false)]
#[case::negated_class("[!ab]-ns", "c-ns", true)]
#[case::range("ns-[0-9]", "ns-7", true)]
fn namespace_globs(#[case] pattern: &str, #[case] namespace: &str, #[case] matches: bool) {
    let policy = parse(&format!(
        "rules:\n  - {{namespaces: [\"{pattern}\"], profile: default}}\n"
    ));
    let none = BTreeMap::new();
    let target = Subject {
        namespace,
        namespace_labels: &none,
        vm_labels: &none,
        requested_profile: None,
    };
    assert_eq!(policy.rules[0].matches(&target), matches);
}

#[test]
fn any_of_several_namespaces_matches() {
    let policy = parse("rules:\n  - {namespaces: [a, \"b-*\"], profile: default}\n");
    let rule = &policy.rules[0];
    let none = BTreeMap::new();
    let target = |namespace| Subject {
        namespace,
        namespace_labels: &none,
        vm_labels: &none,
        requested_profile: None,
    };
    assert!(rule.matches(&target("a")));
    assert!(rule.matches(&target("b-1")));
    assert!(!rule.matches(&target("c")));
    assert_eq!(rule.describe(), "rules[0] (namespaces a,b-*)");
}

fn selector(yaml: &str) -> LabelSelector {
    let policy = parse(&format!(
        "rules:\n  - profile: default\n    vmSelector: {yaml}\n"
    ));
    policy.rules[0].vm_selector.clone().unwrap()
}

#[rstest]
#[case::empty_matches_all("{}", &[("any", "thing")], true)]
#[case::empty_matches_no_labels("{}", &[], true)]
#[case::match_labels("{matchLabels: {app: db}}", &[("app", "db"), ("x", "y")], true)]
#[case::match_labels_wrong_value("{matchLabels: {app: db}}", &[("app", "web")], false)]
#[case::match_labels_missing("{matchLabels: {app: db}}", &[], false)]
#[case::in_hit("{matchExpressions: [{key: env, operator: In, values: [a, b]}]}", &[("env", "b")], true)]
#[case::in_miss("{matchExpressions: [{key: env, operator: In, values: [a, b]}]}", &[("env", "c")], false)]
#[case::in_absent("{matchExpressions: [{key: env, operator: In, values: [a]}]}", &[], false)]
#[case::notin_hit("{matchExpressions: [{key: env, operator: NotIn, values: [a]}]}", &[("env", "a")], false)]
#[case::notin_other("{matchExpressions: [{key: env, operator: NotIn, values: [a]}]}", &[("env", "b")], true)]
#[case::notin_absent("{matchExpressions: [{key: env, operator: NotIn, values: [a]}]}", &[], true)]
#[case::exists("{matchExpressions: [{key: gpu, operator: Exists}]}", &[("gpu", "")], true)]
#[case::exists_absent("{matchExpressions: [{key: gpu, operator: Exists}]}", &[], false)]
#[case::does_not_exist("{matchExpressions: [{key: gpu, operator: DoesNotExist}]}", &[], true)]
#[case::does_not_exist_present("{matchExpressions: [{key: gpu, operator: DoesNotExist}]}", &[("gpu", "1")], false)]
#[case::all_terms_needed(
    "{matchLabels: {app: db}, matchExpressions: [{key: env, operator: In, values: [prod]}]}",
    &[("app", "db"), ("env", "dev")],
    false
)]
#[case::all_terms_hold(
    "{matchLabels: {app: db}, matchExpressions: [{key: env, operator: In, values: [prod]}]}",
    &[("app", "db"), ("env", "prod")],
    true
)]
fn label_selectors(#[case] yaml: &str, #[case] pairs: &[(&str, &str)], #[case] matches: bool) {
    assert_eq!(selector(yaml).matches(&labels(pairs)), matches);
}

#[test]
fn selectors_print_like_kubernetes() {
    let selector = selector(
        "{matchLabels: {app: db}, matchExpressions: [{key: env, operator: In, values: [a, b]}, \
         {key: zone, operator: NotIn, values: [x]}, {key: gpu, operator: Exists}, \
         {key: legacy, operator: DoesNotExist}]}",
    );
    assert_eq!(
        selector.to_string(),
        "app=db,env in (a,b),zone notin (x),gpu,!legacy"
    );
    assert_eq!(LabelSelector::default().to_string(), "{}");
}

#[test]
fn namespace_and_vm_selectors_both_apply() {
    let policy = parse(
        r#"
rules:
  - namespaces: ["team-*"]
    namespaceSelector: {matchLabels: {tier: dev}}
    vmSelector: {matchExpressions: [{key: class, operator: In, values: [batch]}]}
    profile: default
"#,
    );
    let rule = &policy.rules[0];
    let dev = labels(&[("tier", "dev")]);
    let batch = labels(&[("class", "batch")]);
    let none = BTreeMap::new();
    let target = |namespace, ns, vm| Subject {
        namespace,
        namespace_labels: ns,
        vm_labels: vm,
        requested_profile: None,
    };
    assert!(rule.matches(&target("team-a", &dev, &batch)));
    assert!(!rule.matches(&target("other", &dev, &batch)));
    assert!(!rule.matches(&target("team-a", &none, &batch)));
    assert!(!rule.matches(&target("team-a", &dev, &none)));
    assert_eq!(
        rule.describe(),
        "rules[0] (namespaces team-*, namespaceSelector tier=dev, vmSelector class in (batch))"
    );
}

// === opt-in by annotation ===

const OPT_IN: &str = r#"
profiles: {dev: {cpuAllocationRatio: 20}, production: {cpuAllocationRatio: 1}, gold: {}}
rules:
  - namespaces: ["prod-*"]
    profile: production
  - namespaceSelector: {matchLabels: {tier: dev}}
    profile: dev
    allowedProfiles: [dev, production]
"#;

pub(super) fn opt_in(
    namespace: &str,
    tier: &str,
    requested: Option<&str>,
) -> (String, Option<usize>, String, Vec<String>) {
    let policy = parse(OPT_IN);
    let ns_labels = labels(&[("tier", tier)]);
    let none = BTreeMap::new();
    let selection = policy.select(&Subject {
        namespace,
        namespace_labels: &ns_labels,
        vm_labels: &none,
        requested_profile: requested,
    });
    (
        selection.profile.name.clone(),
        selection.rule,
        selection.reason,
        selection.warnings,
    )
}

#[test]
fn opt_in_allowed_profile_is_applied() {
    let (profile, rule, reason, warnings) = opt_in("team-a", "dev", Some("production"));
    assert_eq!(profile, "production");
    assert_eq!(rule, Some(1));
    assert_eq!(
        reason,
        "rules[1] (namespaceSelector tier=dev) → production (requested by annotation \
         virt-sizer.io/profile, in allowedProfiles)"
    );
    assert!(warnings.is_empty());
}

#[test]
fn opt_in_of_the_selected_profile_is_quiet() {
    let (profile, _, reason, warnings) = opt_in("team-a", "dev", Some("dev"));
    assert_eq!(profile, "dev");
    assert_eq!(
        reason,
        "rules[1] (namespaceSelector tier=dev) → dev (also requested by annotation virt-sizer.io/profile)"
    );
    assert!(warnings.is_empty());
}

#[rstest]
#[case::not_allowed(
    "team-a",
    "dev",
    "gold",
    "dev",
    "profile \"gold\" requested by annotation virt-sizer.io/profile refused: not in allowedProfiles of \
     rules[1] (namespaceSelector tier=dev); using dev"
)]
#[case::unknown(
    "team-a",
    "dev",
    "platinum",
    "dev",
    "profile \"platinum\" requested by annotation virt-sizer.io/profile refused: not in allowedProfiles of \
     rules[1] (namespaceSelector tier=dev); using dev"
)]
#[case::rule_without_allowed_profiles(
    "prod-a",
    "x",
    "dev",
    "production",
    "profile \"dev\" requested by annotation virt-sizer.io/profile refused: not in allowedProfiles of \
     rules[0] (namespaces prod-*); using production"
)]
#[case::no_rule_matched(
    "kube-public",
    "x",
    "production",
    "default",
    "profile \"production\" requested by annotation virt-sizer.io/profile refused: no rule matched, so no \
     profile may be requested; using default"
)]
fn opt_in_refused(
    #[case] namespace: &str,
    #[case] tier: &str,
    #[case] requested: &str,
    #[case] applied: &str,
    #[case] warning: &str,
) {
    let (profile, _, reason, warnings) = opt_in(namespace, tier, Some(requested));
    assert_eq!(profile, applied);
    assert!(reason.ends_with(&format!("→ {applied}")), "{reason}");
    assert_eq!(warnings, [warning]);
}

#[test]
fn hand_built_policy_without_profiles_falls_back_to_kubevirt_defaults() {
    let mut policy = ValidPolicy::builtin();
    policy.profiles.clear();
    let none = BTreeMap::new();
    let selection = policy.select(&Subject {
        namespace: "a",
        namespace_labels: &none,
        vm_labels: &none,
        requested_profile: None,
    });
    assert_eq!(selection.profile, &Profile::kubevirt_defaults("default"));
    assert_eq!(selection.warnings.len(), 1);
}

/// The reason written for a Pod no rule matches names the default
/// profile by its one name.
#[test]
fn the_no_rule_reason_names_the_default_profile() {
    assert_eq!(
        crate::sizing::policy::select::NO_RULE_MATCHED,
        format!("no rule matched → {DEFAULT_PROFILE}")
    );
}

/// Per-namespace metrics are labelled with how the rules name a namespace:
/// bounded by the policy, never by what a request claims.
#[test]
fn namespaces_are_named_by_name_then_by_the_first_matching_glob() {
    let policy = parse(
        r#"
profiles: {a: {}, b: {}}
rules:
  - {namespaces: ["team-*", "prod-eu"], profile: a}
  - {namespaces: ["team-x", "prod-?"], profile: b}
  - {profile: b}
"#,
    );
    // A name listed anywhere beats an earlier glob.
    assert_eq!(policy.named_namespace("team-x"), Some("team-x"));
    assert_eq!(policy.named_namespace("prod-eu"), Some("prod-eu"));
    assert_eq!(policy.named_namespace("team-y"), Some("team-*"));
    assert_eq!(policy.named_namespace("prod-1"), Some("prod-?"));
    // A rule without `namespaces` names none, though it matches them all.
    assert_eq!(policy.named_namespace("kube-public"), None);
    assert_eq!(policy.named_namespace(""), None);
    // A glob's text is not a name: `team-*` the namespace is matched by the
    // glob (Kubernetes names cannot hold `*` anyway).
    assert_eq!(policy.named_namespace("team-*"), Some("team-*"));
}

// === what VM owners choose: labels and the annotation ===

/// A VM's labels and annotations are its owner's; the namespace rules
/// (`rules[2]`, `rules[4]`) bound what either may choose.
const TENANT_CHOICE: &str = r#"
profiles: {dev: {}, batch: {}, production: {}, gold: {}}
rules:
  - namespaceSelector: {matchLabels: {tier: dev}}
    vmSelector: {matchLabels: {class: batch}}
    profile: batch
  - namespaceSelector: {matchLabels: {tier: dev}}
    vmSelector: {matchLabels: {class: gold}}
    profile: dev
    allowedProfiles: [gold]
  - namespaceSelector: {matchLabels: {tier: dev}}
    profile: dev
    allowedProfiles: [dev, production]
  - namespaceSelector: {matchLabels: {tier: lab}}
    vmSelector: {matchLabels: {class: batch}}
    profile: batch
    allowedProfiles: [production, gold]
  - namespaceSelector: {matchLabels: {tier: lab}}
    profile: dev
    allowedProfiles: [batch, production]
"#;

fn tenant_choice(
    tier: &str,
    class: &str,
    requested: Option<&str>,
) -> (String, Option<usize>, String, Vec<String>) {
    let policy = parse(TENANT_CHOICE);
    let (namespace_labels, vm_labels) = (labels(&[("tier", tier)]), labels(&[("class", class)]));
    let selection = policy.select(&Subject {
        namespace: "team-a",
        namespace_labels: &namespace_labels,
        vm_labels: &vm_labels,
        requested_profile: requested,
    });
    (
        selection.profile.name.clone(),
        selection.rule,
        selection.reason,
        selection.warnings,
    )
}

#[test]
fn vm_labels_choose_no_profile_the_namespace_rule_does_not_allow() {
    // The annotation asking for batch is refused in a dev namespace…
    let (profile, rule, _, warnings) = tenant_choice("dev", "none", Some("batch"));
    assert_eq!((profile.as_str(), rule), ("dev", Some(2)));
    assert_eq!(warnings.len(), 1);
    // …and so is the label that would select it.
    let (profile, rule, reason, warnings) = tenant_choice("dev", "batch", None);
    assert_eq!((profile.as_str(), rule), ("dev", Some(2)));
    assert_eq!(reason, "rules[2] (namespaceSelector tier=dev) → dev");
    assert_eq!(
        warnings,
        [
            "profile \"batch\" selected by VM labels (rules[0] (namespaceSelector tier=dev, vmSelector \
          class=batch)) refused: not in allowedProfiles of rules[2] (namespaceSelector tier=dev); \
          using dev"
        ]
    );
}

#[test]
fn vm_labels_choose_a_profile_the_namespace_rule_allows() {
    let (profile, rule, reason, warnings) = tenant_choice("lab", "batch", None);
    assert_eq!((profile.as_str(), rule), ("batch", Some(3)));
    assert_eq!(
        reason,
        "rules[3] (namespaceSelector tier=lab, vmSelector class=batch) → batch (by VM labels, in \
         allowedProfiles of rules[4] (namespaceSelector tier=lab))"
    );
    assert!(warnings.is_empty());
    // A label rule that selects the namespace rule's own profile is no
    // choice at all: granted, and quiet.
    let (profile, rule, reason, warnings) = tenant_choice("dev", "gold", None);
    assert_eq!((profile.as_str(), rule), ("dev", Some(1)));
    assert_eq!(
        reason,
        "rules[1] (namespaceSelector tier=dev, vmSelector class=gold) → dev"
    );
    assert!(warnings.is_empty());
}

#[rstest]
// In both rules' allowedProfiles: granted.
#[case::allowed_by_both("lab", "batch", "production", "production", None)]
// In the label rule's allowedProfiles only: the namespace rule bounds it.
#[case::allowed_by_the_label_rule_only(
    "lab",
    "batch",
    "gold",
    "batch",
    Some(
        "profile \"gold\" requested by annotation virt-sizer.io/profile refused: not in allowedProfiles of \
     rules[4] (namespaceSelector tier=lab); using batch"
    )
)]
#[case::allowed_by_the_label_rule_only_in_dev(
    "dev",
    "gold",
    "gold",
    "dev",
    Some(
        "profile \"gold\" requested by annotation virt-sizer.io/profile refused: not in allowedProfiles of \
     rules[2] (namespaceSelector tier=dev); using dev"
    )
)]
// In the namespace rule's allowedProfiles only: the label rule in force
// does not list it.
#[case::allowed_by_the_namespace_rule_only(
    "dev",
    "gold",
    "production",
    "dev",
    Some(
        "profile \"production\" requested by annotation virt-sizer.io/profile refused: not in \
     allowedProfiles of rules[1] (namespaceSelector tier=dev, vmSelector class=gold); using dev"
    )
)]
fn the_annotation_is_bounded_by_the_rule_in_force_and_the_namespace_rule(
    #[case] tier: &str,
    #[case] class: &str,
    #[case] requested: &str,
    #[case] applied: &str,
    #[case] warning: Option<&str>,
) {
    let (profile, _, _, warnings) = tenant_choice(tier, class, Some(requested));
    assert_eq!(profile, applied);
    assert_eq!(warnings, warning.into_iter().collect::<Vec<_>>());
}

#[test]
fn a_label_rule_without_a_namespace_rule_chooses_only_default() {
    let policy = parse(
        r#"
profiles: {batch: {}}
rules:
  - {vmSelector: {matchLabels: {class: batch}}, profile: batch}
  - {vmSelector: {matchLabels: {class: plain}}, profile: default}
"#,
    );
    let none = BTreeMap::new();
    let pick = |class| {
        let vm_labels = labels(&[("class", class)]);
        let selection = policy.select(&Subject {
            namespace: "any",
            namespace_labels: &none,
            vm_labels: &vm_labels,
            requested_profile: None,
        });
        (selection.profile.name.clone(), selection.warnings)
    };
    let (profile, warnings) = pick("batch");
    assert_eq!(profile, "default");
    assert_eq!(
        warnings,
        [
            "profile \"batch\" selected by VM labels (rules[0] (vmSelector class=batch)) refused: no rule \
          without vmSelector matched, so the VM owner may choose no profile; using default"
        ]
    );
    assert_eq!(pick("plain"), ("default".to_owned(), Vec::new()));
}

#[test]
fn policy_check_warns_of_a_label_rule_no_namespace_rule_allows() {
    let policy = parse(TENANT_CHOICE);
    // rules[0] (batch): rules[4] allows batch; rules[1] selects dev, which
    // rules[2] gives; rules[3] (batch) is allowed by rules[4].
    assert!(policy.warnings.is_empty(), "{:?}", policy.warnings);
    let policy = parse(
        r#"
profiles: {batch: {}, dev: {}}
rules:
  - namespaceSelector: {matchLabels: {tier: dev}}
    vmSelector: {matchLabels: {class: batch}}
    profile: batch
  - namespaceSelector: {matchLabels: {tier: dev}}
    profile: dev
  - {vmSelector: {matchLabels: {class: plain}}, profile: default}
"#,
    );
    assert_eq!(
        policy.warnings,
        [
            "rules[0] (namespaceSelector tier=dev, vmSelector class=batch): selects \"batch\" by VM labels, \
          which the VM owner sets, so it applies only where the first matching rule without vmSelector \
          allows \"batch\" (its profile or allowedProfiles); no later rule without vmSelector does, so \
          this rule never applies"
        ]
    );
}
