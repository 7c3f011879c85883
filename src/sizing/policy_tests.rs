//! Tests for the sizing policy: parsing, validation, inheritance, selection.

use std::collections::BTreeMap;

use rstest::rstest;

use super::super::kata::{FillLimits, GuestMemory, KataPodSettings};
use super::*;

/// SPEC §2's example, verbatim.
const SPEC_EXAMPLE: &str = r#"
apiVersion: virt-sizer.io/v1alpha1
kind: SizingPolicy
kubevirt:
  release: "1.9"                 # overhead model when the Pod lacks kubevirt.io/memory-overhead-bytes:
                                 # "1.5", "1.9" (the v1.6–v1.9 line), "main"
  architecture: amd64            # when the VMI names none
profiles:
  default:                       # used when no rule matches
    cpuAllocationRatio: 10       # vCPUs / ratio = CPU request; 1 = no CPU overcommit
    memoryOvercommitPercent: 100 # guest × 100 / percent = memory request; 100 = none
    guestOverhead: Request       # Request | Omit  (Omit = KubeVirt's overcommitGuestOverhead)
    overheadRatio: "1.0"         # multiplies the overhead (KubeVirt's additionalGuestMemoryOverheadRatio)
    overheadMargin: 0            # extra bytes of overhead (quantity)
    limits: None                 # None | EqualRequests | Ratio
    limitsRatio: {cpu: "2", memory: "1.5"}   # with limits: Ratio
    mode: Enforce                # Enforce | Shadow (decide and report, no patch)
  production: {cpuAllocationRatio: 1, limits: EqualRequests}
  dev: {cpuAllocationRatio: 20, memoryOvercommitPercent: 150}
rules:                           # first match wins; a rule matches on all the selectors it has
  - namespaces: ["prod-*"]       # names or globs
    profile: production
  - namespaceSelector: {matchLabels: {tier: dev}}   # label selector on the Namespace
    vmSelector: {matchLabels: {class: batch}}       # label selector on the VMI / Pod labels
    profile: dev
    allowedProfiles: [dev, production]   # a VM may opt into one of these with the
                                         # annotation virt-sizer.io/profile (KubeVirt copies
                                         # VMI annotations onto the Pod); others are refused
onError: Allow                   # Allow (allowed, unchanged, with a warning) | Deny
kata:
  runtimeClasses:                # by RuntimeClass handler
    kata-qemu:
      runtime: go                # go (hotplug) | go-static | runtime-rs
      defaultVcpus: "1"
      defaultMemory: 2048Mi      # runtime-rs: overheadVcpus / overheadMemory instead
      sandboxCgroupOnly: false
      vmm: {cpu: 250m, memory: 160Mi}   # host-side VMM cost
      guestMemory: Ignore        # Ignore: podFixed = vmm (what kata-deploy ships)
                                 # Account: podFixed.memory = vmm + the guest memory that
                                 # container limits do not cover (default or overhead memory)
  pods:
    fillLimits: FromRequests     # None | FromRequests
    minMemory: 256Mi
"#;

const HEADER: &str = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n";

fn q(text: &str) -> Quantity {
    Quantity::parse(text).unwrap()
}

fn parse(body: &str) -> ValidPolicy {
    let text = format!("{HEADER}{body}");
    match ValidPolicy::from_yaml(&text) {
        Ok(policy) => policy,
        Err(errors) => panic!("policy should be valid, got:\n{errors}"),
    }
}

