//! The CI set of `strata-chaos`: every scenario `--list` names runs with a fixed seed,
//! exits 0, and reports acknowledged writes and no violation of any invariant; one
//! broker's set, then the cluster's (`--list --brokers 3`, the scenarios 1 to 8
//! on three brokers). Also the tool's clear refusals: a broker count it cannot run, a
//! cluster fault on one broker, an unknown scenario. And the deliberately lossy run
//! (`lossy-power-loss`: acks=leader, durability=never, power loss), which must report
//! the writes it lost.
//!
//! The runs take a test each, one at a time: three brokers and a workload already share
//! the machine's cores.

use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use strata_tests::{CliRun, binary, run_bounded};

/// The seed every CI scenario runs with.
const SEED: &str = "20261207";
/// The longest one CI scenario may take: its 13 to 18 s, the liveness bound, start and
/// drain, and a multi-step fault's waits.
const SCENARIO_TIME_MAX: Duration = Duration::from_secs(120);
/// The longest the cluster's whole CI set may take.
const CLUSTER_SET_TIME_MAX: Duration = Duration::from_secs(330);

/// Held by a test while it runs scenarios, so that they do not share the cores.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn chaos(args: &[&str], within: Duration) -> CliRun {
    run_bounded(Command::new(binary("strata-chaos")).args(args), b"", within)
}

/// The CI set's names, of scenarios on `brokers` brokers.
fn ci_set(brokers: &str) -> Vec<String> {
    let list = chaos(&["--list", "--brokers", brokers], Duration::from_secs(10));
    assert_eq!(list.code, Some(0), "{list:?}");
    list.stdout.lines().map(str::to_owned).collect()
}

/// Runs scenario `name` with the CI seed; asserts it passed with faults injected and
/// writes acknowledged, every invariant reported, and a history to match. Returns the
/// report.
fn passes(name: &str, directory: &std::path::Path) -> serde_json::Value {
    let history_path = directory.join(format!("{name}.json"));
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
    let faults = history["faults"].as_array().expect("faults");
    assert_eq!(
        Some(faults.len()),
        report["faults"].as_u64().map(|faults| faults as usize)
    );
    for fault in faults {
        let target = fault["target"].as_str().expect("a fault's target");
        assert!(target.starts_with("broker "), "{name}: {fault}");
    }
    report
}

#[test]
fn every_ci_scenario_passes_with_a_fixed_seed() {
    let _alone = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let names = ci_set("1");
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
        let report = passes(name, directory.path());
        assert_eq!(report["brokers"].as_u64(), Some(1), "{report:#}");
    }
}

#[test]
fn every_cluster_scenario_passes_with_a_fixed_seed() {
    let _alone = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let names = ci_set("3");
    for expected in [
        "leader-kill",
        "leader-pause",
        "leader-isolated",
        "leader-silenced",
        "majority-split",
        "follower-kill",
        "follower-pause",
        "slow-follower",
        "leader-power-loss",
        "last-replica-standing",
        "divergent-tails",
        "rolling-restart",
        "controller-kill",
    ] {
        assert!(names.iter().any(|name| name == expected), "{names:?}");
    }
    let directory = strata_tests::data_dir();
    let started = Instant::now();
    for name in &names {
        let report = passes(name, directory.path());
        assert_eq!(report["brokers"].as_u64(), Some(3), "{report:#}");
        if name != "last-replica-standing" {
            let unavailable = report["unavailable_partitions"].as_array();
            assert_eq!(unavailable.map(Vec::len), Some(0), "{name}: {report:#}");
        }
    }
    // A controlled shutdown must end on its own: the roll kills a broker only when its
    // SIGTERM shutdown hangs, and says so in the history.
    let history: serde_json::Value = serde_json::from_slice(
        &std::fs::read(directory.path().join("rolling-restart.json")).expect("its history"),
    )
    .expect("a JSON history");
    let faults = &history["faults"];
    assert!(
        !faults.to_string().contains("shutdown hung"),
        "a broker did not shut down on SIGTERM: {faults:#}"
    );
    assert!(
        started.elapsed() < CLUSTER_SET_TIME_MAX,
        "the cluster's CI set took {:?}, over its budget of {CLUSTER_SET_TIME_MAX:?}",
        started.elapsed()
    );
}

#[test]
fn a_broker_count_other_than_1_or_3_is_refused() {
    for brokers in ["0", "2", "5"] {
        let run = chaos(
            &["--brokers", brokers, "--seconds", "13"],
            Duration::from_secs(10),
        );
        assert_eq!(run.code, Some(2), "{run:?}");
        assert!(
            run.stderr.contains(&format!(
                "--brokers must be 1 or 3 (a cluster of three voters), got {brokers}"
            )),
            "{run:?}"
        );
    }
}

#[test]
fn a_cluster_fault_needs_a_cluster() {
    let run = chaos(
        &["--nemesis", "isolate", "--seconds", "13"],
        Duration::from_secs(10),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains("--nemesis isolate needs a cluster: add --brokers 3"),
        "{run:?}"
    );
}

#[test]
fn power_loss_under_acks_leader_and_no_fsync_reports_the_lost_writes() {
    let _alone = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
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
