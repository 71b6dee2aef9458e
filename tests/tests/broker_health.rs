//! The metrics port serves `/healthz` (200 while the process is up) and `/readyz` (200
//! once recovery is done, 503 from the moment a graceful shutdown starts).

use std::time::Instant;

use strata_protocol::messages::{Acks, ProducePartition, ProduceRequest, ProduceTopic};
use strata_protocol::{ApiKey, ErrorCode};
use strata_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` on `address`: the status code and the body, or `None` if nothing listens.
async fn get(address: &str, path: &str) -> Option<(u16, String)> {
    let mut http = tokio::time::timeout(WAIT, TcpStream::connect(address))
        .await
        .expect("connect timeout")
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: strata\r\n\r\n");
    http.write_all(request.as_bytes()).await.ok()?;
    let mut text = String::new();
    tokio::time::timeout(WAIT, http.read_to_string(&mut text))
        .await
        .expect("response timeout")
        .ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

#[tokio::test]
async fn a_serving_broker_is_healthy_and_ready() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let address = &broker.metrics_address;
    assert_eq!(get(address, "/healthz").await, Some((200, "ok\n".into())));
    assert_eq!(get(address, "/readyz").await, Some((200, "ready\n".into())));
    let (status, body) = get(address, "/nowhere").await.expect("an answer");
    assert_eq!(status, 404);
    assert!(body.contains("/readyz"), "{body}");
}

#[tokio::test]
async fn readyz_turns_503_when_a_graceful_shutdown_starts_and_healthz_stays_200() {
    let dir = data_dir();
    let mut broker = BrokerProcess::start(dir.path(), &["shutdown_timeout_ms=20000"]);
    let mut client = Client::connect(&broker.address).await;
    // An fsync an hour away: an acks=all produce waits for it until its own timeout, so
    // the shutdown has a request to drain for that long.
    client
        .create_topic(
            "slow",
            1,
            &[("durability", "interval"), ("flush_interval_ms", "3600000")],
        )
        .await;
    let produce = ProduceRequest {
        acks: Acks::All,
        timeout_ms: 3_000,
        topics: vec![ProduceTopic {
            name: "slow".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records: batch_of("v", 1).into(),
            }],
        }],
    };
    client.send(produce.into()).await;
    // Appended: the produce is now waiting for durability.
    wait_for_metrics(
        &broker.metrics_address,
        &["strata_records_in_total{topic=\"slow\"} 1"],
    )
    .await;
    assert_eq!(
        get(&broker.metrics_address, "/readyz").await.unwrap().0,
        200
    );

    // SAFETY: sending a signal to our own child's pid has no memory-safety effects.
    unsafe { libc::kill(broker.pid() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = get(&broker.metrics_address, "/readyz").await;
        assert!(
            answer.is_some(),
            "the metrics port closed before the drain ended"
        );
        if answer == Some((503, "not ready: shutting down\n".into())) {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz still says {answer:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        get(&broker.metrics_address, "/healthz").await.unwrap().0,
        200
    );
    // The drained produce is answered, at once and retriably (the stopping broker steps
    // down from its leaderships, so nothing waits out its timeout), and the broker then
    // exits cleanly.
    let (_, result) = client.receive(ApiKey::Produce).await;
    let response = result.expect("a produce response");
    let strata_protocol::Response::Produce(response) = response else {
        panic!("wrong response type")
    };
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ErrorCode::LeaderNotAvailable
    );
    assert_eq!(broker.terminate(), Some(0));
}
