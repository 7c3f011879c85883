//! The standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`), as
//! the Go and Python clients export them, read from `/proc/self` at scrape
//! time. Off Linux (no `/proc/self/stat`) the collector exports nothing.

use std::path::Path;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/<pid>/stat` times when the auxiliary
/// vector does not say (`USER_HZ`, 100 on every mainstream architecture).
const DEFAULT_CLOCK_TICKS: u64 = 100;
/// `AT_CLKTCK` in the auxiliary vector.
const AT_CLKTCK: u64 = 17;

/// One reading of the process's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors (`None`: unlimited).
    pub max_fds: Option<u64>,
    /// Start of the process, Unix seconds.
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads `/proc/self` (and the boot time from `/proc/stat`).
    #[must_use]
    pub fn read() -> Option<ProcessStats> {
        let proc = Path::new("/proc");
        let stat = std::fs::read_to_string(proc.join("self/stat")).ok()?;
        let status = std::fs::read_to_string(proc.join("self/status")).ok()?;
        let limits = std::fs::read_to_string(proc.join("self/limits")).unwrap_or_default();
        let system = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
        let clock_ticks = std::fs::read(proc.join("self/auxv"))
            .ok()
            .and_then(|auxv| clock_ticks(&auxv))
            .unwrap_or(DEFAULT_CLOCK_TICKS);
        let open_fds = std::fs::read_dir(proc.join("self/fd"))
            .map(|entries| entries.count() as u64)
            .unwrap_or(0);
        ProcessStats::parse(&stat, &status, &limits, &system, clock_ticks, open_fds)
    }

    /// The figures from the texts of `/proc/self/stat`, `/proc/self/status`,
    /// `/proc/self/limits` and `/proc/stat`.
    #[must_use]
    pub fn parse(
        stat: &str,
        status: &str,
        limits: &str,
        system: &str,
        clock_ticks: u64,
        open_fds: u64,
    ) -> Option<ProcessStats> {
        // The command name (field 2) is in parentheses and may hold spaces:
        // the fields after it start at state (field 3).
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
        let ticks = clock_ticks.max(1) as f64;
        let cpu_ticks = field(14)?.saturating_add(field(15)?);
        let boot_time = system
            .lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map_or(0, |kib| kib.saturating_mul(1024))
        };
        let max_fds = limits
            .lines()
            .find_map(|line| line.strip_prefix("Max open files"))
            .and_then(|values| values.split_whitespace().next())
            .and_then(|soft| soft.parse().ok());
        Some(ProcessStats {
            cpu_seconds: cpu_ticks as f64 / ticks,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            open_fds,
            max_fds,
            start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
        })
    }
}

/// `AT_CLKTCK` from the auxiliary vector (native-endian word pairs).
fn clock_ticks(auxv: &[u8]) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    auxv.chunks_exact(2 * WORD).find_map(|pair| {
        let word = |bytes: &[u8]| -> u64 {
            let mut buffer = [0u8; 8];
            buffer[..WORD].copy_from_slice(bytes);
            if cfg!(target_endian = "big") {
                u64::from_be_bytes(buffer) >> (8 * (8 - WORD))
            } else {
                u64::from_le_bytes(buffer)
            }
        };
        (word(&pair[..WORD]) == AT_CLKTCK)
            .then(|| word(&pair[WORD..]))
            .filter(|ticks| *ticks > 0)
    })
}

/// Exports [`ProcessStats`] on every scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let mut gauge = |name: &str, help: &str, value: f64| {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
        };
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            stats.resident_bytes as f64,
        )?;
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            stats.virtual_bytes as f64,
        )?;
        gauge(
            "process_open_fds",
            "Number of open file descriptors",
            stats.open_fds as f64,
        )?;
        if let Some(max_fds) = stats.max_fds {
            gauge(
                "process_max_fds",
                "Maximum number of open file descriptors",
                max_fds as f64,
            )?;
        }
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            stats.start_time_seconds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts_with_a_command_name_holding_spaces_and_parens() {
        // Fields 14 (utime) = 250, 15 (stime) = 50, 22 (starttime) = 12345.
        let stat = "4242 (virt sizer) (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 9 0 12345 123456789 3000 18446744073709551615";
        let status = "Name:\tvirt-sizer\nVmSize:\t  123456 kB\nVmRSS:\t   20480 kB\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1048576              1048576              files\n";
        let system = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let stats = ProcessStats::parse(stat, status, limits, system, 100, 12).expect("parses");
        assert_eq!(
            stats,
            ProcessStats {
                cpu_seconds: 3.0,
                resident_bytes: 20480 * 1024,
                virtual_bytes: 123_456 * 1024,
                open_fds: 12,
                max_fds: Some(1_048_576),
                start_time_seconds: 1_700_000_123.45,
            }
        );
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        let stats = ProcessStats::parse(stat, status, unlimited, system, 100, 0).expect("parses");
        assert_eq!(stats.max_fds, None);
        assert_eq!(
            ProcessStats::parse("garbage", status, limits, system, 100, 0),
            None
        );
    }

    #[test]
    fn reads_clock_ticks_from_the_auxiliary_vector() {
        let mut auxv = Vec::new();
        for (key, value) in [(6u64, 4096u64), (AT_CLKTCK, 250), (0, 0)] {
            auxv.extend_from_slice(&(key as usize).to_ne_bytes());
            auxv.extend_from_slice(&(value as usize).to_ne_bytes());
        }
        assert_eq!(clock_ticks(&auxv), Some(250));
        assert_eq!(clock_ticks(&auxv[..16]), None);
    }

    #[test]
    fn reads_this_process() {
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        let stats = ProcessStats::read().expect("/proc/self is readable");
        assert!(stats.resident_bytes > 0 && stats.open_fds > 0, "{stats:?}");
        assert!(stats.start_time_seconds > 1_500_000_000.0, "{stats:?}");
    }
}
