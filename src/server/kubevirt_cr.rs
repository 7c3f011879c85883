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
use crate::server::cluster::{CacheEvent, CacheHealth, CacheOptions, run_cache};
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
    /// Whether the first list has been applied (or the CRD is absent), and
    /// the watch has not been failing for too long.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.health.is_ready()
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
pub fn spawn(client: &Client, state: AppState, options: CacheOptions) -> Arc<KubevirtStatus> {
    let health = CacheHealth::new("kubevirts", options.stale_after);
    health.attach(state.metrics());
    let status = Arc::new(KubevirtStatus {
        health: health.clone(),
        detail: Mutex::new(Detail::default()),
    });
    let resource = kubevirt_resource();
    let writer = Writer::<DynamicObject>::new(resource.clone());
    let store = writer.as_reader();
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    let watching = status.clone();
    let reader = store.clone();
    tokio::spawn(run_cache(
        api,
        writer,
        store,
        health,
        options,
        |object: &mut DynamicObject, _| object.managed_fields_mut().clear(),
        move |_: CacheEvent| apply(&reader, &state, &watching),
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
    let parsed = serde_json::to_value(object.as_ref())
        .map_err(|error| error.to_string())
        .and_then(|value| KubevirtBaseline::from_json(&value).map_err(|errors| errors.to_string()));
    match parsed {
        Ok(baseline) => {
            let source = baseline.source.clone();
            update(state, status, Some(Arc::new(baseline)), Some(source));
        }
        Err(error) => {
            tracing::error!(%error, "KubeVirt CR not usable as the baseline; the previous one stays");
            status.lock().error = Some(error);
        }
    }
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
        detail.source = source;
        detail.error = None;
    }
    let metrics = state.metrics();
    metrics
        .kubevirt_cr_present
        .set(i64::from(baseline.is_some()));
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
