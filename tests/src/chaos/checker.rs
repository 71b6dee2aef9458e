//! The checker: Jepsen's invariants for a Kafka-style log (from its Kafka and Redpanda
//! analyses), evaluated over a [`History`]. Pure: no I/O, no clock.
//!
//! A check never counts an unknown outcome against the broker: a write that failed or
//! timed out may or may not be in the log, so it is neither lost when absent nor a
//! phantom when present.
//!
//! Across leader changes an offset may be given again only if what held it was never
//! acknowledged (an uncommitted tail truncated by the new leader, which no consumer may
//! have read): an acknowledged write keeps its offset, so the final drain must read it
//! there, and every read of that offset must return it.

use std::collections::{BTreeMap, BTreeSet};

use super::history::{History, WriteOutcome};

/// How many examples a finding keeps for the report.
pub const EXAMPLES_MAX: usize = 5;

/// One invariant of the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    /// 1. Every acknowledged value is in the final drain.
    LostWrite,
    /// 2. No value appears at two offsets (a violation with idempotent producers only).
    Duplicate,
    /// 3. One offset holds one value, across every read and acknowledgement, and an
    ///    acknowledged value is drained at the offset its acknowledgement named.
    InconsistentOffset,
    /// 4. Every value read was written by some producer attempt.
    Phantom,
    /// 5. Within a session, offsets only increase; a session starts at or after the
    ///    offset committed before it began.
    NonMonotonicRead,
    /// 6. Committed offsets never go backward, except by an administrator's reset.
    BackwardCommit,
    /// 7. A write sent after another was acknowledged at `o` gets an offset above `o`.
    AcknowledgedOffsetOrder,
    /// 8. After the last fault heals, a write is acknowledged within the bound.
    Liveness,
}

impl Invariant {
    /// Every invariant, in the order.
    pub const ALL: [Invariant; 8] = [
        Invariant::LostWrite,
        Invariant::Duplicate,
        Invariant::InconsistentOffset,
        Invariant::Phantom,
        Invariant::NonMonotonicRead,
        Invariant::BackwardCommit,
        Invariant::AcknowledgedOffsetOrder,
        Invariant::Liveness,
    ];

    /// The name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::LostWrite => "lost_write",
            Invariant::Duplicate => "duplicate",
            Invariant::InconsistentOffset => "inconsistent_offset",
            Invariant::Phantom => "phantom",
            Invariant::NonMonotonicRead => "non_monotonic_read",
            Invariant::BackwardCommit => "backward_commit",
            Invariant::AcknowledgedOffsetOrder => "acknowledged_offset_order",
            Invariant::Liveness => "liveness",
        }
    }
}

/// The violations of one invariant: how many, and a few of them described.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finding {
    /// How many violations.
    pub count: u64,
    /// Up to [`EXAMPLES_MAX`] of them, described.
    pub examples: Vec<String>,
}

impl Finding {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example());
        }
    }
}

/// What the checker found, and the measures the report shows beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every invariant with its finding, present even when the count is 0.
    pub findings: BTreeMap<Invariant, Finding>,
    /// Acknowledged writes.
    pub acknowledged_writes: u64,
    /// Writes that failed (their presence in the log is unknown).
    pub failed_writes: u64,
    /// Writes with no outcome when the run ended.
    pub unknown_writes: u64,
    /// Records read by consumer sessions and the drain.
    pub reads: u64,
    /// Acknowledged commits.
    pub commits: u64,
    /// Acknowledged values missing from the drain (invariant 1's count).
    pub lost_writes: u64,
    /// Partitions the drain could not read, in a run that accepts them unavailable.
    pub unavailable_partitions: Vec<u32>,
    /// Acknowledged values in those partitions: neither found nor lost.
    pub unverifiable_writes: u64,
    /// Values read at more than one offset, whether or not that is a violation.
    pub duplicates: u64,
    /// The longest time, in ms, in which a partition had no write acknowledged while
    /// producing.
    pub unavailability_ms_max: u64,
    /// The 99th percentile of the gaps between consecutive acknowledgements of a
    /// partition, over every partition, in ms.
    pub unavailability_ms_p99: u64,
    /// From the last heal to the first acknowledgement after it, in ms.
    pub recovery_ms: Option<u64>,
}

impl Verdict {
    /// Whether any invariant was violated.
    pub fn violated(&self) -> bool {
        self.findings.values().any(|finding| finding.count > 0)
    }
}

