//! A restart with a policy file that does not load: the server starts on
//! the built-in policy (a crash loop would leave every new VM to the
//! webhook's failurePolicy), says why in `/readyz` and the metrics, and
//! takes the file as soon as it loads.

use super::*;

#[test]
fn an_invalid_policy_at_start_serves_the_builtin_policy_until_the_file_loads() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    let header = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n";
    std::fs::write(
        &path,
        format!("{header}profiles: {{default: {{cpuAllocationRatoi: 4}}}}\n"),
    )
    .expect("write");
    let path_arg = path.display().to_string();
    // Spawning asserts that the server is up and did not exit.
    let binary = Binary::spawn(
        &["--policy", &path_arg, "--reload-poll-seconds", "1"],
        Stdio::null(),
        None,
    );
    let http = binary.client();
    let get = |what: &str| {
        runtime.block_on(async {
            let response = http.get(binary.url(what)).send().await.expect("answered");
            (response.status(), response.text().await.expect("text"))
        })
    };
    let builtin = virt_sizer::sizing::policy::ValidPolicy::builtin().digest;
    let (status, body) = get("/readyz");
    assert_eq!(status, StatusCode::OK, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["policy"]["source"], "built-in", "{body}");
    assert_eq!(ready["policy"]["digest"], builtin.as_str(), "{body}");
    let rejected = ready["policy"]["rejectedReload"].as_str().expect("why");
    assert!(rejected.contains("cpuAllocationRatoi"), "{rejected}");
    let (_, metrics) = get("/metrics");
    assert_eq!(
        metric_value(&metrics, "virt_sizer_policy_builtin_fallback "),
        1.0
    );
    assert_eq!(
        metric_value(&metrics, "virt_sizer_policy_last_reload_success "),
        0.0
    );
    // Reviews are answered, with the built-in policy.
    let response = runtime.block_on(binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()));
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = runtime.block_on(response.json()).expect("json");
    assert_eq!(
        answer["response"]["auditAnnotations"]["policy-digest"],
        builtin.as_str(),
        "{answer}"
    );

    // The repaired file replaces the built-in policy.
    let repaired = format!("{header}profiles: {{default: {{cpuAllocationRatio: 4}}}}\n");
    std::fs::write(&path, &repaired).expect("repair");
    let digest = virt_sizer::sizing::policy::ValidPolicy::from_yaml(&repaired)
        .expect("valid")
        .digest;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready: Value = serde_json::from_str(&get("/readyz").1).expect("json");
        if ready["policy"]["digest"] == digest.as_str() {
            assert_eq!(ready["policy"]["source"], "file");
            assert!(ready["policy"]["rejectedReload"].is_null(), "{ready}");
            break;
        }
        assert!(Instant::now() < deadline, "the repaired file never loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, metrics) = get("/metrics");
    assert_eq!(
        metric_value(&metrics, "virt_sizer_policy_builtin_fallback "),
        0.0
    );
    assert_eq!(
        metric_value(&metrics, "virt_sizer_policy_last_reload_success "),
        1.0
    );
}
