//! In a cluster: a watch of `kubevirts.kubevirt.io`, whose one object (the
//! KubeVirt CR) is the policy's baseline. A CR change switches decisions the
//! way a policy reload does.
//!
//! KubeVirt honours a single CR; with several, the oldest is the one in
//! force, as in KubeVirt's operator. A cluster without the CRD is no error:
//! KubeVirt's defaults apply, and the watch keeps retrying so a KubeVirt
//! installed later is picked up.

use std::sync::{Arc, Mutex, PoisonError};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{Store, store::Writer};
use kube::{Client, ResourceExt as _};
use serde_json::{Value, json};

use crate::server::AppState;
use crate::server::cluster::{CacheEvent, CacheHealth, CacheOptions, Reachability, run_cache};
use crate::sizing::policy::KubevirtBaseline;

/// The API resource of `kubevirt.io/v1` KubeVirt.
#[must_use]
pub fn kubevirt_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "KubeVirt"),
        "kubevirts",
    )
}

/// What the watch has seen, for `/readyz`.
#[derive(Debug)]
pub struct KubevirtStatus {
    health: Arc<CacheHealth>,
    detail: Mutex<Detail>,
}

#[derive(Debug, Default, Clone)]
struct Detail {
    /// `namespace/name` of the CR in force, if any.
    source: Option<String>,
    /// Why the newest CR could not be read (the previous baseline stays).
    error: Option<String>,
}

impl KubevirtStatus {
    /// The watch's health.
    #[must_use]
    pub fn health(&self) -> &CacheHealth {
        &self.health
    }

    /// The `/readyz` detail.
    #[must_use]
    pub fn detail(&self) -> Value {
        let detail = self.lock().clone();
        json!({
            "source": detail.source,
            "error": detail.error,
            "cache": self.health.detail(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the watch, with the same freshness rules as the VMI and
/// Namespace caches; `state`'s policy follows the CR from now on.
pub fn spawn(
    client: &Client,
    state: AppState,
    options: CacheOptions,
    reach: &Arc<Reachability>,
) -> Arc<KubevirtStatus> {
    let health = CacheHealth::new("kubevirts", options.stale_after);
    health.attach(state.metrics());
    health.follow(reach.clone());
    let status = Arc::new(KubevirtStatus {
        health: health.clone(),
        detail: Mutex::new(Detail::default()),
    });
    let resource = kubevirt_resource();
    let writer = Writer::<DynamicObject>::new(resource.clone());
    let store = writer.as_reader();
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    // Until the first LIST, nothing is known of the cluster's settings:
    // launcher Pods that need them are admitted unchanged, never sized from
    // KubeVirt's defaults.
    update(
        &state,
        &status,
        Some(Arc::new(KubevirtBaseline::unread(
            "the KubeVirt CR has not been listed yet",
        ))),
        None,
    );
    let watching = status.clone();
    let reader = store.clone();
    let cache_health = health.clone();
    tokio::spawn(run_cache(
        api,
        writer,
        store,
        health,
        options,
        |object: &mut DynamicObject, _| object.managed_fields_mut().clear(),
        move |event: CacheEvent| match event {
            // Before a first LIST (forbidden, or the API failing) the
            // settings stay unknown, now with the reason; after one, the
            // CR last read stays in force and decisions say it may be out
            // of date (see `CacheHealth::staleness`).
            CacheEvent::Failed if !cache_health.is_synced() => {
                let reason = cache_health
                    .last_error()
                    .unwrap_or_else(|| "the KubeVirt CR could not be listed".to_owned());
                update(
                    &state,
                    &watching,
                    Some(Arc::new(KubevirtBaseline::unread(&format!(
                        "the KubeVirt CR could not be listed: {reason}"
                    )))),
                    None,
                );
            }
            CacheEvent::Failed => {}
            CacheEvent::Listed | CacheEvent::Changed | CacheEvent::Absent => {
                apply(&reader, &state, &watching);
            }
        },
    ));
    status
}

/// Puts the CR in force (the oldest in `store`) under the policy.
fn apply(store: &Store<DynamicObject>, state: &AppState, status: &KubevirtStatus) {
    let mut objects = store.state();
    objects.sort_by(|a, b| {
        (a.creation_timestamp(), a.namespace(), a.name_any()).cmp(&(
            b.creation_timestamp(),
            b.namespace(),
            b.name_any(),
        ))
    });
    let Some(object) = objects.first() else {
        update(state, status, None, None);
        return;
    };
    if objects.len() > 1 {
        tracing::warn!(
            count = objects.len(),
            "several KubeVirt CRs: the oldest is the baseline, as in KubeVirt"
        );
    }
    let source = format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    );
    let baseline = serde_json::to_value(object.as_ref())
        .map_err(|error| error.to_string())
        .and_then(|value| KubevirtBaseline::from_json(&value).map_err(|errors| errors.to_string()))
        .unwrap_or_else(|error| {
            KubevirtBaseline::unread(&format!("the KubeVirt CR {source} is unreadable: {error}"))
        });
    for unknown in &baseline.unknown {
        tracing::error!(
            cr = %source,
            setting = unknown.setting.as_str(),
            reason = %unknown.reason,
            "a KubeVirt CR setting virt-sizer cannot use: launcher Pods whose decision needs it are admitted unchanged"
        );
    }
    update(state, status, Some(Arc::new(baseline)), Some(source));
}

/// Records the new baseline and, when it changes the policy in force, says
/// so (log line, metrics).
fn update(
    state: &AppState,
    status: &KubevirtStatus,
    baseline: Option<Arc<KubevirtBaseline>>,
    source: Option<String>,
) {
    {
        let mut detail = status.lock();
        detail.error = baseline.as_ref().and_then(|baseline| {
            let reasons: Vec<String> = baseline
                .unknown
                .iter()
                .map(|unknown| format!("{}: {}", unknown.setting.as_str(), unknown.reason))
                .collect();
            (!reasons.is_empty()).then(|| reasons.join("; "))
        });
        detail.source = source;
    }
    let metrics = state.metrics();
    metrics
        .kubevirt_cr_present
        .set(i64::from(status.lock().source.is_some()));
    metrics
        .kubevirt_settings_unknown
        .set(baseline.as_ref().map_or(0, |baseline| {
            i64::try_from(baseline.unknown.len()).unwrap_or(i64::MAX)
        }));
    let described = baseline
        .as_ref()
        .map(|baseline| baseline.describe().trim_end().replace('\n', ", "));
    if state.policy().set_baseline(baseline) {
        metrics.kubevirt_baseline_updates.inc();
        let policy = state.policy().current();
        state.record_policy_warnings(&policy);
        tracing::info!(
            kubevirt = described.as_deref().unwrap_or("none"),
            digest = policy.settings_digest().unwrap_or(""),
            "KubeVirt CR baseline in force"
        );
    }
}
