//! Where a partition's next record comes from: seeks (by offset or by time), offset
//! lookups, and resets by `auto_offset_reset` when a position is missing or out of range.

use strata_protocol::messages::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use tokio::time::Instant;

use super::{Consumer, no_position, not_assigned, retain_buffered};
use crate::config::AutoOffsetReset;
use crate::error::{Error, Result};
use crate::record::TopicPartition;

impl Consumer {
    /// The next record `poll` returns for `tp` will be at `offset` (or the first after
    /// it). Drops what was buffered for `tp`. An offset outside the log is handled by
    /// `auto_offset_reset` on the next fetch.
    ///
    /// # Errors
    /// [`Error::NotAssigned`].
    pub fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        let state = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| not_assigned(tp))?;
        self.epochs += 1;
        state.position = Some(offset);
        state.fetch_offset = offset;
        state.last_fetched_epoch = None;
        state.epoch = self.epochs;
        state.paused = false;
        state.retry_at = None;
        state.failures = 0;
        state.committed_pending = false;
        retain_buffered(&mut self.buffer, |record| {
            !(record.partition == tp.partition && *record.topic == *tp.topic)
        });
        self.recount_buffer();
        Ok(())
    }

    /// Seeks each partition to its log start offset.
    ///
    /// # Errors
    /// [`Error::NotAssigned`]; errors of the ListOffsets lookup.
    ///
    /// # Cancel safety
    /// Cancel-safe: positions change only once the lookup succeeded.
    pub async fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_to_timestamp(partitions, EARLIEST_TIMESTAMP).await
    }

    /// Seeks each partition to its high watermark: only records produced afterwards are
    /// returned.
    ///
    /// # Errors
    /// As for [`seek_to_beginning`](Self::seek_to_beginning).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_to_timestamp(partitions, LATEST_TIMESTAMP).await
    }

    async fn seek_to_timestamp(
        &mut self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<()> {
        if let Some(tp) = partitions
            .iter()
            .find(|tp| !self.partitions.contains_key(*tp))
        {
            return Err(not_assigned(tp));
        }
        let offsets = self
            .cluster
            .list_offsets(partitions, timestamp, self.config.retry_backoff())
            .await;
        for (tp, offset) in offsets {
            self.seek(&tp, offset?)?;
        }
        Ok(())
    }

    /// Each partition's log start offset. The partitions need not be assigned.
    ///
    /// # Errors
    /// The first lookup error (unknown topic, unreachable leader, ...).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn beginning_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>> {
        collect_offsets(
            self.cluster
                .list_offsets(partitions, EARLIEST_TIMESTAMP, self.config.retry_backoff())
                .await,
        )
    }

    /// Each partition's high watermark: the offset the next record will get. The
    /// partitions need not be assigned.
    ///
    /// # Errors
    /// As for [`beginning_offsets`](Self::beginning_offsets).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>> {
        collect_offsets(
            self.cluster
                .list_offsets(partitions, LATEST_TIMESTAMP, self.config.retry_backoff())
                .await,
        )
    }

    /// Seeks each partition to its first record with a timestamp at or after
    /// `timestamp_ms`, or to its high watermark if there is none.
    ///
    /// # Errors
    /// [`Error::NotAssigned`]; lookup errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn seek_to_timestamp_ms(
        &mut self,
        partitions: &[TopicPartition],
        timestamp_ms: i64,
    ) -> Result<()> {
        if timestamp_ms < 0 {
            return Err(Error::InvalidConfig(format!(
                "timestamp {timestamp_ms} is before the Unix epoch"
            )));
        }
        if let Some(tp) = partitions
            .iter()
            .find(|tp| !self.partitions.contains_key(*tp))
        {
            return Err(not_assigned(tp));
        }
        let found = self
            .cluster
            .list_offsets(partitions, timestamp_ms, self.config.retry_backoff())
            .await;
        let mut missing = Vec::new();
        let mut targets = Vec::new();
        for (tp, offset) in found {
            match offset {
                Ok(offset) => targets.push((tp, offset)),
                Err(Error::NoOffsetFound) => missing.push(tp),
                Err(error) => return Err(error),
            }
        }
        let ends = collect_offsets(
            self.cluster
                .list_offsets(&missing, LATEST_TIMESTAMP, self.config.retry_backoff())
                .await,
        )?;
        for (tp, offset) in targets.into_iter().chain(ends) {
            self.seek(&tp, offset)?;
        }
        Ok(())
    }

    /// The offset of the next record `poll` returns for `tp`, resolving a missing
    /// position by `auto_offset_reset` first.
    ///
    /// # Errors
    /// [`Error::NotAssigned`]; [`Error::NoPosition`] with `auto_offset_reset = Error`;
    /// lookup errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<u64> {
        let pending = self
            .partitions
            .get(tp)
            .is_some_and(|state| state.committed_pending);
        if pending {
            self.lookup_committed().await;
            if let Some(error) = self.errors.pop_front() {
                return Err(error);
            }
        }
        let state = self.partitions.get(tp).ok_or_else(|| not_assigned(tp))?;
        if let Some(position) = state.position {
            return Ok(position);
        }
        let timestamp = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => EARLIEST_TIMESTAMP,
            AutoOffsetReset::Latest => LATEST_TIMESTAMP,
            AutoOffsetReset::Error => return Err(no_position(tp)),
        };
        self.seek_to_timestamp(std::slice::from_ref(tp), timestamp)
            .await?;
        Ok(self.partitions[tp].position.expect("just sought"))
    }

    /// Gives every unpositioned partition a position per `auto_offset_reset`. A
    /// partition whose lookup failed waits out its backoff first.
    pub(super) async fn reset_positions(&mut self) {
        let now = Instant::now();
        let unpositioned: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, state)| {
                state.position.is_none()
                    && !state.paused
                    && !state.committed_pending
                    && state.retry_at.is_none_or(|at| at <= now)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        if unpositioned.is_empty() {
            return;
        }
        let timestamp = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => EARLIEST_TIMESTAMP,
            AutoOffsetReset::Latest => LATEST_TIMESTAMP,
            AutoOffsetReset::Error => {
                for tp in unpositioned {
                    self.partitions.get_mut(&tp).expect("assigned").paused = true;
                    self.errors.push_back(no_position(&tp));
                }
                return;
            }
        };
        for (tp, offset) in self
            .cluster
            .list_offsets(&unpositioned, timestamp, self.config.retry_backoff())
            .await
        {
            match offset {
                // A seek in the meantime would have set a position; this does not race
                // with one because we hold `&mut self`.
                Ok(offset) => {
                    let state = self.partitions.get_mut(&tp).expect("assigned");
                    self.epochs += 1;
                    state.position = Some(offset);
                    state.fetch_offset = offset;
                    state.last_fetched_epoch = None;
                    state.epoch = self.epochs;
                }
                Err(error) => self.on_partition_error(&tp, error),
            }
        }
        self.drop_stale_decodes();
    }

    pub(super) fn out_of_range(&mut self, tp: &TopicPartition, offset: u64) {
        let state = self.partitions.get_mut(tp).expect("checked by the caller");
        tracing::debug!(%tp, offset, reset = ?self.config.auto_offset_reset, "offset out of range");
        state.position = None;
        if self.config.auto_offset_reset == AutoOffsetReset::Error {
            state.paused = true;
            self.errors.push_back(Error::OffsetOutOfRange {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
            });
        }
    }
}

fn collect_offsets(
    results: Vec<(TopicPartition, Result<u64>)>,
) -> Result<Vec<(TopicPartition, u64)>> {
    results
        .into_iter()
        .map(|(tp, offset)| offset.map(|offset| (tp, offset)))
        .collect()
}
