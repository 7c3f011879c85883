//! `virt-sizer review`: the response, the explanation, and what it refuses.

use super::*;

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

/// `review` applies the server's owner-uid rule: a `--vmi` file holding a
/// VMI of the right name but another uid (deleted and recreated) is not the
/// Pod's VMI, and the answer names both uids, as `serve` does.
#[test]
fn review_refuses_a_vmi_whose_uid_is_not_the_owners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vmi = std::fs::read_to_string(crate::support::repo("examples/vmi-dev.yaml")).expect("read");
    let owner = "3f0c9a52-6b1e-4d27-8c11-000000000201";
    let other = "99999999-6b1e-4d27-8c11-000000000201";
    assert!(vmi.contains(&format!("uid: {owner}")));
    let recreated = dir.path().join("vmi.yaml");
    std::fs::write(
        &recreated,
        vmi.replace(&format!("uid: {owner}"), &format!("uid: {other}")),
    )
    .expect("write");
    let output = virt_sizer(&[
        "review",
        "--policy",
        "examples/policy.yaml",
        "--vmi",
        recreated.to_str().expect("utf-8"),
        "--namespace-labels",
        "tier=dev",
        "examples/launcher-pod-dev.json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let response: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(response["response"].get("patch").is_none(), "{response}");
    let warnings = response["response"]["warnings"].to_string();
    assert!(
        warnings.contains(&format!("the Pod's owner is VMI uid {owner}, but"))
            && warnings.contains(&format!("has uid {other}"))
            && warnings.contains("admitted unchanged (onError: Allow)"),
        "{warnings}"
    );
}
