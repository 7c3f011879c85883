//! HTTP handlers. Client mistakes are answered with 400 (bad content type or
//! body, no request, no uid) or 413 (body over the cap, by the router's
//! limit); never 500. Everything after decoding is a deliberate
//! AdmissionResponse carrying the request's uid.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::admission::{self, AdmissionRequest, AdmissionResponse, Decision, Environment, Outcome};
use crate::metrics::{KindLabels, Operation, RequestLabels, ShadowLabels};
use crate::server::AppState;
use crate::server::cluster::CacheHealth;
use crate::server::limits;
use crate::server::slim::{IncomingRequest, IncomingReview};
use crate::sizing::SizingError;
use crate::sizing::policy::ValidPolicy;
use crate::telemetry;

/// `POST /mutate`.
pub(crate) async fn mutate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = state.metrics();
    if !is_json(&headers) {
        return bad_request(&state, "Content-Type must be application/json".into());
    }
    let body = match limits::read_body(body).await {
        Ok(body) => body,
        // Cut off at the cap or the deadline: the guard answers and counts.
        Err(error) => {
            return match limits::body_error(&error) {
                Some(cut) => (cut.status(), cut.to_string()).into_response(),
                None => bad_request(&state, format!("reading the request body: {error}")),
            };
        }
    };
    let review = match decode(&state, body).await {
        Ok(review) => review,
        Err(error) => return bad_request(&state, format!("undecodable AdmissionReview: {error}")),
    };
    if review.api_version != admission::review::ADMISSION_API_VERSION
        || review.kind != "AdmissionReview"
    {
        return bad_request(
            &state,
            format!(
                "expected apiVersion {} kind AdmissionReview, got {:?} {:?}",
                admission::review::ADMISSION_API_VERSION,
                telemetry::capped(&review.api_version),
                telemetry::capped(&review.kind)
            ),
        );
    }
    let Some(request) = review.request.map(IncomingRequest::into_request) else {
        return bad_request(&state, "AdmissionReview has no request".into());
    };
    if request.uid.is_empty() {
        return bad_request(&state, "AdmissionReview request has no uid".into());
    }

    let started = Instant::now();
    metrics.in_flight.inc();
    let policy = state.policy().current();
    let uid = request.uid.clone();
    let operation = request.operation.clone();
    let namespace = request.namespace.clone();
    let name = request.name.clone();
    // The decision runs in its own task so that a panic anywhere in it (the
    // VMI lookup included) is caught, counted and answered per onError.
    let mut decision = match tokio::spawn(decide(state.clone(), policy.clone(), request)).await {
        Ok(decision) => decision,
        Err(error) => {
            metrics.panics.inc();
            tracing::error!(%uid, %error, "panic while deciding");
            admission::failed(
                &uid,
                &policy,
                SizingError::Invariant("internal error while deciding; see the server log".into()),
            )
        }
    };
    cap_echoes(&mut decision.response);
    let body = match admission::encode_response(&decision) {
        Ok(body) => body,
        Err(error) => {
            // Not reachable with string-keyed maps; answered per onError anyway.
            tracing::error!(%uid, %error, "response does not serialise");
            let fallback =
                admission::failed(&uid, &policy, SizingError::Invariant(error.to_string()));
            admission::encode_response(&fallback).unwrap_or_default()
        }
    };
    let elapsed = started.elapsed();
    metrics.in_flight.dec();
    record(
        &state,
        &decision,
        &operation,
        &namespace,
        elapsed.as_secs_f64(),
    );
    tracing::info!(
        uid = %uid,
        kind = decision.target.as_str(),
        operation = %operation,
        namespace = %namespace,
        name = %name,
        profile = decision.profile.as_deref().unwrap_or(""),
        selected_by = decision.selected_by.as_deref().unwrap_or(""),
        outcome = decision.outcome.as_str(),
        skip_reason = decision.skip_reason.as_deref().unwrap_or(""),
        patch_ops = decision.patch.as_ref().map_or(0, |patch| patch.0.len()),
        changes = %decision
            .changes
            .iter()
            .map(|change| format!("{}={}", change.field, change.new.as_deref().unwrap_or("-")))
            .collect::<Vec<_>>()
            .join(","),
        error = decision.error.as_ref().map(ToString::to_string).unwrap_or_default(),
        policy = %decision.policy_digest,
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "admission decision"
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Warnings and messages quote client values (an annotation, a quantity):
/// each warning, message and audit annotation is cut at the log field cap
/// (1,024 characters, with a marker), so no answer echoes megabytes while a
/// decision's own long warnings (two uids, a formula) stay whole.
fn cap_echoes(response: &mut AdmissionResponse) {
    let long = |text: &mut String| {
        if let std::borrow::Cow::Owned(cut) =
            telemetry::capped_to(text, telemetry::MAX_LOG_FIELD_CHARS)
        {
            *text = cut;
        }
    };
    response.warnings.iter_mut().for_each(long);
    if let Some(status) = response.status.as_mut() {
        long(&mut status.message);
    }
    response.audit_annotations.values_mut().for_each(long);
}

/// Bodies up to this size decode on the request's task; larger ones on the
/// blocking pool, so a 3 MiB decode does not hold a runtime worker.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// Decodes the review, at most [`AppState`]'s bound of decodes at once
/// (later requests wait their turn): what a decode builds is bounded per
/// request (`slim`), and this bounds how many build at once.
async fn decode(state: &AppState, body: Bytes) -> Result<IncomingReview, String> {
    let _permit = state.inner.decodes.acquire().await;
    if body.len() <= INLINE_DECODE_BYTES {
        return serde_json::from_slice(&body).map_err(|error| error.to_string());
    }
    tokio::task::spawn_blocking(move || serde_json::from_slice::<IncomingReview>(&body))
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())
}

