//! HTTP handlers. Client mistakes never reach the webhook handlers: the
//! `ReviewRequest` extractor (`extract.rs`) answers them with 400 (bad
//! content type or body, wrong envelope, no request, no uid), and the
//! request bounds with 413 or 408; never 500. Everything after decoding is a
//! deliberate AdmissionResponse carrying the request's uid.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt as _;
use serde_json::{Value, json};

use crate::admission::wire::{self, PolicyData, Sizing};
use crate::admission::{
    self, AdmissionRequest, AdmissionResponse, Decision, Environment, VmiLookup,
};
use crate::metrics::{KindLabels, LookupResult, Metrics, Operation, RequestLabels, ShadowLabels};
use crate::server::AppState;
use crate::server::cluster::CacheHealth;
use crate::server::extract::ReviewRequest;
use crate::server::policy_checks::{Checked, MAX_POLICY_CHECKS};
use crate::sizing::policy::ValidPolicy;
use crate::sizing::vmi::ReadVmi;
use crate::sizing::{ErrorReason, SizingError};
use crate::telemetry;

/// `POST /mutate`.
pub(crate) async fn mutate(
    State(state): State<AppState>,
    ReviewRequest { request, .. }: ReviewRequest<Sizing>,
) -> Response {
    let metrics = state.metrics();
    let started = Instant::now();
    metrics.in_flight.inc();
    let policy = state.policy().current();
    let decision = decide_caught(&state, &policy, &request).await;
    let body = encode(&request.uid, &decision, &policy);
    let elapsed = started.elapsed();
    metrics.in_flight.dec();
    record(
        &state,
        &decision,
        &request.operation,
        &policy,
        elapsed.as_secs_f64(),
    );
    log_decision(&request, &decision, elapsed);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The decision's log line (`admission decision`, info): who asked, what
/// was decided, what changed ([`logged_changes`]) and how long it took.
/// `cargo bench --bench sizing` measures it on its own.
pub fn log_decision(request: &AdmissionRequest, decision: &Decision, elapsed: Duration) {
    tracing::info!(
        uid = %request.uid,
        kind = decision.target.as_str(),
        operation = %request.operation,
        namespace = %request.namespace,
        name = %request.name,
        profile = decision.profile.as_deref().unwrap_or(""),
        selected_by = decision.selected_by.as_deref().unwrap_or("").replace('→', "->"),
        outcome = decision.outcome.as_str(),
        skip_reason = decision.skip_reason().unwrap_or(""),
        patch_ops = decision.patch().map_or(0, |patch| patch.0.len()),
        changes = %logged_changes(decision),
        error = decision.error().map(ToString::to_string).unwrap_or_default(),
        policy = %decision.policy_digest,
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "admission decision"
    );
}

/// [`decide`], with a panic anywhere in it caught, counted and answered
/// per onError: in the sizing core, or in a VMI or namespace source (a
/// lookup is any [`VmiSource`](crate::server::vmi_source::VmiSource) and
/// may panic). It is caught in this task, at each poll of the decision:
/// no task per request just for that. `uid` is the request's.
async fn decide_caught(
    state: &AppState,
    policy: &Arc<ValidPolicy>,
    request: &AdmissionRequest,
) -> Decision {
    let uid = &request.uid;
    // Unwind safe: what a decision shares is atomics (metrics) and maps
    // behind mutexes whose users recover from poisoning; nothing is left
    // half-written for the next request.
    match AssertUnwindSafe(decide(state, policy, request))
        .catch_unwind()
        .await
    {
        Ok(decision) => decision,
        Err(panic) => {
            state.metrics().panics.inc();
            let message = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            tracing::error!(%uid, panic = message, "panic while deciding");
            admission::failed(
                uid,
                policy,
                SizingError::Invariant("internal error while deciding; see the server log".into()),
            )
        }
    }
}

/// The AdmissionReview answering `decision` (JSON).
fn encode(uid: &str, decision: &Decision, policy: &ValidPolicy) -> Vec<u8> {
    admission::encode_response(decision).unwrap_or_else(|error| {
        // Not reachable with string-keyed maps; answered per onError anyway.
        tracing::error!(%uid, %error, "response does not serialise");
        let fallback = admission::failed(uid, policy, SizingError::Invariant(error.to_string()));
        admission::encode_response(&fallback).unwrap_or_default()
    })
}

/// The decision log line's `changes`: a JSON array of `{field, old, new}`
/// (`null` for none), the first [`MAX_LOGGED_CHANGES`] of them, then
/// `{"more": N}`. JSON logs carry it as an array (see
/// [`telemetry::JSON_FIELDS`]), text logs as its JSON text.
fn logged_changes(decision: &Decision) -> String {
    /// One item of the array, its keys in this order.
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Logged<'a> {
        Change {
            field: &'a str,
            old: Option<String>,
            new: Option<String>,
        },
        More {
            more: usize,
        },
    }
    let cap = |value: &Option<admission::Written>| {
        value.as_ref().map(|value| {
            telemetry::capped_to(&value.to_string(), telemetry::MAX_LOG_FIELD_CHARS).into_owned()
        })
    };
    let mut changes: Vec<Logged<'_>> = decision
        .changes
        .iter()
        .take(MAX_LOGGED_CHANGES)
        .map(|change| Logged::Change {
            field: &change.field,
            old: cap(&change.old),
            new: cap(&change.new),
        })
        .collect();
    if decision.changes.len() > MAX_LOGGED_CHANGES {
        changes.push(Logged::More {
            more: decision.changes.len() - MAX_LOGGED_CHANGES,
        });
    }
    serde_json::to_string(&changes).unwrap_or_default()
}

