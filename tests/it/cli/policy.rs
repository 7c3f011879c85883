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

#[test]
fn policy_check_of_16000_wrong_rules_is_linear_and_lists_100() {
    // 16,000 rules that are strings: a problem on every line. A checker
    // that re-read the document per problem took 79 s on it; one pass
    // takes milliseconds. The bound asserted is generous (a loaded CI
    // machine, the debug build); the figure is printed.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yaml");
    let n_rules = 16_000;
    std::fs::write(
        &file,
        format!(
            "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nrules:\n{}",
            "- x\n".repeat(n_rules)
        ),
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args(["policy", "check"])
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    let bound = std::time::Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("policy check still running after {bound:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    eprintln!("policy check of {n_rules} wrong rules: {elapsed:?}");
    let output = child.wait_with_output().expect("output");
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<&str> = text.lines().collect();
    // 100 problems, the count of the rest, the total.
    assert_eq!(lines.len(), 100 + 2, "{text}");
    assert!(lines[0].ends_with(": rules[0]: invalid type: string \"x\", expected a rule mapping"));
    assert!(lines[100].ends_with(": and 15900 more problems (the first 100 are listed)"));
    assert_eq!(lines[101], "16000 problem(s)");
}
