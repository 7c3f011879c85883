//! Tests for the sizing policy: parsing, validation, inheritance, selection.

use std::collections::BTreeMap;

use rstest::rstest;

use super::super::kata::{FillLimits, GuestMemory, KataPodSettings};
use super::*;

/// The contract's example policy, which sets every field, verbatim.
const CONTRACT_EXAMPLE: &str = r#"
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
        Err(errors) => {
            assert_eq!(errors.n_more, 0, "more problems than listed");
            errors
                .listed
                .into_iter()
                .map(|e| (e.path, e.message))
                .collect()
        }
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

// === the contract example ===

#[test]
fn spec_example_parses_and_resolves() {
    let policy = ValidPolicy::from_yaml(CONTRACT_EXAMPLE).unwrap();
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
    let policy = ValidPolicy::from_yaml(CONTRACT_EXAMPLE).unwrap();
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

    // rules[1] matches only with the VM label class=batch, which the VM
    // owner sets: no rule without vmSelector matches team-a, so the labels
    // may choose nothing but `default`, and policy check says the rule
    // never applies.
    let chosen = policy.select(&target("team-a", &dev_ns, &batch, None));
    assert_eq!(chosen.profile.name, "default");
    assert_eq!(chosen.rule, None);
    assert_eq!(
        chosen.warnings,
        [
            "profile \"dev\" selected by VM labels (rules[1] (namespaceSelector tier=dev, vmSelector \
          class=batch)) refused: no rule without vmSelector matched, so the VM owner may choose no \
          profile; using default"
        ]
    );
    assert_eq!(policy.warnings.len(), 1, "{:?}", policy.warnings);
    assert!(
        policy.warnings[0].starts_with("rules[1] (namespaceSelector tier=dev, vmSelector class=batch): selects \"dev\" by VM labels"),
        "{:?}",
        policy.warnings
    );

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

#[test]
fn kata_classes_read_memory_block_size_and_enable_annotations() {
    let policy = parse(
        r#"
kata:
  runtimeClasses:
    kata-qemu:
      runtime: go
      vmm: {cpu: 250m, memory: 160Mi}
      memoryBlockSize: 256Mi
      enableAnnotations: ["default_vcpus", "^default_memory$"]
    kata-fc:
      runtime: go-static
      vmm: {cpu: 250m, memory: 130Mi}
      enableAnnotations: []
    kata-qemu-runtime-rs:
      runtime: runtime-rs
      vmm: {cpu: 250m, memory: 320Mi}
"#,
    );
    let classes = &policy.kata.runtime_classes;
    let qemu = &classes["kata-qemu"];
    assert_eq!(qemu.memory_block_size, q("256Mi"));
    assert_eq!(qemu.memory_block_mib(), 256);
    assert_eq!(
        qemu.enable_annotations.patterns(),
        ["default_vcpus", "^default_memory$"]
    );
    assert!(
        qemu.enable_annotations
            .enables("io.katacontainers.config.hypervisor.default_memory")
    );
    // An empty list enables nothing; a static class never hot-adds.
    let fc = &classes["kata-fc"];
    assert!(fc.enable_annotations.patterns().is_empty());
    assert!(
        !fc.enable_annotations
            .enables("io.katacontainers.config.hypervisor.kernel_params")
    );
    assert_eq!(fc.memory_block_mib(), 0);
    // Defaults: 128Mi blocks; each runtime's shipped list.
    let rs = &classes["kata-qemu-runtime-rs"];
    assert_eq!(rs.memory_block_size, q("128Mi"));
    assert_eq!(
        rs.enable_annotations.patterns(),
        [
            "enable_iommu",
            "kernel_params",
            "kernel_verity_params",
            "default_vcpus",
            "default_memory"
        ]
    );
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

#[path = "policy_tests_errors.rs"]
mod errors;

#[path = "policy_tests_select.rs"]
mod select;
use select::opt_in;

#[path = "policy_tests_bounds.rs"]
mod bounds;