/// Label that marks a ConfigMap as a virt-sizer policy (the validating
/// webhook's objectSelector).
pub const POLICY_LABEL: &str = "virt-sizer.io/policy";
/// The ConfigMap key holding the policy (the file the Deployment mounts).
pub const POLICY_KEY: &str = "policy.yaml";

/// The fields of a policy ConfigMap's AdmissionReview that are read.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyReview {
    api_version: String,
    kind: String,
    request: Option<PolicyRequest>,
}

#[derive(serde::Deserialize)]
struct PolicyRequest {
    uid: String,
    object: Option<PolicyConfigMap>,
}

#[derive(serde::Deserialize)]
struct PolicyConfigMap {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    data: Option<std::collections::BTreeMap<String, String>>,
}

/// `POST /validate-policy`: the validating webhook for policy ConfigMaps.
/// A broken policy is refused at `kubectl apply` with the checker's own
/// messages (every problem with its path); a valid one is admitted, with
/// its warnings.
pub(crate) async fn validate_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return (rejection.status(), rejection.body_text()).into_response(),
    };
    if !is_json(&headers) {
        return bad_request(&state, "Content-Type must be application/json".into());
    }
    let review: PolicyReview = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(error) => return bad_request(&state, format!("undecodable AdmissionReview: {error}")),
    };
    if review.api_version != admission::review::ADMISSION_API_VERSION
        || review.kind != "AdmissionReview"
    {
        return bad_request(
            &state,
            format!(
                "expected apiVersion {} kind AdmissionReview, got {:?} {:?}",
                admission::review::ADMISSION_API_VERSION,
                review.api_version,
                review.kind
            ),
        );
    }
    let Some(request) = review.request.filter(|request| !request.uid.is_empty()) else {
        return bad_request(&state, "AdmissionReview has no request uid".into());
    };
    let response = match request.object {
        // DELETE (no object) and other kinds are none of this webhook's business.
        Some(object) if object.kind == "ConfigMap" => {
            match object.data.as_ref().and_then(|data| data.get(POLICY_KEY)) {
                None => AdmissionResponse::deny(
                    &request.uid,
                    422,
                    format!(
                        "a ConfigMap labelled {POLICY_LABEL}=true must hold the sizing policy under data[{POLICY_KEY:?}]"
                    ),
                ),
                Some(text) => match ValidPolicy::from_yaml(text) {
                    Ok(policy) => {
                        let mut response = AdmissionResponse::allow(&request.uid);
                        response.warnings = policy.warnings;
                        response
                    }
                    Err(problems) => AdmissionResponse::deny(
                        &request.uid,
                        422,
                        format!("invalid virt-sizer policy in data[{POLICY_KEY:?}]:\n{problems}"),
                    ),
                },
            }
        }
        _ => AdmissionResponse::allow(&request.uid),
    };
    tracing::info!(uid = %request.uid, allowed = response.allowed, "policy validation");
    axum::Json(json!({
        "apiVersion": admission::review::ADMISSION_API_VERSION,
        "kind": "AdmissionReview",
        "response": response,
    }))
    .into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

