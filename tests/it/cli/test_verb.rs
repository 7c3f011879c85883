//! `virt-sizer test`: the fixture cases, exit codes, selection and output.

use super::*;

/// An absolute path to a file of this repository, for case files written
/// to a temporary directory (a case's paths are relative to the case, and
/// an absolute one stays as it is).
fn repo_file(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// The dev-namespace fixture as a case, with `expect` as given: 12 vCPUs
/// (1 socket × 6 cores × 2 threads) under the dev profile's ratio 20 ask
/// for 12 / 20 = 600m.
fn dev_case(expect: &str) -> String {
    let dir = "tests/fixtures/cases/dev-namespace";
    format!(
        "policy: {}\ninput: {}\nvmi: {}\nnamespace: {{name: dev-a, labels: {{tier: dev}}}}\nexpect: {expect}\n",
        repo_file("tests/fixtures/policies/team.yaml"),
        repo_file(&format!("{dir}/launcher-pod.yaml")),
        repo_file(&format!("{dir}/vmi.yaml")),
    )
}

/// The summary line's counts, `N passed, M failed`.
fn summary(text: &str) -> (usize, usize) {
    let last = text.lines().last().expect("summary line");
    let numbers: Vec<usize> = last
        .split(' ')
        .filter_map(|word| word.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{last}");
    (numbers[0], numbers[1])
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
        text.contains("broken.yaml")
            && text.contains("expect.computee: unknown key `computee` (did you mean `compute`?)"),
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
fn test_verb_refuses_a_run_with_no_case() {
    // Inputs only (a policy, a Pod): nothing to run is unusable, not green.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        "tests/fixtures/policies/team.yaml",
        dir.path().join("policy.yaml"),
    )
    .expect("copy");
    std::fs::copy(
        "tests/fixtures/cases/dev-namespace/launcher-pod.yaml",
        dir.path().join("pod.yml"),
    )
    .expect("copy");
    let output = virt_sizer(&["test", dir.path().to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("no test cases found under")
            && stderr(&output).contains("a top-level `expect:`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn test_verb_names_the_key_a_misspelt_case_meant() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `.yml` is read as well as `.yaml`; `expects:` alone still makes a case.
    std::fs::write(
        dir.path().join("typo.yml"),
        "input: pod.yaml\nexpects: {allowed: true}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("only-typo.yaml"),
        "expects: {allowed: true}\n",
    )
    .expect("write");
    let output = virt_sizer(&["test", dir.path().to_str().expect("utf-8")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    for file in ["typo.yml", "only-typo.yaml"] {
        let block = text
            .split("ERROR ")
            .find(|block| block.contains(file))
            .unwrap_or_else(|| panic!("{file} not reported\n{text}"));
        assert!(
            block.contains("expects: unknown key `expects` (did you mean `expect`?)"),
            "{text}"
        );
    }
    assert_eq!(summary(&text), (0, 2), "{text}");
}

#[test]
fn test_verb_runs_one_case_file() {
    let output = virt_sizer(&[
        "test",
        "tests/fixtures/cases/kata/case-kata-qemu-update.yaml",
    ]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert_eq!(summary(&text), (1, 0), "{text}");

    // An input is not a case.
    let output = virt_sizer(&[
        "test",
        "tests/fixtures/cases/kata/runtimeclass-kata-qemu.yaml",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("is not a test case"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn test_verb_run_selects_by_relative_path_or_name() {
    let by_path = virt_sizer(&[
        "test",
        "tests/fixtures/cases",
        "--run",
        r"^kata/case-kata-qemu-update\.yaml$",
    ]);
    let text = stdout(&by_path);
    assert_eq!(by_path.status.code(), Some(0), "{text}");
    assert_eq!(summary(&text), (1, 0), "{text}");
    assert!(text.contains("case-kata-qemu-update.yaml"), "{text}");

    // opt-in-production.yaml's `name:` is "a dev VM opts into production …".
    let by_name = virt_sizer(&["test", "tests/fixtures/cases", "--run", "opts into prod"]);
    let text = stdout(&by_name);
    assert_eq!(summary(&text), (1, 0), "{text}");
    assert!(text.contains("opt-in-production.yaml"), "{text}");

    let none = virt_sizer(&["test", "tests/fixtures/cases", "--run", "no-such-case"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("no test case matches --run no-such-case"),
        "{}",
        stderr(&none)
    );

    let invalid = virt_sizer(&["test", "tests/fixtures/cases", "--run", "("]);
    assert_eq!(invalid.status.code(), Some(2));
}

#[test]
fn test_verb_json_output_is_one_object_per_case_then_totals() {
    let output = virt_sizer(&["test", "tests/fixtures/failing", "--output", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let records: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    let case = &records[0];
    assert_eq!(case["type"], "case");
    assert_eq!(case["passed"], false);
    assert_eq!(case["outcome"], "fail");
    assert!(
        case["file"]
            .as_str()
            .is_some_and(|file| file.ends_with("wrong-memory.yaml")),
        "{case}"
    );
    assert!(
        case["failures"]
            .as_array()
            .is_some_and(|failures| failures
                .iter()
                .any(|failure| failure.as_str().is_some_and(|text| text
                    .starts_with("compute.requests.memory: expected 1Gi (1073741824), got")))),
        "{case}"
    );
    assert_eq!(
        records[1],
        serde_json::json!({"type": "totals", "passed": 0, "failed": 1, "errors": 0, "skipped": 0})
    );
    // Keys in the order docs/ci-cases.md shows, `type` first.
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(r#"{"type":"case","name":"#)
            && lines[0].contains(r#","passed":false,"outcome":"fail","failures":["#),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        r#"{"type":"totals","passed":0,"failed":1,"errors":0,"skipped":0}"#
    );
}

#[test]
fn test_verb_compares_only_the_resources_a_case_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The compute container also has memory, ephemeral storage and device
    // requests; naming cpu alone checks cpu alone.
    std::fs::write(
        dir.path().join("cpu-only.yaml"),
        dev_case("{compute: {requests: {cpu: 600m}}}"),
    )
    .expect("write");
    // 600m = 0.6 CPU: compared by value.
    std::fs::write(
        dir.path().join("by-value.yaml"),
        dev_case("{compute: {requests: {cpu: \"0.6\"}}}"),
    )
    .expect("write");
    // `exact: true` compares the whole section: memory is there, unlisted.
    std::fs::write(
        dir.path().join("exact.yaml"),
        dev_case("{compute: {requests: {cpu: 600m}, exact: true}}"),
    )
    .expect("write");
    // `{}` means none: the dev profile sets no cpu/memory limits, but
    // KubeVirt's device limits (kvm, tun, vhost-net) are there.
    std::fs::write(
        dir.path().join("no-limits.yaml"),
        dev_case("{compute: {limits: {}}}"),
    )
    .expect("write");
    let output = virt_sizer(&["test", dir.path().to_str().expect("utf-8")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ok    ") && text.contains("by-value.yaml"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("ok    ") && line.ends_with("cpu-only.yaml")),
        "{text}"
    );
    let exact = text
        .split("FAIL  ")
        .find(|block| block.starts_with(&*dir.path().join("exact.yaml").to_string_lossy()))
        .expect("exact.yaml fails");
    assert!(
        exact.contains("compute.requests.memory: expected none, got"),
        "{text}"
    );
    assert!(!exact.contains("compute.requests.cpu"), "{text}");
    let no_limits = text
        .split("FAIL  ")
        .find(|block| block.contains("no-limits.yaml"))
        .expect("no-limits.yaml fails");
    assert!(
        no_limits.contains("compute.limits.devices.kubevirt.io/kvm: expected none, got 1"),
        "{text}"
    );
    assert_eq!(summary(&text), (2, 2), "{text}");
}
