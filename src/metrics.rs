//! Prometheus metrics, in the controller-runtime naming style. One
//! [`Metrics`] lives in the server state (never a global) and is rendered as
//! Prometheus/OpenMetrics text on `GET /metrics`: virt-sizer's own metrics
//! under the `virt_sizer_` prefix, values in base units (seconds, bytes,
//! cores), and the standard `process_*` metrics ([`process`]).

pub mod process;

use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::admission::{OutcomeLabel, TargetKind};
use crate::sizing::ErrorReason;
use crate::sizing::policy::ValidPolicy;
use crate::sizing::spelling::Spelled;
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Labels of an admission request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// `launcher_pod`, `kata_pod`, `runtime_class`, `other`.
    pub kind: TargetKind,
    /// CREATE, UPDATE, DELETE, CONNECT, or `other`: never the client's
    /// string.
    pub operation: Operation,
    /// `patched`, `unchanged`, `shadow`, `skipped`, `error_allowed`, `error_denied`.
    pub outcome: OutcomeLabel,
}

impl EncodeLabelValue for TargetKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for ErrorReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for OutcomeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// An admission operation as a label: the four the apiserver sends, and
/// `other` for anything else a client writes (a label value from a closed
/// set, so no client can add series).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `CREATE`.
    Create,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `CONNECT`.
    Connect,
    /// Anything else.
    Other,
}

impl Operation {
    /// Every operation label, for metrics exported from the start.
    pub const ALL: [Operation; 5] = [
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Connect,
        Operation::Other,
    ];

    /// The label for the request's `operation`.
    #[must_use]
    pub fn from_request(operation: &str) -> Operation {
        match operation {
            "CREATE" => Operation::Create,
            "UPDATE" => Operation::Update,
            "DELETE" => Operation::Delete,
            "CONNECT" => Operation::Connect,
            _ => Operation::Other,
        }
    }

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
            Operation::Other => "other",
        }
    }
}

impl EncodeLabelValue for Operation {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The namespace label of shadow figures for a namespace the policy does
/// not name ([`Metrics::shadow_namespace`]).
pub const OTHER_NAMESPACES: &str = "_other";

/// Labels by target kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    /// Target kind.
    pub kind: TargetKind,
}

/// Labels of an error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `bad_request`, `too_large`, `vmi_lookup`, or a sizing error label:
    /// a closed set, written in the code (no string is built per request).
    pub reason: ErrorReason,
}

/// Labels of a reload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: String,
}

/// Labels of a shadow-mode delta.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ShadowLabels {
    /// Namespace of the Pod, as the policy names it (bounded: see
    /// [`Metrics::shadow_namespace`]).
    pub namespace: String,
    /// Profile in shadow mode.
    pub profile: String,
}

/// Labels of the build.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate version.
    pub version: String,
}

/// Labels of a VMI lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LookupLabels {
    /// How it ended.
    pub result: LookupResult,
}

/// How a VMI lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupResult {
    /// The VMI was found.
    Found,
    /// It does not exist.
    NotFound,
    /// The source answered an error.
    Error,
    /// No answer within the lookup timeout.
    Timeout,
}

crate::sizing::spelling::spelled!(LookupResult {
    "found" => LookupResult::Found,
    "not_found" => LookupResult::NotFound,
    "error" => LookupResult::Error,
    "timeout" => LookupResult::Timeout,
});

impl EncodeLabelValue for LookupResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// A reload's counters and its last outcome: a counter by result, whether
/// the last attempt succeeded, and when the last success was (the first
/// load at start counts as one), so an alert can fire on a failing reload
/// without a rate window.
#[derive(Debug, Default)]
pub struct Reloads {
    /// Reloads by result.
    pub results: Family<ReloadLabels, Counter>,
    /// 1 when the last attempt loaded, 0 when it was rejected.
    pub last_success: Gauge,
    /// Unix time of the last successful load, seconds.
    pub last_success_timestamp: Gauge<f64, AtomicU64>,
}

impl Reloads {
    /// Registers the three as `<name>_reloads_total`,
    /// `<name>_last_reload_success` and
    /// `<name>_last_reload_success_timestamp_seconds`, marked loaded now.
    fn register(registry: &mut Registry, name: &str, what: &str) -> Reloads {
        let reloads = Reloads::default();
        registry.register(
            format!("{name}_reloads"),
            format!("Reloads of the {what}, by result"),
            reloads.results.clone(),
        );
        registry.register(
            format!("{name}_last_reload_success"),
            format!("1 when the last {what} (re)load succeeded, 0 when it was rejected and the previous one still serves"),
            reloads.last_success.clone(),
        );
        registry.register(
            format!("{name}_last_reload_success_timestamp_seconds"),
            format!("Unix time of the last successful {what} load (the first at start included)"),
            reloads.last_success_timestamp.clone(),
        );
        // Both series exist from the start, so dashboards and alerts see
        // them before the first reload.
        for result in ["success", "failure"] {
            let _ = reloads.results.get_or_create(&ReloadLabels {
                result: result.to_owned(),
            });
        }
        reloads.loaded();
        reloads
    }

