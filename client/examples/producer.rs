//! Produces records to a topic and prints where each landed.
//!
//! ```text
//! cargo run -p strata-client --example producer -- 127.0.0.1:9400 orders 10
//! ```

use std::sync::Arc;

use strata_client::protocol::ErrorCode;
use strata_client::{
    Admin, ClientConfig, Error, NewTopic, Producer, ProducerConfig, ProducerRecord, TopicPartition,
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
        eprintln!("usage: producer BOOTSTRAP TOPIC [COUNT]");
        std::process::exit(2);
    };
    let count: u32 = args
        .next()
        .map_or(Ok(10), |count| count.parse())
        .unwrap_or_else(|_| {
            eprintln!("COUNT must be a number");
            std::process::exit(2);
        });

    // Create the topic if it does not exist yet.
    let admin = Admin::new(ClientConfig::new(&bootstrap))?;
    match admin.create_topic(NewTopic::new(&topic, 3)).await {
        Ok(()) => println!("created topic {topic}"),
        Err(error) if error.code() == Some(ErrorCode::TopicAlreadyExists) => {}
        Err(error) => return Err(error),
    }

    let producer = Producer::new(ProducerConfig::new(&bootstrap))?;
    let mut deliveries = Vec::new();
    // One shared name: each record's topic is a reference count, not a copy.
    let topic: Arc<str> = topic.into();
    for index in 0..count {
        let record = ProducerRecord::new(Arc::clone(&topic), format!("message {index}"))
            .key(format!("key-{}", index % 5))
            .header("producer", "example");
        deliveries.push((index, producer.send(record).await?));
    }
    for (index, delivery) in deliveries {
        let metadata = delivery.await?;
        let partition = TopicPartition::new(&*topic, metadata.partition);
        // The offset is known unless the producer runs with `acks = none`.
        match metadata.offset {
            Some(offset) => println!("message {index} -> {partition} offset {offset}"),
            None => println!("message {index} -> {partition}"),
        }
    }
    producer.close().await;
    Ok(())
}
