//! Policy input is bounded: aliases and merge keys expand within
//! [`Expansion::POLICY`], and a long list of mistakes is listed in part.

use super::super::yaml::{MAX_POLICY_STRING_BYTES, MAX_POLICY_VALUES};
use super::*;

/// The root error of a policy whose aliases expand past `limit` `unit`.
fn too_large(unit: &str, limit: usize) -> Vec<(String, String)> {
    vec![(
        "(root)".to_owned(),
        format!(
            "the document expands past {limit} {unit} once its aliases are written out \
             (each `*name`, merge keys `<<: *name` included, counts in full; the bound is \
             {MAX_POLICY_VALUES} values and {MAX_POLICY_STRING_BYTES} bytes of strings)"
        ),
    )]
}

#[test]
fn a_merge_key_bomb_is_refused_naming_the_bound() {
    // Rule 0's matchLabels holds 1,000 labels (2,001 values: the mapping,
    // each key and each value); 40 more rules merge it whole. Written out,
    // that is 41 × 2,001 = 82,041 values, past 65,536, from 10 KB of text.
    // Each rule alone is valid, and the parser's own limit on aliases
    // (100 per event) lets all 40 through.
    let labels: Vec<String> = (0..1000).map(|n| format!("k{n}: v")).collect();
    let mut text = format!(
        "{HEADER}rules:
  - {{vmSelector: {{matchLabels: &labels {{{}}}}}, profile: default}}
",
        labels.join(", ")
    );
    for _ in 0..40 {
        text.push_str(
            "  - {vmSelector: {matchLabels: {<<: *labels}}, profile: default}
",
        );
    }
    assert!(text.len() < 12 * 1024, "{}", text.len());
    const { assert!(41 * 2_001 > MAX_POLICY_VALUES) };
    assert_eq!(errors_of(&text), too_large("values", MAX_POLICY_VALUES));
    // With 30 merges (31 × 2,001 = 62,031 values of labels, and a few
    // hundred more around them) it is an ordinary policy: the header's two
    // lines, `rules:`, rule 0 and 30 rules that merge.
    let within: String = text
        .lines()
        .take(4 + 30)
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(parse(&within[HEADER.len()..]).rules.len(), 31);
}

#[test]
fn an_alias_bomb_of_long_strings_is_refused_naming_the_bound() {
    // One 64 KiB namespace glob, named 17 times: 17 × 64 KiB = 1,088 KiB
    // of strings, past 1 MiB.
    let glob = "a".repeat(64 * 1024);
    let text = format!(
        "{HEADER}rules:\n  - namespaces: [&glob {glob}{}]\n    profile: default\n",
        ", *glob".repeat(16)
    );
    const { assert!(17 * 64 * 1024 > MAX_POLICY_STRING_BYTES) };
    assert_eq!(
        errors_of(&text),
        too_large("bytes of strings", MAX_POLICY_STRING_BYTES)
    );
    // Named 15 times (960 KiB) it is an ordinary policy.
    let within = format!(
        "{HEADER}rules:\n  - namespaces: [&glob {glob}{}]\n    profile: default\n",
        ", *glob".repeat(14)
    );
    assert_eq!(parse(&within[HEADER.len()..]).rules[0].namespaces.len(), 15);
}

#[test]
fn problems_past_the_listing_bound_are_counted_not_listed() {
    // 16,000 rules that are strings, not mappings: one type error each,
    // found in one pass over the document.
    let n_rules = 16_000;
    let text = format!("{HEADER}rules:\n{}", "- x\n".repeat(n_rules));
    let errors = ValidPolicy::from_yaml(&text).unwrap_err();
    assert_eq!(errors.len(), n_rules);
    assert_eq!(errors.listed.len(), MAX_LISTED_PROBLEMS);
    assert_eq!(errors.n_more, n_rules - MAX_LISTED_PROBLEMS);
    for (index, error) in errors.listed.iter().enumerate() {
        assert_eq!(error.path, format!("rules[{index}]"));
        assert_eq!(
            error.message,
            "invalid type: string \"x\", expected a rule mapping"
        );
    }
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), MAX_LISTED_PROBLEMS + 1);
    assert!(
        shown.ends_with("\nand 15900 more problems (the first 100 are listed)"),
        "{shown}"
    );
}

#[test]
fn an_unknown_profile_message_names_the_first_profiles_only() {
    // default and p00…p19: 21 profiles, the first 16 by name listed.
    let profiles: String = (0..20).map(|n| format!("  p{n:02}: {{}}\n")).collect();
    let text = format!("{HEADER}profiles:\n{profiles}rules:\n  - profile: gold\n");
    let listed: Vec<String> = std::iter::once("default".to_owned())
        .chain((0..15).map(|n| format!("p{n:02}")))
        .collect();
    assert_eq!(
        errors_of(&text),
        [(
            "rules[0].profile".to_owned(),
            format!(
                "unknown profile \"gold\" (profiles: {} and 5 more)",
                listed.join(", ")
            )
        )]
    );
}

#[test]
fn a_key_of_the_wrong_type_does_not_hide_the_rest() {
    let text = format!("{HEADER}profiles: {{1: {{}}}}\nonError: deny\n");
    assert_eq!(
        errors_of(&text),
        [
            (
                "profiles.1".to_owned(),
                "invalid type: integer `1`, expected a string".to_owned()
            ),
            (
                "onError".to_owned(),
                "must be one of Allow, Deny, got \"deny\" (did you mean Deny?)".to_owned()
            ),
        ]
    );
}

#[test]
fn a_removed_value_keeps_the_problems_of_its_key_and_drops_its_own() {
    // The profile's value is removed for its type: its name is still
    // checked. The vmm is removed: "vmm: required" would restate it.
    let text = format!(
        "{HEADER}profiles: {{\"bad name\": 3}}\n\
         kata: {{runtimeClasses: {{kata-qemu: {{runtime: go, vmm: 3}}}}}}\n"
    );
    assert_eq!(
        paths_of(&text),
        [
            "profiles.bad name",
            "kata.runtimeClasses.kata-qemu.vmm",
            "profiles.bad name",
        ]
    );
}