/// Checks `history`; `liveness_ms_max` is invariant 8's bound.
pub fn check(history: &History, liveness_ms_max: u64) -> Verdict {
    let finding = Finding::default;
    let mut lost = finding();
    let unverifiable_writes = lost_writes(history, &mut lost);
    let mut duplicate = finding();
    let duplicates = duplicates(history, &mut duplicate);
    let mut inconsistent = finding();
    inconsistent_offsets(history, &mut inconsistent);
    let mut phantom = finding();
    phantoms(history, &mut phantom);
    let mut non_monotonic = finding();
    non_monotonic_reads(history, &mut non_monotonic);
    let mut backward = finding();
    backward_commits(history, &mut backward);
    let mut order = finding();
    acknowledged_offset_order(history, &mut order);
    let mut live = finding();
    let recovery_ms = liveness(history, liveness_ms_max, &mut live);
    let findings = BTreeMap::from([
        (Invariant::LostWrite, lost),
        (Invariant::Duplicate, duplicate),
        (Invariant::InconsistentOffset, inconsistent),
        (Invariant::Phantom, phantom),
        (Invariant::NonMonotonicRead, non_monotonic),
        (Invariant::BackwardCommit, backward),
        (Invariant::AcknowledgedOffsetOrder, order),
        (Invariant::Liveness, live),
    ]);
    let (unavailability_ms_max, unavailability_ms_p99) = unavailability(history);
    let count = |outcome: fn(&WriteOutcome) -> bool| {
        history
            .writes
            .iter()
            .filter(|write| outcome(&write.outcome))
            .count() as u64
    };
    Verdict {
        acknowledged_writes: count(|outcome| matches!(outcome, WriteOutcome::Acked { .. })),
        failed_writes: count(|outcome| matches!(outcome, WriteOutcome::Failed { .. })),
        unknown_writes: count(|outcome| matches!(outcome, WriteOutcome::Unknown)),
        reads: history.reads.len() as u64,
        commits: history.commits.len() as u64,
        lost_writes: findings[&Invariant::LostWrite].count,
        unavailable_partitions: unavailable_partitions(history),
        unverifiable_writes,
        duplicates,
        unavailability_ms_max,
        unavailability_ms_p99,
        recovery_ms,
        findings,
    }
}

/// Acknowledged writes as `(partition, value, offset)`.
fn acknowledged(history: &History) -> impl Iterator<Item = (u32, &str, u64)> {
    history
        .writes
        .iter()
        .filter_map(|write| match write.outcome {
            WriteOutcome::Acked { offset } => Some((write.partition, write.value.as_str(), offset)),
            _ => None,
        })
}

/// Every read as `(partition, offset, value)`.
fn reads(history: &History) -> impl Iterator<Item = (u32, u64, &str)> {
    history.reads.iter().map(|read| {
        let partition = history.sessions[read.session].partition;
        (partition, read.offset, read.value.as_str())
    })
}

/// The partitions written to that the drain could not read, in a run that accepts a
/// partition unavailable (none otherwise).
fn unavailable_partitions(history: &History) -> Vec<u32> {
    if !history.unavailable_allowed {
        return Vec::new();
    }
    let written: BTreeSet<u32> = history.writes.iter().map(|write| write.partition).collect();
    written
        .into_iter()
        .filter(|partition| !history.drained.contains(partition))
        .collect()
}

/// 1: every acknowledged value of a drained partition is in its drain. A partition the
/// drain could not read loses all its acknowledged values (absence of proof is no pass),
/// unless the run accepts it unavailable: then they are unverifiable, and their count is
/// returned.
fn lost_writes(history: &History, finding: &mut Finding) -> u64 {
    let unavailable = unavailable_partitions(history);
    let mut unverifiable = 0;
    let drained: BTreeSet<(u32, &str)> = history
        .reads
        .iter()
        .filter_map(|read| {
            let session = &history.sessions[read.session];
            let drain = !session.resumes_from_commit;
            drain.then_some((session.partition, read.value.as_str()))
        })
        .collect();
    for (partition, value, offset) in acknowledged(history) {
        if unavailable.contains(&partition) {
            unverifiable += 1;
        } else if !drained.contains(&(partition, value)) {
            let why = if history.drained.contains(&partition) {
                "not in the final drain"
            } else {
                "its partition was never drained"
            };
            finding.add(|| format!("{value} acknowledged at {partition}/{offset}, {why}"));
        }
    }
    unverifiable
}

