//! The cluster watch cache without a cluster: a reflector store fed with
//! recorded watch events, a fake direct-GET fallback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kube::ResourceExt as _;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use virt_sizer::server::cluster::{CacheHealth, CacheOptions, CachedVmi, CachedVmis};
use virt_sizer::server::policy_store::PolicyStore;
use virt_sizer::server::vmi_source::{BoxFuture, VmiSource};
use virt_sizer::server::{self, AppState, StaticNamespaces};
use virt_sizer::sizing::Quantity;
use virt_sizer::sizing::vmi::{ReadVmi, VmiFacts};

use crate::support::EXAMPLE_REVIEW;

/// Counts direct GETs; answers from a fixed VMI (after `delay`), or hangs.
struct FakeGetter {
    calls: Arc<AtomicUsize>,
    vmi: Option<Arc<ReadVmi>>,
    hang: bool,
    delay: Duration,
}

impl VmiSource for FakeGetter {
    fn get<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (hang, delay, vmi) = (self.hang, self.delay, self.vmi.clone());
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(delay).await;
            Ok(vmi)
        })
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "a fake API".to_owned()
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

/// The example VMI as it was before a delete and recreate: same name,
/// another uid, another shape (1 vCPU).
fn older_incarnation() -> Value {
    let mut vmi = example_vmi();
    vmi["metadata"]["uid"] = json!(OLD_UID);
    vmi["spec"]["domain"]["cpu"] = json!({"sockets": 1, "cores": 1, "threads": 1});
    vmi
}

/// The example launcher Pod's owner (and the example VMI's) uid.
const POD_OWNER_UID: &str = "3f0c9a52-6b1e-4d27-8c11-000000000201";
const OLD_UID: &str = "11111111-2222-4333-8444-555555555555";

/// `value` as the watch delivers it to the cache (deserialised, read).
fn cached_vmi(value: &Value) -> CachedVmi {
    serde_json::from_value(value.clone()).expect("a VMI object")
}

struct Harness {
    writer: Writer<CachedVmi>,
    health: Arc<CacheHealth>,
    calls: Arc<AtomicUsize>,
    router: axum::Router,
    source: Arc<CachedVmis<FakeGetter>>,
}

fn harness(fallback_vmi: Option<Value>, hang: bool) -> Harness {
    harness_with(fallback_vmi, hang, Duration::ZERO)
}

fn harness_with(fallback_vmi: Option<Value>, hang: bool, delay: Duration) -> Harness {
    harness_with_options(fallback_vmi, hang, delay, CacheOptions::default())
}

fn harness_with_options(
    fallback_vmi: Option<Value>,
    hang: bool,
    delay: Duration,
    options: CacheOptions,
) -> Harness {
    let writer = Writer::<CachedVmi>::default();
    let health = CacheHealth::new("virtualmachineinstances", Duration::from_secs(120));
    let calls = Arc::new(AtomicUsize::new(0));
    let source = Arc::new(CachedVmis::new(
        writer.as_reader(),
        health.clone(),
        FakeGetter {
            calls: calls.clone(),
            vmi: fallback_vmi.map(|vmi| Arc::new(ReadVmi::from_value(&vmi))),
            hang,
            delay,
        },
        options,
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
        health,
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
        .apply_watcher_event(&Event::InitApply(cached_vmi(&example_vmi())));
    harness.writer.apply_watcher_event(&Event::InitDone);
    let body = review(&harness.router).await;
    assert!(crate::support::was_sized(&body), "{body}");
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
        crate::support::was_sized(&body),
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
    let vmi = cached_vmi(&example_vmi());
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
    let cached = cached.expect("cached");
    assert_eq!(cached.facts.as_ref().expect("valid").name, "ci-runner-01");
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
    harness.health.success(true, 0);
    assert_eq!(readyz(harness.router.clone()).await, StatusCode::OK);
}

/// The cache holds what reading the object gives, no JSON: status,
/// managed fields, kubectl's last-applied copy and annotations sizing does
/// not read leave no trace in it.
#[test]
fn a_cached_vmi_holds_the_facts_read_once() {
    let metadata = json!({"name": "a", "namespace": "b", "uid": "u",
        "annotations": {"virt-sizer.io/profile": "dev"}});
    let spec = json!({"domain": {"memory": {"guest": "1Gi"}}});
    let vmi = cached_vmi(&json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "a", "namespace": "b", "uid": "u",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{…}",
                "kubevirt.io/latest-observed-api-version": "v1",
                "virt-sizer.io/profile": "dev"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
        "spec": spec,
        "status": {"phase": "Running", "interfaces": [{"ipAddress": "10.0.0.1"}]}
    }));
    let bare = ReadVmi::from_value(&json!({"metadata": metadata, "spec": spec}));
    assert_eq!(**vmi.vmi(), bare);
    let facts = vmi.vmi().facts.as_ref().expect("valid");
    assert_eq!(
        facts.annotations,
        [("virt-sizer.io/profile".to_owned(), "dev".to_owned())].into()
    );
    assert_eq!(facts.guest, Some(Quantity::parse("1Gi").expect("quantity")));
}

