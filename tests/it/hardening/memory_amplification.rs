//! Memory amplification.

use super::*;

/// A review whose kept field `field` is a list of `item`, `length` bytes
/// long.
fn amplification_body(length: usize, field: &str, item: &str) -> Vec<u8> {
    let head = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"","version":"v1","kind":"Pod"}},"operation":"CREATE","namespace":"n","object":{{"apiVersion":"v1","kind":"Pod",{field}:[{item}"#
    );
    let tail = br"]}}}}";
    let mut body = head.into_bytes();
    let next = format!(",{item}");
    while body.len() + next.len() + tail.len() <= length {
        body.extend_from_slice(next.as_bytes());
    }
    body.resize(length - tail.len(), b' ');
    body.extend_from_slice(tail);
    body
}

#[test]
fn memory_amplification_16_concurrent_max_size_bodies_stay_under_200_mib() {
    let _alone = measuring();
    let binary = Binary::spawn(&[], Stdio::null(), None);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = binary.http1_client();
    runtime.block_on(async {
        let response = binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()).await;
        assert_eq!(response.status(), StatusCode::OK);
    });
    let baseline = binary.memory_kib("VmRSS");
    // The two shapes that cost the most kept per byte of body: a list of
    // zeros (a 32-byte value per two bytes) and maps of one kept field
    // (a whole B-tree node per 11 bytes). Each is cut at the kept bound.
    let bodies = [
        amplification_body(
            server::MAX_BODY_BYTES,
            r#""metadata":{"ownerReferences""#,
            "0",
        ),
        amplification_body(
            server::MAX_BODY_BYTES,
            r#""spec":{"containers""#,
            r#"{"name":0}"#,
        ),
    ];
    for body in &bodies {
        assert_eq!(body.len(), server::MAX_BODY_BYTES);
    }
    runtime.block_on(async {
        let mut sends = Vec::new();
        for index in 0..16 {
            let (http, body, url) = (
                http.clone(),
                bodies[index % 2].clone(),
                binary.url("/mutate"),
            );
            sends.push(tokio::spawn(async move {
                http.post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("answered")
            }));
        }
        // Each body is read to its end (an object over the kept bytes is
        // answered with its uid), so the bodies hold the body budget (eight
        // at the cap) while they are read and decoded: the others wait, and
        // the budget takes back the ones that hold it longest (408).
        let mut answered = 0;
        for send in sends {
            let response = send.await.expect("task");
            if response.status() == StatusCode::REQUEST_TIMEOUT {
                continue;
            }
            // Answered per onError (the built-in policy: Allow), with the
            // request's uid.
            assert_eq!(response.status(), StatusCode::OK);
            answered += 1;
            let answer: Value = response.json().await.expect("json");
            assert_eq!(answer["response"]["uid"], "u", "{answer}");
            assert_eq!(answer["response"]["allowed"], true, "{answer}");
            assert!(
                answer["response"]["warnings"][0]
                    .as_str()
                    .is_some_and(|warning| warning.contains("larger than this server keeps")),
                "{answer}"
            );
        }
        assert!(answered >= 2, "only {answered} of 16 answered 200");
        eprintln!("{answered} of 16 answered 200 per onError, the others 408");
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