fn errors_of(text: &str) -> Vec<(String, String)> {
    match ValidPolicy::from_yaml(text) {
        Ok(_) => panic!("policy should be invalid:\n{text}"),
        Err(PolicyErrors(errors)) => errors.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

fn paths_of(text: &str) -> Vec<String> {
    errors_of(text).into_iter().map(|(path, _)| path).collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ratio(text: &str) -> OverheadRatio {
    OverheadRatio {
        text: text.to_owned(),
        value: gofloat::parse(text).unwrap(),
    }
}

// === the SPEC example ===

#[test]
fn spec_example_parses_and_resolves() {
    let policy = ValidPolicy::from_yaml(SPEC_EXAMPLE).unwrap();
    assert_eq!(policy.api_version, API_VERSION);
    assert_eq!(policy.kubevirt.release, Release::V1_9);
    assert_eq!(policy.kubevirt.release_text, "1.9");
    assert_eq!(policy.kubevirt.architecture, "amd64");
    assert!(policy.kubevirt.binding_plugins.is_empty());
    assert_eq!(policy.kubevirt.auto_cpu_limit_namespace_selector, None);
    assert_eq!(policy.on_error, OnError::Allow);
    assert_eq!(
        policy.profiles.keys().collect::<Vec<_>>(),
        ["default", "dev", "production"]
    );

    let ratios = LimitsRatio {
        cpu: Some(q("2")),
        memory: Some(q("1.5")),
    };
    let default = Profile {
        limits_ratio: ratios,
        ..Profile::kubevirt_defaults("default")
    };
    assert_eq!(policy.profiles["default"], default);
    // production inherits everything it does not set from default,
    // including the limit ratios it does not use.
    assert_eq!(
        policy.profiles["production"],
        Profile {
            name: "production".to_owned(),
            cpu_allocation_ratio: 1,
            limits: LimitsPolicy::EqualRequests,
            ..default.clone()
        }
    );
    assert_eq!(
        policy.profiles["dev"],
        Profile {
            name: "dev".to_owned(),
            cpu_allocation_ratio: 20,
            memory_overcommit_percent: 150,
            ..default
        }
    );

    assert_eq!(policy.rules.len(), 2);
    let prod = &policy.rules[0];
    assert_eq!(prod.index, 0);
    assert_eq!(prod.namespaces, [glob::Pattern::new("prod-*").unwrap()]);
    assert_eq!(prod.namespace_selector, None);
    assert_eq!(prod.vm_selector, None);
    assert_eq!(prod.profile, "production");
    assert!(prod.allowed_profiles.is_empty());
    assert_eq!(prod.describe(), "rules[0] (namespaces prod-*)");
    let dev = &policy.rules[1];
    assert!(dev.namespaces.is_empty());
    assert_eq!(
        dev.namespace_selector,
        Some(LabelSelector::new(labels(&[("tier", "dev")]), vec![]))
    );
    assert_eq!(
        dev.vm_selector.as_ref().unwrap().match_labels,
        labels(&[("class", "batch")])
    );
    assert_eq!(dev.profile, "dev");
    assert_eq!(dev.allowed_profiles, ["dev", "production"]);
    assert_eq!(
        dev.describe(),
        "rules[1] (namespaceSelector tier=dev, vmSelector class=batch)"
    );

    let class = &policy.kata.runtime_classes["kata-qemu"];
    let expected = KataClass::with_defaults(
        "kata-qemu",
        KataRuntime::Go,
        PodFixed {
            cpu: q("250m"),
            memory: q("160Mi"),
        },
    );
    assert_eq!(class, &expected);
    assert_eq!(class.default_vcpus, q("1"));
    assert_eq!(class.default_memory, q("2048Mi"));
    assert!(!class.sandbox_cgroup_only);
    assert_eq!(class.guest_memory, GuestMemory::Ignore);
    assert_eq!(policy.kata.pods.fill_limits, FillLimits::FromRequests);
    assert_eq!(policy.kata.pods.min_memory, q("256Mi"));
}

#[test]
fn spec_example_selects_as_described() {
    let policy = ValidPolicy::from_yaml(SPEC_EXAMPLE).unwrap();
    let none = BTreeMap::new();
    let dev_ns = labels(&[("tier", "dev")]);
    let batch = labels(&[("class", "batch")]);
    let target = |namespace, ns_labels, vm_labels, requested| Subject {
        namespace,
        namespace_labels: ns_labels,
        vm_labels,
        requested_profile: requested,
    };

    let chosen = policy.select(&target("prod-eu", &none, &none, None));
    assert_eq!(chosen.profile.name, "production");
    assert_eq!(chosen.rule, Some(0));
    assert_eq!(chosen.reason, "rules[0] (namespaces prod-*) → production");
    assert!(chosen.warnings.is_empty());

    let chosen = policy.select(&target("team-a", &dev_ns, &batch, None));
    assert_eq!(chosen.profile.name, "dev");
    assert_eq!(chosen.rule, Some(1));

    // the dev rule needs both selectors
    let chosen = policy.select(&target("team-a", &dev_ns, &none, None));
    assert_eq!(chosen.profile.name, "default");
    assert_eq!(chosen.rule, None);
    assert_eq!(chosen.reason, "no rule matched → default");
}

// === inheritance ===

#[test]
fn missing_default_profile_is_kubevirt_defaults() {
    let policy = parse("profiles:\n  dev: {cpuAllocationRatio: 4}\n");
    assert_eq!(
        policy.profiles["default"],
        Profile::kubevirt_defaults("default")
    );
    assert_eq!(
        policy.profiles["dev"],
        Profile {
            cpu_allocation_ratio: 4,
            ..Profile::kubevirt_defaults("dev")
        }
    );
}

#[test]
fn no_profiles_at_all_gives_an_implicit_default() {
    let policy = parse("");
    assert_eq!(
        policy.profiles,
        BTreeMap::from([("default".to_owned(), Profile::kubevirt_defaults("default"))])
    );
}

#[test]
fn profiles_inherit_every_field_from_default() {
    let policy = parse(
        r#"
profiles:
  default:
    cpuAllocationRatio: 8
    memoryOvercommitPercent: 120
    guestOverhead: Omit
    overheadRatio: 1.25
    overheadMargin: 64Mi
    limits: Ratio
    limitsRatio: {cpu: 3}
    mode: Shadow
  empty:
  partial:
    memoryOvercommitPercent: 200
    limitsRatio: {memory: "1.5"}
    mode: Enforce
"#,
    );
    let default = Profile {
        name: "default".to_owned(),
        cpu_allocation_ratio: 8,
        memory_overcommit_percent: 120,
        guest_overhead: GuestOverhead::Omit,
        overhead_ratio: ratio("1.25"),
        overhead_margin: q("64Mi"),
        limits: LimitsPolicy::Ratio,
        limits_ratio: LimitsRatio {
            cpu: Some(q("3")),
            memory: None,
        },
        mode: Mode::Shadow,
    };
    assert_eq!(policy.profiles["default"], default);
    assert_eq!(
        policy.profiles["empty"],
        Profile {
            name: "empty".to_owned(),
            ..default.clone()
        }
    );
    // limitsRatio.cpu and .memory inherit one by one
    assert_eq!(
        policy.profiles["partial"],
        Profile {
            name: "partial".to_owned(),
            memory_overcommit_percent: 200,
            limits_ratio: LimitsRatio {
                cpu: Some(q("3")),
                memory: Some(q("1.5")),
            },
            mode: Mode::Enforce,
            ..default
        }
    );
}

#[test]
fn ratio_limits_need_a_ratio_after_inheritance() {
    // default supplies the ratio: fine
    let policy =
        parse("profiles:\n  default: {limitsRatio: {memory: 2}}\n  burst: {limits: Ratio}\n");
    assert_eq!(policy.profiles["burst"].limits_ratio.memory, Some(q("2")));
    // nobody does: reported where `limits: Ratio` is written
    let text = format!(
        "{HEADER}profiles:\n  default: {{limits: Ratio}}\n  burst: {{}}\n  other: {{limits: Ratio}}\n"
    );
    assert_eq!(
        paths_of(&text),
        ["profiles.default.limitsRatio", "profiles.other.limitsRatio"]
    );
}

#[rstest]
#[case::quoted_string("\"1.25\"", "1.25")]
#[case::number("1.5", "1.5")]
#[case::integer("2", "2")]
#[case::one_point_zero_number("1.0", "1.0")]
#[case::exponent("\"1e0\"", "1e0")]
fn overhead_ratio_keeps_text_and_float(#[case] yaml: &str, #[case] text: &str) {
    let policy = parse(&format!(
        "profiles:\n  default: {{overheadRatio: {yaml}}}\n"
    ));
    assert_eq!(policy.profiles["default"].overhead_ratio, ratio(text));
}

#[rstest]
#[case::string("\"1.5\"", "1.5")]
#[case::number("1.5", "1.5")]
#[case::integer("2", "2")]
#[case::many_digits("\"1.000000001\"", "1000000001n")]
fn limits_ratio_is_an_exact_decimal(#[case] yaml: &str, #[case] expected: &str) {
    let policy = parse(&format!(
        "profiles:\n  default: {{limitsRatio: {{cpu: {yaml}}}}}\n"
    ));
    assert_eq!(
        policy.profiles["default"].limits_ratio.cpu,
        Some(q(expected))
    );
}

// === kubevirt section ===

#[rstest]
#[case::quoted_1_9("\"1.9\"", Release::V1_9, "1.9")]
#[case::unquoted_1_9("1.9", Release::V1_9, "1.9")]
#[case::unquoted_1_6("1.6", Release::V1_9, "1.6")]
#[case::quoted_1_7("\"1.7\"", Release::V1_9, "1.7")]
#[case::unquoted_1_8("1.8", Release::V1_9, "1.8")]
#[case::unquoted_1_5("1.5", Release::V1_5, "1.5")]
#[case::main("main", Release::Main, "main")]
#[case::v_prefix_patch("v1.8.2", Release::V1_9, "v1.8.2")]
fn release_lines(#[case] yaml: &str, #[case] release: Release, #[case] text: &str) {
    let policy = parse(&format!("kubevirt: {{release: {yaml}}}\n"));
    assert_eq!(policy.kubevirt.release, release);
    assert_eq!(policy.kubevirt.release_text, text);
}

#[test]
fn release_defaults_to_1_9_and_names_its_line() {
    let policy = parse("");
    assert_eq!(policy.kubevirt.release, Release::V1_9);
    assert_eq!(policy.kubevirt.release.as_str(), "1.9");
    assert_eq!(Release::V1_5.as_str(), "1.5");
    assert_eq!(Release::Main.as_str(), "main");
}

#[test]
fn unquoted_1_10_is_refused_with_a_hint() {
    let errors = errors_of(&format!("{HEADER}kubevirt: {{release: 1.10}}\n"));
    assert_eq!(
        errors,
        [(
            "kubevirt.release".to_owned(),
            "must be one of \"1.5\", \"1.6\", \"1.7\", \"1.8\", \"1.9\", \"main\" or a newer \"1.N\", got \"1.1\" \
             (read as the YAML number 1.1; write the release quoted, e.g. release: \"1.9\")"
                .to_owned()
        )]
    );
}

#[test]
fn kubevirt_settings_parse() {
    let policy = parse(
        r#"
kubevirt:
  architecture: arm64
  bindingPlugins: {passt-custom: 100Mi, macvtap: 0}
  autoCPULimitNamespaceLabelSelector:
    matchLabels: {autocpulimit: "true"}
"#,
    );
    assert_eq!(policy.kubevirt.architecture, "arm64");
    assert_eq!(
        policy.kubevirt.binding_plugins,
        BTreeMap::from([
            ("macvtap".to_owned(), q("0")),
            ("passt-custom".to_owned(), q("100Mi")),
        ])
    );
    let selector = policy.kubevirt.auto_cpu_limit_namespace_selector.unwrap();
    assert!(selector.matches(&labels(&[("autocpulimit", "true")])));
    assert!(!selector.matches(&labels(&[("autocpulimit", "false")])));
}

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

fn opt_in(
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

// === errors ===

/// A policy with many different problems at once.
const INVALID_POLICY: &str = r#"
apiVersion: virt-sizer.io/v1
kind: SizingPolicy
kubevirt:
  release: "1.4"
  architecture: x86_64
profiles:
  default:
    cpuAllocationRatio: 0
    memoryOvercommitPercent: 5
    guestOverhead: request
  dev:
    cpuAllocationRatoi: 3
    overheadRatio: "0.5"
    overheadMargin: 100m
    limits: Ratio
    mode: Dry
rules:
  - namespaces: ["prod-[", ""]
    profile: gold
    allowedProfiles: [dev, silver]
  - namespaceSelector:
      matchExpressions:
        - {key: tier, operator: In}
        - {key: zone, operator: Exists, values: [a]}
        - {key: env, operator: Like, values: [x]}
onError: Panic
kata:
  runtimeClasses:
    kata-qemu:
      runtime: go
      overheadMemory: 32Mi
      defaultMemory: 100M
    Bad_Name:
      runtime: rust
      vmm: {cpu: -1, memory: 1Gi}
"#;

/// Every problem in [`INVALID_POLICY`], in the reported order: unknown
/// fields first, then the checks from top to bottom (profiles by name,
/// Kata classes by handler).
const INVALID_POLICY_PROBLEMS: &[(&str, &str)] = &[
    (
        "profiles.dev.cpuAllocationRatoi",
        "unknown field (did you mean cpuAllocationRatio?)",
    ),
    (
        "apiVersion",
        "must be \"virt-sizer.io/v1alpha1\", got \"virt-sizer.io/v1\"",
    ),
    (
        "kubevirt.release",
        "must be one of \"1.5\", \"1.6\", \"1.7\", \"1.8\", \"1.9\", \"main\" or a newer \"1.N\", got \"1.4\"",
    ),
    (
        "kubevirt.architecture",
        "must be one of amd64, arm64, s390x, ppc64le, got \"x86_64\"",
    ),
    ("profiles.default.cpuAllocationRatio", "must be ≥ 1, got 0"),
    (
        "profiles.default.memoryOvercommitPercent",
        "must be ≥ 10, got 5",
    ),
    (
        "profiles.default.guestOverhead",
        "must be one of Request, Omit, got \"request\" (did you mean Request?)",
    ),
    ("profiles.dev.overheadRatio", "must be ≥ 1.0, got \"0.5\""),
    (
        "profiles.dev.overheadMargin",
        "must be a whole number of bytes, got \"100m\"",
    ),
    (
        "profiles.dev.mode",
        "must be one of Enforce, Shadow, got \"Dry\"",
    ),
    (
        "profiles.dev.limitsRatio",
        "limits: Ratio needs limitsRatio.cpu or limitsRatio.memory (set here or in profile default)",
    ),
    (
        "rules[0].namespaces[0]",
        "invalid glob \"prod-[\": invalid range pattern at position 5",
    ),
    ("rules[0].namespaces[1]", "must not be empty"),
    (
        "rules[0].profile",
        "unknown profile \"gold\" (profiles: default, dev)",
    ),
    (
        "rules[0].allowedProfiles[1]",
        "unknown profile \"silver\" (profiles: default, dev)",
    ),
    (
        "rules[1].namespaceSelector.matchExpressions[0].values",
        "must be specified when operator is In or NotIn",
    ),
    (
        "rules[1].namespaceSelector.matchExpressions[1].values",
        "may not be specified when operator is Exists or DoesNotExist",
    ),
    (
        "rules[1].namespaceSelector.matchExpressions[2].operator",
        "must be one of In, NotIn, Exists, DoesNotExist, got \"Like\"",
    ),
    ("rules[1].profile", "required"),
    ("onError", "must be one of Allow, Deny, got \"Panic\""),
    (
        "kata.runtimeClasses.Bad_Name",
        "invalid runtime class handler \"Bad_Name\": must be a DNS label (1–63 lowercase letters, digits \
         or '-', starting and ending with a letter or digit)",
    ),
    (
        "kata.runtimeClasses.Bad_Name.runtime",
        "must be one of go, go-static, runtime-rs, got \"rust\"",
    ),
    (
        "kata.runtimeClasses.Bad_Name.vmm.cpu",
        "must not be negative, got \"-1\"",
    ),
    (
        "kata.runtimeClasses.kata-qemu.vmm",
        "required: the host-side VMM cost {cpu, memory}",
    ),
    (
        "kata.runtimeClasses.kata-qemu.defaultMemory",
        "must be a whole number of MiB (Kata reads it in MiB), got \"100M\"",
    ),
    (
        "kata.runtimeClasses.kata-qemu.overheadMemory",
        "only valid with runtime: runtime-rs (4.x), not go",
    ),
];

#[test]
fn an_invalid_policy_reports_every_problem_with_its_path() {
    let expected: Vec<(String, String)> = INVALID_POLICY_PROBLEMS
        .iter()
        .map(|(path, message)| ((*path).to_owned(), (*message).to_owned()))
        .collect();
    assert_eq!(errors_of(INVALID_POLICY), expected);
    assert!(expected.len() >= 8);
}

#[test]
fn errors_display_one_line_per_problem() {
    let errors = ValidPolicy::from_yaml("apiVersion: v1\nonError: deny\n").unwrap_err();
    assert_eq!(
        errors.to_string(),
        "apiVersion: must be \"virt-sizer.io/v1alpha1\", got \"v1\"\n\
         kind: required, must be \"SizingPolicy\"\n\
         onError: must be one of Allow, Deny, got \"deny\" (did you mean Deny?)"
    );
}

#[test]
fn unknown_fields_are_reported_at_every_depth() {
    let text = format!(
        "{HEADER}{}",
        r#"
spec: {}
kubevirt: {releases: "1.9"}
profiles:
  dev: {cpuAllocationRatoi: 3, limitsRatio: {cpus: 2}}
rules:
  - profile: dev
    vmSelector: {matchLabel: {a: b}, matchExpressions: [{key: a, operator: Exists, value: [x]}]}
kata:
  runtimeClasses:
    kata-qemu: {runtime: go, vmm: {cpu: 1, memory: 1Gi, disk: 1Gi}, defaultMemroy: 1Gi}
  pods: {minMem: 1Gi}
"#
    );
    // Each names the closest field at its own place, when one is within
    // an edit per three letters (`spec` and `disk` are near none).
    assert_eq!(
        errors_of(&text),
        [
            ("spec", None),
            ("kubevirt.releases", Some("release")),
            (
                "profiles.dev.cpuAllocationRatoi",
                Some("cpuAllocationRatio")
            ),
            ("profiles.dev.limitsRatio.cpus", Some("cpu")),
            ("rules[0].vmSelector.matchLabel", Some("matchLabels")),
            (
                "rules[0].vmSelector.matchExpressions[0].value",
                Some("values")
            ),
            ("kata.runtimeClasses.kata-qemu.vmm.disk", None),
            (
                "kata.runtimeClasses.kata-qemu.defaultMemroy",
                Some("defaultMemory")
            ),
            ("kata.pods.minMem", Some("minMemory")),
        ]
        .map(|(path, suggestion)| (
            path.to_owned(),
            suggestion.map_or_else(
                || "unknown field".to_owned(),
                |name| format!("unknown field (did you mean {name}?)")
            )
        ))
    );
}

#[test]
fn a_type_error_does_not_hide_the_other_problems() {
    // Three problems in three sections: a string where a list belongs, a
    // misspelt profile field, a keyword out of its enum.
    let text = format!(
        "{HEADER}{}",
        r#"
profiles:
  dev: {cpuAllocationRatoi: 3}
rules:
  - namespaces: prod-*
    profile: dev
onError: deny
"#
    );
    assert_eq!(
        errors_of(&text),
        [
            (
                "profiles.dev.cpuAllocationRatoi",
                "unknown field (did you mean cpuAllocationRatio?)"
            ),
            (
                "rules[0].namespaces",
                "invalid type: string \"prod-*\", expected a sequence"
            ),
            (
                "onError",
                "must be one of Allow, Deny, got \"deny\" (did you mean Deny?)"
            ),
        ]
        .map(|(path, message)| (path.to_owned(), message.to_owned()))
    );
}

#[test]
fn every_type_error_is_reported_once_with_nothing_it_implies() {
    // rules[0] is not a mapping at all: its own "profile: required" would
    // only restate that. rules[1] and the Kata class have type errors of
    // their own, and the unknown field after them is still found.
    let text = format!(
        "{HEADER}{}",
        r#"
profiles: {dev: 3}
rules:
  - just-a-string
  - {vmSelector: [a], profile: dev}
kata:
  runtimeClasses:
    kata-qemu: go
  pod: {}
"#
    );
    assert_eq!(
        errors_of(&text),
        [
            ("kata.pod", "unknown field (did you mean pods?)"),
            (
                "profiles.dev",
                "invalid type: integer `3`, expected a profile mapping"
            ),
            (
                "rules[0]",
                "invalid type: string \"just-a-string\", expected a rule mapping"
            ),
            (
                "rules[1].vmSelector",
                "invalid type: sequence, expected a label selector mapping {matchLabels, matchExpressions}"
            ),
            (
                "kata.runtimeClasses.kata-qemu",
                "invalid type: string \"go\", expected a kata runtime class mapping"
            ),
        ]
        .map(|(path, message)| (path.to_owned(), message.to_owned()))
    );
}

#[rstest]
#[case::profile_not_a_mapping(
    "profiles: {dev: 3}",
    "profiles.dev",
    "invalid type: integer `3`, expected a profile mapping"
)]
#[case::rules_not_a_list("rules: {a: 1}", "rules", "invalid type: map, expected a sequence")]
#[case::namespaces_not_a_list(
    "rules: [{namespaces: prod, profile: default}]",
    "rules[0].namespaces",
    "invalid type: string \"prod\", expected a sequence"
)]
#[case::selector_not_a_mapping(
    "rules: [{vmSelector: [a], profile: default}]",
    "rules[0].vmSelector",
    "invalid type: sequence, expected a label selector mapping {matchLabels, matchExpressions}"
)]
#[case::kata_class_not_a_mapping(
    "kata: {runtimeClasses: {kata-qemu: go}}",
    "kata.runtimeClasses.kata-qemu",
    "invalid type: string \"go\", expected a kata runtime class mapping"
)]
fn structural_type_errors_have_paths(
    #[case] body: &str,
    #[case] path: &str,
    #[case] message: &str,
) {
    let errors = errors_of(&format!("{HEADER}{body}\n"));
    assert_eq!(errors, [(path.to_owned(), message.to_owned())]);
}

