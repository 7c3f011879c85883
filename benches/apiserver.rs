//! What virt-sizer costs a real kube-apiserver: Pod CREATE latency with and
//! without it in the admission chain, and the server's memory with every
//! VMI of the cluster in its watch cache.
//!
//! `cargo bench --bench apiserver` (options after `--`: `--pods N`,
//! `--vmis N`, `--concurrency N`, `--rounds N`, `--binary PATH` to serve
//! another build of virt-sizer). It needs the envtest assets
//! (`KUBEBUILDER_ASSETS`, see docs/development.md); without them it says so
//! and exits 0.
//!
//! 1. etcd + kube-apiserver from the assets, started by the e2e tests' own
//!    harness (`tests/it/e2e/control_plane.rs`, which installs the minimal
//!    VMI CRD), namespace `dev-a` labelled `tier=dev`.
//! 2. `virt-sizer serve --cluster true` (the bench-profile binary unless
//!    `--binary`, JSON logs to a file) with no VMIs: its RSS, for reference.
//! 3. `--vmis` VMIs (default 10,000: `examples/vmi-dev.yaml` renamed
//!    `vm-N`), created 64 at a time.
//! 4. `serve` again, until `/readyz` says its caches have synced: VmRSS and
//!    VmHWM (peak) from /proc/PID/status with all of them cached.
//! 5. `--pods` launcher Pods (default 1,000: the Pod of
//!    `examples/launcher-pod-dev.json`, owned by VMI `vm-N`) created through
//!    the apiserver four times, with the same kube client and the same Pods
//!    under other names: with no webhook; with virt-sizer registered (by URL
//!    and caBundle, launcher Pods only, failurePolicy Fail); with the null
//!    webhook of `benches/load.rs` registered the same way (in this process,
//!    on its own runtime: what any webhook costs); and with the null webhook
//!    answering the very patch virt-sizer answers for these Pods (what the
//!    apiserver spends applying it). In the order A B C D D C B A, `--rounds`
//!    times (default 4), each turn on the next slice of the Pods, so that
//!    drift in the apiserver or etcd falls on all four alike. Each switch is confirmed with dry-run CREATEs and warmed
//!    with [`WARM_UP`] more. The latency is the client's, from sending the
//!    CREATE to the stored Pod; virt-sizer's own time per decision is read
//!    from its decision log (`latency_us`).
#![expect(
    clippy::expect_used,
    clippy::cast_precision_loss,
    reason = "a benchmark over fixed inputs; float only for reporting"
)]

#[path = "support/args.rs"]
mod args;
#[path = "support/null_webhook.rs"]
mod null_webhook;
#[path = "support/serve.rs"]
mod serve;

#[path = "../tests/it/e2e/control_plane.rs"]
#[allow(
    dead_code,
    reason = "shared with the e2e tests, which use more of it than the bench"
)]
mod control_plane;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};
use virt_sizer::admission::DECISION_ANNOTATION;
use virt_sizer::server::cluster::vmi_resource;
use virt_sizer::server::tls::generate_self_signed;

use crate::args::option;
use crate::serve::Serve;

const NAMESPACE: &str = "dev-a";
const WEBHOOK: &str = "virt-sizer-bench";
const VMI: &str = include_str!("../examples/vmi-dev.yaml");
const REVIEW: &str = include_str!("../examples/launcher-pod-dev.json");
/// How `serve` runs here: in cluster mode.
const CLUSTER: &[&str] = &["--cluster", "true"];
/// VMIs created at once.
const VMI_CONCURRENCY: usize = 64;
/// Dry-run CREATEs before each measured round.
const WARM_UP: usize = 50;
/// How long `serve` may take to sync 10k VMIs, and a webhook configuration
/// to reach the admission chain.
const TIMEOUT: Duration = Duration::from_secs(120);

struct Options {
    pods: usize,
    vmis: usize,
    concurrency: usize,
    /// How many times the modes take their turns (A B C D D C B A each).
    rounds: usize,
    /// The `virt-sizer` to serve: the bench-profile build, or another
    /// (`--binary PATH`, to compare two builds under the same harness).
    binary: PathBuf,
}

