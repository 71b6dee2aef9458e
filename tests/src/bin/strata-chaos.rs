//! `strata-chaos`: runs one fault-injection scenario against brokers it starts itself,
//! checks the history against Jepsen's invariants, and reports. Exit codes: 0 no
//! violation, 1 a violation, 2 the run could not be carried out (bad input included),
//! 130/143 interrupted (SIGINT/SIGTERM), with every broker it started killed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use strata_tests::chaos::ChaosError;
use strata_tests::chaos::nemesis::{NemesisKind, Target};
use strata_tests::chaos::node::kill_every_broker;
use strata_tests::chaos::scenario::{
    self, AcksLevel, Durability, LIVENESS_MS_MAX, Options, Scenario,
};

/// Runs a fault-injection scenario against Strata brokers it starts on loopback ports,
/// and checks what survived.
#[derive(Debug, Parser)]
#[command(name = "strata-chaos", version)]
struct Args {
    /// A named scenario; the flags below override its settings.
    #[arg(long, value_name = "NAME")]
    scenario: Option<String>,
    /// Print the names of the CI set's scenarios, one a line, and exit (with
    /// `--brokers N`, only those on N brokers).
    #[arg(long)]
    list: bool,
    /// Brokers to start: 1, or a cluster of 3.
    #[arg(long, value_name = "N")]
    brokers: Option<u32>,
    /// The fault to inject.
    #[arg(long, value_enum)]
    nemesis: Option<NemesisKind>,
    /// Which broker each fault goes to, chosen when it comes (on a cluster).
    #[arg(long, value_enum)]
    target: Option<Target>,
    /// The producers' acks.
    #[arg(long, value_enum)]
    acks: Option<AcksLevel>,
    /// The topic's durability policy.
    #[arg(long, value_enum)]
    durability: Option<Durability>,
    /// Whether the producers are idempotent.
    #[arg(long, value_name = "true|false")]
    idempotent: Option<bool>,
    /// How long the workload runs, in seconds.
    #[arg(long)]
    seconds: Option<u64>,
    /// The seed of the fault schedule (default: from the clock; printed first).
    #[arg(long)]
    seed: Option<u64>,
    /// Records per second, over all producers.
    #[arg(long, value_name = "RECORDS")]
    rate: Option<u32>,
    /// Print the report as JSON on stdout (the seed line goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also write the whole history (every write, read, commit and fault) as JSON here.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Copy every broker's log (broker-0.log, ...) into this directory at the end.
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
}

impl Args {
    fn options(&self, seed: u64) -> Result<Options, ChaosError> {
        let mut options = match &self.scenario {
            Some(name) => Scenario::find(name)?.options(seed),
            None => Options {
                scenario: "custom".into(),
                ..Scenario::find("kill")?.options(seed)
            },
        };
        options.brokers = self.brokers.unwrap_or(options.brokers);
        options.nemesis = self.nemesis.unwrap_or(options.nemesis);
        options.target = self.target.unwrap_or(options.target);
        options.acks = self.acks.unwrap_or(options.acks);
        options.durability = self.durability.unwrap_or(options.durability);
        options.idempotent = self.idempotent.unwrap_or(options.idempotent);
        options.seconds = self.seconds.unwrap_or(options.seconds);
        options.rate = self.rate.unwrap_or(options.rate);
        options.history.clone_from(&self.history);
        options.logs.clone_from(&self.logs);
        options.validate()?;
        Ok(options)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        let on = |scenario: &&Scenario| args.brokers.is_none_or(|n| n == scenario.brokers);
        for scenario in Scenario::ci_set().filter(on) {
            println!("{}", scenario.name);
        }
        return ExitCode::SUCCESS;
    }
    let seed = args.seed.unwrap_or_else(clock_seed);
    let options = match args.options(seed) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("strata-chaos: {error}");
            return ExitCode::from(2);
        }
    };
    let seed_line = format!("strata-chaos seed {seed} (scenario {})", options.scenario);
    if args.json {
        eprintln!("{seed_line}");
    } else {
        println!("{seed_line}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(run_until_signal(&options, args.json));
    kill_every_broker();
    // Client tasks still settling must not hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Runs the scenario, bounded in time, unless SIGINT or SIGTERM comes first: then the
/// run is dropped, which kills its brokers and removes its directory.
async fn run_until_signal(options: &Options, json: bool) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("strata-chaos: cannot install signal handlers");
        return ExitCode::from(2);
    };
    // The workload's length, the liveness bound, and room to start, settle and drain.
    let bound = Duration::from_secs(options.seconds)
        + Duration::from_millis(LIVENESS_MS_MAX)
        + Duration::from_secs(150);
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(bound, scenario::run(options)) => outcome,
        _ = interrupt.recv() => return interrupted("SIGINT", 130),
        _ = terminate.recv() => return interrupted("SIGTERM", 143),
    };
    match outcome {
        Ok(Ok(report)) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(Err(error)) => {
            eprintln!("strata-chaos: {error}");
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!("strata-chaos: the run took longer than its bound of {bound:?}");
            ExitCode::from(2)
        }
    }
}

fn interrupted(signal: &str, code: u8) -> ExitCode {
    eprintln!("strata-chaos: {signal}: stopped; every broker started is killed");
    ExitCode::from(code)
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}
