//! Load benchmark: virt-sizer against a null webhook on the same stack, in
//! the same run, on loopback.
//!
//! `cargo bench --bench load` (options after `--`: `--seconds N`,
//! `--rate N`, `--vmis N`).
//!
//! 1. In-process, one server at a time on a 2-worker runtime, a load
//!    generator on its own 2-worker runtime: the virt-sizer router (policy,
//!    10k VMIs in the VMI directory source, `virt-sizer`; then in the
//!    cluster watch cache, the production source, `virt-sizer-cache`) and a
//!    null webhook (same axum +
//!    rustls + hyper stack; reads the body, takes the uid, answers allowed
//!    with no patch). Each over keep-alive HTTPS, HTTP/1.1 (16 connections,
//!    closed loop = saturation) and HTTP/2 (one connection, 64 streams;
//!    closed loop, then an open loop at a fixed rate with latency measured
//!    from the scheduled send time, so queueing is not hidden).
//! 2. Out of process: `virt-sizer serve` (the release binary, JSON logs to
//!    /dev/null) with 10k VMI files; RSS idle and under load from
//!    /proc/PID/status.
//!
//! Both sides share the machine's 2 cores with the load generator, so the
//! absolute figures are pessimistic; the ratio to the null webhook is the
//! comparison that matters. Server CPU per review is the CPU time of the
//! server runtime's threads (named `bench-server`, read from
//! /proc/self/task/*/stat, 10 ms ticks) over the reviews answered; for the
//! binary, of its whole process.
#![expect(
    clippy::expect_used,
    clippy::cast_precision_loss,
    reason = "a benchmark over fixed inputs; float only for reporting"
)]

// Measure with the allocator the binary ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/args.rs"]
mod args;
#[path = "support/null_webhook.rs"]
mod null_webhook;
#[path = "support/serve.rs"]
mod serve;
#[path = "support/sizer.rs"]
mod sizer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use virt_sizer::server::tls::{self, SelfSigned};
use virt_sizer::server::vmi_source::VmiDirectory;

use crate::args::option;
use crate::serve::Serve;

const REVIEW: &str = include_str!("../examples/launcher-pod-dev.json");

struct Options {
    seconds: u64,
    rate: u64,
    vmis: usize,
}