fn options() -> Options {
    let pods = option("--pods", 1000).max(1);
    Options {
        pods,
        // Every Pod is owned by its own VMI.
        vmis: option("--vmis", 10_000).max(pods),
        concurrency: option("--concurrency", 1).max(1),
        rounds: option("--rounds", 4).clamp(1, pods.max(2) / 2),
        binary: option("--binary", PathBuf::from(env!("CARGO_BIN_EXE_virt-sizer"))),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us too,
    // without it: do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let options = options();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(&options));
}

async fn run(options: &Options) {
    let Some(session) = control_plane::session().await else {
        println!(
            "apiserver bench skipped: no envtest assets (set KUBEBUILDER_ASSETS, see \
             docs/development.md)"
        );
        return;
    };
    let plane = session.plane;
    let client = session.client.clone();
    println!(
        "machine: {} cores; control plane at {}; {} VMIs; {} Pods per mode, {} at a time, \
         in {} rounds",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        plane.server,
        options.vmis,
        options.pods,
        options.concurrency,
        options.rounds
    );
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": NAMESPACE, "labels": {"tier": "dev"}}
    }))
    .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");

    let empty = Serve::start(&options.binary, CLUSTER, Some(&plane.kubeconfig), false).await;
    println!("serve, no VMIs: {}", empty.memory());
    drop(empty);

    let started = Instant::now();
    let uids = create_vmis(&client, options.vmis).await;
    println!(
        "{} VMIs created in {:.1} s",
        uids.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let server = Serve::start(&options.binary, CLUSTER, Some(&plane.kubeconfig), true).await;
    let readyz = server.readyz().await.map(|(_, body)| body);
    println!(
        "serve ready in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        readyz
            .as_ref()
            .and_then(|body| body["vmiSource"]["detail"].as_str())
            .unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("serve, {} VMIs cached: {}", uids.len(), server.memory());

    let null_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let null_pem = generate_self_signed(&["127.0.0.1", "localhost"]).expect("certificates");
    let null_answered = Arc::new(AtomicUsize::new(0));
    let probe = launcher_pod(0, &uids[0], "probe");
    let patch = patch_for(&server, &probe).await;
    let null_address = {
        let (router, pem) = (
            null_webhook::router(null_answered.clone(), &patch),
            null_pem.clone(),
        );
        null_runtime
            .spawn(async move { null_webhook::start(router, &pem).await })
            .await
            .expect("the null webhook starts")
    };
    let webhooks = Webhooks {
        configurations: Api::all(client.clone()),
        pods: Api::namespaced_with(client.clone(), NAMESPACE, &ApiResource::erase::<Pod>(&())),
        virt_sizer: (server.port, server.pem.ca_pem.clone()),
        null: (null_address.port(), null_pem.ca_pem.clone()),
        null_answered,
        probe,
    };
    let mut latencies: [Latencies; 4] = Default::default();
    // (A B C D D C B A) × rounds, each turn on the next slice of the Pods.
    let n_slices = 2 * options.rounds;
    let slice =
        |index: usize| index * options.pods / n_slices..(index + 1) * options.pods / n_slices;
    let turns = (0..options.rounds).flat_map(|round| {
        let (first, second) = (slice(2 * round), slice(2 * round + 1));
        Mode::ALL
            .map(|mode| (mode, first.clone()))
            .into_iter()
            .chain(
                Mode::ALL
                    .map(|mode| (mode, second.clone()))
                    .into_iter()
                    .rev(),
            )
    });
    for (mode, range) in turns {
        webhooks.switch_to(mode).await;
        let round = create_pods(&webhooks.pods, &uids, range, mode, options.concurrency).await;
        latencies[mode as usize].extend(round);
    }
    webhooks.switch_to(Mode::NoWebhook).await;
    null_runtime.shutdown_background();
    println!("serve after the Pods: {}", server.memory());

    println!(
        "{:<32} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "Pod CREATE", "pods", "sized", "mean µs", "p50 µs", "p90 µs", "p99 µs", "max µs"
    );
    for mode in Mode::ALL {
        latencies[mode as usize].report(mode.name());
    }
    let [none, sizer, null, patching_null] = &latencies;
    for (name, with, without) in [
        ("added by virt-sizer", sizer, none),
        ("added by the null webhook", null, none),
        (
            "added by the null webhook with the patch",
            patching_null,
            none,
        ),
        (
            "virt-sizer over the null webhook with the patch",
            sizer,
            patching_null,
        ),
    ] {
        println!(
            "{name}: p50 {:+} µs, p99 {:+} µs, mean {:+.0} µs",
            i128::from(with.percentile(50.0)) - i128::from(without.percentile(50.0)),
            i128::from(with.percentile(99.0)) - i128::from(without.percentile(99.0)),
            with.mean() - without.mean()
        );
    }
    // The log is written from a background thread, a moment after the
    // answer.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let inside = decision_latencies(&server);
    println!(
        "inside virt-sizer (its decision log's latency_us, {} decisions incl. dry runs): \
         mean {:.0} µs, p50 {} µs, p99 {} µs",
        inside.micros.len(),
        inside.mean(),
        inside.percentile(50.0),
        inside.percentile(99.0)
    );
}

/// Creates `vm-0` … `vm-{count-1}` and returns their uids, in order.
async fn create_vmis(client: &kube::Client, count: usize) -> Vec<String> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &vmi_resource());
    let mut template: Value = yaml_serde::from_str(VMI).expect("VMI YAML");
    let metadata = template["metadata"].as_object_mut().expect("VMI metadata");
    for field in ["uid", "creationTimestamp", "generation"] {
        metadata.remove(field);
    }
    metadata.insert("namespace".into(), json!(NAMESPACE));
    let mut uids: Vec<(usize, String)> = futures::stream::iter(0..count)
        .map(|index| {
            let (api, mut vmi) = (api.clone(), template.clone());
            vmi["metadata"]["name"] = json!(format!("vm-{index}"));
            async move {
                let object: DynamicObject = serde_json::from_value(vmi).expect("a VMI object");
                let created = api
                    .create(&PostParams::default(), &object)
                    .await
                    .expect("VMI created");
                (index, created.metadata.uid.expect("a stored VMI has a uid"))
            }
        })
        .buffer_unordered(VMI_CONCURRENCY)
        .collect()
        .await;
    uids.sort_unstable();
    uids.into_iter().map(|(_, uid)| uid).collect()
}

