//! The README's CLI tour works when pasted: its shell block, found by its marker
//! comment, runs with bash against a fresh broker, with `strata` on the PATH and the
//! broker's address in place of the default one.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strata_client::{Admin, ClientConfig};
use strata_tests::{BrokerProcess, CliRun, WAIT, binary, data_dir, run_bounded};

/// The comment that precedes the tour's ```sh block in README.md.
const TOUR_MARKER: &str = "<!-- readme-tour:";

/// The longest the whole tour may take (a handful of commands, each well under `WAIT`).
const TOUR_TIME_MAX: Duration = Duration::from_secs(60);

/// The shell block right after the marker.
fn tour() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let (_, after_marker) = readme
        .split_once(TOUR_MARKER)
        .expect("README.md marks its tour with <!-- readme-tour: ... -->");
    let (comment_end, block) = after_marker
        .split_once("```sh\n")
        .expect("a ```sh block after the marker");
    assert!(
        comment_end.trim_end().ends_with("-->") && !comment_end.contains("```"),
        "the ```sh block comes right after the marker"
    );
    let (script, _) = block.split_once("```").expect("the block is closed");
    script.to_owned()
}

/// Runs `script` with `bash -euo pipefail`, `strata` first on the PATH and `bootstrap`
/// as `STRATA_BOOTSTRAP`.
fn run_script(script: &str, bootstrap: &str) -> CliRun {
    let strata_dir = binary("strata")
        .parent()
        .expect("target directory")
        .to_owned();
    let path = std::env::join_paths(std::iter::once(strata_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", script])
        .env("PATH", path)
        .env("STRATA_BOOTSTRAP", bootstrap);
    run_bounded(&mut command, b"", TOUR_TIME_MAX)
}

#[test]
fn the_readme_tour_runs_as_written() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let script = tour().replace("127.0.0.1:9400", &broker.address);
    let run = run_script(&script, &broker.address);
    let report = format!(
        "script:\n{script}\nexit {:?}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    );
    assert_eq!(run.code, Some(0), "{report}");

    // Both consumes print the three records, key and value; each key's records keep
    // their order, whatever the order across partitions.
    let records: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.starts_with("u1\t") || line.starts_with("u2\t"))
        .collect();
    assert_eq!(records.len(), 6, "{report}");
    for consumed in records.chunks(3) {
        let mut sorted = consumed.to_vec();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            ["u1\tpaid", "u1\tsigned up", "u2\tsigned up"],
            "{report}"
        );
        let u1: Vec<&&str> = consumed
            .iter()
            .filter(|line| line.starts_with("u1"))
            .collect();
        assert_eq!(u1, [&"u1\tsigned up", &"u1\tpaid"], "{report}");
    }

    // The group committed what it printed: nothing is left for it to read.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let group = runtime.block_on(async {
        let admin = Admin::new(ClientConfig::new(&broker.address)).expect("admin");
        tokio::time::timeout(WAIT, admin.describe_group("billing"))
            .await
            .expect("describe in time")
            .expect("group billing exists")
    });
    let committed: u64 = group
        .offsets
        .iter()
        .filter_map(|offset| offset.committed)
        .sum();
    assert_eq!(committed, 3, "{group:?}\n{report}");
    assert!(
        group.offsets.iter().all(|offset| offset.lag == Some(0)),
        "{group:?}"
    );
}
