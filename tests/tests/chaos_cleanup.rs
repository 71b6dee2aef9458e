//! `strata-chaos` interrupted by SIGINT or SIGTERM mid-run kills the broker it started
//! and exits with 128 + the signal.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use strata_tests::{WAIT, binary};

/// The pids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(|child| child.parse().expect("a pid"))
        .collect()
}

fn interrupt_mid_run(signal: libc::c_int, code: i32) {
    let mut chaos = Command::new(binary("strata-chaos"))
        .args(["--scenario", "pause", "--seed", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strata-chaos");
    let deadline = Instant::now() + WAIT;
    let broker = loop {
        if let Some(broker) = children(chaos.id()).first() {
            break *broker;
        }
        assert!(Instant::now() < deadline, "no broker started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let pid = libc::pid_t::try_from(chaos.id()).expect("pid fits pid_t");
    // SAFETY: signals our own child; no memory is touched.
    unsafe { libc::kill(pid, signal) };
    let status = loop {
        if let Some(status) = chaos.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = chaos.kill();
            panic!("strata-chaos ignored signal {signal}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(code));
    let broker_dir = format!("/proc/{broker}");
    while Path::new(&broker_dir).exists() {
        assert!(
            Instant::now() < deadline,
            "broker {broker} outlived strata-chaos"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn sigint_kills_every_broker() {
    interrupt_mid_run(libc::SIGINT, 130);
}

#[test]
fn sigterm_kills_every_broker() {
    interrupt_mid_run(libc::SIGTERM, 143);
}