/// Changes listed in a decision's log line at most (a Kata Pod can have
/// thousands); `--explain` and the audit annotations have them all.
const MAX_LOGGED_CHANGES: usize = 32;

/// Label that marks a ConfigMap as a virt-sizer policy (the validating
/// webhook's objectSelector).
pub const POLICY_LABEL: &str = "virt-sizer.io/policy";
pub use crate::admission::facts::POLICY_KEY;

/// `POST /validate-policy`: the validating webhook for policy ConfigMaps.
/// A broken policy is refused at `kubectl apply` with the checker's own
/// messages (every problem with its path); a valid one is admitted, with
/// its warnings. The check runs off the runtime workers, at most
/// [`MAX_POLICY_CHECKS`] at once and within
/// [`POLICY_CHECK_BUDGET`](crate::server::policy_checks::POLICY_CHECK_BUDGET)
/// ([`policy_checks`](crate::server::policy_checks)); past either the
/// policy is refused, saying why.
pub(crate) async fn validate_policy(
    State(state): State<AppState>,
    ReviewRequest { request, .. }: ReviewRequest<PolicyData>,
) -> Response {
    let object = request.object.as_ref();
    let is_configmap = object.and_then(|object| object.get("kind")) == Some(&json!("ConfigMap"));
    let response = if is_configmap {
        match object
            .and_then(|object| crate::admission::facts::at(object, &["data", POLICY_KEY]))
            .and_then(Value::as_str)
        {
            None => AdmissionResponse::deny(
                &request.uid,
                422,
                format!(
                    "a ConfigMap labelled {POLICY_LABEL}=true must hold the sizing policy under data[{POLICY_KEY:?}]"
                ),
            ),
            Some(text) => check_policy(&state, &request.uid, text.to_owned()).await,
        }
    } else {
        // DELETE (no object) and other kinds are none of this webhook's business.
        AdmissionResponse::allow(&request.uid)
    };
    tracing::info!(uid = %request.uid, allowed = response.allowed, "policy validation");
    axum::Json(json!({
        "apiVersion": wire::ADMISSION_API_VERSION,
        "kind": "AdmissionReview",
        "response": response,
    }))
    .into_response()
}

