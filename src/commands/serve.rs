//! `virt-sizer serve`: assemble the server from flags, start the watchers,
//! serve until SIGTERM/SIGINT, drain ([`signals`] says what every signal
//! does).

mod local_ca;
mod signals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use std::io::Write as _;

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;
use tokio::net::TcpListener;

use crate::cli::ServeArgs;
use crate::server::policy_store::PolicyStore;
use crate::server::self_certs::{self, SecretRef, SelfManaged};
use crate::server::tls::{self, CertStore};
use crate::server::vmi_source::{NoVmis, VmiDirectory, VmiSource};
use crate::server::{
    self, AppState, NamespaceSource, RequestLimits, ServeOptions, StaticNamespaces, cluster,
    kubevirt_cr, watch,
};

/// How long an idle blocking-pool thread lives (tokio's default: 10 s).
const BLOCKING_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(1);

/// Runs `virt-sizer serve` on a multi-threaded runtime.
///
/// # Errors
/// Unusable certificate, address in use (an invalid policy file is not an
/// error: the built-in policy serves until it loads).
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let _logs = crate::telemetry::init(args.log_format);
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Large bodies are decoded on the blocking pool; the allocator
        // gives a thread's freed pages back when it allocates again or
        // exits, so an idle decoding thread leaves soon.
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    // First: from here on no signal ends the process without its drain.
    let mut signals = signals::Signals::listen();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // The kube client builds its own rustls configuration from the process
    // default; make that ring, the one provider this binary carries.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A bad file on disk does not stop a restart: the built-in policy
    // serves until the file loads, and the rejection is reported.
    let policy = match &args.policy {
        Some(path) => PolicyStore::from_file_or_builtin(path),
        None => PolicyStore::builtin(),
    };
    let mut certs = Certificates::load(args, provider.clone()).await?;
    let tls_config = tls::server_config(certs.store.clone(), args.client_ca.as_deref(), provider)?;
    let state = assemble_state(args, policy, certs.store.clone()).await?;
    state.record_policy_at_start();
    if let Some(manager) = certs.self_managed.take() {
        manager.spawn(state.clone());
    }
    let _watchers = watch_files(args, &state, &certs.store);
    signals.reload_on_hangup(state.clone());

    let listen = args.listen.unwrap_or(certs.default_listen);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr()?;
    // The files' paths are in the log, not in /readyz.
    tracing::info!(
        address = %local,
        policy = %state.policy().current().digest,
        policy_file = ?args.policy,
        certificate_files = ?certs.store.watched_files(),
        certificate_secret = ?args.certificate_secret.as_ref().map(ToString::to_string),
        mtls = args.client_ca.is_some(),
        "listening"
    );
    if let Some(ca_path) = &certs.embedded_ca {
        announce_embedded_default(local, ca_path);
    }

    let options = serve_options(args);
    let limits = RequestLimits::new(
        args.max_body_bytes,
        Duration::from_secs(args.body_timeout_seconds.max(1)),
    )
    .with_max_bodies_in_flight(args.max_bodies_in_flight);
    serve_probes(args, &certs, &state, options).await?;
    let shutdown = shutdown(
        state.clone(),
        Duration::from_secs(args.shutdown_delay_seconds),
        signals,
    );
    server::serve(
        listener,
        Arc::new(tls_config),
        server::app_with(state, &limits),
        options,
        shutdown,
    )
    .await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The serving pair: from `--cert`/`--key`, from the
/// `--certificate-secret` Secret, or the embedded self-signed default
/// (whose CA is written out for clients, and kept across restarts:
/// [`local_ca`]).
struct Certificates {
    store: Arc<CertStore>,
    /// The self-managed certificates, until their loop is spawned.
    self_managed: Option<SelfManaged>,
    /// Where to listen without `--listen`: everywhere with real
    /// certificates, loopback with the embedded default.
    default_listen: SocketAddr,
    /// The embedded default's CA file.
    embedded_ca: Option<PathBuf>,
}

impl Certificates {
    async fn load(args: &ServeArgs, provider: Arc<CryptoProvider>) -> anyhow::Result<Certificates> {
        let everywhere = SocketAddr::from(([0, 0, 0, 0], 8443));
        if let Some(secret) = &args.certificate_secret {
            let client = cluster::infer_client(args.kubeconfig.as_deref())
                .await
                .context("--certificate-secret needs the Kubernetes API")?;
            let manager = SelfManaged::start(client, self_managed_options(args, secret)).await?;
            return Ok(Certificates {
                store: Arc::new(CertStore::from_shared(manager.pair(), provider)?),
                self_managed: Some(manager),
                default_listen: everywhere,
                embedded_ca: None,
            });
        }
        if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
            return Ok(Certificates {
                store: Arc::new(CertStore::from_files(cert, key, provider)?),
                self_managed: None,
                default_listen: everywhere,
                embedded_ca: None,
            });
        }
        let ca_path = args
            .ca_out
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("virt-sizer").join("ca.pem"));
        let files = local_ca::LocalCaFiles::beside(&ca_path);
        let (generated, outcome) = files.load_or_generate(&provider)?;
        match outcome {
            local_ca::Outcome::Kept => tracing::info!(
                ca = %files.ca.display(),
                certificate = %files.cert.display(),
                "embedded default: the CA and serving pair on disk are valid and kept"
            ),
            local_ca::Outcome::Generated(why) => tracing::info!(
                ca = %files.ca.display(),
                certificate = %files.cert.display(),
                reason = %why,
                "embedded default: a new CA and serving pair"
            ),
        }
        let store = CertStore::from_pem(
            generated.cert_pem.as_bytes(),
            generated.key_pem.as_bytes(),
            provider,
        )?;
        Ok(Certificates {
            store: Arc::new(store),
            self_managed: None,
            default_listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            embedded_ca: Some(ca_path),
        })
    }
}

