//! What the consumer examples share: how a record is printed.

use strata_client::{ConsumerRecord, TopicPartition};

/// `orders-0 offset 1 key u1 value signed up`: the key part only if there is a key,
/// `(no value)` for a record without one. Bytes that are not UTF-8 are escaped as
/// `\xNN`, so nothing is lost.
pub fn describe(record: &ConsumerRecord) -> String {
    let mut line = format!(
        "{} offset {}",
        TopicPartition::new(&*record.topic, record.partition),
        record.offset
    );
    if let Some(key) = &record.key {
        line += &format!(" key {}", text(key));
    }
    match &record.value {
        Some(value) => line += &format!(" value {}", text(value)),
        None => line += " (no value)",
    }
    line
}

fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}