/// The example launcher Pod for VMI `vm-{index}` (uid `uid`), named
/// `virt-launcher-vm-{index}-{mode}`.
fn launcher_pod(index: usize, uid: &str, mode: &str) -> DynamicObject {
    let review: Value = serde_json::from_str(REVIEW).expect("review JSON");
    let mut pod = review["request"]["object"].clone();
    let vmi = format!("vm-{index}");
    let metadata = &mut pod["metadata"];
    metadata
        .as_object_mut()
        .expect("Pod metadata")
        .remove("generateName");
    metadata["name"] = json!(format!("virt-launcher-{vmi}-{mode}"));
    metadata["namespace"] = json!(NAMESPACE);
    for label in [
        "vm.kubevirt.io/name",
        "vmi.kubevirt.io/id",
        "kubevirt.io/domain",
    ] {
        metadata["labels"][label] = json!(vmi);
    }
    metadata["labels"]["kubevirt.io/created-by"] = json!(uid);
    metadata["annotations"]["kubevirt.io/domain"] = json!(vmi);
    metadata["ownerReferences"][0]["name"] = json!(vmi);
    metadata["ownerReferences"][0]["uid"] = json!(uid);
    serde_json::from_value(pod).expect("a Pod object")
}

fn is_sized(pod: &DynamicObject) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(DECISION_ANNOTATION))
}

/// What receives the launcher Pods' CREATEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No webhook: the apiserver alone.
    NoWebhook,
    /// `virt-sizer serve`.
    VirtSizer,
    /// The null webhook (in this process): what any webhook costs.
    NullWebhook,
    /// The null webhook answering with the patch virt-sizer computes for
    /// these Pods: what any webhook making that change costs.
    PatchingNull,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::NoWebhook,
        Mode::VirtSizer,
        Mode::NullWebhook,
        Mode::PatchingNull,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::NoWebhook => "without a webhook",
            Mode::VirtSizer => "with virt-sizer",
            Mode::NullWebhook => "with the null webhook",
            Mode::PatchingNull => "… answering virt-sizer's patch",
        }
    }

    /// The end of its Pods' names.
    fn suffix(self) -> &'static str {
        match self {
            Mode::NoWebhook => "plain",
            Mode::VirtSizer => "sized",
            Mode::NullWebhook => "null",
            Mode::PatchingNull => "patched",
        }
    }
}

/// The webhook configuration the bench switches, and what it points at.
struct Webhooks {
    configurations: Api<MutatingWebhookConfiguration>,
    pods: Api<DynamicObject>,
    /// Port and CA of virt-sizer, and of the null webhook.
    virt_sizer: (u16, String),
    null: (u16, String),
    null_answered: Arc<AtomicUsize>,
    /// A Pod to CREATE with dry run until the apiserver shows the switch.
    probe: DynamicObject,
}

