//! Logging never blocks or panics the request path.

use super::*;

/// 1,000 reviews, each answered 200, within a bound; returns the metrics
/// text after them.
fn thousand_reviews(binary: &Binary) -> String {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = binary.client();
    runtime.block_on(async {
        let began = Instant::now();
        for index in 0..1000 {
            let response = tokio::time::timeout(
                Duration::from_secs(10),
                binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()),
            )
            .await
            .unwrap_or_else(|_| panic!("request {index} was not answered"));
            assert_eq!(response.status(), StatusCode::OK, "request {index}");
            assert!(began.elapsed() < Duration::from_secs(120));
        }
        http.get(binary.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    })
}

#[test]
fn stderr_pipe_nobody_reads_does_not_stop_answers() {
    let binary = Binary::spawn(&[], Stdio::piped(), None);
    // The pipe fills (64 KiB) and stays full: nobody reads it.
    let metrics = thousand_reviews(&binary);
    // The lines wait in the writer's bounded buffer (or are dropped, counted).
    assert!(metric_value(&metrics, "virt_sizer_log_lines_dropped_total") >= 0.0);
}

#[test]
fn stderr_on_a_full_device_does_not_stop_answers() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let binary = Binary::spawn(&[], Stdio::from(full), None);
    let metrics = thousand_reviews(&binary);
    assert!(metric_value(&metrics, "virt_sizer_log_lines_dropped_total") >= 1000.0);
}

#[test]
fn stderr_closed_or_broken_at_start_does_not_exit_101() {
    // Closed: the shell closes fd 2 before exec.
    let closed = Binary::spawn(&[], Stdio::null(), Some("exec 2>&-"));
    // Broken: a pipe whose reader is gone (every write fails with EPIPE).
    let mut broken = Binary::spawn(&[], Stdio::piped(), None);
    drop(broken.child().stderr.take());
    for binary in [closed, broken] {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let http = binary.client();
        runtime.block_on(async {
            let response = binary.post(&http, EXAMPLE_REVIEW.as_bytes().to_vec()).await;
            assert_eq!(response.status(), StatusCode::OK);
        });
        let status = binary.terminate();
        assert!(status.success(), "exit status {status}");
    }
}

#[test]
fn text_logs_escape_control_characters_and_cap_fields() {
    let mut binary = Binary::spawn(&["--log-format", "text"], Stdio::piped(), None);
    let stderr = binary.child().stderr.take().expect("stderr");
    let (lines, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .split(b'\n')
            .map_while(Result::ok)
        {
            let _ = lines.send(String::from_utf8_lossy(&line).into_owned());
        }
    });
    let mut review: Value = serde_json::from_str(EXAMPLE_REVIEW).expect("json");
    let forged = format!(
        "dev-a\r\nFORGED admission decision\u{1b}[31m{}",
        "y".repeat(2_000_000)
    );
    review["request"]["namespace"] = json!(forged);
    review["request"]["uid"] = json!("uid\nFORGED-uid");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = binary.client();
    runtime.block_on(async {
        let response = binary
            .post(&http, serde_json::to_vec(&review).expect("json"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut decision = None;
    while decision.is_none() && Instant::now() < deadline {
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            assert!(!line.starts_with("FORGED"), "a forged line: {line}");
            assert!(!line.contains('\u{1b}') && !line.contains('\r'), "{line:?}");
            assert!(line.len() < 32 * 1024, "a {}-byte line", line.len());
            if line.contains("admission decision") {
                decision = Some(line);
            }
        }
    }
    let decision = decision.expect("a decision line");
    assert!(
        decision.contains("FORGED admission decision\\u{1b}[31m"),
        "{decision}"
    );
    assert!(decision.contains("more bytes]"), "{decision}");
}
