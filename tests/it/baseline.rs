//! The cluster's KubeVirt CR as the policy's baseline, releases newer than
//! the overhead table, the policy validating webhook, the probe listener and
//! the warning for a server without a VMI source.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use virt_sizer::admission::{self, OutcomeLabel};
use virt_sizer::sizing::policy::{KubevirtBaseline, ValidPolicy};
use virt_sizer::sizing::vmi::ReadVmi;

use crate::support::{self, MI, q, repo};

/// A KubeVirt CR tuned as in the issue: CPU 1:20, memory 150 %.
const TUNED_CR: &str = "apiVersion: kubevirt.io/v1\nkind: KubeVirt\n\
    metadata: {name: kubevirt, namespace: kubevirt}\n\
    spec: {configuration: {developerConfiguration: {cpuAllocationRatio: 20, memoryOvercommit: 150}}}\n\
    status: {observedKubeVirtVersion: v1.9.0}\n";

const BIN: &str = env!("CARGO_BIN_EXE_virt-sizer");

/// The example launcher Pod (12 vCPUs = 1 socket × 6 cores × 2 threads,
/// guest 2Gi) as KubeVirt v1.9 renders it under `TUNED_CR`:
/// - CPU: 12 / 20 = 0.6 → `600m`;
/// - memory: 2Gi × 100 / 150 = 2147483648 × 100 / 150 = 1431655765
///   (truncated) + overhead 220Mi + 12 × 8Mi + 8Mi IOThread + 32Mi video
///   = 356Mi = 373293056 → 1804948821.
fn example_review_rendered_for_the_tuned_cr() -> Value {
    let text = std::fs::read_to_string(repo("examples/launcher-pod-dev.json")).expect("read");
    let mut review: Value = serde_json::from_str(&text).expect("json");
    let requests =
        &mut review["request"]["object"]["spec"]["containers"][0]["resources"]["requests"];
    requests["cpu"] = json!("600m");
    requests["memory"] = json!("1804948821");
    assert_eq!(1_431_655_765 + 356 * MI, 1_804_948_821);
    review
}

/// `review` of the example launcher Pod as KubeVirt renders it for the
/// tuned CR, with its VMI and `cr` as `--kubevirt`: the response.
fn review_rendered_under(cr: &str) -> Value {
    let review = example_review_rendered_for_the_tuned_cr().to_string();
    let vmi = repo("examples/vmi-dev.yaml");
    let files = [("kv.yaml", cr), ("review.json", review.as_str())];
    let (output, _dir) = run(
        &[
            "review",
            "--vmi",
            vmi.to_str().expect("utf-8"),
            "--kubevirt",
            "kv.yaml",
            "review.json",
        ],
        &files,
    );
    assert!(output.status.success(), "{output:?}");
    let response: Value = serde_json::from_slice(&output.stdout).expect("review");
    response["response"].clone()
}

fn compute(pod: &Value) -> Value {
    pod["spec"]["containers"][0]["resources"].clone()
}

fn run(args: &[&str], files: &[(&str, &str)]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let output = Command::new(BIN)
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("runs");
    (output, dir)
}

#[test]
fn a_pod_kubevirt_rendered_under_a_tuned_cr_is_left_as_rendered() {
    let review = example_review_rendered_for_the_tuned_cr().to_string();
    let vmi = repo("examples/vmi-dev.yaml");
    let vmi = vmi.to_str().expect("utf-8");
    let files = [("review.json", review.as_str()), ("kv.yaml", TUNED_CR)];

    let (output, _dir) = run(
        &[
            "review",
            "--patched",
            "--vmi",
            vmi,
            "--kubevirt",
            "kv.yaml",
            "review.json",
        ],
        &files,
    );
    assert!(output.status.success(), "{output:?}");
    let patched: Value = serde_json::from_slice(&output.stdout).expect("pod");
    let input: Value = serde_json::from_str(&review).expect("json");
    assert_eq!(
        patched, input["request"]["object"],
        "nothing written at all"
    );
    // The response: no patch; the decision, with the CR's digest, in the
    // audit annotations.
    let response = &review_rendered_under(TUNED_CR);
    assert!(response.get("patch").is_none(), "{response}");
    let cr = KubevirtBaseline::from_value(&yaml_serde::from_str(TUNED_CR).expect("yaml"))
        .expect("valid CR");
    assert_eq!(
        response["auditAnnotations"]["kubevirt-digest"].as_str(),
        Some(cr.digest.as_str()),
        "{response}"
    );

    // The bug this fixes: without the CR, KubeVirt's defaults re-size the
    // Pod (12 / 10 = 1200m; 2Gi + 356Mi = 2404Mi).
    let (output, _dir) = run(
        &["review", "--patched", "--vmi", vmi, "review.json"],
        &files,
    );
    let patched: Value = serde_json::from_slice(&output.stdout).expect("pod");
    let requests = &compute(&patched)["requests"];
    assert_eq!(q(requests["cpu"].as_str().expect("cpu")), q("1200m"));
    assert_eq!(q(requests["memory"].as_str().expect("memory")), q("2404Mi"));
}

