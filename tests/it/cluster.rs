//! The cluster watch cache without a cluster: a reflector store fed with
//! recorded watch events, a fake direct-GET fallback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kube::api::DynamicObject;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use virt_sizer::server::cluster::{CachedVmis, VmiGetter, trim_vmi, vmi_resource};
use virt_sizer::server::policy_store::PolicyStore;
use virt_sizer::server::vmi_source::{BoxFuture, VmiSource};
use virt_sizer::server::{self, AppState, StaticNamespaces};

const EXAMPLE_REVIEW: &str = include_str!("../../examples/launcher-pod-dev.json");

/// Counts direct GETs; answers from a fixed VMI, or hangs.
struct FakeGetter {
    calls: Arc<AtomicUsize>,
    vmi: Option<Value>,
    hang: bool,
}

impl VmiGetter for FakeGetter {
    fn get<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, String>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hang {
                std::future::pending::<()>().await;
            }
            Ok(self.vmi.clone())
        })
    }
}

fn example_vmi() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/vmi-dev.yaml"
    ))
    .expect("read");
    yaml_serde::from_str(&text).expect("yaml")
}

fn dynamic(value: &Value) -> DynamicObject {
    serde_json::from_value(value.clone()).expect("a DynamicObject")
}

struct Harness {
    writer: Writer<DynamicObject>,
    synced: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    router: axum::Router,
    source: Arc<CachedVmis<FakeGetter>>,
}

fn harness(fallback_vmi: Option<Value>, hang: bool) -> Harness {
    let writer = Writer::<DynamicObject>::new(vmi_resource());
    let synced = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let source = Arc::new(CachedVmis::new(
        writer.as_reader(),
        synced.clone(),
        FakeGetter {
            calls: calls.clone(),
            vmi: fallback_vmi,
            hang,
        },
    ));
    let state = AppState::new(
        PolicyStore::builtin(),
        None,
        source.clone(),
        Arc::new(StaticNamespaces::default()),
        Duration::from_millis(300),
    );
    Harness {
        writer,
        synced,
        calls,
        router: server::app(state),
        source,
    }
}

async fn review(router: &axum::Router) -> Value {
    let response = router
        .clone()
        .oneshot(
            Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Body::from(EXAMPLE_REVIEW))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("json")
}

#[tokio::test]
async fn a_cached_vmi_is_served_without_a_direct_get() {
    let mut harness = harness(None, false);
    harness.writer.apply_watcher_event(&Event::Init);
    harness
        .writer
        .apply_watcher_event(&Event::InitApply(dynamic(&example_vmi())));
    harness.writer.apply_watcher_event(&Event::InitDone);
    let body = review(&harness.router).await;
    assert!(body["response"]["patch"].is_string(), "{body}");
    assert_eq!(
        harness.calls.load(Ordering::SeqCst),
        0,
        "a hit needs no GET"
    );
}

#[tokio::test]
async fn a_miss_falls_back_to_a_direct_get() {
    let harness = harness(Some(example_vmi()), false);
    let body = review(&harness.router).await;
    assert!(
        body["response"]["patch"].is_string(),
        "sized from the GET: {body}"
    );
    assert_eq!(harness.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_vmi_that_exists_nowhere_follows_on_error() {
    let harness = harness(None, false);
    let body = review(&harness.router).await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
    assert!(
        body["response"]["warnings"][0]
            .as_str()
            .expect("warning")
            .contains("not found")
    );
    assert_eq!(harness.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_hanging_get_times_out_and_follows_on_error() {
    let harness = harness(None, true);
    let began = Instant::now();
    let body = review(&harness.router).await;
    assert!(began.elapsed() < Duration::from_secs(2));
    assert_eq!(body["response"]["allowed"], true);
    assert!(
        body["response"]["warnings"][0]
            .as_str()
            .expect("warning")
            .contains("timed out after 300 ms"),
        "{body}"
    );
}

#[tokio::test]
async fn a_deleted_vmi_leaves_the_cache() {
    let mut harness = harness(None, false);
    let vmi = dynamic(&example_vmi());
    harness
        .writer
        .apply_watcher_event(&Event::Apply(vmi.clone()));
    assert!(
        harness.source.describe().contains("(1 VMIs"),
        "{}",
        harness.source.describe()
    );
    let cached = harness
        .source
        .get("dev-a", "ci-runner-01")
        .await
        .expect("lookup");
    assert_eq!(cached.expect("cached")["metadata"]["name"], "ci-runner-01");
    assert_eq!(harness.calls.load(Ordering::SeqCst), 0);
    harness.writer.apply_watcher_event(&Event::Delete(vmi));
    assert!(
        harness.source.describe().contains("(0 VMIs"),
        "{}",
        harness.source.describe()
    );
    assert!(
        harness
            .source
            .get("dev-a", "ci-runner-01")
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(
        harness.calls.load(Ordering::SeqCst),
        1,
        "a miss after delete asks the API"
    );
}

#[tokio::test]
async fn readiness_waits_for_the_first_list() {
    let harness = harness(None, false);
    let readyz = |router: axum::Router| async move {
        router
            .oneshot(
                Request::get("/readyz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response")
            .status()
    };
    assert!(!harness.source.is_ready());
    assert_eq!(
        readyz(harness.router.clone()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    harness.synced.store(true, Ordering::SeqCst);
    assert_eq!(readyz(harness.router.clone()).await, StatusCode::OK);
}

#[test]
fn trimming_drops_status_managed_fields_and_last_applied() {
    let mut vmi = dynamic(&json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "a", "namespace": "b",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{…}", "keep": "me"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
        "spec": {"domain": {"memory": {"guest": "1Gi"}}},
        "status": {"phase": "Running", "interfaces": [{"ipAddress": "10.0.0.1"}]}
    }));
    trim_vmi(&mut vmi);
    let value = serde_json::to_value(&vmi).expect("json");
    assert!(value.get("status").is_none());
    assert!(
        value["metadata"]
            .get("managedFields")
            .is_none_or(|fields| fields.as_array().is_some_and(Vec::is_empty))
    );
    assert_eq!(value["metadata"]["annotations"], json!({"keep": "me"}));
    assert_eq!(value["spec"]["domain"]["memory"]["guest"], "1Gi");
}