/// The answer for the policy `text`, checked off the runtime workers.
async fn check_policy(state: &AppState, uid: &str, text: String) -> AdmissionResponse {
    let checks = &state.inner.policy_checks;
    match checks.run(move || ValidPolicy::from_yaml(&text)).await {
        Checked::Done(Ok(policy)) => {
            let mut response = AdmissionResponse::allow(uid);
            response.warnings = policy
                .warnings
                .iter()
                .map(|warning| {
                    telemetry::capped_to(warning, telemetry::MAX_LOG_FIELD_CHARS).into_owned()
                })
                .collect();
            response
        }
        Checked::Done(Err(problems)) => AdmissionResponse::deny(
            uid,
            422,
            format!("invalid virt-sizer policy in data[{POLICY_KEY:?}]:\n{problems}"),
        ),
        Checked::Busy => {
            state.metrics().error(ErrorReason::PolicyCheckBusy);
            AdmissionResponse::deny(
                uid,
                429,
                format!(
                    "virt-sizer is already checking {MAX_POLICY_CHECKS} policies; apply it again in a moment"
                ),
            )
        }
        Checked::Late => {
            state.metrics().error(ErrorReason::PolicyCheckTimeout);
            AdmissionResponse::deny(
                uid,
                503,
                format!(
                    "the policy check did not finish within {} s; apply it again in a moment",
                    checks.budget().as_secs()
                ),
            )
        }
        Checked::Panicked(message) => {
            // Refused rather than admitted unchecked; counted and logged.
            state.metrics().panics.inc();
            tracing::error!(%uid, panic = %message, "panic while checking a policy");
            AdmissionResponse::deny(
                uid,
                500,
                "internal error while checking the policy; see the server log".to_owned(),
            )
        }
    }
}

/// Looks up what the request needs and decides.
async fn decide(state: &AppState, policy: &ValidPolicy, request: &AdmissionRequest) -> Decision {
    let inner = &state.inner;
    // Only a Pod virt-sizer sizes (a launcher or Kata Pod CREATE) reads its
    // VMI or its namespace's labels: nothing else costs a lookup (or, on a
    // cache miss, a GET).
    let sized = admission::is_sized_pod(policy, request);
    if sized {
        wait_for_sync(state, inner.vmi_lookup_timeout * 3 / 4).await;
    }
    let (vmi, unavailable) = match admission::launcher_vmi(request) {
        Some(reference) if sized => look_up_vmi(state, &reference).await,
        _ => (None, None),
    };
    let labels = if !sized || request.namespace.is_empty() {
        Ok(Arc::default())
    } else {
        let lookup = inner.namespaces.labels(&request.namespace);
        match tokio::time::timeout(inner.vmi_lookup_timeout, lookup).await {
            Ok(found) => found,
            Err(_) => Err(format!(
                "lookup timed out after {} ms",
                inner.vmi_lookup_timeout.as_millis()
            )),
        }
    };
    let namespace_labels = match labels {
        Ok(labels) => labels,
        // Unknown labels would silently select the wrong profile: onError
        // decides.
        Err(reason) => {
            inner.metrics.error(ErrorReason::NamespaceLookup);
            return admission::failed(
                &request.uid,
                policy,
                SizingError::NamespaceUnavailable {
                    namespace: request.namespace.clone(),
                    reason,
                },
            );
        }
    };
    let environment = Environment {
        policy,
        namespace_labels: &namespace_labels,
        vmi: match (vmi.as_deref(), unavailable.as_deref()) {
            (Some(found), _) => VmiLookup::Found(found),
            (None, Some(reason)) => VmiLookup::Unavailable(reason),
            (None, None) => VmiLookup::NotFound,
        },
    };
    let mut decision = admission::review(&environment, request);
    if sized && let Some(reason) = staleness(state) {
        decision.note_stale_inputs(&reason);
        inner.metrics.stale_decisions.inc();
    }
    decision
}

/// The launcher Pod's VMI within the lookup timeout, timed and counted:
/// the VMI if found, or why it could not be looked up.
async fn look_up_vmi(
    state: &AppState,
    reference: &admission::VmiRef,
) -> (Option<Arc<ReadVmi>>, Option<String>) {
    let inner = &state.inner;
    let started = Instant::now();
    let lookup = inner.vmis.lookup(reference);
    let (found, result) = match tokio::time::timeout(inner.vmi_lookup_timeout, lookup).await {
        Ok(Ok(Some(vmi))) => ((Some(vmi), None), LookupResult::Found),
        Ok(Ok(None)) => ((None, None), LookupResult::NotFound),
        Ok(Err(error)) => ((None, Some(error)), LookupResult::Error),
        Err(_) => (
            (
                None,
                Some(format!(
                    "lookup timed out after {} ms",
                    inner.vmi_lookup_timeout.as_millis()
                )),
            ),
            LookupResult::Timeout,
        ),
    };
    if found.1.is_some() {
        inner.metrics.error(ErrorReason::VmiLookup);
    }
    inner
        .metrics
        .observe_vmi_lookup(result, started.elapsed().as_secs_f64());
    found
}