#[test]
fn a_file_that_is_not_a_kubevirt_cr_is_unusable_input() {
    let (output, _dir) = run(
        &["review", "--kubevirt", "kv.yaml", "-"],
        &[("kv.yaml", "apiVersion: v1\nkind: ConfigMap\n")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid KubeVirt CR kv.yaml")
            && stderr.contains("expected a KubeVirt object"),
        "{stderr}"
    );
}

/// A CR of a release virt-sizer has no overhead model for (v1.4.2, older
/// than the v1.5 line) still gives its release-independent settings, but
/// the Pod KubeVirt rendered for it is admitted unchanged with a warning
/// naming the unknown release, never sized from the 1.9 line's formulas.
/// The same CR in a cluster gives the same answer (e2e
/// `kubevirt_baseline`).
#[test]
fn an_unsupported_release_admits_the_rendered_pod_unchanged_with_a_warning() {
    let response = &review_rendered_under(&TUNED_CR.replace("v1.9.0", "v1.4.2"));
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
    let warnings = response["warnings"].to_string();
    assert!(
        warnings.contains("the KubeVirt settings observedKubeVirtVersion are unknown")
            && warnings.contains("v1.4.2")
            && warnings.contains("admitted unchanged"),
        "{warnings}"
    );
}

/// The example Pod and VMI under a cluster that runs `release`.
fn review_under_release(
    release: &str,
    policy: &str,
    reported: Option<&str>,
) -> admission::Decision {
    let cr = format!(
        "apiVersion: kubevirt.io/v1\nkind: KubeVirt\nmetadata: {{name: kv, namespace: kubevirt}}\n\
         status: {{observedKubeVirtVersion: {release}}}\n"
    );
    let cr = KubevirtBaseline::from_value(&yaml_serde::from_str(&cr).expect("yaml")).expect("CR");
    let policy = ValidPolicy::from_yaml(policy)
        .expect("policy")
        .with_baseline(Some(Arc::new(cr)));
    let text = std::fs::read_to_string(repo("examples/launcher-pod-dev.json")).expect("read");
    let mut review: Value = serde_json::from_str(&text).expect("json");
    if let Some(reported) = reported {
        review["request"]["object"]["metadata"]["annotations"]["kubevirt.io/memory-overhead-bytes"] =
            json!(reported);
    }
    let request =
        virt_sizer::commands::request_from_document(review, "dev-a", "CREATE").expect("request");
    let vmi: Value = yaml_serde::from_str(
        &std::fs::read_to_string(repo("examples/vmi-dev.yaml")).expect("read"),
    )
    .expect("yaml");
    let vmi = ReadVmi::from_value(&vmi);
    let labels = std::collections::BTreeMap::new();
    admission::review(
        &admission::Environment {
            policy: &policy,
            namespace_labels: &labels,
            vmi: admission::VmiLookup::of(Some(&vmi)),
        },
        &request,
    )
}

const HEADER: &str = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n";

#[test]
fn a_release_newer_than_the_table_admits_an_unreported_pod_unchanged() {
    let decision = review_under_release("v1.10.0", HEADER, None);
    assert_eq!(decision.outcome.label(), OutcomeLabel::Unchanged);
    assert!(decision.patch().is_none());
    assert!(
        decision.warnings.iter().any(|warning| warning.contains(
            "KubeVirt v1.10.0 is newer than virt-sizer's overhead table and this Pod does not report \
             kubevirt.io/memory-overhead-bytes: admitted unchanged"
        )),
        "{:?}",
        decision.warnings
    );
}

#[test]
fn a_release_newer_than_the_table_sizes_around_the_reported_overhead() {
    // The Pod reports 356Mi (373293056 bytes, the 1.9 line's figure for this
    // VMI); with it authoritative, 12 vCPUs / 10 = 1200m and 2Gi + 356Mi =
    // 2404Mi: what the Pod already requests, so nothing changes (no patch),
    // and the decision says which formulas were used.
    let decision = review_under_release("v1.10.0", HEADER, Some("373293056"));
    assert_eq!(decision.outcome.label(), OutcomeLabel::Unchanged);
    assert!(decision.patch().is_none());
    assert!(
        decision.warnings.iter().any(|warning| warning
            .contains("the main line's formulas size this Pod around its reported")),
        "{:?}",
        decision.warnings
    );

    // Opting into the newest line's formulas sizes an unreported Pod: main
    // adds 20Mi of QEMU overhead, 2Gi + 376Mi = 2424Mi.
    let decision = review_under_release(
        "v1.10.0",
        &format!("{HEADER}kubevirt: {{newerRelease: NewestKnown}}\n"),
        None,
    );
    assert_eq!(decision.outcome.label(), OutcomeLabel::Patched);
    let memory = decision
        .changes
        .iter()
        .find(|change| change.field.ends_with("requests.memory"))
        .and_then(|change| change.new.as_ref().and_then(admission::Written::quantity))
        .expect("memory changed");
    assert_eq!(memory, q("2424Mi"));
}

// === The policy validating webhook ===

fn policy_review(object: Value) -> String {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
           "request": {"uid": "0c5e-policy", "operation": "CREATE", "object": object}})
    .to_string()
}

