//! What an operator sees of a running `virt-sizer serve`: the metrics it
//! exports (base units, build and process figures, the last reload's
//! outcome, readiness), and its logs (400s at WARN and rate-limited, one
//! decision line with `changes` as a JSON array, ASCII arrows, text logs
//! without ANSI escapes when stderr is not a terminal). Each test runs the
//! binary itself, as a Deployment does.

use std::ffi::OsStr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::repo;

/// `virt-sizer serve` with the embedded default certificate and its probe
/// port on free ports, stderr collected; killed on drop.
pub(crate) struct RunningServer {
    child: std::process::Child,
    https: String,
    probes: String,
    ca_pem: String,
    logs: Arc<Mutex<Vec<String>>>,
    _temp: tempfile::TempDir,
}

impl RunningServer {
    /// With JSON logs.
    pub(crate) fn start(args: &[&OsStr]) -> RunningServer {
        RunningServer::start_logging("json", args)
    }

    /// With `--log-format format`.
    pub(crate) fn start_logging(format: &str, args: &[&OsStr]) -> RunningServer {
        use std::io::BufRead as _;
        let temp = tempfile::tempdir().expect("tempdir");
        let ca = temp.path().join("ca.pem");
        let mut child = Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--probe-listen",
                "127.0.0.1:0",
            ])
            .args(["--log-format", format, "--ca-out"])
            .arg(&ca)
            .args(args)
            .current_dir(repo(""))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn virt-sizer serve");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let collected = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                collected.lock().expect("lock").push(line);
            }
        });
        let mut server = RunningServer {
            child,
            https: String::new(),
            probes: String::new(),
            ca_pem: String::new(),
            logs,
            _temp: temp,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while (server.https.is_empty() || server.probes.is_empty()) && Instant::now() < deadline {
            for line in server.logs() {
                let (message, address) = match serde_json::from_str::<Value>(&line) {
                    Ok(log) => (
                        log["message"].as_str().unwrap_or_default().to_owned(),
                        log["address"].as_str().unwrap_or_default().to_owned(),
                    ),
                    // Text: `… listening address=127.0.0.1:8443 …`.
                    Err(_) => (
                        line.clone(),
                        line.split_whitespace()
                            .find_map(|word| word.strip_prefix("address="))
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                };
                if message.contains("probe listener") {
                    server.probes = address;
                } else if message.contains("listening") {
                    server.https = address;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !server.https.is_empty() && !server.probes.is_empty(),
            "no 'listening' and 'probe listener' log lines:\n{}",
            server.logs().join("\n")
        );
        server.ca_pem = std::fs::read_to_string(&ca).expect("the CA was written");
        server
    }

    /// Every stderr line so far.
    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("lock").clone()
    }

    /// `GET /metrics` on the probe port, as Prometheus scrapes it.
    pub(crate) fn metrics(&self) -> String {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&self.probes).expect("connect");
        write!(
            stream,
            "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.probes
        )
        .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.contains(" 200 "), "{response}");
        body.to_owned()
    }

    /// `POST /mutate` on the TLS port: the status and the body.
    pub(crate) fn post(&self, content_type: &str, body: Vec<u8>) -> (u16, String) {
        crate::support::install_provider();
        let port = self.https.rsplit(':').next().expect("port");
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA")])
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let response = client
                .post(format!("https://localhost:{port}/mutate"))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("POST /mutate");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        })
    }

    /// Waits (bounded) until some log line satisfies `wanted`.
    pub(crate) fn wait_for_log(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.logs().into_iter().find(|line| wanted(line)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no such log line in:\n{}",
                self.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until `/metrics` satisfies `wanted`.
    pub(crate) fn wait_for_metrics(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.metrics();
            if wanted(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "metrics never matched:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the one sample `series` (name and labels, exactly).
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

fn example(file: &str) -> Vec<u8> {
    std::fs::read(repo("examples").join(file)).expect("example")
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

const SHADOW_POLICY: &str = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n\
    profiles: {default: {}, try: {cpuAllocationRatio: 20, mode: Shadow}}\n\
    rules: [{namespaces: [dev-a], profile: try}]\n";

// === Metrics ===

#[test]
fn metrics_carry_build_process_readiness_reloads_and_base_units() {
    let temp = tempfile::tempdir().expect("tempdir");
    let policy = temp.path().join("policy.yaml");
    std::fs::write(&policy, SHADOW_POLICY).expect("policy");
    let server = RunningServer::start(&[
        "--vmi-dir".as_ref(),
        repo("examples").as_os_str(),
        "--policy".as_ref(),
        policy.as_os_str(),
    ]);
    // The dev VM (12 vCPUs, KubeVirt's 1200m) under a shadow 1:20 profile:
    // 600m would be requested, 0.6 cores less, not applied.
    let (status, _) = server.post("application/json", example("launcher-pod-dev.json"));
    assert_eq!(status, 200);
    let text = server.metrics();
    let version = env!("CARGO_PKG_VERSION");
    let now = unix_now();
    for (series, check) in [
        (
            format!("virt_sizer_build_info{{version=\"{version}\"}}"),
            1.0..=1.0,
        ),
        ("virt_sizer_ready".to_owned(), 1.0..=1.0),
        (
            "virt_sizer_shadow_cpu_request_delta_cores{namespace=\"dev-a\",profile=\"try\"}"
                .to_owned(),
            -0.6..=-0.6,
        ),
        (
            "virt_sizer_shadow_memory_request_delta_bytes{namespace=\"dev-a\",profile=\"try\"}"
                .to_owned(),
            0.0..=0.0,
        ),
        (
            "virt_sizer_vmi_lookup_duration_seconds_count{result=\"found\"}".to_owned(),
            1.0..=1.0,
        ),
        (
            "virt_sizer_policy_last_reload_success".to_owned(),
            1.0..=1.0,
        ),
        (
            "virt_sizer_policy_last_reload_success_timestamp_seconds".to_owned(),
            now - 120.0..=now + 1.0,
        ),
        (
            "virt_sizer_certificate_last_reload_success".to_owned(),
            1.0..=1.0,
        ),
        (
            "virt_sizer_certificate_last_reload_success_timestamp_seconds".to_owned(),
            now - 120.0..=now + 1.0,
        ),
        ("process_cpu_seconds_total".to_owned(), 0.0..=3600.0),
        ("process_resident_memory_bytes".to_owned(), 1e6..=1e10),
        ("process_open_fds".to_owned(), 3.0..=10_000.0),
        (
            "process_start_time_seconds".to_owned(),
            now - 120.0..=now + 1.0,
        ),
    ] {
        let value = sample(&text, &series);
        assert!(
            value.is_some_and(|value| check.contains(&value)),
            "{series} = {value:?}, expected {check:?}, in\n{text}"
        );
    }
    assert!(
        !text.contains("millicores"),
        "no metric in millicores:\n{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
}

#[test]
fn a_rejected_policy_reload_shows_in_the_last_reload_gauge_until_a_good_one() {
    let temp = tempfile::tempdir().expect("tempdir");
    let policy = temp.path().join("policy.yaml");
    std::fs::write(&policy, SHADOW_POLICY).expect("policy");
    let server = RunningServer::start(&[
        "--vmi-dir".as_ref(),
        repo("examples").as_os_str(),
        "--policy".as_ref(),
        policy.as_os_str(),
        "--reload-poll-seconds".as_ref(),
        "1".as_ref(),
    ]);
    let gauge = "virt_sizer_policy_last_reload_success";
    let stamp = "virt_sizer_policy_last_reload_success_timestamp_seconds";
    let first = server.metrics();
    let loaded_at = sample(&first, stamp).expect("timestamp");

    // Written by rename, so a poll never reads half a file.
    let write = |text: &str| {
        let next = temp.path().join("policy.yaml.new");
        std::fs::write(&next, text).expect("write");
        std::fs::rename(&next, &policy).expect("rename");
    };
    write(
        "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nprofiles: {default: {cpuAllocationRatio: 0}}\n",
    );
    let rejected = server.wait_for_metrics(|text| sample(text, gauge) == Some(0.0));
    assert_eq!(
        sample(&rejected, stamp),
        Some(loaded_at),
        "no success since"
    );
    assert_eq!(
        sample(
            &rejected,
            "virt_sizer_policy_reloads_total{result=\"failure\"}"
        ),
        Some(1.0)
    );
    // The server said so at the time, and still serves.
    server.wait_for_log(|line| line.contains("new policy rejected"));
    assert_eq!(
        server
            .post("application/json", example("launcher-pod-dev.json"))
            .0,
        200
    );

    std::thread::sleep(Duration::from_millis(1100));
    write(SHADOW_POLICY.replace("20", "25").as_str());
    let recovered = server.wait_for_metrics(|text| sample(text, gauge) == Some(1.0));
    assert!(
        sample(&recovered, stamp).is_some_and(|at| at > loaded_at),
        "the timestamp moves on a success:\n{recovered}"
    );
}

// === Logs ===

/// Every 400 is counted; only the first within 10 s is logged, at WARN.
#[test]
fn bad_requests_are_logged_at_warn_at_most_every_ten_seconds() {
    let server = RunningServer::start(&["--vmi-dir".as_ref(), repo("examples").as_os_str()]);
    for _ in 0..5 {
        let (status, body) = server.post("text/plain", b"{}".to_vec());
        assert_eq!(
            (status, body.as_str()),
            (400, "Content-Type must be application/json")
        );
    }
    let text = server.metrics();
    assert_eq!(
        sample(
            &text,
            "virt_sizer_admission_errors_total{reason=\"bad_request\"}"
        ),
        Some(5.0)
    );
    let line = server.wait_for_log(|line| line.contains("bad request"));
    std::thread::sleep(Duration::from_millis(300));
    let warned: Vec<String> = server
        .logs()
        .into_iter()
        .filter(|line| line.contains("bad request"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    let log: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(log["level"], "WARN", "{log}");
    assert_eq!(
        log["message"]
            .as_str()
            .map(|m| m.starts_with("bad request")),
        Some(true)
    );
    assert_eq!(log["reason"], "Content-Type must be application/json");
    assert_eq!(log["status"], 400);
    assert_eq!(log["not_logged_since_last"], 0);
    assert_eq!(
        log["message"].as_str().map(|m| m.contains("10 s")),
        Some(true)
    );
}

/// One line per decision: `changes` is a JSON array of `{field, old,
/// new}`, and the rule that chose the profile reads with `->`, as the
/// warnings and audit annotations do.
#[test]
fn decision_line_lists_changes_as_a_json_array_with_ascii_arrows() {
    let server = RunningServer::start(&[
        "--vmi-dir".as_ref(),
        repo("examples").as_os_str(),
        "--policy".as_ref(),
        repo("examples/policy.yaml").as_os_str(),
    ]);
    let (status, body) = server.post("application/json", example("launcher-pod-prod.json"));
    assert_eq!(status, 200, "{body}");
    let response: Value = serde_json::from_str(&body).expect("JSON");
    let shown = response["response"]["warnings"].to_string()
        + &response["response"]["auditAnnotations"].to_string();
    assert!(shown.contains("->") && !shown.contains('→'), "{shown}");

    let line = server.wait_for_log(|line| line.contains("\"admission decision\""));
    assert!(!line.contains('→'), "{line}");
    let log: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(
        log["selected_by"],
        "rules[0] (namespaces prod-*) -> production"
    );
    let changes = log["changes"].as_array().expect("changes is a JSON array");
    assert!(
        changes.contains(&serde_json::json!({
            "field": "spec.containers[0].resources.requests.cpu",
            "old": "800m",
            "new": "8",
        })),
        "{changes:#?}"
    );
    assert!(
        changes.iter().all(|change| change["field"].is_string()),
        "{changes:#?}"
    );
    // Keys in the order they are written, as tracing-subscriber's own JSON
    // writes them: timestamp and level first, the decision's fields in the
    // order of the log statement, target last; each change field, old, new.
    let position = |key: &str| {
        line.find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} in {line}"))
    };
    let keys = [
        "timestamp",
        "level",
        "message",
        "uid",
        "kind",
        "changes",
        "latency_us",
        "target",
    ];
    assert!(
        keys.windows(2)
            .all(|pair| position(pair[0]) < position(pair[1])),
        "{keys:?} in this order: {line}"
    );
    assert!(
        line.contains(
            r#"{"field":"spec.containers[0].resources.requests.cpu","old":"800m","new":"8"}"#
        ),
        "{line}"
    );
}

/// `--log-format text` writes plain lines when stderr is not a terminal
/// (here a pipe): no ANSI colour escapes for a log collector to store.
#[test]
fn text_logs_carry_no_ansi_escapes_when_stderr_is_not_a_terminal() {
    let server = RunningServer::start_logging(
        "text",
        &["--vmi-dir".as_ref(), repo("examples").as_os_str()],
    );
    assert_eq!(
        server
            .post("application/json", example("launcher-pod-dev.json"))
            .0,
        200
    );
    let line = server.wait_for_log(|line| line.contains("admission decision"));
    let logs = server.logs().join("\n");
    assert!(!logs.contains('\u{1b}'), "{logs:?}");
    assert!(
        line.contains(" INFO ") && line.contains("outcome="),
        "{line}"
    );
}
