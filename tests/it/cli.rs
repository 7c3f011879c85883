//! The binary's verbs and exit codes, run on the fixtures.

use std::process::{Command, Output};

fn virt_sizer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

/// `review` of the example dev launcher Pod with the example policy, its
/// VMI and the dev namespace's labels, plus `flags`.
fn review_dev(flags: &[&str]) -> Output {
    let mut args = vec![
        "review",
        "--policy",
        "examples/policy.yaml",
        "--vmi",
        "examples/vmi-dev.yaml",
        "--namespace-labels",
        "tier=dev",
    ];
    args.extend_from_slice(flags);
    args.push("examples/launcher-pod-dev.json");
    virt_sizer(&args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn test_verb_passes_the_fixture_cases() {
    let output = virt_sizer(&["test", "tests/fixtures/cases"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let last = text.lines().last().expect("summary line");
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    let passed: usize = last
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(passed >= 15, "{last}");
}

#[test]
fn test_verb_fails_with_exit_1_and_a_diff() {
    let junit = tempfile::NamedTempFile::new().expect("tempfile");
    let junit_path = junit.path().to_str().expect("utf-8").to_owned();
    let output = virt_sizer(&["test", "tests/fixtures/failing", "--junit", &junit_path]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL"), "{text}");
    // The diff names the field, the expected and the actual value.
    assert!(
        text.contains(
            "compute.requests.memory: expected 1Gi (1073741824), got 1292Mi (1354760192)"
        ),
        "{text}"
    );
    assert!(
        text.lines().last().expect("summary").ends_with(" 1 failed"),
        "{text}"
    );
    let report = std::fs::read_to_string(junit.path()).expect("junit written");
    assert!(
        report.contains("<testsuite name=\"virt-sizer\" tests=\"1\" failures=\"1\" errors=\"0\">"),
        "{report}"
    );
    assert!(report.contains("<failure message="), "{report}");
}

#[test]
fn test_verb_exits_2_on_an_unusable_case_naming_file_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("broken.yaml"),
        "input: pod.yaml\nexpect:\n  allowed: true\n  computee: {}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("missing-input.yaml"),
        "input: nowhere.yaml\nexpect: {allowed: true}\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("not-a-case.yaml"), "just: data\n").expect("write");
    let output = virt_sizer(&["test", dir.path().to_str().expect("utf-8")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("broken.yaml") && text.contains("expect.computee: unknown field `computee`"),
        "{text}"
    );
    assert!(
        text.contains("missing-input.yaml") && text.contains("nowhere.yaml"),
        "{text}"
    );
    assert!(
        !text.contains("not-a-case.yaml"),
        "files without expect: are not cases\n{text}"
    );
}

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
fn review_prints_the_response_and_explains() {
    let output = review_dev(&[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let response: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        response["response"]["uid"],
        "7f3b1c2a-0000-4000-8000-000000000001"
    );
    assert_eq!(response["response"]["patchType"], "JSONPatch");
    assert_eq!(response["response"]["auditAnnotations"]["profile"], "dev");

    let explained = review_dev(&["--explain"]);
    let text = stdout(&explained);
    assert!(text.contains("profile: dev"), "{text}");
    assert!(text.contains("cpuAllocationRatio 20"), "{text}");
    assert!(text.contains("× 100/150"), "{text}");

    let patched = review_dev(&["--patched"]);
    let pod: serde_json::Value = serde_json::from_slice(&patched.stdout).expect("JSON object");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(
        pod["metadata"]["annotations"]["virt-sizer.io/decision"]
            .as_str()
            .map(|s| s.starts_with("profile=dev,")),
        Some(true)
    );
}

#[test]
fn review_rejects_bad_input_with_exit_2_and_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"kind\": \"AdmissionReview\", \"apiVersion\": \"admission.k8s.io/v1\", \"request\": {\"uid\": 5}}").expect("write");
    let output = virt_sizer(&["review", bad.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("request.uid"), "{message}");

    let output = virt_sizer(&[
        "review",
        "--policy",
        "tests/fixtures/policies/invalid-many-errors.yaml",
        "examples/launcher-pod-dev.json",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid policy"));
}

#[test]
fn plan_counts_vms_per_node() {
    // Built-in policy, 4 vCPU × 16Gi: cpu 4/10 = 400m; memory 16Gi + overhead
    // (220Mi + 4 × 8Mi + 8Mi + 32Mi = 292Mi) = 16676Mi.
    // 256Gi = 262144Mi → ⌊262144 / 16676⌋ = 15 (memory); ⌊64000m / 400m⌋ = 160 (cpu).
    let output = virt_sizer(&["plan", "--node", "cpu=64,memory=256Gi", "--vm", "4x16Gi"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    let row = text
        .lines()
        .find(|line| line.starts_with("default"))
        .expect("default row");
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &columns[..6],
        ["default", "4x16Gi", "400m", "16676Mi", "-", "15"],
        "{row}"
    );
    assert_eq!(columns[6], "memory");

    let output = virt_sizer(&["plan", "--node", "cpu=64", "--vm", "4x16Gi"]);
    assert_eq!(output.status.code(), Some(2));
}