fn configmap(policy: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "virt-sizer-policy", "labels": {"virt-sizer.io/policy": "true"}},
           "data": {"policy.yaml": policy}})
}

async fn validate(body: String) -> (StatusCode, Value) {
    let (router, _) = support::router();
    let (status, bytes) = support::post_to(
        &router,
        "/validate-policy",
        Some("application/json"),
        body.into_bytes(),
    )
    .await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_broken_policy_configmap_is_refused_with_the_checkers_messages() {
    let (status, answer) = validate(policy_review(configmap(&format!(
        "{HEADER}profiles:\n  default: {{cpuAllocationRatio: 0, mode: Enforced}}\n"
    ))))
    .await;
    assert_eq!(status, StatusCode::OK);
    let response = &answer["response"];
    assert_eq!(response["uid"], "0c5e-policy");
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().expect("message");
    assert!(
        message.contains("profiles.default.cpuAllocationRatio: must be ≥ 1, got 0")
            && message.contains(
                "profiles.default.mode: must be one of Enforce, Shadow, got \"Enforced\" (did you mean Enforce?)"
            ),
        "{message}"
    );
}

#[tokio::test]
async fn a_valid_policy_configmap_is_admitted_and_other_objects_pass() {
    let (_, answer) = validate(policy_review(configmap(HEADER))).await;
    assert_eq!(answer["response"]["allowed"], true);
    // A release beyond the table is admitted with its warning.
    let (_, answer) = validate(policy_review(configmap(&format!(
        "{HEADER}kubevirt: {{release: \"1.10\"}}\n"
    ))))
    .await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .is_some_and(|warning| warning.starts_with("KubeVirt 1.10 is newer")),
        "{answer}"
    );
    // A labelled ConfigMap without the key is refused; DELETE (no object)
    // passes.
    let mut no_key = configmap(HEADER);
    no_key["data"] = json!({"other.yaml": "x"});
    let (_, answer) = validate(policy_review(no_key)).await;
    assert_eq!(answer["response"]["allowed"], false);
    let (_, answer) = validate(policy_review(Value::Null)).await;
    assert_eq!(answer["response"]["allowed"], true);
    // Garbage is a 400, never a 500.
    let (status, _) = validate("{\"kind\": 3}".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

// === serve: the probe listener, and no VMI source ===

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str], env: &[(&str, &Path)]) -> Server {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    Server(command.spawn().expect("serve starts"))
}

