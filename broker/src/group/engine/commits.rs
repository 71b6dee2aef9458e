//! Committed offsets: fenced by member epoch and by ownership, and applied only once the
//! broker has appended them.

use std::collections::BTreeSet;

use super::Coordinator;
use super::group::Group;
use super::membership::{unknown_member, validate_group_id};
use super::types::{
    CommitOutcome, Committer, GroupError, OFFSET_METADATA_BYTES_MAX, TopicPartition,
};
use crate::group::records::{OffsetValue, Record};

impl Coordinator {
    /// Validates an OffsetCommit without changing state. Returns one outcome per
    /// requested partition, in request order, and pushes an offset record for every
    /// accepted partition whose offset or metadata differs from what is committed. The
    /// broker appends those records and then hands each to [`Coordinator::replay`].
    ///
    /// An administrator's commit is allowed only while the group has no members, and
    /// creates the group (through the replayed offset records) if it does not exist.
    ///
    /// Per partition: `NotAssigned` if a member commits a partition it does not own
    /// (partitions pending revocation count as owned), `MetadataTooLong` if the metadata
    /// is longer than [`OFFSET_METADATA_BYTES_MAX`], `OffsetOutOfRange` if the offset is
    /// past `i64::MAX`.
    ///
    /// # Errors
    /// For the whole request: `InvalidGroupId`; `ResetWithMembers` (an administrator's
    /// commit to a group with members); `UnknownMember`; `FencedEpoch` (the epoch is
    /// neither the member's epoch nor the one before it).
    pub fn commit(
        &self,
        group_id: &str,
        committer: &Committer,
        offsets: &[(TopicPartition, u64, Option<String>)],
        now_ms: i64,
        records: &mut Vec<Record>,
    ) -> Result<Vec<(TopicPartition, CommitOutcome)>, GroupError> {
        validate_group_id(group_id)?;
        let group = self.groups.get(group_id);
        let owned = match committer {
            Committer::Admin => {
                admin_commit_allowed(group_id, group)?;
                None
            }
            Committer::Member {
                member_id,
                member_epoch,
            } => Some(member_owns(group_id, group, member_id, *member_epoch)?),
        };
        let results = offsets
            .iter()
            .map(|(tp, offset, metadata)| {
                let outcome = if metadata
                    .as_ref()
                    .is_some_and(|metadata| metadata.len() > OFFSET_METADATA_BYTES_MAX)
                {
                    CommitOutcome::MetadataTooLong
                } else if i64::try_from(*offset).is_err() {
                    CommitOutcome::OffsetOutOfRange
                } else if owned.is_some_and(|owned| !owned.contains(tp)) {
                    CommitOutcome::NotAssigned
                } else {
                    let committed = group.and_then(|group| group.offsets.get(tp));
                    let unchanged = committed.is_some_and(|committed| {
                        committed.offset == *offset && committed.metadata == *metadata
                    });
                    if !unchanged {
                        records.push(Record::Offset {
                            group: group_id.to_owned(),
                            tp: tp.clone(),
                            value: Some(OffsetValue {
                                offset: *offset,
                                metadata: metadata.clone(),
                                commit_ms: now_ms,
                            }),
                        });
                    }
                    CommitOutcome::Committed
                };
                (tp.clone(), outcome)
            })
            .collect();
        Ok(results)
    }
}

/// What a committing member owns, once it proved it is a live member at a current epoch.
fn member_owns<'a>(
    group_id: &str,
    group: Option<&'a Group>,
    member_id: &str,
    member_epoch: i32,
) -> Result<&'a BTreeSet<TopicPartition>, GroupError> {
    let member = group
        .and_then(|group| group.members.get(member_id))
        .filter(|member| !member.value.left_static)
        .ok_or_else(|| unknown_member(group_id, member_id))?;
    let value = &member.value;
    if member_epoch != value.member_epoch && member_epoch != value.previous_epoch {
        return Err(GroupError::FencedEpoch {
            member_id: member_id.to_owned(),
            sent: member_epoch,
            current: value.member_epoch,
        });
    }
    Ok(&value.assigned)
}

