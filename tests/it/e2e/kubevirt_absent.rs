//! A cluster without KubeVirt (Kata only, or virt-sizer installed first):
//! the KubeVirt CRDs are deleted, and the apiserver answers their LIST with
//! a plain-text `404 page not found`. virt-sizer is ready and sizes a Kata
//! RuntimeClass; once the CRDs are installed, its caches start and a
//! launcher Pod is sized. The CRDs are put back however the test ends.

use std::time::Duration;

use serde_json::json;

use super::api::{self, Kind, Resources};
use super::control_plane::{self, ControlPlane};
use super::objects;
use super::webhook::Serve;
use crate::support::{VmiSpec, q};

const NAMESPACE: &str = "kv-absent-e2e";
const CRDS: [&str; 2] = [
    "customresourcedefinitions/virtualmachineinstances.kubevirt.io",
    "customresourcedefinitions/kubevirts.kubevirt.io",
];

/// Puts the CRDs back when dropped: the other tests need them.
struct Reinstall<'a>(&'a ControlPlane);

impl Drop for Reinstall<'_> {
    fn drop(&mut self) {
        // Never panic here: this also runs while a failed test unwinds.
        if let Err(error) = self.0.install_crds() {
            eprintln!("e2e: reinstalling the CRDs: {error}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_kubevirt_it_is_ready_sizes_kata_and_starts_caches_when_kubevirt_arrives() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let plane = session.plane;
    let _reinstall = Reinstall(plane);
    let deleted = plane.kubectl(&["delete", CRDS[0], CRDS[1], "--wait=true", "--timeout=60s"]);
    assert!(deleted.status.success(), "{deleted:?}");
    let listed = plane.kubectl(&[
        "get",
        "--raw",
        "/apis/kubevirt.io/v1/virtualmachineinstances",
    ]);
    assert!(
        !listed.status.success() && String::from_utf8_lossy(&listed.stderr).contains("NotFound"),
        "the apiserver no longer serves VMIs: {listed:?}"
    );

    // Ready (Serve::start waits for /readyz 200) although nothing of
    // KubeVirt can be listed; the absent CRDs are looked for again every 2 s.
    let mut serve = Serve::with_e2e_policy();
    serve.extra_args = vec!["--watch-backoff-max-seconds".into(), "2".into()];
    let server = serve.start(plane).await;
    let (_, detail) = server.readyz().await;
    assert_eq!(detail["ready"], true, "{detail}");
    assert_eq!(detail["vmiSource"]["cache"]["state"], "absent", "{detail}");

    for configuration in server.webhook_configurations(plane, "manifests/base") {
        let kind = if configuration["kind"] == "MutatingWebhookConfiguration" {
            Kind::MutatingWebhookConfiguration
        } else {
            Kind::ValidatingWebhookConfiguration
        };
        api::create(client, kind, &configuration).await;
    }
    // A Kata RuntimeClass is sized (the e2e policy's kata-qemu accounts the
    // guest: vmm 160Mi + default_memory 2048Mi = 2208Mi).
    let mut attempt = 0;
    api::eventually(
        "a Kata RuntimeClass to be sized without KubeVirt",
        Duration::from_secs(20),
        async || {
            attempt += 1;
            let mut class = crate::support::runtime_class("kata-qemu", Some(("250m", "160Mi")));
            class["metadata"]["name"] = json!(format!("kata-qemu-absent-{attempt}"));
            let stored = api::create(client, Kind::RuntimeClass, &class).await;
            stored["overhead"]["podFixed"]["memory"].as_str().map(q) == Some(q("2208Mi"))
        },
    )
    .await;

    // KubeVirt arrives: the caches start, and a launcher Pod is sized from
    // its VMI (tier=dev: 1 vCPU / 20 = 50m).
    plane.install_crds().expect("the CRDs install");
    api::namespace(client, NAMESPACE, &[("tier", "dev")]).await;
    let vmi = api::create(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&VmiSpec::simple("arrived", 1024), NAMESPACE),
    )
    .await;
    let mut attempt = 0;
    api::eventually(
        "the caches to start once the CRDs appear",
        Duration::from_secs(30),
        async || {
            attempt += 1;
            let pod = objects::named_launcher_pod(&vmi, "100m", &format!("arrived-{attempt}"));
            let stored = api::create(client, Kind::Pod, &pod).await;
            Resources::compute(&stored).request("cpu") == Some(q("50m"))
        },
    )
    .await;
    let (_, detail) = server.readyz().await;
    assert_ne!(detail["vmiSource"]["cache"]["state"], "absent", "{detail}");
}
