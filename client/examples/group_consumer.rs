//! Joins a consumer group and prints the records of the partitions the group gives this
//! process, until Ctrl-C; then commits what it printed and leaves the group. Start it
//! several times with the same group to watch the partitions being shared out.
//!
//! ```text
//! cargo run -p strata-client --example group_consumer -- 127.0.0.1:9400 orders billing [INSTANCE-ID]
//! ```

mod common;

use std::time::Duration;

use strata_client::{
    AutoOffsetReset, Consumer, ConsumerConfig, Error, RebalanceListener, TopicPartition,
};

/// Prints what the group does with this member's partitions.
struct PrintRebalances;

impl RebalanceListener for PrintRebalances {
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        eprintln!("assigned: {}", list(partitions));
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        eprintln!("revoked (offsets committed): {}", list(partitions));
    }

    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        eprintln!(
            "lost (not committed; another member takes over): {}",
            list(partitions)
        );
    }
}

/// `orders-0, orders-2`.
fn list(partitions: &[TopicPartition]) -> String {
    let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
    names.join(", ")
}

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
    let (Some(bootstrap), Some(topic), Some(group)) = (args.next(), args.next(), args.next())
    else {
        eprintln!("usage: group_consumer BOOTSTRAP TOPIC GROUP [INSTANCE-ID]");
        std::process::exit(2);
    };

    let mut consumer = Consumer::new(ConsumerConfig {
        // Where a partition starts if the group has never committed it.
        auto_offset_reset: AutoOffsetReset::Earliest,
        // With an instance id, a restart takes the same partitions back.
        group_instance_id: args.next(),
        ..ConsumerConfig::new(&bootstrap)
    })?;
    consumer.set_rebalance_listener(PrintRebalances);
    consumer.subscribe([topic], &group)?;

    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            records = consumer.poll(Duration::from_secs(1)) => {
                for record in records? {
                    println!("{}", common::describe(&record));
                }
            }
            _ = &mut interrupted => break,
        }
    }
    let metadata = consumer.group_metadata();
    consumer.close().await?;
    if let Some(metadata) = metadata {
        eprintln!(
            "left group {} as member {} (epoch {})",
            metadata.group_id, metadata.member_id, metadata.member_epoch
        );
    }
    Ok(())
}
