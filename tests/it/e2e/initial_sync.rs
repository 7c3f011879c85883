//! A replica that starts while launcher Pods are being created: 1,000 VMIs
//! exist, and the apiserver's answers reach virt-sizer slowly (a proxy
//! paces them), so its first LIST takes seconds. Pods created meanwhile are
//! sized, none sent to `onError`: a lookup waits for the LIST, then falls
//! back to a GET with a burst allowance.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::Value;

use super::api::{self, Kind, Resources};
use super::control_plane;
use super::objects;
use super::proxy::Proxy;
use super::webhook::{Serve, register};
use crate::support::{VmiSpec, q};

const NAMESPACE: &str = "sync-e2e";
const VMIS: usize = 1_000;
const PODS: usize = 100;
/// Bytes a second from the apiserver to virt-sizer, per connection: the
/// LIST of 1,000 VMIs (about 1.5 KB each) takes about 15 s at this pace.
const PACE: u64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_created_during_the_first_list_of_a_thousand_vmis_are_sized() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let plane = session.plane;
    let dir = tempfile::tempdir().expect("tempdir");
    api::namespace(client, NAMESPACE, &[("tier", "dev")]).await;
    let started = Instant::now();
    let vmis: Vec<Value> = futures::stream::iter(0..VMIS)
        .map(|index| async move {
            api::ensure(
                client,
                Kind::VirtualMachineInstance,
                &objects::vmi(&VmiSpec::simple(&format!("vm-{index:04}"), 1024), NAMESPACE),
            )
            .await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    eprintln!("e2e: {VMIS} VMIs created in {:?}", started.elapsed());

    let proxy = Proxy::start(plane).await;
    proxy.throttle(PACE);
    let mut serve = Serve::with_e2e_policy();
    serve.extra_args = vec![
        "--kubeconfig".into(),
        proxy.kubeconfig(plane, dir.path()).display().to_string(),
    ];
    let server = serve.spawn(plane);
    api::eventually("serve to listen", Duration::from_secs(20), async || {
        server.readyz().await.0 != 0
    })
    .await;
    register(
        &session,
        &server.webhook_configurations(plane, "manifests/base"),
    )
    .await;
    assert_eq!(
        server.readyz().await.0,
        503,
        "the first LIST must still be under way, or this test shows nothing"
    );

    let created = Instant::now();
    let stored: Vec<Value> = futures::stream::iter(vmis.iter().take(PODS).enumerate())
        .map(|(index, vmi)| async move {
            let pod = objects::named_launcher_pod(vmi, "100m", &format!("burst-{index:03}"));
            api::create(client, Kind::Pod, &pod).await
        })
        .buffer_unordered(10)
        .collect()
        .await;
    let elapsed = created.elapsed();
    let synced_during = server.readyz().await.0 == 200;
    eprintln!(
        "e2e: {PODS} launcher Pods created in {elapsed:?}; the cache had synced by then: {synced_during}"
    );
    // tier=dev: the dev profile, 1 vCPU / 20 = 50m. A Pod sent to onError
    // (Allow) would keep KubeVirt's 100m.
    let not_sized: Vec<&str> = stored
        .iter()
        .filter(|pod| Resources::compute(pod).request("cpu") != Some(q("50m")))
        .map(|pod| pod["metadata"]["name"].as_str().unwrap_or("?"))
        .collect();
    assert!(
        not_sized.is_empty(),
        "{} not sized: {not_sized:?}",
        not_sized.len()
    );
    api::eventually(
        "the first LIST to complete",
        Duration::from_secs(60),
        async || server.readyz().await.0 == 200,
    )
    .await;
}
