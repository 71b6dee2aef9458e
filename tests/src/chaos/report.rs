//! The end of a run: the verdict with the run's settings, as a table for people or as
//! JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::checker::{Invariant, Verdict};
use super::scenario::Options;

/// A run's report. Its JSON form has every invariant in `violations`, even at 0.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The seed of the fault schedule.
    pub seed: u64,
    /// The scenario's name.
    pub scenario: String,
    /// The nemesis.
    pub nemesis: &'static str,
    /// Which broker each fault went to (on a cluster).
    pub target: &'static str,
    /// Brokers.
    pub brokers: u32,
    /// The producers' acks.
    pub acks: &'static str,
    /// The topic's durability policy.
    pub durability: &'static str,
    /// Whether the producers were idempotent.
    pub idempotent: bool,
    /// The planned length of the workload.
    pub seconds: u64,
    /// Records per second asked for.
    pub rate: u32,
    /// Faults injected and healed.
    pub faults: usize,
    /// Acknowledged writes.
    pub acknowledged_writes: u64,
    /// Writes that failed (maybe written, maybe not).
    pub failed_writes: u64,
    /// Writes with no outcome by the end.
    pub unknown_writes: u64,
    /// Records read, by the group and the drain.
    pub reads: u64,
    /// Acknowledged commits.
    pub commits: u64,
    /// Invariant name → violations.
    pub violations: BTreeMap<&'static str, u64>,
    /// Invariant name → a few violations described (only invariants with some).
    pub examples: BTreeMap<&'static str, Vec<String>>,
    /// Acknowledged writes missing from the final drain.
    pub lost_writes: u64,
    /// Partitions the drain could not read, where the scenario accepts that.
    pub unavailable_partitions: Vec<u32>,
    /// Acknowledged writes in those partitions: neither found nor lost.
    pub unverifiable_writes: u64,
    /// Values read at two offsets (violations only with idempotence).
    pub duplicates: u64,
    /// The longest time a partition had no write acknowledged, in ms.
    pub unavailability_ms_max: u64,
    /// The 99th percentile of the gaps between a partition's acknowledgements, in ms.
    pub unavailability_ms_p99: u64,
    /// From the last heal to the next acknowledgement, in ms.
    pub recovery_ms: Option<u64>,
    /// The liveness bound, in ms.
    pub liveness_ms_max: u64,
    /// Whether no invariant was violated.
    pub passed: bool,
}

impl Report {
    /// The report of a run with `options`, `faults` faults and `verdict`.
    pub fn new(options: &Options, faults: usize, verdict: &Verdict, liveness_ms_max: u64) -> Self {
        let name = |invariant: &Invariant| invariant.name();
        Self {
            seed: options.seed,
            scenario: options.scenario.clone(),
            nemesis: options.nemesis.name(),
            target: options.target.name(),
            brokers: options.brokers,
            acks: options.acks.name(),
            durability: options.durability.name(),
            idempotent: options.idempotent,
            seconds: options.seconds,
            rate: options.rate,
            faults,
            acknowledged_writes: verdict.acknowledged_writes,
            failed_writes: verdict.failed_writes,
            unknown_writes: verdict.unknown_writes,
            reads: verdict.reads,
            commits: verdict.commits,
            violations: verdict
                .findings
                .iter()
                .map(|(invariant, finding)| (name(invariant), finding.count))
                .collect(),
            examples: verdict
                .findings
                .iter()
                .filter(|(_, finding)| !finding.examples.is_empty())
                .map(|(invariant, finding)| (name(invariant), finding.examples.clone()))
                .collect(),
            lost_writes: verdict.lost_writes,
            unavailable_partitions: verdict.unavailable_partitions.clone(),
            unverifiable_writes: verdict.unverifiable_writes,
            duplicates: verdict.duplicates,
            unavailability_ms_max: verdict.unavailability_ms_max,
            unavailability_ms_p99: verdict.unavailability_ms_p99,
            recovery_ms: verdict.recovery_ms,
            liveness_ms_max,
            passed: !verdict.violated(),
        }
    }

    /// The report as one JSON object.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// The report as a table for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let idempotent = if self.idempotent {
            "idempotent"
        } else {
            "not idempotent"
        };
        let target = if self.brokers > 1 {
            format!(" on the {}", self.target)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "scenario {}: nemesis {}{target}, {} broker(s), acks={}, durability={}, {idempotent}, {} s at {} records/s, seed {}",
            self.scenario,
            self.nemesis,
            self.brokers,
            self.acks,
            self.durability,
            self.seconds,
            self.rate,
            self.seed
        );
        let recovery = self
            .recovery_ms
            .map_or("-".to_owned(), |ms| format!("{ms} ms"));
        let rows = [
            ("faults injected", self.faults.to_string()),
            ("acknowledged writes", self.acknowledged_writes.to_string()),
            ("failed writes", self.failed_writes.to_string()),
            ("unknown writes", self.unknown_writes.to_string()),
            ("reads", self.reads.to_string()),
            ("commits", self.commits.to_string()),
            ("lost writes", self.lost_writes.to_string()),
            (
                "unavailable partitions",
                format!(
                    "{:?} ({} acknowledged writes unverifiable)",
                    self.unavailable_partitions, self.unverifiable_writes
                ),
            ),
            ("values at two offsets", self.duplicates.to_string()),
            (
                "unavailability max",
                format!("{} ms", self.unavailability_ms_max),
            ),
            (
                "unavailability p99",
                format!("{} ms", self.unavailability_ms_p99),
            ),
            (
                "recovery after last heal",
                format!("{recovery} (bound {} ms)", self.liveness_ms_max),
            ),
        ];
        for (what, value) in rows {
            let _ = writeln!(out, "  {what:<26} {value}");
        }
        let _ = writeln!(out, "\n  {:<26} violations", "invariant");
        for invariant in Invariant::ALL {
            let count = self.violations.get(invariant.name()).copied().unwrap_or(0);
            let _ = writeln!(out, "  {:<26} {count}", invariant.name());
        }
        for (name, examples) in &self.examples {
            let _ = writeln!(out, "\n  {name}, for example:");
            for example in examples {
                let _ = writeln!(out, "    {example}");
            }
        }
        let total: u64 = self.violations.values().sum();
        let verdict = if self.passed {
            "PASS: no invariant violated".to_owned()
        } else {
            format!("FAIL: {total} violation(s)")
        };
        let _ = writeln!(out, "\n{verdict}");
        out
    }
}
