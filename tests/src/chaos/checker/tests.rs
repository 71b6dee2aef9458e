//! Hand-made histories, each breaking one invariant, and one clean history: a checker
//! that never fires proves nothing.

use super::*;
use crate::chaos::history::{Commit, FaultWindow, Read, Session, WriteAttempt};

const LIVENESS_MS_MAX: u64 = 5_000;

/// A history builder: writes at explicit times, a consumer session and a drain.
struct Build(History);

impl Build {
    fn new() -> Self {
        Self(History {
            idempotent: true,
            production_us: (0, 10_000),
            ..History::default()
        })
    }

    fn acked(
        mut self,
        partition: u32,
        value: &str,
        offset: u64,
        sent_us: u64,
        done_us: u64,
    ) -> Self {
        self.0.writes.push(WriteAttempt {
            partition,
            value: value.into(),
            sent_us,
            done_us: Some(done_us),
            outcome: WriteOutcome::Acked { offset },
        });
        self
    }

    fn failed(mut self, partition: u32, value: &str) -> Self {
        self.0.writes.push(WriteAttempt {
            partition,
            value: value.into(),
            sent_us: 0,
            done_us: Some(1),
            outcome: WriteOutcome::Failed {
                error: "timed out".into(),
            },
        });
        self
    }

    fn session(
        mut self,
        reader: &str,
        partition: u32,
        started_us: u64,
        records: &[(u64, &str)],
    ) -> Self {
        let session = self.0.open_session(Session {
            reader: reader.into(),
            partition,
            started_us,
            resumes_from_commit: reader != "drain",
        });
        if reader == "drain" {
            self.0.drained.push(partition);
        }
        for (offset, value) in records {
            self.0.reads.push(Read {
                session,
                offset: *offset,
                value: (*value).into(),
            });
        }
        self
    }

    fn commit(mut self, partition: u32, offset: u64, acked_us: u64, admin_reset: bool) -> Self {
        self.0.commits.push(Commit {
            partition,
            offset,
            acked_us,
            admin_reset,
        });
        self.0.final_commits.insert(partition, offset);
        self
    }

    fn fault(mut self, injected_us: u64, healed_us: u64) -> Self {
        self.0.faults.push(FaultWindow {
            what: "kill".into(),
            target: "broker 1".into(),
            injected_us,
            healed_us,
        });
        self
    }

    /// The clean base: three acknowledged writes, read by a consumer and drained.
    fn clean() -> Self {
        Self::new()
            .acked(0, "p0-0", 0, 100, 200)
            .acked(0, "p0-1", 1, 300, 400)
            .acked(1, "p0-2", 0, 500, 600)
            .session("c0", 0, 50, &[(0, "p0-0"), (1, "p0-1")])
            .commit(0, 2, 700, false)
            .session("drain", 0, 9_000, &[(0, "p0-0"), (1, "p0-1")])
            .session("drain", 1, 9_000, &[(0, "p0-2")])
    }

    fn check(self) -> Verdict {
        check(&self.0, LIVENESS_MS_MAX)
    }
}

/// Asserts that `verdict` violates `invariant` `count` times and nothing else.
fn assert_only(verdict: &Verdict, invariant: Invariant, count: u64) {
    for (other, finding) in &verdict.findings {
        let expected = if *other == invariant { count } else { 0 };
        assert_eq!(finding.count, expected, "{other:?}: {finding:?}");
    }
    assert!(!verdict.findings[&invariant].examples.is_empty());
}

#[test]
fn a_clean_history_passes_with_every_invariant_reported() {
    let verdict = Build::clean()
        .fault(1_000, 2_000)
        .acked(0, "p0-3", 2, 2_100, 2_500)
        .session("drain", 0, 9_000, &[(0, "p0-0"), (1, "p0-1"), (2, "p0-3")])
        .check();
    assert!(!verdict.violated(), "{verdict:?}");
    assert_eq!(verdict.findings.len(), Invariant::ALL.len());
    assert_eq!(verdict.acknowledged_writes, 4);
    assert_eq!(verdict.recovery_ms, Some(0));
}

#[test]
fn a_lost_write_is_found() {
    let verdict = Build::clean().acked(1, "p0-9", 1, 700, 800).check();
    assert_only(&verdict, Invariant::LostWrite, 1);
    assert_eq!(verdict.lost_writes, 1);
}

#[test]
fn an_undrained_partition_loses_its_writes() {
    let verdict = Build::new().acked(3, "p0-0", 0, 1, 2).check();
    assert_only(&verdict, Invariant::LostWrite, 1);
    assert!(verdict.findings[&Invariant::LostWrite].examples[0].contains("never drained"));
}

