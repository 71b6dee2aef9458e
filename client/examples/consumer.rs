//! Reads every partition of a topic from the beginning and prints each record, until
//! no record arrives for five seconds.
//!
//! ```text
//! cargo run -p strata-client --example consumer -- 127.0.0.1:9400 orders
//! ```

use std::time::Duration;

use strata_client::{
    Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, Error,
    TopicPartition,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(bootstrap), Some(topic)) = (args.next(), args.next()) else {
        eprintln!("usage: consumer BOOTSTRAP TOPIC");
        std::process::exit(2);
    };

    let admin = Admin::new(ClientConfig::new(&bootstrap))?;
    let description = admin.describe_topic(&topic).await?;
    let partitions: Vec<TopicPartition> = description
        .partitions
        .iter()
        .map(|partition| TopicPartition::new(&topic, partition.partition))
        .collect();

    let mut consumer = Consumer::new(ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        ..ConsumerConfig::new(&bootstrap)
    })?;
    consumer.assign(&partitions);
    loop {
        let records = consumer.poll(Duration::from_secs(5)).await?;
        if records.is_empty() {
            println!("no record for 5 s; done");
            return Ok(());
        }
        for record in records {
            println!("{}", describe(&record));
        }
    }
}

/// `orders-0 offset 1 key u1 value signed up`: the key part only if there is a key,
/// `(no value)` for a record without one. Bytes that are not UTF-8 are escaped as
/// `\xNN`, so nothing is lost.
fn describe(record: &ConsumerRecord) -> String {
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
