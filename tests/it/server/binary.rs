//! The binary: the embedded default (its CA kept across restarts) and
//! SIGTERM.

use super::*;

/// `virt-sizer serve` with the embedded default, its CA at `ca`, running;
/// every stderr line it prints, as it prints them.
struct Embedded {
    child: std::process::Child,
    port: String,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Embedded {
    /// Starts it and waits for its `listening` line.
    fn start(ca: &Path) -> Embedded {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--probe-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--vmi-dir",
            ])
            .arg(repo("examples"))
            .arg("--ca-out")
            .arg(ca)
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
        let port = address.rsplit(':').next().expect("port").to_owned();
        Embedded {
            child,
            port,
            lines: all_lines,
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn stop(mut self) -> Vec<String> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "exit status {status}");
                break;
            }
            assert!(Instant::now() < deadline, "did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The reader thread drains what is left.
        std::thread::sleep(Duration::from_millis(200));
        self.lines.lock().expect("lock").clone()
    }

    /// Reviews the example launcher Pod over TLS, trusting `ca_pem` alone:
    /// the AdmissionReview answered, or why the request failed.
    fn review(&self, ca_pem: &str) -> Result<Value, String> {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let response = client(&[ca_pem])
                .post(format!("https://localhost:{}/mutate", self.port))
                .header("content-type", "application/json")
                .body(EXAMPLE_REVIEW.as_bytes().to_vec())
                .send()
                .await
                .map_err(|error| format!("{error:?}"))?;
            assert_eq!(response.status(), StatusCode::OK);
            response.json().await.map_err(|error| format!("{error:?}"))
        })
    }
}

/// The `message` of each JSON log line.
fn messages(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|log| log["message"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_restart_of_the_embedded_default_keeps_its_ca() {
    install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let first = Embedded::start(&ca);
    let first_ca = std::fs::read_to_string(&ca).expect("the CA was written");
    first
        .review(&first_ca)
        .expect("the first server, trusted by its CA");
    let logs = messages(&first.stop());
    assert!(
        logs.iter()
            .any(|message| message.starts_with("embedded default: a new CA")),
        "{logs:?}"
    );

    // What a client (an apiserver's caBundle) was given still works.
    let second = Embedded::start(&ca);
    assert_eq!(
        std::fs::read_to_string(&ca).expect("the CA"),
        first_ca,
        "the CA file is unchanged"
    );
    second
        .review(&first_ca)
        .expect("the restarted server, trusted by the first CA");
    let logs = messages(&second.stop());
    assert!(
        logs.iter().any(|message| message
            .starts_with("embedded default: the CA and serving pair on disk are valid and kept")),
        "{logs:?}"
    );

    // A serving pair that no longer holds together is replaced: the old
    // CA is then refused, the new one written out is trusted.
    std::fs::write(dir.path().join("ca-serving.crt"), "not a certificate").expect("write");
    let third = Embedded::start(&ca);
    let third_ca = std::fs::read_to_string(&ca).expect("the CA");
    assert_ne!(third_ca, first_ca, "a new CA");
    assert!(
        third.review(&first_ca).is_err(),
        "the old CA must not verify the new pair"
    );
    third.review(&third_ca).expect("the new CA");
    third.stop();
}

#[test]
fn serve_embedded_default_writes_its_ca_and_exits_on_sigterm() {
    install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let server = Embedded::start(&ca);
    let port = server.port.clone();
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

    // One decision line, and no object body or key material in any line.
    let logs = server.stop().join("\n");
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