/// A VMI that cannot be sized is cached with its error, the one reading it
/// afresh gives.
#[test]
fn an_invalid_vmi_is_cached_with_its_error() {
    let object = json!({
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "a", "namespace": "b", "uid": "u"},
        "spec": {"domain": {"cpu": {"cores": "two"}}},
    });
    let vmi = cached_vmi(&object);
    assert_eq!(vmi.vmi().uid.as_deref(), Some("u"));
    assert_eq!(vmi.vmi().facts, VmiFacts::from_value(&object));
    assert!(vmi.vmi().facts.is_err());
}

#[test]
fn a_cached_vmi_keeps_what_the_store_and_the_watch_read() {
    let vmi = cached_vmi(&json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "a", "namespace": "b", "uid": "u", "resourceVersion": "42",
            "generation": 3, "creationTimestamp": "2026-09-01T08:00:00Z"},
        "spec": {"domain": {"memory": {"guest": "1Gi"}}},
    }));
    assert_eq!(
        (
            vmi.name_any(),
            vmi.namespace(),
            vmi.uid(),
            vmi.resource_version()
        ),
        (
            "a".into(),
            Some("b".into()),
            Some("u".into()),
            Some("42".into())
        )
    );
    assert_eq!(vmi.vmi().uid.as_deref(), Some("u"));
    let facts = vmi.vmi().facts.as_ref().expect("valid");
    assert_eq!((facts.name.as_str(), facts.namespace.as_str()), ("a", "b"));
}

// === The uid a launcher Pod claims ===

use crate::support::response_warnings as warnings;

#[tokio::test]
async fn a_cached_vmi_with_another_uid_is_a_miss_and_the_get_decides() {
    // The cache still holds the old 1-vCPU incarnation; the API has the new
    // one (12 vCPUs, the Pod's owner).
    let mut harness = harness(Some(example_vmi()), false);
    harness
        .writer
        .apply_watcher_event(&Event::Apply(cached_vmi(&older_incarnation())));
    let body = review(&harness.router).await;
    assert_eq!(
        harness.calls.load(Ordering::SeqCst),
        1,
        "a GET, not the cache"
    );
    // Sized from the 12-vCPU VMI: 12 / 10 = 1200m, what the Pod requests,
    // so no CPU change is announced; the 1-vCPU VMI would give 100m.
    assert!(
        warnings(&body)
            .iter()
            .all(|warning| !warning.contains("100m")),
        "{body}"
    );
    assert!(crate::support::was_sized(&body), "{body}");
}

