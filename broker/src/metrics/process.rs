//! The standard `process_*` metrics of the Prometheus client libraries, read from
//! `/proc/self` at scrape time. Elsewhere than Linux there are none.
//!
//! `/proc` counts CPU time and start time in clock ticks of `USER_HZ`, which Linux fixes
//! at 100 for user space on every architecture (the Prometheus Go client assumes the same).

use std::fmt::Write;

const USER_HZ: f64 = 100.0;

/// One reading of the process's resources. Any part `/proc` did not give is `None`.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    start_time_seconds: Option<f64>,
}

/// The `process_*` families in Prometheus text format.
pub fn render() -> String {
    format(&read())
}

#[cfg(target_os = "linux")]
fn read() -> Sample {
    let text = |path: &str| std::fs::read_to_string(path).ok();
    let stat = text("/proc/self/stat").and_then(|stat| parse_stat(&stat));
    let status = text("/proc/self/status");
    let kib = |key| Some(status_kib(status.as_deref()?, key)? * 1024);
    let boot_time = text("/proc/stat").and_then(|stat| parse_boot_time(&stat));
    Sample {
        cpu_seconds: stat.map(|stat| stat.cpu_ticks as f64 / USER_HZ),
        resident_bytes: kib("VmRSS"),
        virtual_bytes: kib("VmSize"),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64),
        max_fds: text("/proc/self/limits").and_then(|limits| parse_max_fds(&limits)),
        start_time_seconds: stat
            .zip(boot_time)
            .map(|(stat, boot)| boot as f64 + stat.start_ticks as f64 / USER_HZ),
    }
}

#[cfg(not(target_os = "linux"))]
fn read() -> Sample {
    Sample::default()
}

/// What `/proc/self/stat` gives: CPU time (user + system) and the start time since boot.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    cpu_ticks: u64,
    start_ticks: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses, so the fields are counted from after its last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name, field 3 (state) is at index 0: utime is field 14, stime 15,
    // starttime 22.
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
    })
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft limit on open files from `/proc/self/limits`; `None` if unlimited.
fn parse_max_fds(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The boot time in seconds since the Unix epoch, from `/proc/stat`'s `btime` line.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn format(sample: &Sample) -> String {
    let mut text = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: Option<String>| {
        if let Some(value) = value {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        sample.cpu_seconds.map(|value| value.to_string()),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        sample.resident_bytes.map(|value| value.to_string()),
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        sample.virtual_bytes.map(|value| value.to_string()),
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        sample.open_fds.map(|value| value.to_string()),
    );
    family(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        sample.max_fds.map(|value| value.to_string()),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        sample.start_time_seconds.map(|value| value.to_string()),
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_a_command_name_with_spaces_and_parentheses() {
        // Fields 3..=22 after the name: utime 14 = 250, stime 15 = 50, starttime 22 = 4200.
        let stat = "42 (strata (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 4200 1000 200 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                cpu_ticks: 300,
                start_ticks: 4200
            })
        );
        assert_eq!(parse_stat("42 (cut short) S 1"), None);
    }

    #[test]
    fn status_limits_and_boot_time_parse() {
        let status = "Name:\tstrata-broker\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(2048));
        assert_eq!(status_kib(status, "VmSize"), Some(123_456));
        assert_eq!(status_kib(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), None);
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn each_family_has_help_and_type_and_missing_readings_are_left_out() {
        let text = format(&Sample {
            cpu_seconds: Some(1.5),
            open_fds: Some(12),
            ..Sample::default()
        });
        assert_eq!(
            text,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds 12\n"
        );
    }
}
