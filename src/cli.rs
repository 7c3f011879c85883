//! The command line (clap derive). The verbs and flags are a contract with
//! users' scripts and CI files: add, never rename.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// What `--version` prints after the name: the crate version and the commit
/// it was built from (`unknown` when the build had no git; see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("VIRT_SIZER_COMMIT"),
    ")"
);

/// Sizes the Pods that carry virtual machines (KubeVirt virt-launcher Pods,
/// Kata Containers RuntimeClasses and sandbox Pods).
#[derive(Debug, Parser)]
#[command(name = "virt-sizer", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start; boxing would only move the bytes"
)]
pub enum Command {
    /// Run the HTTPS admission webhook server.
    Serve(ServeArgs),
    /// Review one AdmissionReview offline and print the response exactly as
    /// the server would.
    Review(ReviewArgs),
    /// Run CI policy test cases: a directory of them, or one case file.
    Test(TestArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Capacity planning: what the scheduler reserves per VM under each
    /// profile, and how many VMs fit on a node.
    Plan(PlanArgs),
    /// Print a shell completion script, e.g.
    /// `virt-sizer completions bash > /etc/bash_completion.d/virt-sizer`.
    Completions(CompletionsArgs),
}

/// `virt-sizer completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `virt-sizer review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Sizing policy (YAML). Without it, the built-in policy (KubeVirt's
    /// own defaults: a no-op).
    #[arg(long, env = "VIRT_SIZER_POLICY")]
    pub policy: Option<PathBuf>,
    /// A KubeVirt CR (JSON or YAML) to model: what the policy leaves unset
    /// comes from it, as from the cluster's CR in `serve`.
    #[arg(long, value_name = "FILE", env = "VIRT_SIZER_KUBEVIRT")]
    pub kubevirt: Option<PathBuf>,
    /// A VirtualMachineInstance (JSON or YAML) a launcher Pod may belong to.
    /// Repeatable.
    #[arg(long = "vmi", value_name = "FILE")]
    pub vmis: Vec<PathBuf>,
    /// Labels of the request's namespace, `k=v,k2=v2`.
    #[arg(long, value_name = "K=V,...", default_value = "")]
    pub namespace_labels: String,
    /// Print the mutated object instead of the AdmissionReview response.
    #[arg(long, conflicts_with = "explain")]
    pub patched: bool,
    /// Print the reasoning instead of the AdmissionReview response.
    #[arg(long)]
    pub explain: bool,
    /// The AdmissionReview (JSON or YAML; a bare Pod or RuntimeClass is
    /// wrapped in a CREATE review), or `-` for standard input. Anything
    /// without `apiVersion` and `kind` is refused.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub input: PathBuf,
}

/// `virt-sizer test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// A directory of cases (every `*.yaml`/`*.yml` under it whose top
    /// level is a case: `expect:`, `input:`, … and no `kind:`), or one case
    /// file. No case found, or an unknown key in one, exits 2.
    #[arg(value_name = "DIR|FILE")]
    pub path: PathBuf,
    /// Also write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Output: `text` (a line per case, a diff per failure) or `json` (JSON
    /// Lines: one object per case, then one with the totals).
    #[arg(long, value_enum, default_value = "text")]
    pub output: TestOutput,
    /// Run only the cases whose name (`name:`) or path relative to DIR
    /// matches this regular expression (unanchored, Rust `regex` syntax).
    #[arg(long, value_name = "REGEX")]
    pub run: Option<regex::Regex>,
    /// A KubeVirt CR (JSON or YAML) every case models unless it names its
    /// own (`kubevirt:`).
    #[arg(long, value_name = "FILE")]
    pub kubevirt: Option<PathBuf>,
}

/// `virt-sizer test --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestOutput {
    /// Human-readable lines; the last is `N passed, N failed`.
    Text,
    /// JSON Lines: `{"type":"case",…}` per case, then `{"type":"totals",…}`.
    Json,
}

/// `virt-sizer policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy and print every problem with its field path.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Print the built-in default policy.
    Default,
}