fn options() -> Options {
    Options {
        seconds: option("--seconds", 5),
        rate: option("--rate", 5000),
        vmis: option("--vmis", 10_000),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us too,
    // without it: do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = options();
    let dir = tempfile::tempdir().expect("tempdir");
    let vmi_dir = dir.path().join("vmis");
    write_vmis(&vmi_dir, options.vmis);
    let pem = tls::generate_self_signed(&["localhost", "127.0.0.1"]).expect("certs");

    println!(
        "machine: {} cores; {} s per run; HTTP/2 fixed rate {} req/s; {} VMIs; body {} B",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        options.seconds,
        options.rate,
        options.vmis,
        REVIEW.len()
    );
    println!(
        "{:<12} {:<22} {:>10} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "server", "load", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "CPU µs/req", "errors"
    );
    let mut results: BTreeMap<(&str, &str), Run> = BTreeMap::new();
    for (name, make) in [
        (
            "null",
            Box::new(|| null_webhook::router(Arc::default(), "")) as Box<dyn Fn() -> Router>,
        ),
        (
            "virt-sizer",
            Box::new(|| sizer::app(Arc::new(VmiDirectory::new(&vmi_dir).expect("vmi dir")))),
        ),
        (
            "virt-sizer-cache",
            Box::new(|| sizer::app(Arc::new(sizer::watch_cache(options.vmis)))),
        ),
    ] {
        let server_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()
            .expect("runtime");
        let address = server_runtime.block_on(null_webhook::start(make(), &pem));
        let client_runtime = runtime(2);
        for load in Load::ALL {
            let ticks_before = server_cpu_ticks();
            let mut run = client_runtime.block_on(async {
                match load {
                    Load::H1Saturation => {
                        closed_loop(address, &pem, false, 16, options.seconds).await
                    }
                    Load::H2Saturation => {
                        closed_loop(address, &pem, true, 64, options.seconds).await
                    }
                    Load::H2FixedRate => {
                        fixed_rate(address, &pem, options.rate, options.seconds).await
                    }
                }
            });
            run.cpu_ticks = server_cpu_ticks().saturating_sub(ticks_before);
            println!(
                "{:<12} {:<22} {:>10.0} {:>9} {:>9} {:>9} {:>10.1} {:>7}",
                name,
                load.name(),
                run.throughput(),
                run.percentile(50.0),
                run.percentile(99.0),
                run.percentile(99.9),
                run.cpu_us_per_request(),
                run.errors
            );
            results.insert((name, load.name()), run);
        }
        drop(client_runtime);
        drop(server_runtime);
    }
    for sizer_name in ["virt-sizer", "virt-sizer-cache"] {
        for load in Load::ALL.map(Load::name) {
            let (sizer, null) = (&results[&(sizer_name, load)], &results[&("null", load)]);
            println!(
                "{sizer_name} / null, {load}: throughput {:.3}, server CPU per review {:.2}",
                sizer.throughput() / null.throughput(),
                sizer.cpu_us_per_request() / null.cpu_us_per_request()
            );
        }
    }

    rss_of_the_binary(&vmi_dir, options.seconds);
    watch_cache_memory(options.vmis);
}

/// Memory of the cluster watch cache: `count` VMIs applied to a reflector
/// store the way the watcher does (each deserialised into a
/// [`CachedVmi`](virt_sizer::server::cluster::CachedVmi), the VMI's facts
/// read once), measured as this
/// process's RSS growth.
fn watch_cache_memory(count: usize) {
    let before = rss_kib(std::process::id());
    let cache = sizer::watch_cache(count);
    let after = rss_kib(std::process::id());
    println!(
        "watch cache: {} VMIs (example VMI, read into facts) add {} MiB of RSS",
        count + 1,
        after.saturating_sub(before) / 1024
    );
    drop(cache);
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `count` copies of the example VMI, named vm-0 … in namespace dev-a.
fn write_vmis(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let template = sizer::VMI;
    for index in 0..count {
        let vmi = template.replace("ci-runner-01", &format!("vm-{index}"));
        std::fs::write(dir.join(format!("vm-{index}.yaml")), vmi).expect("write");
    }
    // The VMI the benchmark's Pod belongs to.
    std::fs::write(dir.join("ci-runner-01.yaml"), template).expect("write");
}

/// The loads each server gets, in this order.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// HTTP/1.1, 16 keep-alive connections, closed loop.
    H1Saturation,
    /// HTTP/2, one connection, 64 streams, closed loop.
    H2Saturation,
    /// HTTP/2, one connection, open loop at `--rate`.
    H2FixedRate,
}

impl Load {
    const ALL: [Load; 3] = [Load::H1Saturation, Load::H2Saturation, Load::H2FixedRate];

    fn name(self) -> &'static str {
        match self {
            Load::H1Saturation => "h1 x16 saturation",
            Load::H2Saturation => "h2 x64 saturation",
            Load::H2FixedRate => "h2 fixed rate",
        }
    }
}

/// The name of the server runtime's threads, whose CPU time is the
/// server's.
const SERVER_THREAD: &str = "bench-server";
/// Kernel clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Latencies of one run, and the server CPU it took.
struct Run {
    latencies_us: Vec<u64>,
    errors: usize,
    elapsed: Duration,
    cpu_ticks: u64,
}

impl Run {
    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_ticks as f64 * 1e6 / TICKS_PER_SECOND / self.latencies_us.len().max(1) as f64
    }
    fn throughput(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, percent: f64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "an index"
        )]
        let index = ((percent / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[index]
    }
}

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;
type Sender1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn tls_stream(
    address: SocketAddr,
    pem: &SelfSigned,
    h2: bool,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pem.ca_pem.as_bytes()).expect("CA"))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let tcp = TcpStream::connect(address).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().expect("name"), tcp)
        .await
        .expect("handshake")
}

fn request() -> Request<Full<Bytes>> {
    Request::post("https://localhost/mutate")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(REVIEW.as_bytes())))
        .expect("request")
}

async fn h2_sender(address: SocketAddr, pem: &SelfSigned) -> Sender {
    let stream = tls_stream(address, pem, true).await;
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(connection);
    sender
}

async fn h1_sender(address: SocketAddr, pem: &SelfSigned) -> Sender1 {
    let stream = tls_stream(address, pem, false).await;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("h1 handshake");
    tokio::spawn(connection);
    sender
}

