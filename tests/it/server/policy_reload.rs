//! Policy reload.

use super::*;

/// Replaces `path` with `text` in one step (write beside it, rename over).
fn replace_file(path: &std::path::Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policy_keeps_the_last_good_one_and_a_valid_one_switches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = pair();
    let mut setup = setup_in(dir.path(), &pem);
    let policy_path = dir.path().join("policy.yaml");
    let policy_v1 = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nprofiles:\n  default: {cpuAllocationRatio: 10}\n";
    std::fs::write(&policy_path, policy_v1).expect("write");
    setup.policy = Some(policy_path.clone());
    setup.vmis = Arc::new(VmiDirectory::new(&repo("examples")).expect("examples"));
    let server = TestServer::start(setup).await;
    let http = client(&[&pem.ca_pem]);

    let digest_of = |text: &str| {
        virt_sizer::sizing::policy::ValidPolicy::from_yaml(text)
            .expect("valid")
            .digest
    };
    let served_digest = || async {
        let response = post_review(&http, &server.url("/mutate"), EXAMPLE_REVIEW.as_bytes()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        body["response"]["auditAnnotations"]["policy-digest"]
            .as_str()
            .expect("digest")
            .to_owned()
    };
    assert_eq!(served_digest().await, digest_of(policy_v1));

    // A steady stream during both reloads: every request answered, and
    // decisions switch from v1 to v2 once, never back.
    let streaming = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let stream = {
        let streaming = streaming.clone();
        let http = client(&[&pem.ca_pem]);
        let url = server.url("/mutate");
        tokio::spawn(async move {
            let (mut digests, mut failures) = (Vec::new(), 0_usize);
            while streaming.load(Ordering::SeqCst) {
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(EXAMPLE_REVIEW)
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == StatusCode::OK => {
                        let body: Value = response.json().await.unwrap_or_default();
                        match body["response"]["auditAnnotations"]["policy-digest"].as_str() {
                            Some(digest) => digests.push(digest.to_owned()),
                            None => failures += 1,
                        }
                    }
                    _ => failures += 1,
                }
            }
            (digests, failures)
        })
    };

    // Written by rename, as kubelet swaps a ConfigMap volume: an in-place
    // write could be read half-done, which is a second (correct) rejection
    // or a third policy, not what this test is about.
    replace_file(
        &policy_path,
        "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nprofiles: {default: {cpuAllocationRatio: 0}}\n",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready: Value = http
            .get(server.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json");
        if ready["policy"]["rejectedReload"].is_string() {
            assert!(
                ready["policy"]["rejectedReload"]
                    .as_str()
                    .expect("text")
                    .contains("cpuAllocationRatio")
            );
            break;
        }
        assert!(Instant::now() < deadline, "invalid policy never reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        served_digest().await,
        digest_of(policy_v1),
        "last good policy still serves"
    );
    assert!(
        server
            .state
            .metrics()
            .render()
            .contains("virt_sizer_policy_reloads_total{result=\"failure\"} 1")
    );

    let policy_v2 = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nprofiles:\n  default: {cpuAllocationRatio: 4}\n";
    replace_file(&policy_path, policy_v2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_digest().await != digest_of(policy_v2) {
        assert!(Instant::now() < deadline, "valid policy never picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    streaming.store(false, Ordering::SeqCst);
    let (digests, failures) = stream.await.expect("stream task");
    assert_eq!(failures, 0, "{failures} failed requests during the reloads");
    assert!(
        digests.len() >= 10,
        "only {} requests in the stream",
        digests.len()
    );
    let (v1, v2) = (digest_of(policy_v1), digest_of(policy_v2));
    let switch = digests
        .iter()
        .position(|digest| *digest == v2)
        .expect("the stream saw v2");
    assert!(
        digests[..switch].iter().all(|digest| *digest == v1),
        "only v1 before the switch"
    );
    assert!(
        digests[switch..].iter().all(|digest| *digest == v2),
        "only v2 after it, never back"
    );
    server.stop().await;
}