/// 2: no value at two offsets. Returns how many values were; they are violations only
/// with idempotent producers.
fn duplicates(history: &History, finding: &mut Finding) -> u64 {
    let mut positions: BTreeMap<&str, BTreeSet<(u32, u64)>> = BTreeMap::new();
    for (partition, offset, value) in reads(history) {
        positions
            .entry(value)
            .or_default()
            .insert((partition, offset));
    }
    let mut count = 0;
    for (value, at) in positions.iter().filter(|(_, at)| at.len() > 1) {
        count += 1;
        if history.idempotent {
            finding.add(|| format!("{value} read at {at:?} (partition, offset)"));
        }
    }
    count
}

/// 3: one value per offset, over every read and every acknowledgement; and an
/// acknowledged value the drain read elsewhere is read at its acknowledged offset too (a
/// leader change moved it otherwise, to an offset nothing else was read at).
fn inconsistent_offsets(history: &History, finding: &mut Finding) {
    let mut values: BTreeMap<(u32, u64), BTreeSet<&str>> = BTreeMap::new();
    let mut drained_at: BTreeMap<(u32, &str), BTreeSet<u64>> = BTreeMap::new();
    for read in &history.reads {
        let session = &history.sessions[read.session];
        let (partition, value) = (session.partition, read.value.as_str());
        values
            .entry((partition, read.offset))
            .or_default()
            .insert(value);
        if !session.resumes_from_commit {
            drained_at
                .entry((partition, value))
                .or_default()
                .insert(read.offset);
        }
    }
    let read_offsets: BTreeSet<(u32, u64)> = values.keys().copied().collect();
    for (partition, value, offset) in acknowledged(history) {
        values.entry((partition, offset)).or_default().insert(value);
        let Some(at) = drained_at.get(&(partition, value)) else {
            continue;
        };
        if !at.contains(&offset) && !read_offsets.contains(&(partition, offset)) {
            finding
                .add(|| format!("{value} acknowledged at {partition}/{offset}, drained at {at:?}"));
        }
    }
    for ((partition, offset), seen) in values.iter().filter(|(_, seen)| seen.len() > 1) {
        finding.add(|| format!("{partition}/{offset} holds {seen:?}"));
    }
}

/// 4: every value read was sent, to that partition, by some attempt.
fn phantoms(history: &History, finding: &mut Finding) {
    let sent: BTreeSet<(u32, &str)> = history
        .writes
        .iter()
        .map(|write| (write.partition, write.value.as_str()))
        .collect();
    let mut reported = BTreeSet::new();
    for (partition, offset, value) in reads(history) {
        if !sent.contains(&(partition, value)) && reported.insert((partition, value)) {
            finding.add(|| format!("{value} read at {partition}/{offset} was never sent there"));
        }
    }
}

/// 5: offsets only increase within a session, and a group session starts at or after
/// the last commit acknowledged before it began.
fn non_monotonic_reads(history: &History, finding: &mut Finding) {
    let mut last: BTreeMap<usize, u64> = BTreeMap::new();
    for read in &history.reads {
        let session = &history.sessions[read.session];
        match last.insert(read.session, read.offset) {
            Some(previous) if read.offset <= previous => finding.add(|| {
                format!(
                    "{} read {}/{} after {previous}",
                    session.reader, session.partition, read.offset
                )
            }),
            Some(_) => {}
            None if session.resumes_from_commit => {
                let committed = history.commits.iter().rev().find(|commit| {
                    commit.partition == session.partition && commit.acked_us <= session.started_us
                });
                if let Some(commit) = committed.filter(|commit| read.offset < commit.offset) {
                    finding.add(|| {
                        format!(
                            "{} began {} at {}, below the offset {} committed before it",
                            session.reader, session.partition, read.offset, commit.offset
                        )
                    });
                }
            }
            None => {}
        }
    }
}

