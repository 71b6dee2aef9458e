//! The README's three-broker cluster works when pasted: its three `strata-broker`
//! commands, found by their marker comment, start a cluster with exactly their
//! arguments (only the data directories are temporary ones), and its `cluster status`
//! command shows a controller leader and three alive brokers.
//!
//! The commands name fixed ports (9400-9402, 9410-9412, 9420-9422); when one of them is
//! taken on this machine, the test says so and passes without starting anything.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strata_tests::{BrokerProcess, Launch, WAIT, binary, data_dir, log_tail, run_bounded};

/// The comment that precedes the cluster's ```sh block in README.md.
const MARKER: &str = "<!-- readme-cluster:";

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("read README.md")
}

/// The commands of the ```sh block right after the marker, continuation lines joined.
fn broker_commands(readme: &str) -> Vec<String> {
    let (_, after_marker) = readme
        .split_once(MARKER)
        .expect("README.md marks its cluster with <!-- readme-cluster: ... -->");
    let (comment_end, block) = after_marker
        .split_once("```sh\n")
        .expect("a ```sh block after the marker");
    assert!(
        comment_end.trim_end().ends_with("-->") && !comment_end.contains("```"),
        "the ```sh block comes right after the marker"
    );
    let (script, _) = block.split_once("```").expect("the block is closed");
    script
        .replace("\\\n", " ")
        .lines()
        .map(str::to_owned)
        .filter(|line| !line.trim().is_empty())
        .collect()
}

/// The arguments of a `strata-broker` command without its `--data-dir DIR`, and `DIR`.
fn arguments(command: &str) -> (Vec<String>, String) {
    let mut words = command.split_whitespace();
    let program = words.next().expect("a program");
    assert!(program.ends_with("/strata-broker"), "{command}");
    let mut arguments = Vec::new();
    let mut data_dir = None;
    while let Some(word) = words.next() {
        if word == "--data-dir" {
            data_dir = Some(words.next().expect("--data-dir DIR").to_owned());
        } else {
            arguments.push(word.to_owned());
        }
    }
    (
        arguments,
        data_dir.expect("every command names its data directory"),
    )
}

/// Every loopback port the arguments name.
fn ports(arguments: &[String]) -> Vec<u16> {
    arguments
        .iter()
        .flat_map(|argument| argument.split([',', '@']))
        .filter_map(|part| part.strip_prefix("127.0.0.1:"))
        .map(|port| port.parse().expect("a port"))
        .collect()
}

#[test]
fn the_readme_cluster_starts_as_written() {
    let readme = readme();
    let commands = broker_commands(&readme);
    assert_eq!(commands.len(), 3, "three brokers: {commands:?}");
    let parsed: Vec<(Vec<String>, String)> =
        commands.iter().map(|command| arguments(command)).collect();
    for (index, (_, dir)) in parsed.iter().enumerate() {
        assert_eq!(dir, &format!("./strata-data-{}", index + 1));
    }
    let mut taken = Vec::new();
    for (arguments, _) in &parsed {
        for port in ports(arguments) {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() && !taken.contains(&port) {
                taken.push(port);
            }
        }
    }
    if !taken.is_empty() {
        eprintln!("skipped: the README's ports {taken:?} are in use on this machine");
        return;
    }

    let dirs: Vec<tempfile::TempDir> = parsed.iter().map(|_| data_dir()).collect();
    let logs = data_dir();
    let started: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = parsed
            .iter()
            .zip(&dirs)
            .enumerate()
            .map(|(index, ((arguments, _), dir))| {
                let launch = Launch {
                    binary: binary("strata-broker"),
                    flags: arguments.iter().map(Into::into).collect(),
                    default_flags: false,
                    stderr: Some(logs.path().join(format!("broker-{}.log", index + 1))),
                };
                scope.spawn(move || BrokerProcess::try_start(dir.path(), Vec::new(), launch))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a start thread"))
            .collect()
    });
    let mut brokers = Vec::new();
    for result in started {
        match result {
            Ok(broker) => brokers.push(broker),
            Err(failure) if failure.address_in_use() => {
                eprintln!("skipped: a README port was taken while starting: {failure:?}");
                return;
            }
            Err(failure) => panic!("a README broker did not start: {failure:?}"),
        }
    }
    let addresses: Vec<&str> = brokers
        .iter()
        .map(|broker| broker.address.as_str())
        .collect();
    assert_eq!(
        addresses,
        ["127.0.0.1:9400", "127.0.0.1:9401", "127.0.0.1:9402"]
    );

    let status_line = readme
        .lines()
        .find(|line| line.contains(" cluster status"))
        .expect("the README shows the cluster status command");
    let mut words = status_line.split_whitespace();
    assert!(
        words
            .next()
            .is_some_and(|program| program.ends_with("/strata")),
        "{status_line}"
    );
    let status_arguments: Vec<&str> = words.collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let mut command = Command::new(binary("strata"));
        command
            .env_remove("STRATA_BOOTSTRAP")
            .args(&status_arguments);
        let run = run_bounded(&mut command, b"", WAIT);
        let alive = run
            .stdout
            .lines()
            .filter(|line| line.contains(" alive "))
            .count();
        if run.code == Some(0) && run.stdout.starts_with("controller: leader ") && alive == 3 {
            break;
        }
        let logs: Vec<String> = (1..=3)
            .map(|index| log_tail(&logs.path().join(format!("broker-{index}.log")), 20))
            .collect();
        assert!(
            Instant::now() < deadline,
            "no leader and three alive brokers within {WAIT:?}: {run:?}\nlogs: {logs:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
