//! Where `strata consume --offset` starts each partition it reads by hand.

use strata_client::{Consumer, TopicPartition};

/// A start position, applied to every partition read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// `beginning`: the log start offset.
    Beginning,
    /// `end`: the high watermark, so only new records are printed.
    End,
    /// `N`: this offset.
    Absolute(u64),
    /// `-N`: N records before the high watermark (or the log start, if nearer).
    BeforeEnd(u64),
    /// `@TIMESTAMP_MS`: the first record at or after this time (the high watermark if
    /// none is).
    Timestamp(i64),
}

impl StartOffset {
    /// Parses `beginning`, `end`, `N`, `-N` or `@TIMESTAMP_MS`.
    ///
    /// # Errors
    /// Anything else, with the forms accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "expected beginning, end, an offset N, -N (N records before the end) \
                 or @TIMESTAMP_MS (milliseconds since the Unix epoch), got '{text}'"
            )
        };
        let number = |digits: &str| {
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(expected());
            }
            digits.parse::<u64>().map_err(|_| expected())
        };
        match text {
            "beginning" => Ok(StartOffset::Beginning),
            "end" => Ok(StartOffset::End),
            _ => match (text.strip_prefix('-'), text.strip_prefix('@')) {
                (Some(count), _) => number(count).map(StartOffset::BeforeEnd),
                (_, Some(timestamp)) => i64::try_from(number(timestamp)?)
                    .map(StartOffset::Timestamp)
                    .map_err(|_| expected()),
                _ => number(text).map(StartOffset::Absolute),
            },
        }
    }

    /// Moves every partition of `partitions` (assigned to `consumer`) to this start.
    ///
    /// # Errors
    /// Lookup errors (unknown topic, unreachable broker).
    pub async fn apply(
        self,
        consumer: &mut Consumer,
        partitions: &[TopicPartition],
    ) -> strata_client::Result<()> {
        match self {
            StartOffset::Beginning => consumer.seek_to_beginning(partitions).await,
            StartOffset::End => consumer.seek_to_end(partitions).await,
            StartOffset::Timestamp(timestamp) => {
                consumer.seek_to_timestamp_ms(partitions, timestamp).await
            }
            StartOffset::Absolute(offset) => {
                for tp in partitions {
                    consumer.seek(tp, offset)?;
                }
                Ok(())
            }
            StartOffset::BeforeEnd(count) => {
                let starts = consumer.beginning_offsets(partitions).await?;
                let ends = consumer.end_offsets(partitions).await?;
                for (tp, end) in ends {
                    let start = starts
                        .iter()
                        .find(|(start_tp, _)| *start_tp == tp)
                        .map_or(0, |(_, start)| *start);
                    consumer.seek(&tp, end.saturating_sub(count).max(start))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_anything_else_is_refused() {
        for (text, start) in [
            ("beginning", StartOffset::Beginning),
            ("end", StartOffset::End),
            ("0", StartOffset::Absolute(0)),
            ("42", StartOffset::Absolute(42)),
            ("-3", StartOffset::BeforeEnd(3)),
            ("@1700000000000", StartOffset::Timestamp(1_700_000_000_000)),
        ] {
            assert_eq!(StartOffset::parse(text), Ok(start), "{text}");
        }
        for text in [
            "",
            "-",
            "@",
            "start",
            "+3",
            "--3",
            "@-1",
            "1.5",
            "@99999999999999999999",
        ] {
            let error = StartOffset::parse(text).unwrap_err();
            assert!(
                error.starts_with("expected beginning, end, an offset N"),
                "{text}: {error}"
            );
        }
    }
}
