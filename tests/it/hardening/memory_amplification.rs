//! Issue 11, section 1: Memory amplification.

use super::*;

/// A review whose kept field is a huge list of zeros, `length` bytes long.
fn amplification_body(length: usize) -> Vec<u8> {
    let head = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"apiVersion":"v1","kind":"Pod","metadata":{"ownerReferences":[0"#;
    let tail = br"]}}}}";
    let mut body = head.to_vec();
    while body.len() + 2 + tail.len() <= length {
        body.extend_from_slice(b",0");
    }
    body.resize(length - tail.len(), b' ');
    body.extend_from_slice(tail);
    body
}

#[test]
fn issue_11_memory_amplification_16_concurrent_max_size_bodies_stay_under_200_mib() {
    let binary = Binary::spawn(&[], Stdio::null(), None);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = binary.http1_client();
    runtime.block_on(async {
        let response = binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()).await;
        assert_eq!(response.status(), StatusCode::OK);
    });
    let baseline = binary.memory_kib("VmRSS");
    let body = amplification_body(server::MAX_BODY_BYTES);
    assert_eq!(body.len(), server::MAX_BODY_BYTES);
    runtime.block_on(async {
        let mut sends = Vec::new();
        for _ in 0..16 {
            let (http, body, url) = (http.clone(), body.clone(), binary.url("/mutate"));
            sends.push(tokio::spawn(async move {
                http.post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("answered")
            }));
        }
        for send in sends {
            let response = send.await.expect("task");
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            let text = response.text().await.expect("text");
            assert!(text.contains("more than 64 entries"), "{text}");
        }
    });
    let peak = binary.memory_kib("VmHWM");
    assert!(
        peak < 200 * 1024,
        "peak RSS {} MiB (baseline {} MiB)",
        peak / 1024,
        baseline / 1024
    );
    // mimalloc hands freed pages back to the system when the threads that
    // own them allocate again, so the wait carries the trickle of ordinary
    // reviews a webhook always sees.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = binary.memory_kib("VmRSS");
    while now > 2 * baseline && Instant::now() < deadline {
        runtime.block_on(async {
            for _ in 0..5 {
                let response = binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()).await;
                assert_eq!(response.status(), StatusCode::OK);
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        now = binary.memory_kib("VmRSS");
    }
    eprintln!("RSS: baseline {baseline} KiB, peak {peak} KiB, after {now} KiB");
    assert!(
        now <= 2 * baseline,
        "RSS {now} KiB did not return within 2x the baseline {baseline} KiB"
    );
}
