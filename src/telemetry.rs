//! Logging: `tracing` with JSON (default) or human text, filtered by
//! `RUST_LOG` (default `info`).
//!
//! Logging never blocks, fails or panics a request: lines go through a
//! bounded channel ([`LOG_BUFFER_LINES`]) to a writer thread
//! (`tracing-appender`'s non-blocking writer, lossy), so a stderr that is a
//! pipe nobody reads, a full disk or a closed descriptor costs log lines,
//! never answers. Lines dropped for a full channel or a failed write are
//! counted ([`dropped_log_lines`], exported as
//! `virt_sizer_log_lines_dropped_total`). Every field is capped at
//! [`MAX_LOG_FIELD_CHARS`] with a marker, and text logs escape control
//! characters (CR, LF, ESC, …), so a client value can neither forge a line
//! nor make one megabytes long.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Lines waiting for the writer thread at most; more are dropped (counted).
pub const LOG_BUFFER_LINES: usize = 4096;
/// A log field longer than this many characters is cut, with a marker.
pub const MAX_LOG_FIELD_CHARS: usize = 1024;
/// Fields whose value is JSON text that virt-sizer wrote itself (never a
/// client's raw string; bounded where it is made): JSON logs carry them as
/// JSON, so `changes` is an array a log pipeline can index, not a string.
pub const JSON_FIELDS: &[&str] = &["changes"];
/// A client value quoted whole in an answer (the `apiVersion` and `kind` of
/// a refused review) is cut at this many characters, with a marker.
pub const MAX_ECHOED_CHARS: usize = 256;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Keeps the writer thread; dropping it flushes what is queued (bounded).
#[derive(Debug)]
pub struct LogGuard(Option<WorkerGuard>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        // The worker's own drop may print (and so panic) when stdout is
        // broken: let it do that on a thread of its own, and wait a bounded
        // time for the flush.
        if let Some(guard) = self.0.take() {
            let flushing = std::thread::spawn(move || drop(guard));
            let deadline = Instant::now() + Duration::from_secs(2);
            while !flushing.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

static CHANNEL_DROPS: OnceLock<ErrorCounter> = OnceLock::new();
static FAILED_WRITES: AtomicU64 = AtomicU64::new(0);

/// Log lines lost so far: dropped for a full channel, or whose write
/// failed.
#[must_use]
pub fn dropped_log_lines() -> u64 {
    let dropped = CHANNEL_DROPS.get().map_or(0, |counter| {
        u64::try_from(counter.dropped_lines()).unwrap_or(u64::MAX)
    });
    dropped.saturating_add(FAILED_WRITES.load(Ordering::Relaxed))
}

/// Installs the global subscriber (once, at start, in the binary).
#[must_use]
pub fn init(format: LogFormat) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .thread_name("virt-sizer-log")
        .finish(Stderr);
    let _ = CHANNEL_DROPS.set(writer.error_counter());
    if let Err(error) = subscriber(format, writer).try_init() {
        let _ = writeln!(
            std::io::stderr(),
            "virt-sizer: logging already initialised: {error}"
        );
    }
    LogGuard(Some(guard))
}

/// The subscriber [`init`] installs, writing to `writer`: the filter from
/// `RUST_LOG`, and `format`'s lines with every field capped (and escaped
/// in text). The benches measure a decision's log line through it.
pub fn subscriber<W>(format: LogFormat, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .log_internal_errors(false);
    match format {
        LogFormat::Json => Box::new(builder.event_format(CappedJson).finish()),
        LogFormat::Text => Box::new(
            builder
                .with_ansi(false)
                .fmt_fields(
                    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
                        let text = format!("{value:?}");
                        let text = escaped(&capped_to(&text, MAX_LOG_FIELD_CHARS)).into_owned();
                        if field.name() == "message" {
                            writer.write_str(&text)
                        } else {
                            write!(writer, "{}={text}", field.name())
                        }
                    })
                    .delimited(" "),
                )
                .finish(),
        ),
    }
}

/// `text` cut at [`MAX_ECHOED_CHARS`] characters, with a marker saying how
/// much was cut.
#[must_use]
pub fn capped(text: &str) -> Cow<'_, str> {
    capped_to(text, MAX_ECHOED_CHARS)
}

/// `text` cut to at most `max` characters, a marker saying how many bytes
/// were cut (`...[N more bytes]`) included. A `max` too small to hold the
/// marker keeps `max` characters and adds it.
#[must_use]
pub fn capped_to(text: &str, max: usize) -> Cow<'_, str> {
    if text.chars().nth(max).is_none() {
        return Cow::Borrowed(text);
    }
    // The marker is longest when the most is cut: make room for that one.
    let room = cut_marker(text.len()).chars().count();
    let keep = if max > room { max - room } else { max };
    let cut = text
        .char_indices()
        .nth(keep)
        .map_or(text.len(), |(at, _)| at);
    Cow::Owned(format!("{}{}", &text[..cut], cut_marker(text.len() - cut)))
}

/// What [`capped_to`] puts in place of `n_bytes` cut bytes.
fn cut_marker(n_bytes: usize) -> String {
    format!("...[{n_bytes} more bytes]")
}