/// The caches a decision reads from: the VMIs, the Namespaces and the
/// KubeVirt CR (cluster mode).
fn caches(state: &AppState) -> impl Iterator<Item = &CacheHealth> {
    let inner = &state.inner;
    inner
        .vmis
        .health()
        .into_iter()
        .chain(inner.namespaces.health())
        .chain(inner.kubevirt.get().map(|status| status.health()))
}

/// Until every cache has listed once (a replica that just started), a
/// sized request waits for them, at most `budget`: what the cache will hold
/// in a moment beats a direct GET per Pod, and the rest of the lookup
/// timeout is left for that GET. A cache whose first LIST failed
/// (forbidden, say) is not waited for: it will not sync in a moment.
async fn wait_for_sync(state: &AppState, budget: Duration) {
    let deadline = Instant::now() + budget;
    let syncing = |health: &CacheHealth| !health.is_synced() && health.last_error().is_none();
    while caches(state).any(syncing) && Instant::now() < deadline {
        tokio::time::sleep(SYNC_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// How often a request waiting for the first LIST looks again.
const SYNC_POLL: Duration = Duration::from_millis(20);

/// Why the caches a decision read may not be current, if they may not.
fn staleness(state: &AppState) -> Option<String> {
    let reasons: Vec<String> = caches(state).filter_map(CacheHealth::staleness).collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Counts a decision. Shadow figures are labelled with the namespace of
/// the object, as `policy` names it ([`Metrics::shadow_namespace`]).
fn record(
    state: &AppState,
    decision: &Decision,
    operation: &str,
    policy: &ValidPolicy,
    seconds: f64,
) {
    let metrics = state.metrics();
    let kind = decision.target;
    let labels = RequestLabels {
        kind,
        operation: Operation::from_request(operation),
        outcome: decision.outcome.label(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics.latency.get_or_create(&labels).observe(seconds);
    if decision.patch().is_some() {
        metrics.patches.get_or_create(&KindLabels { kind }).inc();
    }
    if let Some(error) = decision.error() {
        metrics.error(error.metric_label());
    }
    if let Some(delta) = decision.shadow_delta() {
        let labels = ShadowLabels {
            namespace: Metrics::shadow_namespace(policy, &decision.namespace),
            profile: decision.profile.clone().unwrap_or_default(),
        };
        let clamp = |value: i128| {
            i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
        };
        metrics
            .shadow_cpu_millicores
            .get_or_create(&labels)
            .inc_by(clamp(delta.cpu_millicores));
        metrics
            .shadow_memory_bytes
            .get_or_create(&labels)
            .inc_by(clamp(delta.memory_bytes));
    }
}

pub(super) fn bad_request(state: &AppState, message: String) -> Response {
    state.metrics().error(ErrorReason::BadRequest);
    // At WARN, but at most one line per interval, with how many were not
    // logged since: a client sending garbage cannot flood the log. The
    // metric counts every one.
    let suppressed = {
        let mut log = BAD_REQUEST_LOG
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (last, skipped) = &mut *log;
        if last.is_some_and(|at| at.elapsed() < BAD_REQUEST_LOG_INTERVAL) {
            *skipped += 1;
            None
        } else {
            *last = Some(Instant::now());
            Some(std::mem::take(skipped))
        }
    };
    if let Some(suppressed) = suppressed {
        tracing::warn!(
            reason = %message,
            status = 400,
            not_logged_since_last = suppressed,
            "bad request (logged at most every 10 s; virt_sizer_admission_errors_total{{reason=\"bad_request\"}} counts all)"
        );
    }
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// At most one 400 line per this interval.
const BAD_REQUEST_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// When a 400 was last logged, and how many were not since. Per process,
/// as the log is.
static BAD_REQUEST_LOG: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));

/// `GET /healthz`: the process is alive.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: certificate, policy and VMI source ready, not draining,
/// and no request waiting too long for the server's own capacity
/// (`saturated`). The body says which part is not, and whether the policy
/// on disk was rejected (the last good one still serving).
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let inner = &state.inner;
    let Readiness {
        ready,
        draining,
        saturated,
        vmis_ready,
        namespaces_ready,
        certificate_valid,
    } = Readiness::of(&state);
    let policy = inner.policy.current();
    // No server path is shown (the log has them): a message naming a
    // watched file names it by its file name only.
    let files: Vec<std::path::PathBuf> = inner
        .policy
        .path()
        .map(std::path::Path::to_owned)
        .into_iter()
        .chain(inner.certs.iter().flat_map(|certs| certs.watched_files()))
        .collect();
    let files: Vec<&std::path::Path> = files.iter().map(std::path::PathBuf::as_path).collect();
    let shown =
        |message: Option<String>| message.map(|message| telemetry::without_paths(&message, &files));
    /// The body, its top-level keys in this order (`ready` first, for the
    /// person reading it).
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Detail {
        ready: bool,
        draining: bool,
        saturated: bool,
        policy: Value,
        kubevirt: Option<Value>,
        certificate: Value,
        vmi_source: Value,
        namespace_source: Value,
    }
    let detail = Detail {
        ready,
        draining,
        saturated,
        policy: json!({
            "digest": policy.digest,
            "source": if inner.policy.serves_file() { "file" } else { "built-in" },
            "rejectedReload": shown(inner.policy.last_error()),
            "kubevirtDigest": policy.settings_digest(),
            "release": policy.kubevirt.release_text,
            "warnings": policy.warnings,
        }),
        kubevirt: inner.kubevirt.get().map(|status| {
            let mut detail = status.detail();
            if let Some(baseline) = &policy.baseline {
                detail["settings"] = json!(baseline.describe().lines().collect::<Vec<_>>());
            }
            detail
        }),
        certificate: json!({
            "failedReload": shown(inner.certs.as_ref().and_then(|certs| certs.last_error())),
            "valid": certificate_valid,
            "validity": inner.certs.as_ref().map(|certs| certs.validity().text.clone()),
        }),
        vmi_source: json!({
            "ready": vmis_ready,
            "detail": inner.vmis.describe(),
            "warning": inner.no_vmi_source.get(),
            "cache": inner.vmis.health().map(CacheHealth::detail),
        }),
        namespace_source: json!({
            "ready": namespaces_ready,
            "cache": inner.namespaces.health().map(CacheHealth::detail),
        }),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(detail)).into_response()
}

/// What `/readyz` and `virt_sizer_ready` report.
struct Readiness {
    ready: bool,
    draining: bool,
    /// A request has waited too long for the body budget or a decode slot:
    /// `/mutate` cannot answer within its time.
    saturated: bool,
    vmis_ready: bool,
    namespaces_ready: bool,
    certificate_valid: bool,
}

impl Readiness {
    fn of(state: &AppState) -> Readiness {
        let inner = &state.inner;
        let draining = inner
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst);
        let vmis_ready = inner.vmis.is_ready();
        let namespaces_ready = inner.namespaces.is_ready();
        // The KubeVirt CR does not gate readiness: while its settings are
        // unknown (not listed yet, forbidden, failing) the decisions that
        // need them admit Pods unchanged with a warning, which is a correct
        // answer; /readyz's `kubevirt` detail and
        // virt_sizer_kubevirt_settings_unknown say so.
        // An expired (or not yet valid) serving certificate fails every
        // handshake the apiserver makes: degraded, not ready.
        let certificate_valid = inner
            .certs
            .as_ref()
            .is_none_or(|certs| !certs.is_outside_validity());
        let saturated = inner.waits.is_saturated();
        Readiness {
            ready: !draining && !saturated && vmis_ready && namespaces_ready && certificate_valid,
            draining,
            saturated,
            vmis_ready,
            namespaces_ready,
            certificate_valid,
        }
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics()
        .ready
        .set(i64::from(Readiness::of(&state).ready));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}
