//! `strata-broker`: the Strata broker binary.

use clap::Parser;

/// A persistent, replicated publish-subscribe log broker.
#[derive(Debug, Parser)]
#[command(name = "strata-broker", version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
    eprintln!(
        "strata-broker {}: the network server is not built yet (see issue 4)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(1);
}
