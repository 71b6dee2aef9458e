//! `strata-broker` as a process: its flags, logs, signal handling and exit codes, over an
//! I/O layer the caller picks. The `strata-broker` binary runs [`main`] on the real file
//! system; a test binary can run the same process, with the same flags, over a layer that
//! records or injects faults, without the production binary carrying any hook.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use strata_storage::Io;

use crate::config::{Config, ConfigError, LogFormat, Override};
use crate::partition::Storage;
use crate::server::Server;
use crate::startup::StartupError;

/// The exit codes, for `--help`; `docs/operations.md` has the same table.
const EXIT_CODES: &str = "\
Exit codes:
  0  stopped by SIGTERM or SIGINT, after a graceful shutdown
  1  any other failure
  2  a usage or configuration error
  3  the data directory cannot be created or written, or another broker has it locked
  4  a listen address cannot be bound (usually: it is in use)
  5  recovery failed: data in the directory cannot be read back";

/// A persistent, replicated publish-subscribe log broker.
///
/// With no arguments it starts a single node on 127.0.0.1:9400 storing data in
/// ./strata-data. Settings come from flags, then STRATA_<KEY> environment variables,
/// then the --config file, then defaults; docs/operations.md lists every key.
#[derive(Debug, clap::Parser)]
#[command(name = "strata-broker", version, about, after_help = EXIT_CODES)]
pub struct Args {
    /// A TOML file with settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address for clients [default: 127.0.0.1:9400].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Address for Prometheus /metrics [default: 127.0.0.1:9401].
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Directory for topics and logs [default: ./strata-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// This broker's node id [default: 0].
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Host and port clients are told to connect to [default: the bound --listen address].
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listen: Option<String>,
    /// Address for inter-broker and controller traffic [default: 127.0.0.1:9402].
    #[arg(long, value_name = "ADDR")]
    cluster_listen: Option<String>,
    /// The controller voters' cluster addresses, this broker included, as
    /// ID@HOST:PORT,... (3 or 5 of them) [default: none, a one-node cluster].
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    peers: Option<String>,
    /// Log filter such as info or strata_broker=debug; RUST_LOG overrides it.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log lines as text, or as one JSON object per line for log shippers [default: text].
    #[arg(long, value_name = "text|json")]
    log_format: Option<String>,
    /// Any other setting, as KEY=VALUE (repeatable), e.g. --set durability=every_batch.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

impl Args {
    /// The configuration these flags, the `STRATA_*` environment and the `--config` file
    /// give together.
    ///
    /// # Errors
    /// [`ConfigError`] if a setting is malformed, unknown or invalid.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref(), std::env::vars(), &self.overrides()?)
    }

    fn overrides(&self) -> Result<Vec<Override>, ConfigError> {
        let mut overrides = Vec::new();
        let named = [
            ("listen", &self.listen),
            ("metrics_listen", &self.metrics_listen),
            ("data_dir", &self.data_dir),
            ("node_id", &self.node_id),
            ("advertised_listen", &self.advertised_listen),
            ("cluster_listen", &self.cluster_listen),
            ("peers", &self.peers),
            ("log_level", &self.log_level),
            ("log_format", &self.log_format),
        ];
        for (key, value) in named {
            if let Some(value) = value {
                overrides.push((key.to_owned(), value.clone()));
            }
        }
        for setting in &self.settings {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| ConfigError::Setting {
                    setting: setting.clone(),
                })?;
            overrides.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(overrides)
    }
}

/// Runs a broker with `args` over `io` until SIGTERM or SIGINT; returns the exit code.
pub fn main(args: &Args, io: Arc<dyn Io>) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(error) => return fail(&error.into(), LogFormat::Text),
    };
    let log_format = config.log_format;
    init_tracing(&config.log_level, log_format);
    match run(config, io) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error, log_format),
    }
}

/// Reports why the broker stopped, once: as a plain line on stderr, or with JSON logs as
/// one more JSON log line, so a log shipper parses every line.
fn fail(error: &StartupError, log_format: LogFormat) -> ExitCode {
    let code = error.kind() as u8;
    match log_format {
        LogFormat::Text => eprintln!("strata-broker: {error}"),
        LogFormat::Json => tracing::error!(exit_code = code, "strata-broker: {error}"),
    }
    ExitCode::from(code)
}

fn run(config: Config, io: Arc<dyn Io>) -> Result<(), StartupError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-worker")
        .build()
        .map_err(|source| StartupError::Process {
            what: "the runtime",
            source,
        })?
        .block_on(serve(config, io))
}

fn init_tracing(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(quiet_raft(level)))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(colour()).init(),
        LogFormat::Json => logs.json().flatten_event(true).with_ansi(false).init(),
    }
}

/// `level`, with the Raft library's routine lines (elections, votes) at `warn` unless
/// `level` names it: the broker logs what matters of them itself.
fn quiet_raft(level: &str) -> String {
    if level.contains("openraft") {
        level.to_owned()
    } else {
        format!("{level},openraft=warn")
    }
}

/// Colour only for a person at a terminal, and never when `NO_COLOR` is set to anything
/// but the empty string (<https://no-color.org>).
fn colour() -> bool {
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    std::io::stderr().is_terminal() && !no_colour
}

async fn serve(config: Config, io: Arc<dyn Io>) -> Result<(), StartupError> {
    use tokio::signal::unix::{SignalKind, signal};
    let handler = |kind| {
        signal(kind).map_err(|source| StartupError::Process {
            what: "a signal handler",
            source,
        })
    };
    let mut terminate = handler(SignalKind::terminate())?;
    let mut interrupt = handler(SignalKind::interrupt())?;
    let storage = Storage::with_io(io).map_err(|source| StartupError::Process {
        what: "the storage flusher",
        source,
    })?;
    let server = Server::start_with(config, storage).await?;
    // One line on stdout that scripts and tests can read to learn the bound ports.
    println!(
        "strata-broker listening on {} (metrics on {})",
        server.address, server.metrics_address
    );
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
    }
    server.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::config::{Config, Peer};
    use crate::startup::FailureKind;

    use super::{Args, EXIT_CODES};

    #[test]
    fn cluster_flags_set_their_keys() {
        let args = Args::parse_from([
            "strata-broker",
            "--node-id",
            "2",
            "--listen",
            "0.0.0.0:9410",
            "--advertised-listen",
            "broker2.example:9410",
            "--cluster-listen",
            "0.0.0.0:9412",
            "--peers",
            "1@broker1.example:9402,2@broker2.example:9412,3@broker3.example:9422",
        ]);
        let config = Config::load(None, [], &args.overrides().unwrap()).unwrap();
        assert_eq!(config.advertised(), ("broker2.example".to_owned(), 9410));
        assert_eq!(config.cluster_listen, "0.0.0.0:9412".parse().unwrap());
        assert_eq!(
            config.peers[1],
            Peer {
                id: 2,
                address: "broker2.example:9412".to_owned()
            }
        );
        assert_eq!(config.cluster_address(), "broker2.example:9412");
    }

    #[test]
    fn help_lists_every_exit_code() {
        for kind in [
            FailureKind::Other,
            FailureKind::Configuration,
            FailureKind::DataDir,
            FailureKind::Address,
            FailureKind::Recovery,
        ] {
            let code = kind as u8;
            assert!(EXIT_CODES.contains(&format!("\n  {code}  ")), "{kind:?}");
        }
    }
}