#[rstest]
#[case::ratio_string(
    "profiles: {default: {cpuAllocationRatio: \"10\"}}",
    "profiles.default.cpuAllocationRatio",
    "expected an integer ≥ 1, got string \"10\""
)]
#[case::ratio_float(
    "profiles: {default: {cpuAllocationRatio: 2.5}}",
    "profiles.default.cpuAllocationRatio",
    "expected an integer ≥ 1, got number 2.5"
)]
#[case::ratio_too_big(
    "profiles: {default: {cpuAllocationRatio: 5000000000}}",
    "profiles.default.cpuAllocationRatio",
    "must be at most 4294967295, got number 5000000000"
)]
#[case::overcommit_negative(
    "profiles: {default: {memoryOvercommitPercent: -150}}",
    "profiles.default.memoryOvercommitPercent",
    "expected an integer ≥ 10, got number -150"
)]
#[case::overhead_ratio_list(
    "profiles: {default: {overheadRatio: [1]}}",
    "profiles.default.overheadRatio",
    "expected a string or a number, got a sequence"
)]
#[case::overhead_ratio_garbage(
    "profiles: {default: {overheadRatio: abc}}",
    "profiles.default.overheadRatio",
    "must be a decimal number ≥ 1.0, got \"abc\""
)]
#[case::overhead_ratio_infinite(
    "profiles: {default: {overheadRatio: .inf}}",
    "profiles.default.overheadRatio",
    "must be a decimal number ≥ 1.0, got \".inf\""
)]
#[case::margin_bad_quantity(
    "profiles: {default: {overheadMargin: 10 MB}}",
    "profiles.default.overheadMargin",
    "invalid quantity \"10 MB\": "
)]
#[case::margin_negative(
    "profiles: {default: {overheadMargin: -1Mi}}",
    "profiles.default.overheadMargin",
    "must not be negative, got \"-1Mi\""
)]
#[case::limits_ratio_below_one(
    "profiles: {default: {limitsRatio: {memory: 0.5}}}",
    "profiles.default.limitsRatio.memory",
    "must be between 1 and 1000000, got \"0.5\""
)]
#[case::limits_ratio_with_suffix(
    "profiles: {default: {limitsRatio: {cpu: 2Gi}}}",
    "profiles.default.limitsRatio.cpu",
    "must be a plain decimal number ≥ 1 such as \"1.5\", got \"2Gi\""
)]
#[case::match_label_number(
    "rules: [{profile: default, vmSelector: {matchLabels: {tier: 1}}}]",
    "rules[0].vmSelector.matchLabels.tier",
    "expected a string, got number 1 (quote it)"
)]
#[case::bad_label_key(
    "rules: [{profile: default, vmSelector: {matchLabels: {\"-bad\": x}}}]",
    "rules[0].vmSelector.matchLabels.-bad",
    "invalid label key \"-bad\": must be [DNS-subdomain prefix/]name, name 1–63 characters of [A-Za-z0-9-_.] \
     starting and ending with a letter or digit"
)]
#[case::bad_label_value(
    "rules: [{profile: default, vmSelector: {matchExpressions: [{key: a, operator: In, values: [\"x y\"]}]}}]",
    "rules[0].vmSelector.matchExpressions[0].values[0]",
    "invalid label value \"x y\": must be at most 63 characters of [A-Za-z0-9-_.], starting and ending with a \
     letter or digit"
)]
#[case::missing_key(
    "rules: [{profile: default, vmSelector: {matchExpressions: [{operator: Exists}]}}]",
    "rules[0].vmSelector.matchExpressions[0].key",
    "required"
)]
#[case::empty_namespaces(
    "rules: [{namespaces: [], profile: default}]",
    "rules[0].namespaces",
    "must not be empty (leave the field out to match every namespace)"
)]
#[case::bad_profile_name(
    "profiles: {\"a b\": {}}",
    "profiles.a b",
    "invalid profile name \"a b\": must be 1–63 characters of [A-Za-z0-9-_.], starting and ending with a letter \
     or digit"
)]
#[case::kind_wrong("kind: Policy", "kind", "must be \"SizingPolicy\", got \"Policy\"")]
#[case::sandbox_flag_string(
    "kata: {runtimeClasses: {k: {runtime: go, vmm: {cpu: 1, memory: 1Gi}, sandboxCgroupOnly: \"yes\"}}}",
    "kata.runtimeClasses.k.sandboxCgroupOnly",
    "expected true or false, got string \"yes\""
)]
#[case::kata_class_null(
    "kata: {runtimeClasses: {k: }}",
    "kata.runtimeClasses.k.runtime",
    "required"
)]
#[case::vmm_memory_missing(
    "kata: {runtimeClasses: {k: {runtime: go, vmm: {cpu: 1}}}}",
    "kata.runtimeClasses.k.vmm.memory",
    "required"
)]
#[case::min_memory_fraction(
    "kata: {pods: {minMemory: 0.5}}",
    "kata.pods.minMemory",
    "must be a whole number of bytes, got \"0.5\""
)]
#[case::binding_plugin_negative(
    "kubevirt: {bindingPlugins: {p: -1}}",
    "kubevirt.bindingPlugins.p",
    "must not be negative, got \"-1\""
)]
fn leaf_problems_have_paths(#[case] body: &str, #[case] path: &str, #[case] message_start: &str) {
    let text = if body.starts_with("kind:") {
        format!("apiVersion: virt-sizer.io/v1alpha1\n{body}\n")
    } else {
        format!("{HEADER}{body}\n")
    };
    let errors = errors_of(&text);
    let (first_path, first_message) = &errors[0];
    assert_eq!(first_path, path, "{errors:?}");
    assert!(first_message.starts_with(message_start), "{errors:?}");
}