/// What `--certificate-secret` and the flags that go with it ask for.
fn self_managed_options(args: &ServeArgs, secret: &SecretRef) -> self_certs::Options {
    let mut names = self_certs::service_names(&args.certificate_service, &secret.namespace);
    names.extend(args.certificate_extra_names.iter().cloned());
    self_certs::Options {
        secret: secret.clone(),
        wanted: self_certs::Wanted {
            names,
            lifetimes: self_certs::Lifetimes {
                ca: args.ca_validity,
                serving: args.certificate_validity,
            },
        },
        mutating: args.mutating_webhook_configurations.clone(),
        validating: args.validating_webhook_configurations.clone(),
        poll: Duration::from_secs(args.reload_poll_seconds.max(1)),
    }
}

/// The server's state over the VMI and Namespace sources `args` choose,
/// with the cluster's KubeVirt CR followed in cluster mode.
async fn assemble_state(
    args: &ServeArgs,
    policy: PolicyStore,
    certs: Arc<CertStore>,
) -> anyhow::Result<AppState> {
    let source = choose_source(args).await?;
    let cache_options = cluster::CacheOptions {
        backoff_max: Duration::from_secs(args.watch_backoff_max_seconds.max(1)),
        relist_interval: Duration::from_secs(args.cache_relist_seconds.max(1)),
        stale_after: Duration::from_secs(args.cache_stale_seconds),
        ..cluster::CacheOptions::default()
    };
    let reach = match &source {
        Source::Cluster(client) => Some(cluster::probe(client)),
        _ => None,
    };
    let (vmis, namespaces): (Arc<dyn VmiSource>, Arc<dyn NamespaceSource>) = match (&source, &reach)
    {
        (Source::Cluster(client), Some(reach)) => cluster::connect(client, cache_options, reach),
        (Source::Directory(dir), _) => (
            Arc::new(VmiDirectory::new(dir)?),
            Arc::new(StaticNamespaces::default()),
        ),
        (Source::None(_) | Source::Cluster(_), _) => {
            (Arc::new(NoVmis), Arc::new(StaticNamespaces::default()))
        }
    };
    tracing::info!(vmi_source = %vmis.describe(), vmi_dir = ?args.vmi_dir,
        cluster = matches!(source, Source::Cluster(_)), "VMI source");
    let state = AppState::new(
        policy,
        Some(certs),
        vmis,
        namespaces,
        Duration::from_millis(args.vmi_lookup_timeout_ms),
    );
    state.record_policy_warnings(&state.policy().current());
    match source {
        Source::Cluster(client) => {
            if let Some(reach) = &reach {
                state.attach_kubevirt(kubevirt_cr::spawn(
                    &client,
                    state.clone(),
                    cache_options,
                    reach,
                ));
            }
        }
        Source::None(why) => {
            tracing::warn!(
                reason = %why,
                "no VMI source: virt-launcher Pods cannot be sized and fall to the policy's onError; \
                 give --vmi-dir DIR for dry runs, or a kubeconfig (KUBECONFIG, ~/.kube/config) or \
                 --cluster true for a cluster"
            );
            // /readyz shows why without the kubeconfig's path (the log
            // line above has it).
            let kubeconfigs = kubeconfig_paths(args);
            let kubeconfigs: Vec<&std::path::Path> =
                kubeconfigs.iter().map(PathBuf::as_path).collect();
            state.mark_no_vmi_source(crate::telemetry::without_paths(&why, &kubeconfigs));
        }
        Source::Directory(_) => {}
    }
    Ok(state)
}

/// Where a kubeconfig may have been looked for: `--kubeconfig`, each file
/// of `KUBECONFIG`, `~/.kube/config`.
fn kubeconfig_paths(args: &ServeArgs) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = args.kubeconfig.iter().cloned().collect();
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        paths.extend(std::env::split_paths(&list));
    }
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(PathBuf::from(home).join(".kube").join("config"));
    }
    paths
}

