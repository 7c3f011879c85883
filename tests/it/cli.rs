//! The binary's verbs and exit codes, run on the fixtures.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};

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

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

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

#[test]
fn review_refuses_a_document_that_is_not_kubernetes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args(["review", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"foo: bar\n")
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("not a Kubernetes object")
            && message.contains("expected an AdmissionReview")
            && message.contains("Pod or RuntimeClass"),
        "{message}"
    );
}

#[test]
fn review_says_why_a_request_is_skipped() {
    // The example review, as an UPDATE: Pods are sized on CREATE only.
    let mut review: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("examples/launcher-pod-dev.json").expect("read"),
    )
    .expect("JSON");
    review["request"]["operation"] = "UPDATE".into();
    let dir = tempfile::tempdir().expect("tempdir");
    let update = dir.path().join("update.json");
    std::fs::write(&update, review.to_string()).expect("write");
    let update = update.to_str().expect("utf-8");

    let explained = virt_sizer(&["review", "--explain", update]);
    assert!(
        stdout(&explained)
            .starts_with("outcome: skipped (launcher_pod): Pods are sized on CREATE only\n"),
        "{}",
        stdout(&explained)
    );
    // The response stays the server's: allowed, nothing else; the reason
    // goes to standard error.
    let answered = virt_sizer(&["review", update]);
    assert!(answered.status.success());
    let response: serde_json::Value = serde_json::from_slice(&answered.stdout).expect("JSON");
    assert_eq!(
        response["response"],
        serde_json::json!({"uid": "7f3b1c2a-0000-4000-8000-000000000001", "allowed": true})
    );
    assert!(
        stderr(&answered).contains("skipped: Pods are sized on CREATE only"),
        "{}",
        stderr(&answered)
    );

    // A Pod without the launcher label.
    let pod = dir.path().join("pod.json");
    std::fs::write(
        &pod,
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": [{"name": "web"}]}}"#,
    )
    .expect("write");
    let explained = virt_sizer(&["review", "--explain", pod.to_str().expect("utf-8")]);
    assert!(
        stdout(&explained).starts_with(
            "outcome: skipped (other): not a launcher Pod: label kubevirt.io=virt-launcher missing\n"
        ),
        "{}",
        stdout(&explained)
    );
}

#[test]
fn review_of_a_launcher_pod_without_its_vmi_hints_at_the_flag() {
    let args = [
        "--policy",
        "examples/policy.yaml",
        "--namespace-labels",
        "tier=dev",
        "examples/launcher-pod-dev.json",
    ];
    let answered = virt_sizer(&[&["review"][..], &args[..]].concat());
    assert!(answered.status.success());
    // The response is the server's, which knows no flags.
    assert!(
        !stdout(&answered).contains("--vmi"),
        "{}",
        stdout(&answered)
    );
    assert!(
        stdout(&answered).contains("not found"),
        "{}",
        stdout(&answered)
    );
    assert!(
        stderr(&answered).contains("pass --vmi FILE"),
        "{}",
        stderr(&answered)
    );
    let explained = virt_sizer(&[&["review", "--explain"][..], &args[..]].concat());
    assert!(
        stdout(&explained).contains(
            "hint: the Pod belongs to VirtualMachineInstance dev-a/ci-runner-01: pass --vmi FILE"
        ),
        "{}",
        stdout(&explained)
    );
}