/// Looks up what the request needs and decides.
async fn decide(state: AppState, policy: Arc<ValidPolicy>, request: AdmissionRequest) -> Decision {
    let inner = &state.inner;
    let mut unavailable: Option<String> = None;
    let mut vmi: Option<Arc<Value>> = None;
    if let Some(reference) = admission::launcher_vmi(&request) {
        let lookup = inner.vmis.lookup(&reference);
        match tokio::time::timeout(inner.vmi_lookup_timeout, lookup).await {
            Ok(Ok(found)) => vmi = found,
            Ok(Err(error)) => {
                inner.metrics.error("vmi_lookup");
                unavailable = Some(error);
            }
            Err(_) => {
                inner.metrics.error("vmi_lookup");
                unavailable = Some(format!(
                    "lookup timed out after {} ms",
                    inner.vmi_lookup_timeout.as_millis()
                ));
            }
        }
    }
    let labels = if request.namespace.is_empty() {
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
        // Only a Pod virt-sizer sizes reads them: for one, unknown labels
        // would silently select the wrong profile, so onError decides.
        Err(reason) if admission::is_sized_pod(&policy, &request) => {
            inner.metrics.error("namespace_lookup");
            return admission::failed(
                &request.uid,
                &policy,
                SizingError::NamespaceUnavailable {
                    namespace: request.namespace.clone(),
                    reason,
                },
            );
        }
        Err(_) => Arc::default(),
    };
    let environment = Environment {
        policy: &policy,
        namespace_labels: &namespace_labels,
        quota: None,
        vmi: vmi.as_deref(),
        vmi_unavailable: unavailable.as_deref(),
    };
    admission::review(&environment, &request)
}

fn record(state: &AppState, decision: &Decision, operation: &str, namespace: &str, seconds: f64) {
    let metrics = state.metrics();
    let kind = decision.target.as_str().to_owned();
    let labels = RequestLabels {
        kind: kind.clone(),
        operation: Operation::from_request(operation),
        outcome: decision.outcome.as_str().to_owned(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics.latency.get_or_create(&labels).observe(seconds);
    if decision.patch.is_some() {
        metrics.patches.get_or_create(&KindLabels { kind }).inc();
    }
    if let Some(error) = &decision.error {
        metrics.error(error.metric_label());
    }
    if decision.outcome == Outcome::Shadow {
        let labels = ShadowLabels {
            namespace: metrics.shadow_namespace(namespace),
            profile: decision.profile.clone().unwrap_or_default(),
        };
        let clamp = |value: i128| {
            i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
        };
        metrics
            .shadow_cpu_millicores
            .get_or_create(&labels)
            .inc_by(clamp(decision.delta.cpu_millicores));
        metrics
            .shadow_memory_bytes
            .get_or_create(&labels)
            .inc_by(clamp(decision.delta.memory_bytes));
    }
}

fn bad_request(state: &AppState, message: String) -> Response {
    state.metrics().error("bad_request");
    tracing::debug!(%message, "bad request");
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// `GET /healthz`: the process is alive.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: certificate, policy and VMI source ready, not draining.
/// The body says which part is not, and whether the policy on disk was
/// rejected (the last good one still serving).
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let inner = &state.inner;
    let draining = inner
        .shutting_down
        .load(std::sync::atomic::Ordering::SeqCst);
    let vmis_ready = inner.vmis.is_ready();
    let namespaces_ready = inner.namespaces.is_ready();
    let kubevirt_ready = inner.kubevirt.get().is_none_or(|status| status.is_synced());
    // An expired (or not yet valid) serving certificate fails every
    // handshake the apiserver makes: degraded, not ready.
    let certificate_valid = inner
        .certs
        .as_ref()
        .is_none_or(|certs| !certs.is_outside_validity());
    let ready = !draining && vmis_ready && namespaces_ready && kubevirt_ready && certificate_valid;
    let policy = inner.policy.current();
    let detail = json!({
        "ready": ready,
        "draining": draining,
        "policy": {
            "digest": policy.digest,
            "source": inner.policy.path().map_or_else(|| "built-in".to_owned(), |path| path.display().to_string()),
            "rejectedReload": inner.policy.last_error(),
            "kubevirtDigest": policy.settings_digest(),
            "release": policy.kubevirt.release_text,
            "warnings": policy.warnings,
        },
        "kubevirt": inner.kubevirt.get().map(|status| {
            let mut detail = status.detail();
            if let Some(baseline) = &policy.baseline {
                detail["settings"] = json!(baseline.describe().lines().collect::<Vec<_>>());
            }
            detail
        }),
        "certificate": {
            "files": inner.certs.as_ref().map(|certs| certs.watched_files()),
            "failedReload": inner.certs.as_ref().and_then(|certs| certs.last_error()),
            "valid": certificate_valid,
            "validity": inner.certs.as_ref().map(|certs| certs.validity().text.clone()),
        },
        "vmiSource": {
            "ready": vmis_ready,
            "detail": inner.vmis.describe(),
            "warning": inner.no_vmi_source.get(),
            "cache": inner.vmis.health().map(CacheHealth::detail),
        },
        "namespaceSource": {
            "ready": namespaces_ready,
            "cache": inner.namespaces.health().map(CacheHealth::detail),
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(detail)).into_response()
}

/// `GET /metrics`: Prometheus text exposition.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}