#[test]
fn a_failed_write_missing_from_the_drain_is_no_loss() {
    let verdict = Build::clean().failed(0, "p0-7").check();
    assert!(!verdict.violated(), "{verdict:?}");
    assert_eq!(verdict.failed_writes, 1);
}

#[test]
fn a_duplicate_is_found() {
    let verdict = Build::clean()
        .session("drain", 0, 9_500, &[(0, "p0-0"), (1, "p0-1"), (2, "p0-1")])
        .check();
    assert_only(&verdict, Invariant::Duplicate, 1);
    assert_eq!(verdict.duplicates, 1);
}

#[test]
fn a_duplicate_without_idempotence_is_counted_not_violated() {
    let mut build =
        Build::clean().session("drain", 0, 9_500, &[(0, "p0-0"), (1, "p0-1"), (2, "p0-1")]);
    build.0.idempotent = false;
    let verdict = build.check();
    assert!(!verdict.violated(), "{verdict:?}");
    assert_eq!(verdict.duplicates, 1);
}

#[test]
fn two_values_at_one_offset_are_found() {
    let verdict = Build::clean()
        .failed(0, "p1-0")
        .session("c1", 0, 60, &[(1, "p1-0")])
        .check();
    assert_only(&verdict, Invariant::InconsistentOffset, 1);
}

#[test]
fn an_acknowledgement_disagreeing_with_the_log_is_found() {
    // p0-5's ack names offset 1, where the log holds p0-1; the drain has p0-5 at 2.
    let verdict = Build::clean()
        .acked(0, "p0-5", 1, 800, 900)
        .session("drain", 0, 9_500, &[(0, "p0-0"), (1, "p0-1"), (2, "p0-5")])
        .check();
    assert_eq!(
        verdict.findings[&Invariant::InconsistentOffset].count,
        1,
        "{verdict:?}"
    );
}

#[test]
fn a_phantom_is_found() {
    let verdict = Build::clean()
        .session("c1", 1, 700, &[(0, "p0-2"), (1, "p9-9")])
        .check();
    assert_only(&verdict, Invariant::Phantom, 1);
}

#[test]
fn a_value_read_from_another_partition_is_a_phantom() {
    let verdict = Build::clean()
        .session("c1", 1, 700, &[(0, "p0-2"), (1, "p0-0")])
        .check();
    assert_eq!(
        verdict.findings[&Invariant::Phantom].count,
        1,
        "{verdict:?}"
    );
}

#[test]
fn a_read_going_backward_in_a_session_is_found() {
    let verdict = Build::clean()
        .session("c1", 0, 60, &[(1, "p0-1"), (0, "p0-0")])
        .check();
    assert_only(&verdict, Invariant::NonMonotonicRead, 1);
}

#[test]
fn a_session_starting_below_the_committed_offset_is_found() {
    // Offset 2 was committed at 700; a session opened at 800 starts at 1.
    let verdict = Build::clean().session("c1", 0, 800, &[(1, "p0-1")]).check();
    assert_only(&verdict, Invariant::NonMonotonicRead, 1);
}

#[test]
fn a_backward_commit_is_found() {
    let verdict = Build::clean().commit(0, 1, 800, false).check();
    assert_only(&verdict, Invariant::BackwardCommit, 1);
}

#[test]
fn an_admin_reset_may_go_backward() {
    let verdict = Build::clean().commit(0, 0, 800, true).check();
    assert!(!verdict.violated(), "{verdict:?}");
}

#[test]
fn a_commit_lost_by_the_broker_is_found() {
    let mut build = Build::clean();
    build.0.final_commits.insert(0, 1);
    let verdict = build.check();
    assert_only(&verdict, Invariant::BackwardCommit, 1);
}

#[test]
fn an_acknowledged_offset_out_of_order_is_found() {
    // p0-1 was sent (300) after p0-0 was acknowledged at 5 (200), but got offset 1.
    let verdict = Build::new()
        .acked(0, "p0-0", 5, 100, 200)
        .acked(0, "p0-1", 1, 300, 400)
        .session("drain", 0, 9_000, &[(1, "p0-1"), (5, "p0-0")])
        .check();
    assert_only(&verdict, Invariant::AcknowledgedOffsetOrder, 1);
}

#[test]
fn concurrent_writes_may_be_acknowledged_in_any_order() {
    // Both were in flight together, so either order is allowed.
    let verdict = Build::new()
        .acked(0, "p0-0", 1, 100, 400)
        .acked(0, "p1-0", 0, 150, 300)
        .session("drain", 0, 9_000, &[(0, "p1-0"), (1, "p0-0")])
        .check();
    assert!(!verdict.violated(), "{verdict:?}");
}