/// 6: per partition, each acknowledged commit is at or above the one before it (unless
/// it is an administrator's reset), and the offset read back at the end is at or above
/// the last one (when it could be read back: a run that accepts unavailability may end
/// without).
fn backward_commits(history: &History, finding: &mut Finding) {
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for commit in &history.commits {
        if let Some(previous) = last.insert(commit.partition, commit.offset)
            && commit.offset < previous
            && !commit.admin_reset
        {
            finding.add(|| {
                format!(
                    "partition {} committed {} after {previous}",
                    commit.partition, commit.offset
                )
            });
        }
    }
    if history.unavailable_allowed && !history.final_commits_read {
        return;
    }
    for (partition, committed) in &last {
        let read_back = history.final_commits.get(partition).copied().unwrap_or(0);
        if read_back < *committed {
            finding.add(|| {
                format!("partition {partition} reads back committed {read_back} after {committed}")
            });
        }
    }
}

/// 7: a write sent after a write was acknowledged at `o` on its partition is
/// acknowledged above `o`.
fn acknowledged_offset_order(history: &History, finding: &mut Finding) {
    let mut by_partition: BTreeMap<u32, Vec<(u64, u64, &str)>> = BTreeMap::new();
    for write in &history.writes {
        if let (WriteOutcome::Acked { offset }, Some(done_us)) = (&write.outcome, write.done_us) {
            by_partition
                .entry(write.partition)
                .or_default()
                .push((done_us, *offset, &write.value));
        }
    }
    for (partition, mut acks) in by_partition {
        acks.sort_unstable();
        // prefix_max[i]: the highest offset among the first i acknowledgements.
        let mut prefix_max: Vec<Option<(u64, &str)>> = vec![None];
        for (_, offset, value) in &acks {
            let best = prefix_max.last().copied().flatten();
            let next = match best {
                Some((top, _)) if top >= *offset => best,
                _ => Some((*offset, *value)),
            };
            prefix_max.push(next);
        }
        for write in history
            .writes
            .iter()
            .filter(|write| write.partition == partition)
        {
            let WriteOutcome::Acked { offset } = write.outcome else {
                continue;
            };
            let before = acks.partition_point(|(done_us, _, _)| *done_us < write.sent_us);
            if let Some((top, earlier)) = prefix_max[before]
                && offset <= top
            {
                finding.add(|| {
                    format!(
                        "{} acknowledged at {partition}/{offset}, sent after {earlier} was acknowledged at {top}",
                        write.value
                    )
                });
            }
        }
    }
}

/// 8: a write is acknowledged within `liveness_ms_max` of the last heal. Returns the
/// time to that acknowledgement.
fn liveness(history: &History, liveness_ms_max: u64, finding: &mut Finding) -> Option<u64> {
    let healed_us = history.faults.iter().map(|fault| fault.healed_us).max()?;
    let first_ack_us = history
        .writes
        .iter()
        .filter(|write| matches!(write.outcome, WriteOutcome::Acked { .. }))
        .filter_map(|write| write.done_us)
        .filter(|done_us| *done_us >= healed_us)
        .min();
    let recovery_ms = first_ack_us.map(|done_us| (done_us - healed_us) / 1000);
    match recovery_ms {
        Some(ms) if ms <= liveness_ms_max => {}
        Some(ms) => finding.add(|| {
            format!(
                "first write acknowledged {ms} ms after the last heal (bound {liveness_ms_max} ms)"
            )
        }),
        None => finding.add(|| {
            format!("no write acknowledged after the last heal (bound {liveness_ms_max} ms)")
        }),
    }
    recovery_ms
}

/// Per partition written to, the gaps between its consecutive acknowledgements inside
/// the production window, the window's edges included: a leader's failure stops only
/// the partitions it leads, so gaps over all partitions together would hide it. Returns
/// the longest gap and the 99th percentile of all gaps, in ms.
fn unavailability(history: &History) -> (u64, u64) {
    let (start_us, end_us) = history.production_us;
    let mut times: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for write in &history.writes {
        let acked = match (&write.outcome, write.done_us) {
            (WriteOutcome::Acked { .. }, Some(done_us)) => Some(done_us),
            _ => None,
        };
        let partition = times.entry(write.partition).or_default();
        partition.extend(acked.filter(|done_us| (start_us..=end_us).contains(done_us)));
    }
    let mut gaps: Vec<u64> = Vec::new();
    for mut partition in times.into_values() {
        partition.push(start_us);
        partition.push(end_us);
        partition.sort_unstable();
        gaps.extend(partition.windows(2).map(|pair| pair[1] - pair[0]));
    }
    gaps.sort_unstable();
    let max = gaps.last().copied().unwrap_or(0);
    let p99 = gaps
        .get((gaps.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or(0);
    (max / 1000, p99 / 1000)
}

#[cfg(test)]
mod tests;
