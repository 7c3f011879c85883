//! The rest (a second SIGTERM, what admission
//! warnings may carry, a deleted VMI file).

use super::*;

#[test]
fn second_sigterm_during_drain_exits_at_once() {
    let binary = Binary::spawn(&["--shutdown-delay-seconds", "60"], Stdio::null(), None);
    binary.signal("TERM");
    // Readiness goes false, the drain waits its 60 s delay…
    std::thread::sleep(Duration::from_millis(500));
    let mut child = binary.into_child();
    assert!(child.try_wait().expect("wait").is_none(), "still draining");
    // …and a second SIGTERM ends it now.
    let began = Instant::now();
    kill(child.id(), "TERM");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if began.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second SIGTERM did not end the process");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn admission_warnings_never_carry_server_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vmi_dir = dir.path().join("vmis-f");
    std::fs::create_dir(&vmi_dir).expect("mkdir");
    let state = AppState::new(
        PolicyStore::builtin(),
        None,
        Arc::new(VmiDirectory::new(&vmi_dir).expect("dir")),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(5),
    );
    std::fs::remove_dir(&vmi_dir).expect("rmdir");
    let response = server::app(state)
        .oneshot(
            Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Body::from(EXAMPLE_REVIEW))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("warnings"), "{text}");
    assert!(!text.contains(&*dir.path().to_string_lossy()), "{text}");
    assert!(!text.contains("vmis-f"), "{text}");
}

#[tokio::test]
async fn admission_warnings_echo_client_values_capped() {
    let (router, _) = crate::bad_input::router();
    let mut review: Value = serde_json::from_str(EXAMPLE_REVIEW).expect("json");
    review["request"]["object"]["metadata"]["annotations"]["virt-sizer.io/profile"] =
        json!("p".repeat(100_000));
    let (status, body) = crate::bad_input::post(
        &router,
        Some("application/json"),
        serde_json::to_vec(&review).expect("json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).expect("json");
    let warnings = answer["response"]["warnings"].as_array().expect("warnings");
    assert!(!warnings.is_empty());
    for warning in warnings {
        let warning = warning.as_str().expect("text");
        assert!(warning.len() <= 1100, "a {}-byte warning", warning.len());
    }
    assert!(body.len() < 20_000, "a {}-byte answer", body.len());
}

#[tokio::test]
async fn deleted_vmi_file_is_no_longer_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vmi.yaml");
    std::fs::copy(repo("examples/vmi-dev.yaml"), &file).expect("copy");
    let vmis = VmiDirectory::new(dir.path()).expect("dir");
    assert!(
        vmis.get("dev-a", "ci-runner-01")
            .await
            .expect("get")
            .is_some()
    );
    std::fs::remove_file(&file).expect("rm");
    assert!(
        vmis.get("dev-a", "ci-runner-01")
            .await
            .expect("get")
            .is_none(),
        "a deleted VMI was served"
    );
}