/// Watches the policy file and the certificate files (each that there
/// is); the watches stop when the returned watchers are dropped.
fn watch_files(args: &ServeArgs, state: &AppState, certs: &CertStore) -> Vec<watch::FileWatcher> {
    let poll = Duration::from_secs(args.reload_poll_seconds.max(1));
    let policy_watcher = state.policy().path().map(|path| {
        let state = state.clone();
        watch::watch(&[path.to_owned()], poll, move || state.reload_policy())
    });
    let cert_files = certs.watched_files();
    let cert_watcher = (!cert_files.is_empty()).then(|| {
        let state = state.clone();
        watch::watch(&cert_files, poll, move || state.reload_certificate())
    });
    policy_watcher.into_iter().chain(cert_watcher).collect()
}

/// The connection bounds from the flags.
fn serve_options(args: &ServeArgs) -> ServeOptions {
    ServeOptions {
        drain_timeout: Duration::from_secs(args.drain_timeout_seconds),
        handshake_timeout: Duration::from_secs(args.handshake_timeout_seconds.max(1)),
        header_read_timeout: Duration::from_secs(args.header_timeout_seconds.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout_seconds.max(1)),
        max_connection_age: Duration::from_secs(args.max_connection_age_seconds.max(1)),
        max_concurrent_streams: args.max_concurrent_streams.max(1),
        max_connections: args.max_connections.max(1),
        ..ServeOptions::default()
    }
}

/// Starts the plain-HTTP probe port: `--probe-listen`, or loopback 8081
/// with the embedded default certificate.
async fn serve_probes(
    args: &ServeArgs,
    certs: &Certificates,
    state: &AppState,
    options: ServeOptions,
) -> anyhow::Result<()> {
    let probe_listen = args.probe_listen.or_else(|| {
        certs
            .embedded_ca
            .is_some()
            .then(|| SocketAddr::from(([127, 0, 0, 1], 8081)))
    });
    let Some(probe_listen) = probe_listen else {
        return Ok(());
    };
    let probes = TcpListener::bind(probe_listen)
        .await
        .with_context(|| format!("listening on {probe_listen} (--probe-listen)"))?;
    tracing::info!(address = %probes.local_addr()?, "probe listener (plain HTTP: /healthz, /readyz, /metrics)");
    // Kept open through the drain, so probes see readiness go false;
    // it ends with the process. Its own connection cap: a flood of probe
    // connections takes no slot of the TLS port, nor the reverse.
    let options = ServeOptions {
        max_connections: args.probe_max_connections.max(1),
        ..options
    };
    tokio::spawn(server::serve_plain(
        probes,
        server::probe_app(state.clone()),
        options,
        std::future::pending::<()>(),
    ));
    Ok(())
}

/// Completes on a drain signal (SIGTERM, SIGINT, SIGQUIT) once readiness
/// has been false for `delay` (so endpoints update before the listener
/// closes).
async fn shutdown(state: AppState, delay: Duration, mut signals: signals::Signals) {
    signals.next_drain().await;
    // A second drain signal during the drain means "now".
    tokio::spawn(async move {
        let signal = signals.next_drain().await;
        tracing::warn!(signal = %signal.name, "second signal during shutdown: exiting now");
        std::process::exit(128 + signal.number);
    });
    state.begin_shutdown();
    tracing::info!(delay = ?delay, "shutting down: readiness is false");
    tokio::time::sleep(delay).await;
}

/// Where launcher Pods' VMIs come from.
enum Source {
    /// Watch caches through the Kubernetes API.
    Cluster(kube::Client),
    /// A directory of VMI files (dry runs).
    Directory(PathBuf),
    /// None, and why: launcher Pods fall to `onError`.
    None(String),
}

/// `--cluster true` connects or fails; `--vmi-dir` (without
/// `--cluster true`) reads files; `--cluster false` has no VMIs; otherwise
/// cluster mode wherever a client can be inferred, the kube-rs way.
async fn choose_source(args: &ServeArgs) -> anyhow::Result<Source> {
    Ok(match (args.cluster, &args.vmi_dir) {
        (Some(true), _) => {
            Source::Cluster(cluster::infer_client(args.kubeconfig.as_deref()).await?)
        }
        (_, Some(dir)) => Source::Directory(dir.clone()),
        (Some(false), None) => Source::None("--cluster false and no --vmi-dir".to_owned()),
        (None, None) => match cluster::infer_client(args.kubeconfig.as_deref()).await {
            Ok(client) => Source::Cluster(client),
            Err(error) => Source::None(format!("{error:#}")),
        },
    })
}

/// Tells a person at a terminal how to use the embedded default.
fn announce_embedded_default(address: SocketAddr, ca_path: &std::path::Path) {
    let host = if address.ip().is_loopback() {
        format!("localhost:{}", address.port())
    } else {
        address.to_string()
    };
    // A closed or full stderr must not stop the server: no `eprintln!`.
    let _ = writeln!(
        std::io::stderr(),
        "virt-sizer: serving https://{host} with a self-signed certificate; its CA is in {ca}\n\
         virt-sizer: dry run:  curl --cacert {ca} -H 'Content-Type: application/json' \
         --data-binary @examples/launcher-pod-dev.json https://{host}/mutate",
        ca = ca_path.display()
    );
}

/// Raises the soft NOFILE limit to the hard one: each connection is a
/// descriptor, and the common soft default (1024) is below
/// `--max-connections` plus what the process itself holds.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
}