fn admin_commit_allowed(group_id: &str, group: Option<&Group>) -> Result<(), GroupError> {
    if let Some(group) = group
        && !group.members.is_empty()
    {
        return Err(GroupError::ResetWithMembers {
            group_id: group_id.to_owned(),
            member_count: group.members.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::tests::*;
    use super::super::*;

    #[test]
    fn commits_are_fenced_by_epoch_and_ownership() {
        let mut h = Harness::new(&[("t", 2)]);
        let a = h.join(&["t"]);
        let b = h.join(&["t"]);
        let a = h.ack(&a);
        let revoked = h
            .member(&a.member_id)
            .pending_revocation
            .first()
            .cloned()
            .expect("one revocation");
        let kept = a.assignment.first().cloned().expect("one kept");
        // During the revocation a may still commit what it is giving up.
        let outcome = h.commit(GROUP, &a.member_id, epoch(&a), &[(revoked.clone(), 5)]);
        assert_eq!(
            outcome,
            Ok(vec![(revoked.clone(), CommitOutcome::Committed)])
        );
        let error = h
            .commit(GROUP, &a.member_id, epoch(&a) + 3, &[(kept.clone(), 5)])
            .expect_err("fenced");
        assert!(matches!(error, GroupError::FencedEpoch { .. }), "{error}");
        let error = h
            .commit(GROUP, "nobody", 1, &[(kept.clone(), 5)])
            .expect_err("unknown");
        assert!(matches!(error, GroupError::UnknownMember { .. }), "{error}");
        // Once released, the partition is b's: a's commit of it is refused.
        let a = h.ack(&a);
        let outcome = h.commit(
            GROUP,
            &a.member_id,
            epoch(&a),
            &[(revoked.clone(), 9), (kept.clone(), 7)],
        );
        assert_eq!(
            outcome,
            Ok(vec![
                (revoked.clone(), CommitOutcome::NotAssigned),
                (kept.clone(), CommitOutcome::Committed)
            ])
        );
        let b = h.ack(&b);
        assert_eq!(b.assignment, BTreeSet::from([revoked.clone()]));
        let committed = h.coordinator.committed(GROUP);
        assert_eq!(committed.get(&revoked), Some(&(5, None)));
        assert_eq!(committed.get(&kept), Some(&(7, None)));
        // Committing what is already committed writes nothing.
        let records = h.records.len();
        h.commit(GROUP, &a.member_id, epoch(&a), &[(kept.clone(), 7)])
            .expect("accepted");
        assert_eq!(h.records.len(), records);
        let all: BTreeSet<_> = h.coordinator.all_committed().collect();
        assert_eq!(
            all,
            BTreeSet::from([(GROUP, &revoked, 5), (GROUP, &kept, 7)])
        );
    }

    #[test]
    fn admin_commits_need_an_empty_group() {
        let mut h = Harness::new(&[("t", 1)]);
        // An admin commit creates the group.
        h.admin_commit("fresh", &[(tp("t", 0), 3)])
            .expect("accepted");
        let fresh = h.coordinator.describe("fresh").expect("created");
        assert_eq!(fresh.state, GroupState::Empty);
        assert_eq!(fresh.committed.get(&tp("t", 0)), Some(&(3, None)));
        let a = h.join(&["t"]);
        let error = h
            .admin_commit(GROUP, &[(tp("t", 0), 3)])
            .expect_err("members");
        assert!(
            matches!(error, GroupError::ResetWithMembers { .. }),
            "{error}"
        );
        h.leave(&a.member_id, MemberEpoch::Leave);
        assert_eq!(h.describe().state, GroupState::Empty);
        let outcome = h.admin_commit(GROUP, &[(tp("t", 0), 3)]);
        assert_eq!(outcome, Ok(vec![(tp("t", 0), CommitOutcome::Committed)]));
    }
}