#[test]
fn yaml_syntax_errors_are_reported_at_the_root() {
    let errors = errors_of("apiVersion: [\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, "(root)");
    assert!(errors[0].1.starts_with("invalid yaml: "), "{errors:?}");
}

#[test]
fn a_document_that_is_not_a_mapping_is_a_root_type_error() {
    let errors = errors_of("- a\n- b\n");
    assert_eq!(
        errors,
        [(
            "(root)".to_owned(),
            "invalid type: sequence, expected a SizingPolicy mapping".to_owned()
        )]
    );
}

#[test]
fn an_empty_document_needs_api_version_and_kind() {
    assert_eq!(
        errors_of(""),
        [
            (
                "apiVersion".to_owned(),
                "required, must be \"virt-sizer.io/v1alpha1\"".to_owned()
            ),
            (
                "kind".to_owned(),
                "required, must be \"SizingPolicy\"".to_owned()
            ),
        ]
    );
}

#[test]
fn yaml_anchors_and_merge_keys_work() {
    let policy = parse(
        r"
profiles:
  base: &base {cpuAllocationRatio: 4, mode: Shadow}
  copy:
    <<: *base
    memoryOvercommitPercent: 150
",
    );
    let copy = &policy.profiles["copy"];
    assert_eq!(copy.cpu_allocation_ratio, 4);
    assert_eq!(copy.mode, Mode::Shadow);
    assert_eq!(copy.memory_overcommit_percent, 150);
}

// === kata section ===

#[test]
fn kata_classes_take_runtime_defaults() {
    let policy = parse(
        r#"
kata:
  runtimeClasses:
    kata-qemu-runtime-rs:
      runtime: runtime-rs
      vmm: {cpu: 250m, memory: 320Mi}
    kata-qemu-tdx:
      runtime: go-static
      defaultVcpus: 500m
      defaultMemory: 4Gi
      sandboxCgroupOnly: true
      vmm: {cpu: "1", memory: 2048Mi}
      guestMemory: Account
    tuned-rs:
      runtime: runtime-rs
      overheadVcpus: "0.4"
      overheadMemory: 128Mi
      sandboxCgroupOnly: false
      vmm: {cpu: 250m, memory: 320Mi}
  pods: {fillLimits: None, minMemory: 512Mi}
"#,
    );
    let classes = &policy.kata.runtime_classes;
    let rs = &classes["kata-qemu-runtime-rs"];
    assert_eq!(rs.runtime, KataRuntime::RuntimeRs);
    assert_eq!(rs.overhead_vcpus, Some(q("200m")));
    assert_eq!(rs.overhead_memory, Some(q("32Mi")));
    assert!(rs.sandbox_cgroup_only);
    assert_eq!(rs.default_memory, q("2048Mi"));

    let tdx = &classes["kata-qemu-tdx"];
    assert_eq!(tdx.runtime, KataRuntime::GoStatic);
    assert_eq!(tdx.default_vcpus, q("0.5"));
    assert_eq!(tdx.default_memory, q("4096Mi"));
    assert_eq!((tdx.overhead_vcpus, tdx.overhead_memory), (None, None));
    assert!(tdx.sandbox_cgroup_only);
    assert_eq!(
        tdx.vmm,
        PodFixed {
            cpu: q("1"),
            memory: q("2Gi")
        }
    );
    assert_eq!(tdx.guest_memory, GuestMemory::Account);

    let tuned = &classes["tuned-rs"];
    assert_eq!(tuned.overhead_vcpus, Some(q("400m")));
    assert_eq!(tuned.overhead_memory, Some(q("128Mi")));
    assert!(!tuned.sandbox_cgroup_only);

    assert_eq!(policy.kata.pods.fill_limits, FillLimits::None);
    assert_eq!(policy.kata.pods.min_memory, q("512Mi"));
}

// === builtin and digest ===

#[test]
fn builtin_is_kubevirt_defaults() {
    let parsed = ValidPolicy::from_yaml(BUILTIN_POLICY_YAML).unwrap();
    let builtin = ValidPolicy::builtin();
    assert_eq!(builtin, parsed);
    // the fallback used if the embedded file ever failed to parse is the same policy
    assert_eq!(
        builtin,
        ValidPolicy::kubevirt_defaults(builtin.digest.clone())
    );
    assert_eq!(
        builtin.profiles,
        BTreeMap::from([("default".to_owned(), Profile::kubevirt_defaults("default"))])
    );
    let default = &builtin.profiles["default"];
    assert_eq!(default.cpu_allocation_ratio, 10);
    assert_eq!(default.memory_overcommit_percent, 100);
    assert_eq!(default.guest_overhead, GuestOverhead::Request);
    assert_eq!(default.overhead_ratio.text, "1.0");
    assert!(default.overhead_ratio.is_one());
    assert!(default.overhead_margin.is_zero());
    assert_eq!(default.limits, LimitsPolicy::None);
    assert_eq!(
        default.limits_ratio,
        LimitsRatio {
            cpu: None,
            memory: None
        }
    );
    assert_eq!(default.mode, Mode::Enforce);
    assert_eq!(builtin.kubevirt.release, Release::V1_9);
    assert_eq!(builtin.kubevirt.architecture, "amd64");
    assert!(builtin.rules.is_empty());
    assert_eq!(builtin.on_error, OnError::Allow);
    assert!(builtin.kata.runtime_classes.is_empty());
    assert_eq!(builtin.kata.pods, KataPodSettings::default());
    assert_eq!(builtin.kata.pods.fill_limits, FillLimits::FromRequests);
    assert_eq!(builtin.kata.pods.min_memory, q("256Mi"));
}

#[test]
fn builtin_selects_default_for_everything() {
    let builtin = ValidPolicy::builtin();
    let none = BTreeMap::new();
    let selection = builtin.select(&Subject {
        namespace: "anything",
        namespace_labels: &none,
        vm_labels: &none,
        requested_profile: Some("gold"),
    });
    assert_eq!(selection.profile, &Profile::kubevirt_defaults("default"));
    assert_eq!(selection.reason, "no rule matched → default");
    assert_eq!(selection.warnings.len(), 1);
}

#[test]
fn digest_is_sha256_of_the_exact_bytes() {
    let text = HEADER.to_owned();
    let policy = ValidPolicy::from_yaml(&text).unwrap();
    // sha256 of "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n" (sha256sum)
    assert_eq!(
        policy.digest,
        "sha256:aef84c3a7be3b46fb4fbf2185d49e118adf975dadf5e2c149348a9ca262a6fc6"
    );
    assert_eq!(ValidPolicy::from_yaml(&text).unwrap().digest, policy.digest);
    // one more byte (a trailing space) changes it, though the policy is the same
    let changed = ValidPolicy::from_yaml(&format!("{text} ")).unwrap();
    assert_ne!(changed.digest, policy.digest);
    assert_eq!(
        ValidPolicy {
            digest: policy.digest.clone(),
            ..changed
        },
        policy
    );
}

#[test]
fn digest_format() {
    let digest = ValidPolicy::builtin().digest;
    let hex = digest.strip_prefix("sha256:").unwrap();
    assert_eq!(hex.len(), 64);
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

#[test]
fn an_empty_profile_annotation_is_no_request() {
    let (profile, _, reason, warnings) = opt_in("team-a", "dev", Some(""));
    assert_eq!(profile, "dev");
    assert_eq!(reason, "rules[1] (namespaceSelector tier=dev) → dev");
    assert!(warnings.is_empty());
}