async fn get_until_up(url: &str) -> reqwest::Response {
    // reqwest builds its TLS from the process default provider, even for a
    // plain-HTTP client.
    support::install_provider();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(url).send().await {
            return response;
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn probes_and_scrapes_need_no_client_certificate_while_mutate_does() {
    support::install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let serving = virt_sizer::server::tls::generate_self_signed(&["127.0.0.1"]).expect("pair");
    let clients = virt_sizer::server::tls::generate_self_signed(&["client"]).expect("pair");
    for (name, text) in [
        ("tls.crt", &serving.cert_pem),
        ("tls.key", &serving.key_pem),
        ("client-ca.pem", &clients.ca_pem),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let (tls_port, probe_port) = (free_port(), free_port());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let _server = serve(
        &[
            "--listen",
            &format!("127.0.0.1:{tls_port}"),
            "--probe-listen",
            &format!("127.0.0.1:{probe_port}"),
            "--cert",
            &path("tls.crt"),
            "--key",
            &path("tls.key"),
            "--client-ca",
            &path("client-ca.pem"),
            "--cluster",
            "false",
        ],
        &[],
    );
    let probes = format!("http://127.0.0.1:{probe_port}");
    let ready = get_until_up(&format!("{probes}/readyz")).await;
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{probes}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let metrics = client
        .get(format!("{probes}/metrics"))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains("virt_sizer_admission_in_flight_requests"),
        "{text}"
    );
    // No admission endpoint on the probe port.
    let mutate = client
        .post(format!("{probes}/mutate"))
        .header("content-type", "application/json")
        .body(example_review_rendered_for_the_tuned_cr().to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(mutate.status(), reqwest::StatusCode::NOT_FOUND);
    // The TLS port refuses a client without a certificate.
    let tls_client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(serving.ca_pem.as_bytes()).expect("CA")])
        .build()
        .expect("client");
    let refused = tls_client
        .post(format!("https://127.0.0.1:{tls_port}/mutate"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn without_any_vmi_source_the_server_says_so() {
    let home = tempfile::tempdir().expect("tempdir");
    let (tls_port, probe_port) = (free_port(), free_port());
    let ca = home.path().join("ca.pem");
    // No --cluster, no --vmi-dir, no kubeconfig anywhere: nothing to infer.
    let _server = serve(
        &[
            "--listen",
            &format!("127.0.0.1:{tls_port}"),
            "--probe-listen",
            &format!("127.0.0.1:{probe_port}"),
            "--ca-out",
            ca.to_str().expect("utf-8"),
        ],
        &[("HOME", home.path())],
    );
    let ready = get_until_up(&format!("http://127.0.0.1:{probe_port}/readyz")).await;
    assert_eq!(
        ready.status(),
        reqwest::StatusCode::OK,
        "dry runs still work"
    );
    let detail: Value = ready.json().await.expect("json");
    let warning = detail["vmiSource"]["warning"].as_str().expect("a warning");
    assert!(warning.contains("no Kubernetes configuration"), "{warning}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{probe_port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|line| line == "virt_sizer_vmi_source_missing 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_policy_webhook_keeps_only_what_it_reads() {
    // Everything but `kind` and `data["policy.yaml"]` is parsed and skipped,
    // not built: a million-element array elsewhere in the ConfigMap costs no
    // memory and does not change the answer.
    let mut object = configmap(HEADER);
    object["metadata"]["ownerReferences"] = json!(vec![0; 1_000_000]);
    object["data"]["other.yaml"] = json!("x".repeat(1 << 20));
    let (status, answer) = validate(policy_review(object)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    // The policy itself is kept within the decode's string bound (256 KiB):
    // a larger one is refused as undecodable, naming the bound.
    let huge = format!("{HEADER}# {}\n", "x".repeat(300 * 1024));
    let (status, answer) = validate(policy_review(configmap(&huge))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}
