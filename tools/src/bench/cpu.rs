//! Where the machine's CPU time went during a run, read from `/proc` (Linux only).
//!
//! On a shared virtual machine the hypervisor runs other guests on the cores this one
//! counts as its own. The time it takes ("steal") freezes whatever thread was on that
//! virtual core, broker and load tool alike, so a run's latency tail means little without
//! it.

use std::time::Instant;

use strata_bench_report::CpuUse;

/// The machine's CPU counters, in clock ticks, and this process's CPU time at one instant.
///
/// The machine's counters tick 100 times a second per core, too coarse for the load
/// tool's own use in a run of tens of milliseconds (`/proc/self/stat` counts in the same
/// ticks, and a short run read 0.00 cores from it): that is summed instead from each
/// thread's `schedstat`, in nanoseconds, and divided by the wall-clock window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuCounters {
    /// User, nice, system, irq and softirq time of all cores.
    busy: u64,
    iowait: u64,
    steal: u64,
    /// All of the above, plus idle.
    total: u64,
    /// This process's threads' time on a CPU, in nanoseconds.
    own_ns: u64,
    /// When the counters were read.
    at: Instant,
}

impl CpuCounters {
    /// The counters now; `None` where `/proc` is missing or not as expected.
    pub fn read() -> Option<Self> {
        let machine = std::fs::read_to_string("/proc/stat").ok()?;
        let own_ns = own_ns()?;
        Self::parse(&machine, own_ns, Instant::now())
    }

    fn parse(machine: &str, own_ns: u64, at: Instant) -> Option<Self> {
        // cpu user nice system idle iowait irq softirq steal guest guest_nice; guest
        // time is already counted in user and nice.
        let all: Vec<u64> = machine
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let &[user, nice, system, idle, iowait, irq, softirq, steal] = all.as_slice() else {
            return None;
        };
        let busy = user + nice + system + irq + softirq;
        Some(Self {
            busy,
            iowait,
            steal,
            total: busy + idle + iowait + steal,
            own_ns,
            at,
        })
    }

    /// Use between `start` and these counters; `None` if no tick of the machine's
    /// counters passed (a window of a few milliseconds).
    pub fn since(&self, start: &Self) -> Option<CpuUse> {
        let total = self
            .total
            .checked_sub(start.total)
            .filter(|&total| total > 0)?;
        let percent = |now: u64, then: u64| 100.0 * now.saturating_sub(then) as f64 / total as f64;
        let window_ns = self.at.saturating_duration_since(start.at).as_nanos() as f64;
        Some(CpuUse {
            busy_percent: percent(self.busy, start.busy),
            steal_percent: percent(self.steal, start.steal),
            iowait_percent: percent(self.iowait, start.iowait),
            bench_cores: self.own_ns.saturating_sub(start.own_ns) as f64 / window_ns.max(1.0),
        })
    }
}

/// Where the CPU went between `start` and now.
pub fn use_since(start: Option<CpuCounters>) -> Option<CpuUse> {
    CpuCounters::read()?.since(&start?)
}

/// This process's CPU time in nanoseconds: the sum over its threads of the first field
/// of `/proc/self/task/TID/schedstat`. A thread that ends between the listing and its
/// read is left out, and one that ends during a run takes its time with it (the tool's
/// threads live as long as the run).
fn own_ns() -> Option<u64> {
    let mut own_ns: u64 = 0;
    for thread in std::fs::read_dir("/proc/self/task").ok()? {
        let path = thread.ok()?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        own_ns = own_ns.saturating_add(schedstat_ns(&text)?);
    }
    Some(own_ns)
}

/// The time on a CPU, in ns, of a `schedstat` line: `on_cpu_ns waiting_ns timeslices`.
fn schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn machine(user: u64, idle: u64, steal: u64) -> String {
        format!(
            "cpu  {user} 0 0 {idle} 0 0 0 {steal} 7 0\n\
             cpu0 1 0 0 1 0 0 0 0 0 0\ncpu1 1 0 0 1 0 0 0 0 0 0\nintr 1 2 3\n"
        )
    }

    #[test]
    fn parses_the_machine() {
        let at = Instant::now();
        let counters = CpuCounters::parse(&machine(100, 300, 20), 7, at).expect("parses");
        assert_eq!(
            counters,
            CpuCounters {
                busy: 100,
                iowait: 0,
                steal: 20,
                total: 420,
                own_ns: 7,
                at,
            }
        );
        assert_eq!(schedstat_ns("123456789 2000 31\n"), Some(123_456_789));
        assert_eq!(schedstat_ns(""), None);
    }

    #[test]
    fn use_is_shares_of_all_cores_time_and_own_time_over_the_window() {
        let at = Instant::now();
        let start = CpuCounters::parse(&machine(100, 300, 20), 0, at).expect("parses");
        // 200 ticks passed on 2 cores: 150 busy, 20 idle, 30 stolen. In the 1 s
        // window the process ran 1.5 s on CPUs: 1.5 cores' worth.
        let end = CpuCounters::parse(
            &machine(250, 320, 50),
            1_500_000_000,
            at + Duration::from_secs(1),
        )
        .expect("parses");
        let used = end.since(&start).expect("ticks passed");
        assert_eq!(used.busy_percent, 75.0);
        assert_eq!(used.steal_percent, 15.0);
        assert_eq!(used.iowait_percent, 0.0);
        assert_eq!(used.bench_cores, 1.5);
        assert_eq!(start.since(&start), None);
    }

    #[test]
    fn a_short_window_keeps_the_tools_own_use() {
        // 20 ms, in which the tool ran 5 ms: far below one 10 ms tick of /proc/self/stat.
        let at = Instant::now();
        let start = CpuCounters::parse(&machine(100, 300, 0), 1_000, at).expect("parses");
        let end = CpuCounters::parse(
            &machine(102, 302, 0),
            5_001_000,
            at + Duration::from_millis(20),
        )
        .expect("parses");
        let used = end.since(&start).expect("ticks passed");
        assert!((used.bench_cores - 0.25).abs() < 1e-9, "{used:?}");
        assert_eq!(used.busy_percent, 50.0);
    }

    #[test]
    fn unexpected_contents_give_none() {
        let at = Instant::now();
        assert_eq!(CpuCounters::parse("", 0, at), None);
        assert_eq!(CpuCounters::parse("cpu  1 2 3\n", 0, at), None);
    }
}
