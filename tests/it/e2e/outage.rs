//! The apiserver goes silent for virt-sizer (a proxy holds every byte, as
//! when the apiserver's process is stopped) while it keeps calling the
//! webhook: a decision made meanwhile is sized from the cache but says its
//! inputs may not be current, the replica turns unready past
//! `--cache-stale-seconds`, and once the apiserver answers again the
//! caches relist and decisions are current within seconds.

use std::time::{Duration, Instant};

use super::api::{self, Kind, Resources};
use super::control_plane;
use super::objects;
use super::proxy::Proxy;
use super::webhook::{Serve, kubectl_create, register};
use crate::support::{VmiSpec, q};

const NAMESPACE: &str = "outage-e2e";
/// The staleness bound under test (the default is 120 s).
const STALE_SECONDS: u64 = 8;
const STALE_WARNING: &str = "decided from inputs that may not be current";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_apiserver_is_reported_and_decisions_say_so() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let plane = session.plane;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(plane).await;
    api::namespace(client, NAMESPACE, &[("tier", "dev")]).await;
    let vmi = api::create(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&VmiSpec::simple("steady", 1024), NAMESPACE),
    )
    .await;

    let mut serve = Serve::with_e2e_policy();
    serve.extra_args = vec![
        "--kubeconfig".into(),
        proxy.kubeconfig(plane, dir.path()).display().to_string(),
        "--cache-stale-seconds".into(),
        STALE_SECONDS.to_string(),
    ];
    let server = serve.start(plane).await;
    register(
        &session,
        &server.webhook_configurations(plane, "manifests/base"),
    )
    .await;
    let launcher = |name: String| objects::named_launcher_pod(&vmi, "100m", &name);
    // Before: current, no warning; tier=dev sizes 1 vCPU / 20 = 50m.
    let (stored, warnings) = kubectl_create(plane, &launcher("before".into()));
    assert_eq!(Resources::compute(&stored).request("cpu"), Some(q("50m")));
    assert!(!warnings.contains(STALE_WARNING), "{warnings}");

    proxy.freeze();
    let frozen_at = Instant::now();
    // Within the probe's interval and timeout (5 s + 5 s), decisions say
    // the apiserver is silent; the VMI still comes from the cache.
    let mut attempt = 0;
    let mut last = String::new();
    api::eventually(
        "a decision during the outage to carry the staleness warning",
        Duration::from_secs(20),
        async || {
            attempt += 1;
            let (stored, warnings) = kubectl_create(plane, &launcher(format!("during-{attempt}")));
            last = warnings.clone();
            Resources::compute(&stored).request("cpu") == Some(q("50m"))
                && warnings.contains(STALE_WARNING)
                && warnings.contains("the apiserver has not answered for")
        },
    )
    .await;
    eprintln!(
        "e2e: staleness reported {:?} after the apiserver went silent",
        frozen_at.elapsed()
    );
    assert!(last.contains("virtualmachineinstances"), "{last}");
    // Past the bound, not ready: 8 s since the last answer, seen within
    // one probe interval more.
    api::eventually(
        "a silent apiserver to make the replica unready",
        Duration::from_secs(STALE_SECONDS + 15),
        async || server.readyz().await.0 == 503,
    )
    .await;
    assert!(frozen_at.elapsed() >= Duration::from_secs(STALE_SECONDS));

    proxy.thaw();
    let thawed_at = Instant::now();
    let mut attempt = 0;
    api::eventually(
        "decisions to be current again once the apiserver answers",
        Duration::from_secs(15),
        async || {
            attempt += 1;
            let (_, warnings) = kubectl_create(plane, &launcher(format!("after-{attempt}")));
            !warnings.contains(STALE_WARNING) && server.readyz().await.0 == 200
        },
    )
    .await;
    eprintln!(
        "e2e: current again {:?} after the apiserver answered",
        thawed_at.elapsed()
    );
}