#[test]
fn review_patched_and_explain_conflict() {
    let output = review_dev(&["--patched", "--explain"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(
        stderr(&output).contains("cannot be used with"),
        "{}",
        stderr(&output)
    );
}

/// Runs the binary with its standard output a pipe whose reader is already
/// gone, so the first write fails with EPIPE.
fn run_into_a_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.wait_with_output().expect("wait")
}

#[test]
fn a_closed_pipe_ends_quietly_with_success() {
    for args in [
        &[
            "review",
            "--policy",
            "examples/policy.yaml",
            "--vmi",
            "examples/vmi-dev.yaml",
            "examples/launcher-pod-dev.json",
        ][..],
        &["review", "--explain", "examples/launcher-pod-dev.json"],
        &["test", "tests/fixtures/cases"],
        &["test", "tests/fixtures/cases", "--output", "json"],
        &["policy", "default"],
        &["policy", "check", "tests/fixtures/policies/team.yaml"],
        &["plan", "--node", "cpu=64,memory=256Gi", "--vm", "4x16Gi"],
    ] {
        let output = run_into_a_closed_pipe(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(output.stderr.is_empty(), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    // `virt-sizer test … | head -c 10`: the reader leaves mid-stream.
    let mut child = Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args(["test", "tests/fixtures/cases"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut head = [0_u8; 10];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut head)
        .expect("10 bytes");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
}

#[test]
fn plan_refuses_a_memory_or_page_size_that_cannot_be() {
    // `4x16` is 16 bytes of memory, not 16Gi.
    let output = virt_sizer(&["plan", "--node", "cpu=64,memory=256Gi", "--vm", "4x16"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot be a VM (did you mean 16Gi?)"),
        "{}",
        stderr(&output)
    );
    // 2M is 2,000,000 bytes: no hugepage size; the node's resource is
    // hugepages-2Mi.
    let output = virt_sizer(&[
        "plan",
        "--node",
        "cpu=64,memory=256Gi",
        "--vm",
        "4x16Gi,hugepages=2M",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output)
            .contains("2M is not a hugepage size on amd64 (2Mi, 1Gi); did you mean 2Mi?"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn plan_columns_line_up() {
    let output = virt_sizer(&[
        "plan",
        "--policy",
        "examples/policy.yaml",
        "--node",
        "cpu=64,memory=256Gi,hugepages-1Gi=128Gi",
        "--vm",
        "2x4Gi",
        "--vm",
        "16x64Gi,dedicated",
        "--vm",
        "8x32Gi,hugepages=1Gi",
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    let mut lines = text.lines().skip(1);
    let header = lines.next().expect("header");
    // Numbers end where their header ends; the last column starts where its
    // header starts.
    let fit_end = header.find("fit").expect("fit") + "fit".len();
    let held_start = header.find("guest memory held").expect("last column");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 15, "5 profiles × 3 VMs\n{text}");
    for row in rows {
        let bytes = row.as_bytes();
        assert!(bytes[fit_end - 1].is_ascii_digit(), "{row}\n{header}");
        assert_eq!(bytes[fit_end], b' ', "{row}\n{header}");
        assert_ne!(bytes[held_start], b' ', "{row}\n{header}");
        assert_eq!(bytes[held_start - 1], b' ', "{row}\n{header}");
    }
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

/// `completions <shell>` prints a script that knows every verb and flag;
/// an unknown shell is a usage error.
#[test]
fn completions_print_a_script_for_each_shell() {
    let output = virt_sizer(&["completions", "bash"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let script = stdout(&output);
    assert!(script.contains("_virt__sizer()"), "{script}");
    assert!(script.contains("complete -F _virt__sizer"), "{script}");
    for word in [
        "serve",
        "review",
        "completions",
        "--probe-listen",
        "--namespace-labels",
    ] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let output = virt_sizer(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        assert!(stdout(&output).contains("probe-listen"), "{shell}");
    }
    let output = virt_sizer(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid value 'tcsh'"),
        "{}",
        stderr(&output)
    );
}

/// The README's dry runs: every example launcher Pod finds its VMI among
/// `examples/vmi-*.yaml` (as the server's `--vmi-dir examples` does) and
/// gets the profile its namespace selects under `examples/policy.yaml`.
#[test]
fn every_example_launcher_pod_finds_its_vmi_and_profile() {
    let mut vmis: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
            .expect("examples/")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.starts_with("vmi-"))
            .map(|name| format!("examples/{name}"))
            .collect();
    vmis.sort();
    assert_eq!(vmis.len(), 3, "{vmis:?}");
    for (review, labels, profile, outcome) in [
        (
            "examples/launcher-pod-dev.json",
            "tier=dev",
            "dev",
            "patched",
        ),
        (
            "examples/launcher-pod-prod.json",
            "",
            "production",
            "patched",
        ),
        (
            "examples/launcher-pod-staging.json",
            "",
            "shadow-dev",
            "shadow",
        ),
    ] {
        let mut args = vec!["review", "--policy", "examples/policy.yaml", "--explain"];
        for vmi in &vmis {
            args.extend(["--vmi", vmi.as_str()]);
        }
        args.extend(["--namespace-labels", labels, review]);
        let output = virt_sizer(&args);
        let text = stdout(&output);
        assert!(output.status.success(), "{review}: {}", stderr(&output));
        assert!(
            text.starts_with(&format!("outcome: {outcome} (launcher_pod)"))
                && text.contains(&format!("profile: {profile} ")),
            "{review}:\n{text}"
        );
        assert!(!text.contains("not found"), "{review}:\n{text}");
    }
}
