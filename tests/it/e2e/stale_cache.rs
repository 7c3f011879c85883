//! The watch caches never size from stale data, even when the ServiceAccount
//! may `get` and `list` but not `watch` (the cache can then only relist):
//! a VMI deleted and recreated with a new shape sizes its next launcher Pod
//! from the new VMI (the cached one has another uid: a miss, then a GET),
//! a relabelled namespace is followed within the relist bound, and
//! `/readyz` shows each cache's state.

use std::time::Duration;

use serde_json::json;

use super::api::{self, Kind, Resources};
use super::control_plane::{self, ControlPlane};
use super::objects;
use super::webhook::{Offline, Serve, policy, register};
use crate::support::{VmiSpec, q};

const NAMESPACE: &str = "stale-e2e";
const ACCOUNT: &str = "virt-sizer-no-watch";
/// The relist bound under test: backoff up to 2 s (plus jitter).
const BACKOFF_MAX_SECONDS: &str = "2";

/// A kubeconfig for a ServiceAccount that may get and list VMIs,
/// Namespaces and KubeVirt CRs, but not watch them.
fn no_watch_kubeconfig(plane: &ControlPlane, dir: &std::path::Path) -> std::path::PathBuf {
    plane.service_account_kubeconfig(
        dir,
        ACCOUNT,
        NAMESPACE,
        "- apiGroups: [kubevirt.io]\n  resources: [virtualmachineinstances, kubevirts]\n  verbs: [get, list]\n\
         - apiGroups: [\"\"]\n  resources: [namespaces]\n  verbs: [get, list]\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_watch_permission_the_caches_still_follow_the_cluster() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let dir = tempfile::tempdir().expect("tempdir");
    api::namespace(client, NAMESPACE, &[("tier", "dev")]).await;
    let kubeconfig = no_watch_kubeconfig(session.plane, dir.path());

    // shape-0 as 16 vCPUs / 8Gi, in the first LIST.
    let mut big = VmiSpec::simple("shape-0", 8192);
    big.cores = 16;
    let old = api::create(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&big, NAMESPACE),
    )
    .await;

    let mut serve = Serve::with_e2e_policy();
    serve.extra_args = vec![
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--watch-backoff-max-seconds".into(),
        BACKOFF_MAX_SECONDS.into(),
    ];
    let server = serve.start(session.plane).await;
    register(
        &session,
        &server.webhook_configurations(session.plane, "manifests/base"),
    )
    .await;

    // /readyz: ready (every LIST succeeds) and honest about the watch.
    let detail = server.readyz().await.1;
    assert_eq!(detail["ready"], true, "{detail}");
    let cache = &detail["vmiSource"]["cache"];
    assert_eq!(cache["synced"], true, "{detail}");
    let state = cache["state"].as_str().expect("state");
    assert!(
        ["watching", "relisting", "failing"].contains(&state),
        "{detail}"
    );
    assert!(
        detail["namespaceSource"]["cache"]["state"].is_string(),
        "{detail}"
    );
    api::eventually(
        "the forbidden watch to show in /readyz",
        Duration::from_secs(15),
        async || {
            server.readyz().await.1["vmiSource"]["cache"]["lastError"]
                .as_str()
                .is_some_and(|error| error.contains("forbidden") || error.contains("Forbidden"))
        },
    )
    .await;

    // Delete shape-0 and recreate it as 1 vCPU / 1Gi: a new uid. The
    // launcher Pod names the new uid; the cache may still hold the old VMI.
    api::delete(
        client,
        Kind::VirtualMachineInstance,
        Some(NAMESPACE),
        "shape-0",
    )
    .await;
    let small = VmiSpec::simple("shape-0", 1024);
    let new = api::create(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&small, NAMESPACE),
    )
    .await;
    assert_ne!(old["metadata"]["uid"], new["metadata"]["uid"]);
    // As KubeVirt renders it for the new VMI: 1/10 = 100m, 1Gi + 268Mi.
    let pod = objects::small_launcher_pod(&new);
    let stored = api::create(client, Kind::Pod, &pod).await;
    let offline = Offline {
        policy: Some(&policy()),
        vmi: Some(&new),
        namespace_labels: "tier=dev".into(),
        extra_args: Vec::new(),
    }
    .patched(&pod);
    // tier=dev: the dev profile (1:20, 150 %): 1/20 = 50m; 1Gi × 100/150 =
    // 715827882 + 268Mi = 996846250. The old 16-vCPU VMI would give 800m.
    assert_eq!(
        Resources::compute(&stored),
        Resources::compute(&offline).as_stored()
    );
    assert_eq!(Resources::compute(&stored).request("cpu"), Some(q("50m")));
    assert_eq!(
        Resources::compute(&stored).request("memory"),
        Some(q("996846250"))
    );

    // Relabel the namespace: within the relist bound, new Pods take the
    // default profile (1/10 = 100m, 1Gi + 268Mi = 1292Mi). They ask for 7m,
    // which no profile gives, so the decision is written beside the change.
    let mut namespace = api::get(client, Kind::Namespace, None, NAMESPACE).await;
    namespace["metadata"]["labels"] = json!({"tier": "none"});
    api::try_replace(client, Kind::Namespace, &namespace)
        .await
        .expect("relabelled");
    let mut attempt = 0;
    api::eventually(
        "the relabelled namespace to select the default profile",
        Duration::from_secs(20),
        async || {
            attempt += 1;
            let pod = objects::named_launcher_pod(&new, "7m", &format!("relabel-{attempt}"));
            let stored = api::create(client, Kind::Pod, &pod).await;
            Resources::compute(&stored).request("cpu") == Some(q("100m"))
                && api::annotation(&stored, virt_sizer::admission::DECISION_ANNOTATION)
                    .is_some_and(|decision| decision.starts_with("profile=default,"))
        },
    )
    .await;
}
