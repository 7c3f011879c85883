//! Criterion benches of the pure core: quantity parse/format, one launcher
//! decision, one RuntimeClass decision, reading a VMI (what a VMI source
//! does once per watch event or file) and one full review (JSON decode of
//! a realistic launcher-Pod AdmissionReview, decision from the VMI as its
//! source read it, patch encode, response encode), with its decode, decide,
//! response and log line apart; one hit of the cluster VMI cache; and the
//! policy checker on the examples' policy and on 16,000 rules that are
//! strings (one problem each: the checker is linear in them). No sockets.
//!
//! `cargo bench --bench sizing`
#![expect(
    clippy::expect_used,
    reason = "a bench over fixed inputs that are valid by construction"
)]

// Measure with the allocator the binary ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/null_webhook.rs"]
#[allow(dead_code, reason = "only its router and parse are measured here")]
mod null_webhook;
#[path = "support/sizer.rs"]
mod sizer;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;
use tower::ServiceExt as _;
use virt_sizer::admission::wire::{self, Sizing};
use virt_sizer::admission::{self, AdmissionReview, Environment, VmiRef};
use virt_sizer::server::handlers;
use virt_sizer::server::vmi_source::VmiSource as _;
use virt_sizer::sizing::Quantity;
use virt_sizer::sizing::kata;
use virt_sizer::sizing::kubevirt::{self, AutoLimits, LauncherInput};
use virt_sizer::sizing::policy::ValidPolicy;
use virt_sizer::sizing::vmi::ReadVmi;
use virt_sizer::telemetry::{self, LogFormat};

const POLICY: &str = include_str!("../examples/policy.yaml");
/// A launcher-Pod AdmissionReview as KubeVirt v1.9 renders it (~10 KB).
const REVIEW: &str = include_str!("../examples/launcher-pod-dev.json");

