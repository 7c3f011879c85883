//! Reinvocation: a second mutating webhook, served by this test on
//! loopback and registered after virt-sizer (`zz-…` sorts after
//! `virt-sizer`) with `reinvocationPolicy: IfNeeded`, changes launcher Pods
//! after virt-sizer has sized them. The apiserver then calls virt-sizer
//! again (its webhook is `IfNeeded` too):
//!
//! * when the later webhook only adds a label, the second call returns no
//!   patch and the stored Pod is sized as before;
//! * when it puts KubeVirt's CPU request back, the second call sizes it
//!   again and the stored Pod is still sized right.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};
use virt_sizer::admission::DECISION_ANNOTATION;
use virt_sizer::server::tls::{CertStore, generate_self_signed};

use super::api::{self, Kind, Resources};
use super::control_plane::{self, free_port};
use super::objects;
use super::webhook::{Serve, register};
use crate::support::{VmiSpec, compute_resources, q};

const NAMESPACE: &str = "reinvoke-e2e";
/// The label the test webhook adds.
const TOUCHED_LABEL: &str = "e2e.virt-sizer.io/touched";
/// Pods with this annotation also get KubeVirt's CPU request put back.
const RESET_ANNOTATION: &str = "e2e.virt-sizer.io/reset-cpu";