#[test]
fn no_write_after_the_last_heal_breaks_liveness() {
    let verdict = Build::clean().fault(1_000, 2_000).check();
    assert_only(&verdict, Invariant::Liveness, 1);
    assert_eq!(verdict.recovery_ms, None);
}

#[test]
fn a_write_acknowledged_too_late_after_the_heal_breaks_liveness() {
    let late_us = 2_000 + (LIVENESS_MS_MAX + 1) * 1000;
    let verdict = Build::clean()
        .fault(1_000, 2_000)
        .acked(1, "p0-3", 1, 2_100, late_us)
        .session("drain", 1, late_us + 1, &[(0, "p0-2"), (1, "p0-3")])
        .check();
    assert_only(&verdict, Invariant::Liveness, 1);
    assert_eq!(verdict.recovery_ms, Some(LIVENESS_MS_MAX + 1));
}

#[test]
fn unavailability_is_the_longest_gap_between_acknowledgements() {
    let mut build = Build::new();
    build.0.production_us = (0, 10_000_000);
    let verdict = build
        .acked(0, "p0-0", 0, 0, 1_000_000)
        .acked(0, "p0-1", 1, 0, 7_000_000)
        .session("drain", 0, 0, &[(0, "p0-0"), (1, "p0-1")])
        .check();
    assert_eq!(verdict.unavailability_ms_max, 6_000);
    assert_eq!(verdict.unavailability_ms_p99, 6_000);
}

#[test]
fn unavailability_is_measured_per_partition() {
    // Partition 1 stops for 5 s while partition 0 goes on: the gap is partition 1's.
    let mut build = Build::new();
    build.0.production_us = (0, 6_000_000);
    let mut history = build;
    for second in 0..6 {
        let at = second * 1_000_000;
        history = history.acked(0, &format!("p0-{second}"), second, at, at);
    }
    let verdict = history
        .acked(1, "p1-0", 0, 0, 500_000)
        .acked(1, "p1-1", 1, 0, 5_500_000)
        .check();
    assert_eq!(verdict.unavailability_ms_max, 5_000);
}

#[test]
fn an_acknowledged_write_moved_to_another_offset_is_found() {
    // Acknowledged at 5, but after a leader change the log has it at 2 and ends there.
    let verdict = Build::clean()
        .acked(0, "p0-5", 5, 800, 900)
        .session("drain", 0, 9_500, &[(0, "p0-0"), (1, "p0-1"), (2, "p0-5")])
        .check();
    assert_only(&verdict, Invariant::InconsistentOffset, 1);
    assert!(
        verdict.findings[&Invariant::InconsistentOffset].examples[0].contains("drained at {2}")
    );
}

#[test]
fn an_uncommitted_tail_given_again_is_no_violation() {
    // p1-0 failed at offset 2 on an old leader; the new leader gave 2 to p0-3, and no
    // consumer read p1-0.
    let verdict = Build::clean()
        .failed(0, "p1-0")
        .acked(0, "p0-3", 2, 800, 900)
        .session("drain", 0, 9_500, &[(0, "p0-0"), (1, "p0-1"), (2, "p0-3")])
        .check();
    assert!(!verdict.violated(), "{verdict:?}");
}

#[test]
fn an_unavailable_partition_is_accepted_only_where_allowed() {
    // Partition 2 was never drained: its acknowledged write is lost, unless the run
    // accepts unavailability; then it is unverifiable, and partition 0 is still checked.
    let unavailable = || Build::clean().acked(2, "p0-8", 0, 700, 800);
    let strict = unavailable().check();
    assert_only(&strict, Invariant::LostWrite, 1);

    let mut allowed = unavailable();
    allowed.0.unavailable_allowed = true;
    let verdict = allowed.check();
    assert!(!verdict.violated(), "{verdict:?}");
    assert_eq!(verdict.unavailable_partitions, vec![2]);
    assert_eq!(verdict.unverifiable_writes, 1);

    let mut truncated = unavailable().acked(0, "p0-9", 2, 700, 800);
    truncated.0.unavailable_allowed = true;
    assert_only(&truncated.check(), Invariant::LostWrite, 1);
}

#[test]
fn commits_not_read_back_are_accepted_only_where_unavailability_is() {
    let mut unread = Build::clean();
    unread.0.final_commits.clear();
    assert_only(&unread.check(), Invariant::BackwardCommit, 1);
    let mut allowed = Build::clean();
    allowed.0.final_commits.clear();
    allowed.0.unavailable_allowed = true;
    assert!(!allowed.check().violated());
}