/// `virt-sizer plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Sizing policy (YAML); without it, the built-in policy.
    #[arg(long, env = "VIRT_SIZER_POLICY")]
    pub policy: Option<PathBuf>,
    /// A KubeVirt CR (JSON or YAML) to model: what the policy leaves unset
    /// comes from it, as from the cluster's CR in `serve`.
    #[arg(long, value_name = "FILE", env = "VIRT_SIZER_KUBEVIRT")]
    pub kubevirt: Option<PathBuf>,
    /// Allocatable node capacity, `cpu=64,memory=256Gi`.
    #[arg(long)]
    pub node: String,
    /// A VM shape, `VCPUSxMEMORY` (e.g. `4x16Gi`), optionally
    /// `,dedicated` or `,hugepages=1Gi`. Repeatable.
    #[arg(long = "vm", required = true)]
    pub vms: Vec<String>,
}

/// `virt-sizer serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8443 with the embedded
    /// self-signed certificate, 0.0.0.0:8443 with --cert or
    /// --certificate-secret].
    #[arg(long, env = "VIRT_SIZER_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Sizing policy (YAML), reloaded on change. Without it, the built-in
    /// policy (KubeVirt's own defaults).
    #[arg(long, env = "VIRT_SIZER_POLICY")]
    pub policy: Option<PathBuf>,
    /// Serving certificate chain (PEM), reloaded on change. Without it (and
    /// without --certificate-secret), a self-signed certificate for
    /// localhost is generated at start.
    #[arg(long, requires = "key", env = "VIRT_SIZER_CERT")]
    pub cert: Option<PathBuf>,
    /// Serving private key (PEM), reloaded on change.
    #[arg(long, requires = "cert", env = "VIRT_SIZER_KEY")]
    pub key: Option<PathBuf>,
    /// Require client certificates signed by this CA bundle (PEM).
    #[arg(long, env = "VIRT_SIZER_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Self-managed certificates: keep a CA and the serving pair in this
    /// Secret (`NAMESPACE/NAME`, created if missing), serve the pair,
    /// inject the CA into the webhook configurations named by
    /// --mutating-webhook-configuration and
    /// --validating-webhook-configuration, and renew both once less than a
    /// third of their validity remains. Every replica may run it: the
    /// Secret is written with its resourceVersion.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        env = "VIRT_SIZER_CERTIFICATE_SECRET",
        conflicts_with_all = ["cert", "key"]
    )]
    pub certificate_secret: Option<crate::server::self_certs::SecretRef>,
    /// With --certificate-secret: the Service the webhooks call; the
    /// serving certificate names SERVICE.NAMESPACE.svc and
    /// SERVICE.NAMESPACE.svc.cluster.local (NAMESPACE: the Secret's).
    #[arg(long, value_name = "SERVICE", default_value = "virt-sizer")]
    pub certificate_service: String,
    /// With --certificate-secret: one more DNS name or IP address on the
    /// serving certificate. Repeatable.
    #[arg(
        long = "certificate-extra-name",
        value_name = "NAME|IP",
        requires = "certificate_secret"
    )]
    pub certificate_extra_names: Vec<String>,
    /// With --certificate-secret: a MutatingWebhookConfiguration whose
    /// webhooks all get the CA as caBundle. Repeatable.
    #[arg(
        long = "mutating-webhook-configuration",
        value_name = "NAME",
        requires = "certificate_secret"
    )]
    pub mutating_webhook_configurations: Vec<String>,
    /// With --certificate-secret: a ValidatingWebhookConfiguration whose
    /// webhooks all get the CA as caBundle. Repeatable.
    #[arg(
        long = "validating-webhook-configuration",
        value_name = "NAME",
        requires = "certificate_secret"
    )]
    pub validating_webhook_configurations: Vec<String>,
    /// With --certificate-secret: how long a CA is valid (a number and a
    /// unit: s, m, h or d).
    #[arg(long, value_name = "DURATION", default_value = "1095d", value_parser = crate::server::self_certs::parse_lifetime)]
    pub ca_validity: std::time::Duration,
    /// With --certificate-secret: how long a serving certificate is valid
    /// (never past its CA's end).
    #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = crate::server::self_certs::parse_lifetime)]
    pub certificate_validity: std::time::Duration,
    /// Directory of VirtualMachineInstance files (dry runs without a cluster).
    #[arg(long, env = "VIRT_SIZER_VMI_DIR")]
    pub vmi_dir: Option<PathBuf>,
    /// Watch VirtualMachineInstances, Namespaces and the KubeVirt CR through
    /// the Kubernetes API [default: on wherever a client can be inferred
    /// (in-cluster configuration, KUBECONFIG, ~/.kube/config) unless
    /// --vmi-dir is given].
    #[arg(long, env = "VIRT_SIZER_CLUSTER")]
    pub cluster: Option<bool>,
    /// The kubeconfig for cluster mode [default: in-cluster configuration,
    /// else KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Plain-HTTP listener for `/healthz`, `/readyz` and `/metrics`, without
    /// client authentication (kubelet probes, Prometheus); `/mutate` is only
    /// on the TLS port [default: 127.0.0.1:8081 with the embedded
    /// self-signed certificate, none with --cert or --certificate-secret].
    #[arg(long, value_name = "ADDR", env = "VIRT_SIZER_PROBE_LISTEN")]
    pub probe_listen: Option<std::net::SocketAddr>,
    /// Where the embedded default writes its CA certificate; its serving
    /// pair is kept beside it (NAME-serving.crt, NAME-serving.key), and
    /// both are reused at the next start while they are valid
    /// [default: $TMPDIR/virt-sizer/ca.pem].
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "json",
        env = "VIRT_SIZER_LOG_FORMAT"
    )]
    pub log_format: crate::telemetry::LogFormat,
    /// How long a VirtualMachineInstance (or Namespace) lookup may take
    /// before onError applies.
    #[arg(long, default_value_t = 1000)]
    pub vmi_lookup_timeout_ms: u64,
    /// Cluster mode: the longest pause between a failed LIST or watch and
    /// the next LIST (the backoff doubles from 1 s up to this, plus jitter).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub watch_backoff_max_seconds: u64,
    /// Cluster mode: a fresh LIST of VMIs and Namespaces at least this
    /// often, whatever the watch does.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub cache_relist_seconds: u64,
    /// Cluster mode: a watch cache failing for longer than this makes
    /// /readyz not ready.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub cache_stale_seconds: u64,
    /// Poll interval for policy and certificate files (events are watched
    /// too), and the longest pause between two looks at the
    /// --certificate-secret Secret and the webhook configurations.
    #[arg(long, default_value_t = 10)]
    pub reload_poll_seconds: u64,
    /// After SIGTERM, how long to keep serving while readiness is false (so
    /// endpoints update) before closing the listener.
    #[arg(long, default_value_t = 0)]
    pub shutdown_delay_seconds: u64,
    /// After closing the listener, how long in-flight requests may take.
    #[arg(long, default_value_t = 20)]
    pub drain_timeout_seconds: u64,
    /// The largest request body accepted (413 above it, refused from its
    /// Content-Length before it is read). The default is the apiserver's
    /// own limit, 3 MiB.
    #[arg(long, default_value_t = crate::server::MAX_BODY_BYTES, value_name = "BYTES", env = "VIRT_SIZER_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive, whole (408 after it).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub body_timeout_seconds: u64,
    /// How long a client may take to send request headers, and its first
    /// request after the TLS handshake.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub header_timeout_seconds: u64,
    /// How long a connection may stay open with no request in flight
    /// (HTTP/2: GOAWAY).
    #[arg(long, default_value_t = 90, value_name = "SECONDS")]
    pub idle_timeout_seconds: u64,
    /// How long a connection may stay open whatever it does; then it is
    /// closed gracefully (HTTP/2: GOAWAY) and the client reconnects.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub max_connection_age_seconds: u64,
    /// How long a TLS handshake may take.
    #[arg(long, default_value_t = 3, value_name = "SECONDS")]
    pub handshake_timeout_seconds: u64,
    /// Connections open at once on the TLS port; at the cap, a new
    /// connection takes the slot of the one idle longest.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_connections: usize,
    /// Connections open at once on the probe port (--probe-listen); at the
    /// cap, a new connection takes the slot of the one idle longest.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub probe_max_connections: usize,
    /// HTTP/2 streams open at once on one connection.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_concurrent_streams: u32,
    /// Request bodies being received at once, all connections of the TLS
    /// port together; past it, a new one takes the place of the oldest
    /// waiting on its client.
    #[arg(long, default_value_t = crate::server::limits::MAX_BODIES_IN_FLIGHT, value_name = "N")]
    pub max_bodies_in_flight: usize,
}
