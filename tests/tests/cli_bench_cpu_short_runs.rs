//! A short bench run reports the load tool's own CPU use: it is timed in nanoseconds over
//! the run's window, not in the 10 ms ticks of `/proc/self/stat` (which read 0.00 cores
//! for a run of a few milliseconds) nor over the topic's creation before the run.

use serde_json::Value;
use strata_tests::{BrokerProcess, data_dir, strata};

fn report(at: &str, args: &[&str]) -> Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let run = strata(Some(at), &all, b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|error| panic!("{error}: {run:?}"))
}

/// The CPU figures of a report, if its window saw the machine's counters move.
fn cpu(report: &Value) -> Option<(f64, f64)> {
    let busy = report.get("cpu_busy_percent")?.as_f64()?;
    let cores = report.get("bench_cpu_cores")?.as_f64()?;
    Some((busy, cores))
}

fn assert_plausible(report: &Value) {
    let cores_max = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let Some((busy, cores)) = cpu(report) else {
        return;
    };
    assert!((0.0..=100.0).contains(&busy), "{report}");
    // The tool ran while it sent and received: it used some CPU, and no more than the
    // machine has.
    assert!(cores > 0.0, "{report}");
    assert!(cores <= cores_max + 0.05, "{report}");
}

#[test]
fn short_runs_report_the_tools_cpu_use() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.as_str();

    // Paced for 300 ms: the machine's counters surely move, while the tool sends only
    // 300 records, well under one 10 ms tick of CPU.
    let paced = report(
        at,
        &[
            "produce",
            "--topic",
            "p",
            "--duration",
            "300ms",
            "--rate",
            "1000",
        ],
    );
    assert!(cpu(&paced).is_some(), "{paced}");
    assert_plausible(&paced);

    // Runs of a few milliseconds, each creating its topic first.
    for (mode, topic) in [("produce", "a"), ("e2e", "b")] {
        let short = report(
            at,
            &[
                mode,
                "--topic",
                topic,
                "--messages",
                "500",
                "--message-bytes",
                "100",
            ],
        );
        assert_plausible(&short);
    }
    let consumed = report(at, &["consume", "--topic", "a"]);
    assert_plausible(&consumed);
}
