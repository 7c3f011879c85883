//! The binary: embedded default and SIGTERM.

use super::*;

#[test]
fn serve_embedded_default_writes_its_ca_and_exits_on_sigterm() {
    install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--vmi-dir",
        ])
        .arg(repo("examples"))
        .arg("--ca-out")
        .arg(&ca)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let all_lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let collected = all_lines.clone();
    let (lines, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            collected.lock().expect("lock").push(line.clone());
            let _ = lines.send(line);
        }
    });
    let mut address = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while address.is_none() && Instant::now() < deadline {
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200))
            && let Ok(log) = serde_json::from_str::<Value>(&line)
            && log["message"] == "listening"
        {
            address = log["address"].as_str().map(str::to_owned);
        }
    }
    let address = address.expect("a 'listening' log line with the address");
    let port = address.rsplit(':').next().expect("port");
    let ca_pem = std::fs::read_to_string(&ca).expect("the CA was written");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let http = client(&[&ca_pem]);
        let response = post_review(
            &http,
            &format!("https://localhost:{port}/mutate"),
            EXAMPLE_REVIEW.as_bytes(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body["response"]["uid"],
            "7f3b1c2a-0000-4000-8000-000000000001"
        );
        assert!(
            crate::support::was_sized(&body),
            "built-in policy + VMI dir sizes the Pod"
        );
    });

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // One decision line, and no object body or key material in any line.
    std::thread::sleep(Duration::from_millis(200));
    let logs = all_lines.lock().expect("lock").join("\n");
    assert!(
        logs.contains("\"message\":\"admission decision\""),
        "{logs}"
    );
    for secret in [
        "BEGIN",
        "PRIVATE KEY",
        "--qemu-timeout",
        "virt-launcher-monitor",
        "ovmf",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
    }
}
