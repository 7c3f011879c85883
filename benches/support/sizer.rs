//! virt-sizer's router as the benches serve it: the example policy,
//! `dev-a` → `tier=dev`, and the VMIs from a source the bench picks, such
//! as the cluster watch cache filled as the watcher fills it. Included by
//! `benches/load.rs` and `benches/sizing.rs` (`#[path]`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use virt_sizer::server::cluster::{CacheHealth, CacheOptions, CachedVmi, CachedVmis};
use virt_sizer::server::policy_store::PolicyStore;
use virt_sizer::server::vmi_source::{NoVmis, VmiSource};
use virt_sizer::server::{self, AppState, StaticNamespaces};

/// The example VMI (`dev-a/ci-runner-01`, the example launcher Pod's).
pub(crate) const VMI: &str = include_str!("../../examples/vmi-dev.yaml");

/// The router over the example policy and `vmis`.
pub(crate) fn app(vmis: Arc<dyn VmiSource>) -> Router {
    let policy = PolicyStore::from_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policy.yaml"
    )))
    .expect("policy");
    let labels = BTreeMap::from([(
        "dev-a".to_owned(),
        BTreeMap::from([("tier".to_owned(), "dev".to_owned())]),
    )]);
    let state = AppState::new(
        policy,
        None,
        vmis,
        Arc::new(StaticNamespaces::new(labels)),
        Duration::from_secs(1),
    );
    server::app(state)
}

/// The cluster watch cache holding the example VMI and `count` copies of
/// it under other names, applied as the watcher applies a LIST (the
/// production source).
pub(crate) fn watch_cache(count: usize) -> CachedVmis<NoVmis> {
    let template: serde_json::Value = yaml_serde::from_str(VMI).expect("yaml");
    let mut writer = Writer::<CachedVmi>::default();
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitApply(CachedVmi::from_value(&template)));
    for index in 0..count {
        let mut vmi = template.clone();
        vmi["metadata"]["name"] = serde_json::Value::String(format!("vm-{index}"));
        writer.apply_watcher_event(&Event::InitApply(CachedVmi::from_value(&vmi)));
    }
    writer.apply_watcher_event(&Event::InitDone);
    let health = CacheHealth::new("virtualmachineinstances", Duration::from_secs(120));
    health.success(true, count + 1);
    CachedVmis::new(writer.as_reader(), health, NoVmis, CacheOptions::default())
}
