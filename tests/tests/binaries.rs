//! Both shipped binaries exist under their product names and answer like CLI tools.

use std::process::Command;
use strata_tests::binary;

#[test]
fn binaries_report_their_version() {
    for name in ["strata-broker", "strata"] {
        let output = Command::new(binary(name))
            .arg("--version")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name} --version failed: {output:?}"
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(
            stdout.trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn unknown_flags_are_usage_errors_with_exit_code_2() {
    for name in ["strata-broker", "strata"] {
        let output = Command::new(binary(name))
            .arg("--no-such-flag")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("--no-such-flag"), "{name} stderr: {stderr}");
    }
}
