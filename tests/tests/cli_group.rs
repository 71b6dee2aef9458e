//! `strata consume --group` and `strata group list|describe|reset-offsets|delete` against
//! a real broker: progress is committed and resumed, a reset without `--execute` is a
//! dry run that changes nothing, resets are refused while the group has live members,
//! and deleting a group forgets its offsets.

use std::time::Duration;

use serde_json::Value;
use strata_client::{AutoOffsetReset, Consumer, ConsumerConfig};
use strata_tests::{BrokerProcess, assert_fails, bounded, data_dir, strata};

fn json(at: &str, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend_from_slice(&["--output", "json"]);
    let run = strata(Some(at), &full, b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|error| panic!("{error}: {run:?}"))
}

/// Committed offsets of `group`, summed over partitions, from `group describe`.
fn committed_total(at: &str, group: &str) -> u64 {
    json(at, &["group", "describe", group])["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|offset| offset["committed"].as_u64().unwrap_or(0))
        .sum()
}

fn consume_group(at: &str, group: &str, max: &str) -> Vec<String> {
    let run = strata(
        Some(at),
        &[
            "consume",
            "jobs",
            "--group",
            group,
            "--from-beginning",
            "--max-messages",
            max,
            "--timeout-ms",
            "5000",
        ],
        b"",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    run.stdout.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_progress_is_committed_and_admin_commands_respect_live_members() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &["group_heartbeat_interval_ms=100"]);
        let at = broker.address.clone();
        let cli = |args: &'static [&'static str], stdin: Vec<u8>| {
            let at = at.clone();
            tokio::task::spawn_blocking(move || strata(Some(&at), args, &stdin))
        };
        let run = cli(
            &["topic", "create", "jobs", "--partitions", "1"],
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(run.code, Some(0), "{run:?}");
        let input: String = (0..10).map(|i| format!("job-{i}\n")).collect();
        let run = cli(&["produce", "jobs"], input.into_bytes()).await.unwrap();
        assert_eq!(run.code, Some(0), "{run:?}");

        // Two runs of one group share the work: the second starts where the first stopped.
        let at2 = at.clone();
        let (first, second) = tokio::task::spawn_blocking(move || {
            (
                consume_group(&at2, "workers", "4"),
                consume_group(&at2, "workers", "6"),
            )
        })
        .await
        .unwrap();
        let expected: Vec<String> = (0..10).map(|i| format!("job-{i}")).collect();
        assert_eq!([first, second].concat(), expected);

        let at2 = at.clone();
        let listed = tokio::task::spawn_blocking(move || json(&at2, &["group", "list"]))
            .await
            .unwrap();
        assert_eq!(listed[0]["group"], "workers");
        assert_eq!(listed[0]["state"], "empty");
        let at2 = at.clone();
        let described =
            tokio::task::spawn_blocking(move || json(&at2, &["group", "describe", "workers"]))
                .await
                .unwrap();
        assert_eq!(described["offsets"][0]["committed"], 10);
        assert_eq!(described["offsets"][0]["lag"], 0);

        // A live member blocks resets and deletes; a dry run still shows the plan.
        let mut member = Consumer::new(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..ConsumerConfig::new(&at)
        })
        .unwrap();
        member.subscribe(["jobs"], "workers").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while member.assignment().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "never assigned");
            member.poll(Duration::from_millis(100)).await.unwrap();
        }
        let run = cli(
            &[
                "group",
                "reset-offsets",
                "workers",
                "--topic",
                "jobs",
                "--to-earliest",
            ],
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(
            run.stdout.starts_with("dry run: add --execute to apply"),
            "{run:?}"
        );
        assert!(run.stderr.contains("has live members"), "{run:?}");
        let run = cli(
            &[
                "group",
                "reset-offsets",
                "workers",
                "--topic",
                "jobs",
                "--to-earliest",
                "--execute",
            ],
            Vec::new(),
        )
        .await
        .unwrap();
        assert_fails(
            &run,
            1,
            "group 'workers' has live members; stop its consumers first",
        );
        let run = cli(&["group", "delete", "workers"], Vec::new())
            .await
            .unwrap();
        assert_fails(&run, 1, "has live members");
        member.close().await.unwrap();

        // Without members, offsets can be reset every way.
        let at2 = at.clone();
        tokio::task::spawn_blocking(move || {
            for (target, total) in [
                (&["--to-earliest"][..], 0),
                (&["--to-offset", "3"][..], 3),
                (&["--to-offset", "99"][..], 10),
                (&["--to-latest"][..], 10),
                (&["--to-timestamp", "0"][..], 0),
            ] {
                let mut args = vec!["group", "reset-offsets", "workers", "--topic", "jobs"];
                args.extend_from_slice(target);
                // A dry run shows the plan and changes nothing.
                let before = committed_total(&at2, "workers");
                let plan = json(&at2, &args);
                assert_eq!(plan["executed"], false, "{plan}");
                assert_eq!(plan["offsets"][0]["current_offset"], before, "{plan}");
                assert_eq!(plan["offsets"][0]["new_offset"], total, "{plan}");
                assert_eq!(committed_total(&at2, "workers"), before, "{target:?}");
                args.push("--execute");
                let applied = json(&at2, &args);
                assert_eq!(applied["executed"], true, "{applied}");
                assert_eq!(applied["offsets"][0]["new_offset"], total, "{applied}");
                assert_eq!(committed_total(&at2, "workers"), total, "{target:?}");
            }
            // The group resumes from the reset offset.
            let run = strata(
                Some(&at2),
                &[
                    "group",
                    "reset-offsets",
                    "workers",
                    "--topic",
                    "jobs",
                    "--to-offset",
                    "8",
                    "--execute",
                ],
                b"",
            );
            assert_eq!(run.code, Some(0), "{run:?}");
            assert_eq!(consume_group(&at2, "workers", "2"), ["job-8", "job-9"]);

            let run = strata(Some(&at2), &["group", "delete", "workers"], b"");
            assert_eq!(run.code, Some(0), "{run:?}");
            assert_fails(
                &strata(Some(&at2), &["group", "describe", "workers"], b""),
                1,
                "'workers' does not exist",
            );
            assert_eq!(json(&at2, &["group", "list"]), serde_json::json!([]));
        })
        .await
        .unwrap();
    })
    .await;
}
