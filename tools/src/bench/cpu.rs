//! Where the machine's CPU time went during a run, read from `/proc` (Linux only).
//!
//! On a shared virtual machine the hypervisor runs other guests on the cores this one
//! counts as its own. The time it takes ("steal") freezes whatever thread was on that
//! virtual core, broker and load tool alike, so a run's latency tail means little without
//! it.

use strata_bench_report::CpuUse;

/// The machine's and this process's CPU counters at one instant, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuCounters {
    /// User, nice, system, irq and softirq time of all cores.
    busy: u64,
    iowait: u64,
    steal: u64,
    /// All of the above, plus idle.
    total: u64,
    /// Cores counted in `/proc/stat`.
    cores: u64,
    /// This process's user and system time.
    own: u64,
}

impl CpuCounters {
    /// The counters now; `None` where `/proc` is missing or not as expected.
    pub fn read() -> Option<Self> {
        let machine = std::fs::read_to_string("/proc/stat").ok()?;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        Self::parse(&machine, &own)
    }

    fn parse(machine: &str, own: &str) -> Option<Self> {
        let mut lines = machine.lines();
        // cpu user nice system idle iowait irq softirq steal guest guest_nice; guest
        // time is already counted in user and nice.
        let all: Vec<u64> = lines
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
        let cores = lines
            .filter(|line| {
                line.strip_prefix("cpu")
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count() as u64;
        // The process's name, in parentheses, may hold spaces: count fields after it.
        // utime and stime are fields 14 and 15; the state, field 3, is first after it.
        let mut after_name = own.rsplit_once(')')?.1.split_whitespace().skip(11);
        let utime: u64 = after_name.next()?.parse().ok()?;
        let stime: u64 = after_name.next()?.parse().ok()?;
        let busy = user + nice + system + irq + softirq;
        Some(Self {
            busy,
            iowait,
            steal,
            total: busy + idle + iowait + steal,
            cores: cores.max(1),
            own: utime + stime,
        })
    }

    /// Use between `start` and these counters; `None` if no tick passed.
    pub fn since(&self, start: &Self) -> Option<CpuUse> {
        let total = self
            .total
            .checked_sub(start.total)
            .filter(|&total| total > 0)?;
        let percent = |now: u64, then: u64| 100.0 * now.saturating_sub(then) as f64 / total as f64;
        Some(CpuUse {
            busy_percent: percent(self.busy, start.busy),
            steal_percent: percent(self.steal, start.steal),
            iowait_percent: percent(self.iowait, start.iowait),
            bench_cores: self.own.saturating_sub(start.own) as f64 * self.cores as f64
                / total as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "4242 (strata bench) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 8";

    fn machine(user: u64, idle: u64, steal: u64) -> String {
        format!(
            "cpu  {user} 0 0 {idle} 0 0 0 {steal} 7 0\n\
             cpu0 1 0 0 1 0 0 0 0 0 0\ncpu1 1 0 0 1 0 0 0 0 0 0\nintr 1 2 3\n"
        )
    }

    #[test]
    fn parses_the_machine_and_the_process() {
        let counters = CpuCounters::parse(&machine(100, 300, 20), OWN).expect("parses");
        assert_eq!(
            counters,
            CpuCounters {
                busy: 100,
                iowait: 0,
                steal: 20,
                total: 420,
                cores: 2,
                own: 200,
            }
        );
    }

    #[test]
    fn use_is_shares_of_all_cores_time() {
        let start = CpuCounters::parse(&machine(100, 300, 20), OWN).expect("parses");
        let own_later = OWN.replace(" 150 50 ", " 250 100 ");
        let end = CpuCounters::parse(&machine(250, 320, 50), &own_later).expect("parses");
        // 200 ticks passed on 2 cores: 150 busy, 20 idle, 30 stolen; the process used
        // 150 ticks, 1.5 cores' worth.
        let used = end.since(&start).expect("ticks passed");
        assert_eq!(used.busy_percent, 75.0);
        assert_eq!(used.steal_percent, 15.0);
        assert_eq!(used.iowait_percent, 0.0);
        assert_eq!(used.bench_cores, 1.5);
        assert_eq!(start.since(&start), None);
    }

    #[test]
    fn unexpected_contents_give_none() {
        assert_eq!(CpuCounters::parse("", OWN), None);
        assert_eq!(CpuCounters::parse("cpu  1 2 3\n", OWN), None);
        assert_eq!(
            CpuCounters::parse(&machine(1, 1, 1), "4242 (x) S 1 2"),
            None
        );
    }
}
