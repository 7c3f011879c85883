//! Policy checker errors: every problem reported with its path.

use super::*;

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
#[case::enable_annotations_not_a_list(
    "kata: {runtimeClasses: {k: {runtime: go, vmm: {cpu: 1, memory: 1Gi}, enableAnnotations: default_vcpus}}}",
    "kata.runtimeClasses.k.enableAnnotations",
    "invalid type: string \"default_vcpus\", expected a sequence"
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
#[case::memory_block_not_mib(
    "kata: {runtimeClasses: {k: {runtime: go, vmm: {cpu: 1, memory: 1Gi}, memoryBlockSize: 100Ki}}}",
    "kata.runtimeClasses.k.memoryBlockSize",
    "must be a whole number of MiB (Kata reads it in MiB), got \"100Ki\""
)]
#[case::memory_block_static(
    "kata: {runtimeClasses: {k: {runtime: go-static, vmm: {cpu: 1, memory: 1Gi}, memoryBlockSize: 128Mi}}}",
    "kata.runtimeClasses.k.memoryBlockSize",
    "only valid with runtime: go (hotplug), not go-static"
)]
#[case::enable_annotations_bad_regex(
    "kata: {runtimeClasses: {k: {runtime: go, vmm: {cpu: 1, memory: 1Gi}, enableAnnotations: [ok, \"(\"]}}}",
    "kata.runtimeClasses.k.enableAnnotations[1]",
    "not a regular expression ("
)]
#[case::enable_annotations_not_a_string(
    "kata: {runtimeClasses: {k: {runtime: go, vmm: {cpu: 1, memory: 1Gi}, enableAnnotations: [1]}}}",
    "kata.runtimeClasses.k.enableAnnotations[0]",
    "expected a string, got number 1 (quote it)"
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
