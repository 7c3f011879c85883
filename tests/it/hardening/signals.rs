//! What signals do to `virt-sizer serve`: SIGHUP reloads the policy (and
//! the certificates), every other catchable signal that would end the
//! process by default is ignored, and SIGTERM still drains and exits 0.

use super::*;

/// The policy the server reports in `/readyz`.
fn served_digest(binary: &Binary, runtime: &tokio::runtime::Runtime) -> String {
    let http = binary.client();
    runtime.block_on(async {
        let ready: Value = http
            .get(binary.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json");
        ready["policy"]["digest"]
            .as_str()
            .expect("a digest")
            .to_owned()
    })
}

#[test]
fn sighup_reloads_the_policy_that_no_file_event_announced() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // The server's policy path is a symlink into another directory: a
    // rewrite of the target raises no event in the directory the watcher
    // follows, and its poll (an hour) never comes, so only SIGHUP can make
    // the server read it again.
    let (watched, target) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let real = target.path().join("policy.yaml");
    let link = watched.path().join("policy.yaml");
    let header = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n";
    let first = format!("{header}profiles: {{default: {{cpuAllocationRatio: 4}}}}\n");
    let second = format!("{header}profiles: {{default: {{cpuAllocationRatio: 5}}}}\n");
    std::fs::write(&real, &first).expect("write");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let digest = |text: &str| {
        virt_sizer::sizing::policy::ValidPolicy::from_yaml(text)
            .expect("valid")
            .digest
    };
    let link_arg = link.display().to_string();
    let binary = Binary::spawn(
        &["--policy", &link_arg, "--reload-poll-seconds", "3600"],
        Stdio::null(),
        None,
    );
    assert_eq!(served_digest(&binary, &runtime), digest(&first));
    std::fs::write(&real, &second).expect("rewrite");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        served_digest(&binary, &runtime),
        digest(&first),
        "nothing but SIGHUP may have reloaded it"
    );
    binary.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_digest(&binary, &runtime) != digest(&second) {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the policy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(binary.terminate().success());
}

#[test]
fn stray_signals_neither_kill_nor_drain_the_server() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut binary = Binary::spawn(&[], Stdio::null(), None);
    let http = binary.client();
    for signal in [
        "USR1", "USR2", "ALRM", "IO", "PROF", "VTALRM", "XCPU", "XFSZ", "PWR", "HUP",
    ] {
        binary.signal(signal);
        // Delivery is asynchronous: give a default action time to act.
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            binary.child().try_wait().expect("wait").is_none(),
            "SIG{signal} ended the server"
        );
        let status = runtime.block_on(async {
            http.get(binary.url("/readyz"))
                .send()
                .await
                .expect("readyz")
                .status()
        });
        assert_eq!(status, StatusCode::OK, "SIG{signal} left it not ready");
    }
    let response = runtime.block_on(binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()));
    assert_eq!(response.status(), StatusCode::OK);
    // SIGTERM still drains: exit status 0, not death by a signal.
    assert!(binary.terminate().success());
}