fn benches(c: &mut Criterion) {
    let policy = ValidPolicy::from_yaml(POLICY).expect("valid policy");
    let vmi_value: Value = yaml_serde::from_str(sizer::VMI).expect("valid YAML");
    // As the server holds it: read once, when the VMI arrives.
    let read_vmi = ReadVmi::from_value(&vmi_value);
    let vmi_facts = read_vmi.facts.clone().expect("valid VMI");
    let labels: BTreeMap<String, String> = [("tier".to_owned(), "dev".to_owned())].into();
    let body = REVIEW.as_bytes();

    c.bench_function("quantity/parse+format", |b| {
        b.iter(|| {
            Quantity::parse(black_box("1292Mi"))
                .expect("valid")
                .to_string()
        });
    });
    c.bench_function("kubevirt/size_launcher", |b| {
        let profile = &policy.profiles["dev"];
        b.iter(|| {
            kubevirt::size_launcher(&LauncherInput {
                vmi: black_box(&vmi_facts),
                settings: &policy.kubevirt,
                profile,
                namespace_labels: &labels,
                auto_limits: AutoLimits::default(),
                reported_overhead: None,
            })
            .expect("sizes")
        });
    });
    c.bench_function("kata/size_runtime_class", |b| {
        let class = &policy.kata.runtime_classes["kata-qemu"];
        b.iter(|| kata::size_runtime_class(black_box(class)));
    });
    let decoded: AdmissionReview = serde_json::from_slice(body).expect("decodes");
    let decoded_request = decoded.request.expect("request");
    c.bench_function("review/decode only, whole object", |b| {
        b.iter(|| serde_json::from_slice::<AdmissionReview>(black_box(body)).expect("decodes"));
    });
    c.bench_function("review/decide only", |b| {
        let environment = Environment {
            policy: &policy,
            namespace_labels: &labels,
            vmi: admission::VmiLookup::of(Some(&read_vmi)),
        };
        b.iter(|| admission::review(&environment, black_box(&decoded_request)));
    });
    c.bench_function("vmi/facts from JSON", |b| {
        // What a VMI source does once per watch event, file or GET.
        b.iter(|| ReadVmi::from_value(black_box(&vmi_value)));
    });
    c.bench_function(
        &format!("review/full, server path ({} B)", body.len()),
        |b| {
            b.iter(|| {
                // What POST /mutate does between the body and the response.
                let request = wire::decode::<Sizing>(black_box(body)).expect("decodes");
                let environment = Environment {
                    policy: &policy,
                    namespace_labels: &labels,
                    vmi: admission::VmiLookup::of(Some(&read_vmi)),
                };
                let decision = admission::review(&environment, &request);
                admission::encode_response(&decision).expect("encodes")
            });
        },
    );
    let server_request = wire::decode::<Sizing>(body).expect("decodes");
    let decision = admission::review(
        &Environment {
            policy: &policy,
            namespace_labels: &labels,
            vmi: admission::VmiLookup::of(Some(&read_vmi)),
        },
        &server_request,
    );
    c.bench_function("review/encode response only", |b| {
        b.iter(|| admission::encode_response(black_box(&decision)).expect("encodes"));
    });
    // The decision's JSON log line, formatted and written to a sink with the
    // subscriber `serve` installs (its writer thread and stderr left out).
    let log = telemetry::subscriber(LogFormat::Json, std::io::sink);
    tracing::subscriber::with_default(log, || {
        c.bench_function("review/log line only (JSON)", |b| {
            b.iter(|| {
                handlers::log_decision(
                    black_box(&server_request),
                    black_box(&decision),
                    Duration::from_micros(42),
                );
            });
        });
    });
    c.bench_function("review/decode only, server path", |b| {
        b.iter(|| wire::decode::<Sizing>(black_box(body)).expect("decodes"));
    });
    // What the load bench's null webhook parses of the same body (its uid,
    // skipping the rest): the part of the decode any webhook pays.
    c.bench_function("review/decode only, the null webhook's (uid)", |b| {
        b.iter(|| null_webhook::uid_of(black_box(body)));
    });
    c.bench_function(
        "vmi cache/hit (a launcher Pod's VMI by name and uid)",
        |b| {
            let source = sizer::watch_cache(0);
            let reference = VmiRef {
                namespace: "dev-a".into(),
                name: "ci-runner-01".into(),
                uid: read_vmi.uid.clone(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            b.iter(|| {
                runtime
                    .block_on(source.lookup(black_box(&reference)))
                    .expect("found")
            });
        },
    );
    routers(c, REVIEW);
}

/// One `POST /mutate` through each router in process, no TLS or sockets:
/// virt-sizer's (request bounds, extractor, VMI from the watch cache,
/// decision, metrics, response) and the load bench's null webhook. What
/// the two differ by is what virt-sizer adds per request above the HTTP
/// and TLS both pay.
fn routers(c: &mut Criterion, body: &'static str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    for (name, router) in [
        ("virt-sizer", sizer::app(Arc::new(sizer::watch_cache(0)))),
        ("null webhook", null_webhook::router(Arc::default(), "")),
    ] {
        c.bench_function(&format!("router/POST /mutate, {name}"), |b| {
            b.iter(|| {
                let request = axum::http::Request::post("/mutate")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .expect("request");
                runtime.block_on(async {
                    let response = router.clone().oneshot(request).await.expect("response");
                    assert!(response.status().is_success());
                    axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .expect("body")
                })
            });
        });
    }
}

/// The policy checker: the examples' policy, and a policy of 16,000 rules
/// that are strings, not mappings (64 KB, a problem on every line).
fn policy_checks(c: &mut Criterion) {
    c.bench_function("policy/check, examples/policy.yaml", |b| {
        b.iter(|| ValidPolicy::from_yaml(black_box(POLICY)).expect("valid"));
    });
    let wrong_rules = format!(
        "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nrules:\n{}",
        "- x\n".repeat(16_000)
    );
    let mut group = c.benchmark_group("policy");
    group.sample_size(10);
    group.bench_function("check, 16,000 rules that are strings", |b| {
        b.iter(|| ValidPolicy::from_yaml(black_box(&wrong_rules)).expect_err("16,000 problems"));
    });
    group.finish();
}

criterion_group!(sizing, benches, policy_checks);
criterion_main!(sizing);
