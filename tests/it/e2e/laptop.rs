//! The webhook on a laptop against a cluster, as docs/cluster.md tells it:
//! `serve` with the embedded default, and the MutatingWebhookConfiguration
//! the document shows, its caBundle the CA file. A restart of the server
//! keeps the CA and serving pair, so the apiserver keeps trusting it:
//! launcher Pods created after the restart are sized, not let through
//! unsized by `failurePolicy: Ignore`.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use super::api::{self, Kind};
use super::control_plane::{self, free_port};
use super::objects;
use super::webhook::Serve;
use crate::support::{VmiSpec, compute_resources, repo};

/// The namespace and the label the document's configuration selects.
const NAMESPACE: &str = "vm-lab";
const LAPTOP_LABEL: (&str, &str) = ("virt-sizer.io/laptop", "true");

/// The MutatingWebhookConfiguration of docs/cluster.md's recipe (the
/// `kubectl apply -f - <<EOF` document), with the CA file's contents as the
/// caBundle its command substitution makes, and the server's port.
fn documented_configuration(ca_pem: &str, port: u16) -> Value {
    let doc = std::fs::read_to_string(repo("docs/cluster.md")).expect("docs/cluster.md");
    let yaml: Vec<&str> = doc
        .lines()
        .skip_while(|line| !line.starts_with("kubectl apply -f - <<EOF"))
        .skip(1)
        .take_while(|line| *line != "EOF")
        .collect();
    assert!(
        !yaml.is_empty(),
        "docs/cluster.md has no `kubectl apply -f - <<EOF`"
    );
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut text = String::new();
    let (mut urls, mut bundles) = (0, 0);
    for line in yaml {
        let line = if line.trim_start().starts_with("caBundle: $(") {
            bundles += 1;
            let indent = &line[..line.len() - line.trim_start().len()];
            format!("{indent}caBundle: {ca_bundle}")
        } else if line.contains("https://127.0.0.1:8443/") {
            urls += 1;
            line.replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"))
        } else {
            line.to_owned()
        };
        text.push_str(&line);
        text.push('\n');
    }
    assert_eq!((urls, bundles), (1, 1), "one url and one caBundle:\n{text}");
    let mut documents = virt_sizer::documents::parse_documents(&text).expect("YAML");
    assert_eq!(documents.len(), 1, "{text}");
    documents.remove(0)
}

/// Whether a dry-run create of `pod` comes back sized.
async fn sized(client: &kube::Client, pod: &Value) -> bool {
    api::try_create_dry_run(client, Kind::Pod, pod)
        .await
        .is_ok_and(|pod| {
            api::annotation(&pod, virt_sizer::admission::DECISION_ANNOTATION).is_some()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_laptop_webhook_keeps_the_apiservers_trust() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    api::namespace(client, NAMESPACE, &[LAPTOP_LABEL]).await;
    let vmi = api::ensure(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&VmiSpec::simple("laptop", 1024), NAMESPACE),
    )
    .await;
    // 7m: no profile gives a 1-vCPU VMI that, so a sized Pod always carries
    // the decision annotation.
    let pod = objects::launcher_pod(
        &vmi,
        compute_resources(&[("cpu", "7m"), ("memory", "1292Mi")], &[]),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let port = free_port().expect("a free port");
    let serve = Serve {
        embedded_ca: Some(ca.clone()),
        port: Some(port),
        ..Serve::with_e2e_policy()
    };
    let mut first = serve.clone().start(session.plane).await;
    let ca_before = std::fs::read_to_string(&ca).expect("the CA file");
    api::create(
        client,
        Kind::MutatingWebhookConfiguration,
        &documented_configuration(&ca_before, port),
    )
    .await;
    api::eventually(
        "the documented webhook to size a launcher Pod",
        Duration::from_secs(20),
        async || sized(client, &pod).await,
    )
    .await;
    first.stop();

    let second = serve.start(session.plane).await;
    // A connection the apiserver still holds to the first server may fail
    // once; trust is what lasts.
    api::eventually(
        "a launcher Pod sized by the restarted server",
        Duration::from_secs(10),
        async || sized(client, &pod).await,
    )
    .await;
    let stored = api::create(client, Kind::Pod, &pod).await;
    assert!(
        api::annotation(&stored, virt_sizer::admission::DECISION_ANNOTATION).is_some(),
        "the stored Pod was sized: {stored}"
    );
    assert_eq!(
        std::fs::read_to_string(&ca).expect("the CA file"),
        ca_before,
        "the restart kept the CA"
    );
    assert!(
        !second.log_text().contains("a new CA"),
        "the restarted server made a new CA:\n{}",
        second.log_text()
    );
}