/// One call the test webhook saw.
#[derive(Debug, Clone)]
struct Call {
    pod: String,
    /// virt-sizer's decision annotation was already there.
    after_virt_sizer: bool,
    /// The Pod's compute CPU request at the time.
    cpu: Option<String>,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// The later webhook: adds [`TOUCHED_LABEL`] (once), and with
/// [`RESET_ANNOTATION`] also sets the compute CPU request back to `1200m`.
async fn touch(State(calls): State<Calls>, Json(review): Json<Value>) -> Json<Value> {
    let request = &review["request"];
    let pod = &request["object"];
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    calls.lock().expect("lock").push(Call {
        pod: name,
        after_virt_sizer: pod["metadata"]["annotations"][DECISION_ANNOTATION].is_string(),
        cpu: pod["spec"]["containers"][0]["resources"]["requests"]["cpu"]
            .as_str()
            .map(str::to_owned),
    });
    let mut response = json!({"uid": request["uid"], "allowed": true});
    if pod["metadata"]["labels"][TOUCHED_LABEL].is_null() {
        let mut ops = vec![json!({"op": "add",
            "path": format!("/metadata/labels/{}", TOUCHED_LABEL.replace('/', "~1")),
            "value": "true"})];
        if pod["metadata"]["annotations"][RESET_ANNOTATION].is_string() {
            ops.push(json!({"op": "replace",
                "path": "/spec/containers/0/resources/requests/cpu", "value": "1200m"}));
        }
        let patch = serde_json::to_vec(&ops).expect("JSON");
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    Json(
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": response}),
    )
}

/// Serves [`touch`] over TLS on 127.0.0.1 until the returned sender drops.
async fn start_touch_webhook(calls: Calls) -> (u16, String, tokio::sync::oneshot::Sender<()>) {
    let pem = generate_self_signed(&["127.0.0.1"]).expect("certificates");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = CertStore::from_pem(
        pem.cert_pem.as_bytes(),
        pem.key_pem.as_bytes(),
        provider.clone(),
    )
    .expect("certificate");
    let tls = virt_sizer::server::tls::server_config(Arc::new(store), None, provider)
        .expect("TLS configuration");
    let port = free_port().expect("a free port");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let router = axum::Router::new()
        .route("/touch", post(touch))
        .with_state(calls);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(virt_sizer::server::serve(
        listener,
        Arc::new(tls),
        router,
        virt_sizer::server::ServeOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    (port, pem.ca_pem, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_webhook_makes_the_apiserver_call_virt_sizer_again() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let server = Serve::with_e2e_policy().start(session.plane).await;
    let calls: Calls = Arc::default();
    let (port, ca_pem, _stop) = start_touch_webhook(calls.clone()).await;
    api::namespace(client, NAMESPACE, &[("tier", "dev")]).await;

    let later = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-e2e-touch"},
        "webhooks": [{
            "name": "touch.e2e.virt-sizer.io",
            "clientConfig": {
                "url": format!("https://127.0.0.1:{port}/touch"),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&ca_pem),
            },
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "objectSelector": {"matchLabels": {"kubevirt.io": "virt-launcher"}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded",
        }],
    });
    let mut configurations = vec![later];
    configurations.extend(server.webhook_configurations(session.plane, "manifests/base"));
    register(&session, &configurations).await;

    // 12 vCPUs (6 cores × 2 threads), guest 2Gi, in a tier=dev namespace:
    // KubeVirt renders 12/10 = 1200m; the dev profile (ratio 20) makes it
    // 12/20 = 600m.
    let mut spec = VmiSpec::simple("runner", 2048);
    spec.cores = 6;
    spec.threads = 2;
    let vmi = api::create(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&spec, NAMESPACE),
    )
    .await;
    let rendered = |name: &str| {
        // Overhead 220 + 12×8 + 8 + 32 = 356Mi; memory 2048 + 356 = 2404Mi.
        let mut pod = objects::launcher_pod(
            &vmi,
            compute_resources(&[("cpu", "1200m"), ("memory", "2404Mi")], &[]),
        );
        pod["metadata"]["name"] = json!(name);
        pod
    };

    // 1. The later webhook only labels the Pod.
    let labelled = api::create(client, Kind::Pod, &rendered("virt-launcher-runner-label")).await;
    // 2. It also puts KubeVirt's CPU request back.
    let mut pod = rendered("virt-launcher-runner-reset");
    pod["metadata"]["annotations"][RESET_ANNOTATION] = json!("true");
    let reset = api::create(client, Kind::Pod, &pod).await;

    for stored in [&labelled, &reset] {
        let name = stored["metadata"]["name"].as_str().expect("name");
        assert_eq!(
            stored["metadata"]["labels"][TOUCHED_LABEL], "true",
            "{name}"
        );
        assert_eq!(
            Resources::compute(stored).request("cpu"),
            Some(q("600m")),
            "{name}"
        );
        assert!(
            api::annotation(stored, DECISION_ANNOTATION)
                .is_some_and(|text| text.starts_with("profile=dev,")),
            "{name}"
        );
        // virt-sizer ran before the later webhook (whose first call already
        // saw the decision), and the later webhook was not needed again
        // after virt-sizer's second call.
        let seen: Vec<Call> = calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|call| call.pod == name)
            .cloned()
            .collect();
        assert!(
            !seen.is_empty() && seen[0].after_virt_sizer,
            "{name}: {seen:?}"
        );
        assert_eq!(seen[0].cpu.as_deref(), Some("600m"), "{name}: {seen:?}");
    }

    // virt-sizer's log: two decisions per Pod, in order.
    let of_pod = |lines: &[Value], name: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|line| line["namespace"] == NAMESPACE && line["name"] == name)
            .cloned()
            .collect()
    };
    let all = server
        .decisions_once(|lines| of_pod(lines, "virt-launcher-runner-reset").len() >= 2)
        .await;
    let decisions = |name: &str| of_pod(&all, name);
    let labelled_decisions = decisions("virt-launcher-runner-label");
    assert_eq!(labelled_decisions.len(), 2, "{labelled_decisions:#?}");
    assert!(
        labelled_decisions[0]["patch_ops"].as_u64() > Some(0),
        "{labelled_decisions:#?}"
    );
    assert_eq!(
        labelled_decisions[1]["patch_ops"], 0,
        "{labelled_decisions:#?}"
    );

    let reset_decisions = decisions("virt-launcher-runner-reset");
    assert_eq!(reset_decisions.len(), 2, "{reset_decisions:#?}");
    assert!(
        reset_decisions[1]["patch_ops"].as_u64() > Some(0),
        "{reset_decisions:#?}"
    );
    assert!(
        reset_decisions[1]["changes"]
            .as_array()
            .is_some_and(|changes| changes.iter().any(|change| {
                change["field"]
                    .as_str()
                    .is_some_and(|field| field.ends_with("requests.cpu"))
                    && change["new"] == "600m"
            })),
        "{reset_decisions:#?}"
    );
}