impl Webhooks {
    /// Points the launcher-Pod webhook at `mode`'s server (or removes it),
    /// waits until a dry-run CREATE shows the change, then warms the path
    /// with [`WARM_UP`] more.
    async fn switch_to(&self, mode: Mode) {
        if self
            .configurations
            .get_opt(WEBHOOK)
            .await
            .expect("GET")
            .is_some()
        {
            self.configurations
                .delete(WEBHOOK, &DeleteParams::default())
                .await
                .expect("webhook removed");
        }
        let target = match mode {
            Mode::NoWebhook => None,
            Mode::VirtSizer => Some((&self.virt_sizer, "/mutate")),
            Mode::NullWebhook => Some((&self.null, "/mutate")),
            Mode::PatchingNull => Some((&self.null, "/mutate-patched")),
        };
        if let Some(((port, ca_pem), path)) = target {
            let configuration: MutatingWebhookConfiguration = serde_json::from_value(json!({
                "metadata": {"name": WEBHOOK},
                "webhooks": [{
                    "name": "launcher-pods.virt-sizer.io",
                    "admissionReviewVersions": ["v1"],
                    "clientConfig": {
                        "url": format!("https://127.0.0.1:{port}{path}"),
                        "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
                    },
                    "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                               "resources": ["pods"], "scope": "Namespaced"}],
                    "objectSelector": {"matchLabels": {"kubevirt.io": "virt-launcher"}},
                    "sideEffects": "None",
                    "timeoutSeconds": 3,
                    "reinvocationPolicy": "IfNeeded",
                    "failurePolicy": "Fail",
                }],
            }))
            .expect("webhook configuration");
            self.configurations
                .create(&PostParams::default(), &configuration)
                .await
                .expect("webhook registered");
        }
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let null_before = self.null_answered.load(Ordering::SeqCst);
            let created = self
                .pods
                .create(&dry_run, &self.probe)
                .await
                .expect("dry run");
            let null_called = self.null_answered.load(Ordering::SeqCst) > null_before;
            let shown = (null_called, is_sized(&created))
                == match mode {
                    Mode::NoWebhook => (false, false),
                    Mode::VirtSizer => (false, true),
                    Mode::NullWebhook => (true, false),
                    Mode::PatchingNull => (true, true),
                };
            if shown {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the apiserver did not switch to {} within {TIMEOUT:?}",
                mode.name()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for _ in 0..WARM_UP {
            self.pods
                .create(&dry_run, &self.probe)
                .await
                .expect("dry run");
        }
    }
}

/// Creates the Pods of VMIs `range`, `concurrency` at a time, timing each.
async fn create_pods(
    pods: &Api<DynamicObject>,
    uids: &[String],
    range: std::ops::Range<usize>,
    mode: Mode,
    concurrency: usize,
) -> Latencies {
    let results: Vec<(u64, bool)> = futures::stream::iter(range)
        .map(|index| {
            let pod = launcher_pod(index, &uids[index], mode.suffix());
            async move {
                let sent = Instant::now();
                let created = pods
                    .create(&PostParams::default(), &pod)
                    .await
                    .expect("Pod created");
                let elapsed = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                (elapsed, is_sized(&created))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Latencies {
        n_sized: results.iter().filter(|(_, sized)| *sized).count(),
        micros: results.into_iter().map(|(micros, _)| micros).collect(),
    }
}

/// CREATE latencies of one mode, and how many of its Pods came back sized.
#[derive(Default)]
struct Latencies {
    micros: Vec<u64>,
    n_sized: usize,
}

impl Latencies {
    fn extend(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
        self.n_sized += other.n_sized;
        self.micros.sort_unstable();
    }

    /// Nearest rank on the sorted latencies.
    fn percentile(&self, percent: f64) -> u64 {
        let rank = (percent / 100.0 * self.micros.len() as f64).ceil() as usize;
        self.micros
            .get(rank.saturating_sub(1))
            .copied()
            .unwrap_or(0)
    }

    fn mean(&self) -> f64 {
        self.micros.iter().sum::<u64>() as f64 / self.micros.len().max(1) as f64
    }

    fn report(&self, name: &str) {
        println!(
            "{:<32} {:>6} {:>6} {:>9.0} {:>9} {:>9} {:>9} {:>9}",
            name,
            self.micros.len(),
            self.n_sized,
            self.mean(),
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.micros.last().copied().unwrap_or(0)
        );
    }
}

/// The JSON Patch (base64) `server` answers for a CREATE of `pod`.
async fn patch_for(server: &Serve, pod: &DynamicObject) -> String {
    let mut review: Value = serde_json::from_str(REVIEW).expect("review JSON");
    review["request"]["object"] = serde_json::to_value(pod).expect("Pod JSON");
    review["request"]["namespace"] = json!(NAMESPACE);
    let response: Value = server
        .https_client()
        .post(format!("https://127.0.0.1:{}/mutate", server.port))
        .json(&review)
        .send()
        .await
        .expect("POST /mutate")
        .json()
        .await
        .expect("an AdmissionReview");
    response["response"]["patch"]
        .as_str()
        .expect("virt-sizer patches the Pod")
        .to_owned()
}

/// The `latency_us` of every decision in `server`'s log so far.
fn decision_latencies(server: &Serve) -> Latencies {
    let mut latencies = Latencies::default();
    latencies.extend(Latencies {
        micros: server
            .log_text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == "admission decision")
            .filter_map(|line| line["latency_us"].as_u64())
            .collect(),
        n_sized: 0,
    });
    latencies
}
