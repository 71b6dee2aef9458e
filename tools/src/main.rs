//! `strata`: the Strata command-line tool.

use clap::Parser;

/// Manage and exercise a Strata cluster: topics, console produce and consume, bench.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
    eprintln!(
        "strata {}: no commands yet (see issue 6)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