/// `text` with each of `paths` replaced by its file name: what a reader
/// outside the server may see of a message that names server files (the
/// log keeps the whole path). Longer paths are replaced first, so a path
/// that extends another is never half-replaced.
#[must_use]
pub fn without_paths(text: &str, paths: &[&Path]) -> String {
    let mut paths: Vec<&Path> = paths
        .iter()
        .copied()
        .filter(|path| !path.as_os_str().is_empty())
        .collect();
    paths.sort_by_key(|path| std::cmp::Reverse(path.as_os_str().len()));
    paths.iter().fold(text.to_owned(), |text, path| {
        let name = path
            .file_name()
            .map_or_else(|| "(a file)".into(), |name| name.to_string_lossy());
        text.replace(&*path.to_string_lossy(), &name)
    })
}

/// `text` with control characters escaped (`\n`, `\r`, `\u{1b}`, …).
#[must_use]
pub fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if character.is_control() {
            out.extend(character.escape_default());
        } else {
            out.push(character);
        }
    }
    Cow::Owned(out)
}

/// stderr for the writer thread: a failed write is counted, never raised.
struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(buf).is_err() {
            FAILED_WRITES.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// JSON lines as `tracing-subscriber`'s flattened JSON writes them
/// (`timestamp`, `level`, the fields, `target`), each field capped.
struct CappedJson;

impl<S, N> FormatEvent<S, N> for CappedJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let metadata = event.metadata();
        let mut fields = JsonFields(Vec::with_capacity(24));
        fields.set("timestamp", LogValue::Text(timestamp));
        fields.set(
            "level",
            LogValue::Text(metadata.level().as_str().to_owned()),
        );
        event.record(&mut fields);
        fields.set(
            "target",
            LogValue::Text(capped_to(metadata.target(), MAX_LOG_FIELD_CHARS).into_owned()),
        );
        let line = serde_json::to_string(&fields).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// A line's fields in the order they were recorded (a later field of the
/// same name replaces an earlier one in place).
struct JsonFields(Vec<(&'static str, LogValue)>);

/// One field's value.
enum LogValue {
    Text(String),
    /// JSON text virt-sizer wrote itself ([`JSON_FIELDS`]), carried as is.
    Json(Box<serde_json::value::RawValue>),
    I64(i64),
    U64(u64),
    Bool(bool),
    F64(f64),
}

impl JsonFields {
    fn set(&mut self, name: &'static str, value: LogValue) {
        match self.0.iter_mut().find(|(held, _)| *held == name) {
            Some((_, held)) => *held = value,
            None => self.0.push((name, value)),
        }
    }
}

impl serde::Serialize for JsonFields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            match value {
                LogValue::Text(text) => map.serialize_entry(name, text)?,
                LogValue::Json(json) => map.serialize_entry(name, json)?,
                LogValue::I64(number) => map.serialize_entry(name, number)?,
                LogValue::U64(number) => map.serialize_entry(name, number)?,
                LogValue::Bool(flag) => map.serialize_entry(name, flag)?,
                LogValue::F64(number) => map.serialize_entry(name, number)?,
            }
        }
        map.end()
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if JSON_FIELDS.contains(&field.name())
            && let Ok(json) = serde_json::value::RawValue::from_string(value.to_owned())
        {
            self.set(field.name(), LogValue::Json(json));
            return;
        }
        self.set(
            field.name(),
            LogValue::Text(capped_to(value, MAX_LOG_FIELD_CHARS).into_owned()),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), LogValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), LogValue::U64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), LogValue::Bool(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), LogValue::F64(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_replaced_by_their_file_names_longest_first() {
        let policy = Path::new("/etc/virt-sizer/policy.yaml");
        let longer = Path::new("/etc/virt-sizer/policy.yaml.d/extra");
        assert_eq!(
            without_paths(
                "reading /etc/virt-sizer/policy.yaml.d/extra and /etc/virt-sizer/policy.yaml: gone",
                &[policy, longer, Path::new("")],
            ),
            "reading extra and policy.yaml: gone"
        );
        assert_eq!(without_paths("no path here", &[policy]), "no path here");
    }

    #[test]
    fn long_values_are_cut_with_a_marker_and_controls_escaped() {
        assert_eq!(capped_to("abc", 3), "abc");
        // 3 characters cannot hold the marker: they are kept, and it added.
        assert_eq!(capped_to("abcdé", 3), "abc...[3 more bytes]");
        // 256 characters hold the longest marker, "...[1000 more bytes]"
        // (20): 236 are kept, 764 bytes cut, 236 + 19 = 255 in all.
        let long = "x".repeat(1000);
        let cut = capped(&long);
        assert_eq!(cut, format!("{}...[764 more bytes]", "x".repeat(236)));
        assert!(cut.chars().count() <= MAX_ECHOED_CHARS);
        assert_eq!(escaped("a\nb\r\u{1b}[31m"), "a\\nb\\r\\u{1b}[31m");
        assert_eq!(escaped("plain"), "plain");
    }
}