    fn loaded(&self) {
        self.last_success.set(1);
        self.last_success_timestamp.set(unix_now());
    }
}

/// A gauge kept in integer millicores (sums stay exact) and exported in
/// cores, the base unit.
#[derive(Debug, Clone, Default)]
pub struct MilliCores(Gauge);

impl MilliCores {
    /// Adds `millicores` (negative lowers it).
    pub fn inc_by(&self, millicores: i64) -> i64 {
        self.0.inc_by(millicores)
    }

    /// The value in millicores.
    #[must_use]
    pub fn millicores(&self) -> i64 {
        self.0.get()
    }
}

impl TypedMetric for MilliCores {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for MilliCores {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a sum of millicores far below 2^53"
        )]
        let cores = self.0.get() as f64 / 1000.0;
        encoder.encode_gauge(&cores)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// Labels of a watch cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CacheLabels {
    /// `virtualmachineinstances` or `namespaces`.
    pub resource: String,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    process_registry: Registry,
    /// Admission requests by kind, operation and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to answer an admission request, by kind, operation and outcome.
    pub latency: Family<RequestLabels, Histogram>,
    /// Patches sent, by kind.
    pub patches: Family<KindLabels, Counter>,
    /// Errors, by reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Admission requests being answered.
    pub in_flight: Gauge,
    /// Panics caught while deciding.
    pub panics: Counter,
    /// Policy reloads: by result, and the last one's outcome.
    pub policy_reloads: Reloads,
    /// Serving-certificate (and client CA) reloads: by result, and the last
    /// one's outcome.
    pub certificate_reloads: Reloads,
    /// Shadow mode: sum of CPU request changes that were not applied
    /// (exported in cores).
    pub shadow_cpu_millicores: Family<ShadowLabels, MilliCores>,
    /// Shadow mode: sum of memory request changes that were not applied.
    pub shadow_memory_bytes: Family<ShadowLabels, Gauge>,
    /// 1 when `serve` runs with no VMI source: launcher Pods fall to
    /// `onError`.
    pub vmi_source_missing: Gauge,
    /// 1 while the built-in policy serves because the policy file did not
    /// load at start.
    pub policy_builtin_fallback: Gauge,
    /// 1 while a KubeVirt CR is the policy's baseline.
    pub kubevirt_cr_present: Gauge,
    /// Times the KubeVirt CR baseline changed the policy in force.
    pub kubevirt_baseline_updates: Counter,
    /// KubeVirt settings the CR could not give (unread, forbidden, a value
    /// virt-sizer cannot use): launcher Pods that need one are admitted
    /// unchanged.
    pub kubevirt_settings_unknown: Gauge,
    /// Decisions made from a cache that was not current (not synced,
    /// failing, or the apiserver silent): each carries a warning.
    pub stale_decisions: Counter,
    /// Warnings about the policy in force (a release newer than the
    /// overhead table, values that differ from the KubeVirt CR's).
    pub policy_warnings: Gauge,
    /// Objects in each watch cache.
    pub cache_objects: Family<CacheLabels, Gauge>,
    /// LIST and watch failures of each watch cache.
    pub cache_watch_errors: Family<CacheLabels, Counter>,
    /// Unix time of each cache's last successful LIST or watch event.
    pub cache_last_success_timestamp: Family<CacheLabels, Gauge>,
    /// 1 while a cache's LIST or watch is failing.
    pub cache_failing: Family<CacheLabels, Gauge>,
    /// Direct GETs made because the cache could not answer.
    pub cache_fallback_gets: Family<CacheLabels, Counter>,
    /// Direct GETs that failed.
    pub cache_fallback_failures: Family<CacheLabels, Counter>,
    /// Direct GETs refused by the rate limit.
    pub cache_fallback_limited: Family<CacheLabels, Counter>,
    /// Log lines lost (a full or failing stderr), synced at each render.
    pub log_lines_dropped: Counter,
    /// `notAfter` of the serving certificate, Unix seconds.
    pub certificate_expiry: Gauge,
    /// Time a VMI lookup took (cache, directory or a direct GET), by result.
    pub vmi_lookup: Family<LookupLabels, Histogram>,
    /// 1 while `/readyz` would answer ready (set at each scrape).
    pub ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `virt_sizer` prefix.
    #[must_use]
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("virt_sizer");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests by target kind, operation and outcome",
            requests.clone(),
        );
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 25 µs … ~0.8 s.
            Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
        });
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission request, by target kind, operation and outcome",
            latency.clone(),
        );
        let patches = Family::<KindLabels, Counter>::default();
        registry.register(
            "admission_patches",
            "JSON Patches sent, by target kind",
            patches.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("admission_errors", "Errors by reason", errors.clone());
        let in_flight = Gauge::default();
        registry.register(
            "admission_in_flight_requests",
            "Admission requests being answered",
            in_flight.clone(),
        );
        let panics = Counter::default();
        registry.register(
            "admission_panics",
            "Panics caught while deciding",
            panics.clone(),
        );
        let policy_reloads = Reloads::register(&mut registry, "policy", "policy");
        let certificate_reloads =
            Reloads::register(&mut registry, "certificate", "serving certificate");
        let shadow_cpu_millicores = Family::<ShadowLabels, MilliCores>::default();
        registry.register(
            "shadow_cpu_request_delta_cores",
            "Shadow mode: sum of CPU request changes decided but not applied, in cores",
            shadow_cpu_millicores.clone(),
        );
        let shadow_memory_bytes = Family::<ShadowLabels, Gauge>::default();
        registry.register(
            "shadow_memory_request_delta_bytes",
            "Shadow mode: sum of memory request changes decided but not applied",
            shadow_memory_bytes.clone(),
        );
        let policy_builtin_fallback = Gauge::default();
        registry.register(
            "policy_builtin_fallback",
            "1 while the built-in policy serves because the policy file did not load at start (0 once it loads)",
            policy_builtin_fallback.clone(),
        );
        let vmi_source_missing = Gauge::default();
        registry.register(
            "vmi_source_missing",
            "1 when the server has no VMI source (no cluster, no --vmi-dir): launcher Pods fall to onError",
            vmi_source_missing.clone(),
        );
        let kubevirt_cr_present = Gauge::default();
        registry.register(
            "kubevirt_cr_present",
            "1 while a KubeVirt CR is the sizing policy's baseline",
            kubevirt_cr_present.clone(),
        );
        let kubevirt_baseline_updates = Counter::default();
        registry.register(
            "kubevirt_baseline_updates",
            "Times a KubeVirt CR change switched the policy in force",
            kubevirt_baseline_updates.clone(),
        );
        let kubevirt_settings_unknown = Gauge::default();
        registry.register(
            "kubevirt_settings_unknown",
            "KubeVirt settings the KubeVirt CR could not give (not read, forbidden, or a value virt-sizer cannot use); launcher Pods whose decision needs one are admitted unchanged",
            kubevirt_settings_unknown.clone(),
        );
        let stale_decisions = Counter::default();
        registry.register(
            "stale_decisions",
            "Decisions made from a watch cache that was not current (not synced, failing, or the apiserver silent)",
            stale_decisions.clone(),
        );
        let policy_warnings = Gauge::default();
        registry.register(
            "policy_warnings",
            "Warnings about the policy in force (release newer than the overhead table, values differing from the KubeVirt CR)",
            policy_warnings.clone(),
        );
        let cache_objects = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "cache_objects",
            "Objects in each watch cache",
            cache_objects.clone(),
        );
        let cache_watch_errors = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_watch_errors",
            "LIST and watch failures of each watch cache",
            cache_watch_errors.clone(),
        );
        let cache_last_success_timestamp = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "cache_last_success_timestamp_seconds",
            "Unix time of each watch cache's last successful LIST or watch event",
            cache_last_success_timestamp.clone(),
        );
        let cache_failing = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "cache_failing",
            "1 while a watch cache's LIST or watch is failing",
            cache_failing.clone(),
        );
        let cache_fallback_gets = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_fallback_gets",
            "Direct GETs made because the watch cache could not answer",
            cache_fallback_gets.clone(),
        );
        let cache_fallback_failures = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_fallback_failures",
            "Direct GETs that failed",
            cache_fallback_failures.clone(),
        );
        let cache_fallback_limited = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_fallback_limited",
            "Direct GETs refused by the rate limit",
            cache_fallback_limited.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines lost because stderr was full, blocked or failing (answers are never held up by logging)",
            log_lines_dropped.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, Unix seconds",
            certificate_expiry.clone(),
        );
        let vmi_lookup = Family::<LookupLabels, Histogram>::new_with_constructor(|| {
            // 10 µs … ~2.6 s (the lookup timeout is 1 s by default).
            Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
        });
        registry.register(
            "vmi_lookup_duration_seconds",
            "Time to find a launcher Pod's VMI (watch cache, directory or direct GET), by result",
            vmi_lookup.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while this replica is ready (/readyz answers 200), else 0",
            ready.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "The running build: always 1, labelled with its version",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        // Every closed label set exists from the start, at 0: dashboards
        // and absent()-style alerts see a fresh replica's series before its
        // first request.
        for kind in TargetKind::ALL {
            let _ = patches.get_or_create(&KindLabels { kind });
            for operation in Operation::ALL {
                for outcome in OutcomeLabel::ALL {
                    let labels = RequestLabels {
                        kind,
                        operation,
                        outcome,
                    };
                    let _ = requests.get_or_create(&labels);
                    let _ = latency.get_or_create(&labels);
                }
            }
        }
        for (_, reason) in ErrorReason::SPELLINGS {
            let _ = errors.get_or_create(&ErrorLabels { reason: *reason });
        }
        for (_, result) in LookupResult::SPELLINGS {
            let _ = vmi_lookup.get_or_create(&LookupLabels { result: *result });
        }
        // Unprefixed: the names every exporter uses for these.
        let mut process_registry = Registry::default();
        process_registry.register_collector(Box::new(process::ProcessCollector));
        Metrics {
            registry,
            process_registry,
            requests,
            latency,
            patches,
            errors,
            in_flight,
            panics,
            policy_reloads,
            certificate_reloads,
            shadow_cpu_millicores,
            shadow_memory_bytes,
            vmi_source_missing,
            policy_builtin_fallback,
            kubevirt_cr_present,
            kubevirt_baseline_updates,
            kubevirt_settings_unknown,
            stale_decisions,
            policy_warnings,
            cache_objects,
            cache_watch_errors,
            cache_last_success_timestamp,
            cache_failing,
            cache_fallback_gets,
            cache_fallback_failures,
            cache_fallback_limited,
            log_lines_dropped,
            certificate_expiry,
            vmi_lookup,
            ready,
        }
    }

    /// The namespace label of a shadow figure: how `policy`'s rules name
    /// `namespace` ([`ValidPolicy::named_namespace`]: the name a rule
    /// lists, or the glob that matches it), else [`OTHER_NAMESPACES`]. The
    /// series are as many as the names in the policy, whatever namespaces
    /// reviews claim, and no claim can take a named namespace's series.
    #[must_use]
    pub fn shadow_namespace(policy: &ValidPolicy, namespace: &str) -> String {
        policy
            .named_namespace(namespace)
            .unwrap_or(OTHER_NAMESPACES)
            .to_owned()
    }

    /// Counts an error.
    pub fn error(&self, reason: ErrorReason) {
        self.errors.get_or_create(&ErrorLabels { reason }).inc();
    }

    /// Counts a reload and records its outcome.
    pub fn reload(reloads: &Reloads, success: bool) {
        reloads
            .results
            .get_or_create(&ReloadLabels {
                result: if success { "success" } else { "failure" }.to_owned(),
            })
            .inc();
        if success {
            reloads.loaded();
        } else {
            reloads.last_success.set(0);
        }
    }

    /// Records how long a VMI lookup took and how it ended.
    pub fn observe_vmi_lookup(&self, result: LookupResult, seconds: f64) {
        self.vmi_lookup
            .get_or_create(&LookupLabels { result })
            .observe(seconds);
    }

    /// The text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let dropped = crate::telemetry::dropped_log_lines();
        let counted = self.log_lines_dropped.get();
        if dropped > counted {
            self.log_lines_dropped.inc_by(dropped - counted);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ =
            prometheus_client::encoding::text::encode_registry(&mut out, &self.process_registry);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh replica exports every series of a closed label set at 0:
    /// 4 kinds × 5 operations × 6 outcomes requests (and as many latency
    /// histograms), a patch counter per kind, and one error counter per
    /// reason.
    #[test]
    fn closed_label_sets_are_exported_at_zero_from_the_start() {
        let text = Metrics::new().render();
        let count = |prefix: &str| text.lines().filter(|line| line.starts_with(prefix)).count();
        assert_eq!(count("virt_sizer_admission_requests_total{"), 4 * 5 * 6);
        assert_eq!(
            count("virt_sizer_admission_duration_seconds_count{"),
            4 * 5 * 6
        );
        assert_eq!(count("virt_sizer_admission_patches_total{"), 4);
        assert_eq!(
            count("virt_sizer_admission_errors_total{"),
            ErrorReason::SPELLINGS.len()
        );
        for series in [
            r#"virt_sizer_admission_requests_total{kind="launcher_pod",operation="CREATE",outcome="unchanged"} 0"#,
            r#"virt_sizer_admission_errors_total{reason="vmi_not_found"} 0"#,
            r#"virt_sizer_admission_errors_total{reason="body_reclaimed"} 0"#,
            r#"virt_sizer_admission_patches_total{kind="runtime_class"} 0"#,
            r#"virt_sizer_vmi_lookup_duration_seconds_count{result="timeout"} 0"#,
        ] {
            assert!(text.lines().any(|line| line == series), "{series}");
        }
    }
}
