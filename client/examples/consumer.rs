//! Reads every partition of a topic from the beginning and prints each record, until
//! no record arrives for five seconds.
//!
//! ```text
//! cargo run -p strata-client --example consumer -- 127.0.0.1:9400 orders
//! ```

mod common;

use std::time::Duration;

use strata_client::{
    Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, Error, TopicPartition,
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
            println!("{}", common::describe(&record));
        }
    }
}