/// Whether a response is a 200 with an AdmissionReview body.
async fn ok(response: Result<hyper::Response<hyper::body::Incoming>, hyper::Error>) -> bool {
    let Ok(response) = response else { return false };
    let status_ok = response.status() == 200;
    let body = response
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes());
    status_ok && body.is_ok_and(|body| body.starts_with(b"{\"apiVersion\""))
}

/// `concurrency` requests always outstanding for `seconds`.
async fn closed_loop(
    address: SocketAddr,
    pem: &SelfSigned,
    h2: bool,
    concurrency: usize,
    seconds: u64,
) -> Run {
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let shared_h2 = if h2 {
        Some(h2_sender(address, pem).await)
    } else {
        None
    };
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let shared_h2 = shared_h2.clone();
        let pem = pem.clone();
        tasks.push(tokio::spawn(async move {
            let mut h1 = if shared_h2.is_none() {
                Some(h1_sender(address, &pem).await)
            } else {
                None
            };
            let (mut latencies, mut errors) = (Vec::new(), 0);
            while Instant::now() < until {
                let sent = Instant::now();
                let response = match (&shared_h2, &mut h1) {
                    (Some(h2), _) => h2.clone().send_request(request()).await,
                    (None, Some(h1)) => {
                        let _ = h1.ready().await;
                        h1.send_request(request()).await
                    }
                    (None, None) => unreachable!("one sender exists"),
                };
                if ok(response).await {
                    latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut run = Run {
        latencies_us: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
        cpu_ticks: 0,
    };
    for task in tasks {
        let (latencies, errors) = task.await.expect("task");
        run.latencies_us.extend(latencies);
        run.errors += errors;
    }
    run.elapsed = started.elapsed();
    run
}

/// An open loop: one request every 1/rate s on one HTTP/2 connection;
/// latency from the scheduled send time.
async fn fixed_rate(address: SocketAddr, pem: &SelfSigned, rate: u64, seconds: u64) -> Run {
    let sender = h2_sender(address, pem).await;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let total = rate * seconds;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(usize::try_from(total).expect("fits"));
    for index in 0..total {
        let scheduled = started + interval * u32::try_from(index).expect("fits");
        tokio::time::sleep_until(scheduled.into()).await;
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let success = ok(sender.clone().send_request(request()).await).await;
            (
                success,
                u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX),
            )
        }));
    }
    let mut run = Run {
        latencies_us: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
        cpu_ticks: 0,
    };
    for task in tasks {
        let (success, latency) = task.await.expect("task");
        if success {
            run.latencies_us.push(latency);
        } else {
            run.errors += 1;
        }
    }
    run.elapsed = started.elapsed();
    run
}

/// utime + stime of a /proc `stat` line, in clock ticks.
fn stat_ticks(stat: &str) -> u64 {
    // Fields after the command name, which may hold spaces: state is
    // field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |index: usize| -> u64 {
        fields
            .get(index - 3)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// CPU ticks used so far by this process's server runtime threads.
fn server_cpu_ticks() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == SERVER_THREAD)
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .map(|stat| stat_ticks(&stat))
        .sum()
}

/// CPU ticks used so far by process `pid`.
fn process_cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0, |stat| stat_ticks(&stat))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// RSS and CPU of the real binary with the VMI directory, idle and under
/// load.
fn rss_of_the_binary(vmi_dir: &Path, seconds: u64) {
    let client_runtime = runtime(2);
    let vmi_dir = vmi_dir.to_str().expect("a UTF-8 path");
    let server = client_runtime.block_on(Serve::start(
        Path::new(env!("CARGO_BIN_EXE_virt-sizer")),
        &["--vmi-dir", vmi_dir],
        None,
        false,
    ));
    let address: SocketAddr = format!("127.0.0.1:{}", server.port)
        .parse()
        .expect("address");
    let idle = server.memory();
    let ticks_before = process_cpu_ticks(server.pid());
    let mut run = client_runtime.block_on(closed_loop(address, &server.pem, true, 64, seconds));
    run.cpu_ticks = process_cpu_ticks(server.pid()).saturating_sub(ticks_before);
    println!(
        "binary (JSON logs to /dev/null), h2 x64 saturation: {:.0} req/s, p99 {} µs, \
         CPU {:.1} µs/req, errors {}",
        run.throughput(),
        run.percentile(99.0),
        run.cpu_us_per_request(),
        run.errors
    );
    println!(
        "binary with {} VMI files: idle {idle}; after load {}",
        std::fs::read_dir(vmi_dir).map_or(0, Iterator::count),
        server.memory()
    );
}
