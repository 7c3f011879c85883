//! `virt-sizer policy check`.

use super::*;

#[test]
fn policy_check_reports_every_problem() {
    let output = virt_sizer(&["policy", "check", "tests/fixtures/policies/team.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains(": ok ("));

    let output = virt_sizer(&[
        "policy",
        "check",
        "tests/fixtures/policies/invalid-many-errors.yaml",
    ]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let problems = text
        .lines()
        .filter(|line| line.contains("invalid-many-errors.yaml: "))
        .count();
    assert!(
        problems >= 6,
        "expected every problem, got {problems}:\n{text}"
    );
}

#[test]
fn policy_check_reports_a_type_error_with_the_rest_and_suggests_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yaml");
    std::fs::write(
        &file,
        "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n\
         profiles:\n  dev: {cpuAllocationRatoi: 3}\n\
         rules:\n  - namespaces: prod-*\n    profile: dev\n\
         onError: deny\n",
    )
    .expect("write");
    let output = virt_sizer(&["policy", "check", file.to_str().expect("utf-8")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    for expected in [
        "profiles.dev.cpuAllocationRatoi: unknown field (did you mean cpuAllocationRatio?)",
        "rules[0].namespaces: invalid type: string \"prod-*\", expected a sequence",
        "onError: must be one of Allow, Deny, got \"deny\" (did you mean Deny?)",
        "3 problem(s)",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}
