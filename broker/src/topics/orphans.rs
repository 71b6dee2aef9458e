//! Startup's sweep for partition directories no topic owns: a `<topic>-<n>` directory
//! whose topic has no metadata (a create that crashed before writing it, a delete that
//! crashed after removing it), or whose `n` is not a partition the topic has on this
//! broker (a grow that crashed). Left alone, one would come back as a stale log when a topic of
//! that name is created or grown.
//!
//! Only directories that hold nothing but files a partition log writes are removed, so a
//! data directory shared by mistake with other files loses none of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use strata_protocol::limits::check_topic_name;

use super::{Topic, TopicsOpenError};

/// Removes every orphan partition directory in `data_dir`, logging each one.
///
/// # Errors
/// [`TopicsOpenError::List`] if `data_dir` cannot be listed. A directory that cannot be
/// removed is logged and left.
pub(super) fn remove_orphans(
    data_dir: &Path,
    topics: &BTreeMap<String, Arc<Topic>>,
) -> Result<(), TopicsOpenError> {
    let list_error = |source| TopicsOpenError::List {
        path: data_dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(data_dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let file_name = entry.file_name();
        let Some((topic, index)) = file_name.to_str().and_then(partition_of) else {
            continue;
        };
        let reason = match topics.get(topic) {
            None => "its topic has no metadata",
            Some(owner)
                if owner
                    .partitions
                    .get(index as usize)
                    .is_none_or(Option::is_none) =>
            {
                "its topic has no such partition on this broker"
            }
            Some(_) => continue,
        };
        remove(&entry.path(), reason);
    }
    Ok(())
}

/// The topic and partition a directory name stands for, if the broker could have made it:
/// a valid, unreserved topic name, `-`, and a partition number written as the broker
/// writes it. The internal `__consumer_offsets-<n>` logs are reserved, so never matched.
fn partition_of(name: &str) -> Option<(&str, u32)> {
    let (topic, index_text) = name.rsplit_once('-')?;
    let index: u32 = index_text.parse().ok()?;
    let canonical = index.to_string() == index_text;
    (canonical && check_topic_name(topic).is_ok()).then_some((topic, index))
}

fn remove(dir: &Path, reason: &str) {
    if !holds_only_log_files(dir) {
        tracing::warn!(
            dir = %dir.display(),
            reason,
            "leaving a directory named like an orphan partition: it holds files a partition log does not write"
        );
        return;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {
            tracing::warn!(dir = %dir.display(), reason, "removed orphan partition directory");
        }
        Err(error) => tracing::error!(
            dir = %dir.display(),
            reason,
            %error,
            "cannot remove orphan partition directory"
        ),
    }
}

/// Whether every entry of `dir` is a file a partition log writes: its lock, its
/// checkpoints, and segment files named by a 20-digit base offset (with their
/// temporaries).
fn holds_only_log_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.into_iter().all(|entry| {
        entry.is_ok_and(|entry| {
            let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
            is_file && entry.file_name().to_str().is_some_and(is_log_file_name)
        })
    })
}

fn is_log_file_name(name: &str) -> bool {
    let offset_named = name
        .split_once('.')
        .is_some_and(|(stem, _)| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()));
    offset_named
        || name == ".lock"
        || name.starts_with("recovery-point")
        || name.starts_with("clean-shutdown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_directory_names_are_parsed_as_the_broker_writes_them() {
        assert_eq!(partition_of("orders-0"), Some(("orders", 0)));
        assert_eq!(partition_of("a-1-12"), Some(("a-1", 12)));
        for name in [
            "orders",
            "orders-",
            "orders-01",
            "orders-x",
            "__consumer_offsets-0",
            "-0",
            "a b-0",
        ] {
            assert_eq!(partition_of(name), None, "{name}");
        }
    }

    #[test]
    fn only_names_a_log_writes_count_as_log_files() {
        for name in [
            ".lock",
            "recovery-point",
            "recovery-point.tmp",
            "clean-shutdown",
            "00000000000000000000.log",
            "00000000000000000042.timeindex",
            "00000000000000000042.snapshot.tmp",
        ] {
            assert!(is_log_file_name(name), "{name}");
        }
        for name in ["notes.txt", "0000.log", "photo.jpg", "recovery"] {
            assert!(!is_log_file_name(name), "{name}");
        }
    }
}