#[tokio::test]
async fn a_get_that_still_disagrees_follows_on_error_naming_both_uids() {
    let mut harness = harness(Some(older_incarnation()), false);
    harness
        .writer
        .apply_watcher_event(&Event::Apply(cached_vmi(&older_incarnation())));
    let body = review(&harness.router).await;
    assert_eq!(harness.calls.load(Ordering::SeqCst), 1);
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none(), "{body}");
    let warnings = warnings(&body);
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains(POD_OWNER_UID)
                && warning.contains(OLD_UID)
                && warning.contains("admitted unchanged (onError: Allow)")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn concurrent_misses_share_one_get() {
    let harness = harness_with(Some(example_vmi()), false, Duration::from_millis(100));
    let reviews = (0..8).map(|_| review(&harness.router));
    let bodies = futures::future::join_all(reviews).await;
    assert!(bodies.iter().all(crate::support::was_sized));
    assert_eq!(harness.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_absent_vmi_is_remembered_briefly() {
    let harness = harness(None, false);
    for _ in 0..5 {
        let body = review(&harness.router).await;
        assert_eq!(body["response"]["allowed"], true);
    }
    assert_eq!(
        harness.calls.load(Ordering::SeqCst),
        1,
        "one GET; the other four within the negative TTL"
    );
}

#[tokio::test]
async fn direct_gets_are_rate_limited_and_counted() {
    // 2 GETs a second with a burst of 2, "does not exist" not remembered:
    // a stream of launcher Pods naming absent VMIs, all in one namespace,
    // costs the apiserver at most that namespace's share (a quarter of the
    // burst, at least 1, and half the rate) plus what refills while they
    // arrive.
    let options = CacheOptions {
        gets_per_second: 2,
        get_burst: 2,
        negative_ttl: Duration::ZERO,
        ..CacheOptions::default()
    };
    let harness = harness_with_options(None, false, Duration::ZERO, options);
    let mut limited = 0;
    for _ in 0..10 {
        let body = review(&harness.router).await;
        assert_eq!(body["response"]["allowed"], true, "onError: Allow");
        if warnings(&body)
            .iter()
            .any(|warning| warning.contains("direct GETs are rate limited (namespace "))
        {
            limited += 1;
        }
    }
    let calls = harness.calls.load(Ordering::SeqCst);
    assert!((1..10).contains(&calls), "{calls} GETs");
    assert_eq!(calls + limited, 10, "every miss is a GET or refused");
    let metrics = virt_sizer_metrics(&harness.router).await;
    assert!(
        metrics.contains(&format!(
            "virt_sizer_cache_fallback_limited_total{{resource=\"virtualmachineinstances\"}} {limited}"
        )),
        "{metrics}"
    );
}

async fn virt_sizer_metrics(router: &axum::Router) -> String {
    let response = router
        .clone()
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[tokio::test]
async fn a_request_that_is_not_sized_costs_no_lookup() {
    // A launcher Pod UPDATE is answered "skipped" (Pods are sized on
    // CREATE only): its VMI is neither looked up in the cache nor fetched.
    let harness = harness(Some(example_vmi()), false);
    let mut update: Value = serde_json::from_str(EXAMPLE_REVIEW).expect("json");
    update["request"]["operation"] = json!("UPDATE");
    let (status, body) = crate::support::post(
        &harness.router,
        Some("application/json"),
        update.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none(), "{body}");
    assert_eq!(harness.calls.load(Ordering::SeqCst), 0, "no direct GET");
}

/// A relist builds a fresh copy of every VMI before the store swaps it in:
/// one whose uid and resourceVersion the store already holds takes the
/// held facts (one set in memory, not two); a changed or recreated one
/// keeps its own.
#[test]
fn a_relist_shares_the_facts_of_unchanged_vmis() {
    let vmi = |uid: &str, resource_version: &str, guest: &str| {
        cached_vmi(&json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm", "namespace": "ns", "uid": uid,
                "resourceVersion": resource_version},
            "spec": {"domain": {"memory": {"guest": guest}}}
        }))
    };
    let mut writer = Writer::<CachedVmi>::default();
    let store = writer.as_reader();
    writer.apply_watcher_event(&Event::Apply(vmi("u1", "7", "1Gi")));
    let held = store.state().pop().expect("held").vmi().clone();

    let mut unchanged = vmi("u1", "7", "1Gi");
    assert!(!Arc::ptr_eq(unchanged.vmi(), &held), "read anew");
    unchanged.share_unchanged(&store);
    assert!(Arc::ptr_eq(unchanged.vmi(), &held), "the held facts");

    // A new resourceVersion (the VMI changed), or the same name under
    // another uid (deleted and recreated): its own facts.
    for mut other in [vmi("u1", "8", "2Gi"), vmi("u2", "7", "2Gi")] {
        other.share_unchanged(&store);
        assert!(!Arc::ptr_eq(other.vmi(), &held));
        let guest = other.vmi().facts.as_ref().expect("valid").guest;
        assert_eq!(guest, Some(Quantity::parse("2Gi").expect("quantity")));
    }
}
