//! The CI set of `strata-chaos`: every scenario `--list` names runs with a fixed seed,
//! exits 0, and reports acknowledged writes and no violation of any invariant. Also the
//! tool's clear refusals: a cluster, an unknown scenario. And the deliberately lossy run
//! (`lossy-power-loss`: acks=leader, durability=never, power loss), which must report
//! the writes it lost.

use std::process::Command;
use std::time::Duration;

use strata_tests::{CliRun, binary, run_bounded};

/// The seed every CI scenario runs with.
const SEED: &str = "20261207";
/// The longest one CI scenario may take: its 18 s, the liveness bound, start and drain.
const SCENARIO_TIME_MAX: Duration = Duration::from_secs(90);

fn chaos(args: &[&str], within: Duration) -> CliRun {
    run_bounded(Command::new(binary("strata-chaos")).args(args), b"", within)
}

fn ci_set() -> Vec<String> {
    let list = chaos(&["--list"], Duration::from_secs(10));
    assert_eq!(list.code, Some(0), "{list:?}");
    list.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn every_ci_scenario_passes_with_a_fixed_seed() {
    let names = ci_set();
    for expected in [
        "kill",
        "pause",
        "client-cut",
        "lost-replies",
        "power-loss",
        "disk-full",
    ] {
        assert!(names.iter().any(|name| name == expected), "{names:?}");
    }
    let directory = strata_tests::data_dir();
    for name in &names {
        let history_path = directory.path().join(format!("{name}.json"));
        let history_arg = history_path.to_str().expect("a UTF-8 path");
        let run = chaos(
            &[
                "--scenario",
                name,
                "--seed",
                SEED,
                "--json",
                "--history",
                history_arg,
            ],
            SCENARIO_TIME_MAX,
        );
        assert!(
            run.stderr.starts_with(&format!("strata-chaos seed {SEED}")),
            "the seed comes first: {run:?}"
        );
        let report: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|error| panic!("{name}: no JSON report ({error}): {run:?}"));
        assert_eq!(run.code, Some(0), "{name}: {report:#}\n{}", run.stderr);
        assert_eq!(
            report["seed"].as_u64(),
            Some(SEED.parse().expect("a number"))
        );
        assert!(report["faults"].as_u64() > Some(0), "{name}: {report:#}");
        assert!(
            report["acknowledged_writes"].as_u64() > Some(0),
            "{name}: {report:#}"
        );
        let violations = report["violations"].as_object().expect("violations");
        assert_eq!(
            violations.len(),
            8,
            "every invariant is reported: {report:#}"
        );
        assert!(
            violations.values().all(|count| count.as_u64() == Some(0)),
            "{name}: {report:#}"
        );
        assert_eq!(report["lost_writes"].as_u64(), Some(0));
        assert!(report["unavailability_ms_max"].is_u64(), "{report:#}");
        assert!(report["unavailability_ms_p99"].is_u64(), "{report:#}");
        let history: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&history_path).expect("the history file"))
                .expect("a JSON history");
        let writes = history["writes"].as_array().expect("writes");
        assert!(writes.len() as u64 >= report["acknowledged_writes"].as_u64().expect("a count"));
        assert_eq!(
            history["faults"].as_array().map(Vec::len),
            report["faults"].as_u64().map(|faults| faults as usize)
        );
    }
}

#[test]
fn more_than_one_broker_is_not_yet_possible() {
    let run = chaos(
        &["--brokers", "3", "--seconds", "13"],
        Duration::from_secs(10),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("not yet available"), "{run:?}");
}

#[test]
fn power_loss_under_acks_leader_and_no_fsync_reports_the_lost_writes() {
    let run = chaos(
        &["--scenario", "lossy-power-loss", "--seed", SEED, "--json"],
        SCENARIO_TIME_MAX,
    );
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("no JSON report ({error}): {run:?}"));
    assert_eq!(run.code, Some(1), "a loss is a violation: {report:#}");
    assert!(report["lost_writes"].as_u64() > Some(0), "{report:#}");
    assert!(
        report["violations"]["lost_write"].as_u64() > Some(0),
        "{report:#}"
    );
}

#[test]
fn bad_input_is_named() {
    let unknown = chaos(&["--scenario", "nope"], Duration::from_secs(10));
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("unknown scenario 'nope'; the scenarios are kill"),
        "{unknown:?}"
    );
    let short = chaos(&["--seconds", "3"], Duration::from_secs(10));
    assert_eq!(short.code, Some(2), "{short:?}");
    assert!(
        short.stderr.contains("--seconds must be 13 to"),
        "{short:?}"
    );
    let rate = chaos(&["--rate", "0"], Duration::from_secs(10));
    assert!(rate.stderr.contains("--rate must be 1 to"), "{rate:?}");
    let acks = chaos(&["--acks", "none"], Duration::from_secs(10));
    assert_eq!(acks.code, Some(2), "{acks:?}");
    assert!(
        acks.stderr.contains("invalid value 'none' for '--acks"),
        "{acks:?}"
    );
}
