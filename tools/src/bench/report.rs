//! A bench run's figures: the live progress bar while it runs and the final report
//! (`strata_bench_report::Report`, the type `nats-bench` prints too).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use strata_bench_report::{CpuUse, Report};

use super::workers::Acknowledgements;
use crate::error::CliError;
use crate::output::{print, print_json};

/// Largest latency the histograms hold, in microseconds (one hour); longer ones are
/// recorded as this.
const LATENCY_US_MAX: u64 = 3_600_000_000;
/// How often the progress bar is redrawn.
const PROGRESS_TICK_MS: u64 = 100;

/// A latency histogram in microseconds, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// What a run measured, before it is rendered.
#[derive(Debug)]
pub struct Outcome {
    /// `produce`, `consume` or `e2e`.
    pub mode: &'static str,
    /// Records delivered (produce) or received (consume, e2e).
    pub records: u64,
    /// Key and value bytes of those records.
    pub bytes: u64,
    /// From the first send (or poll) to the last acknowledgement (or receipt).
    pub elapsed: Duration,
    /// Latencies in µs and what they measure; `None` when the mode has none.
    pub latency: Option<(Histogram<u64>, &'static str)>,
    /// Paced runs: how late each send went out against the schedule, in µs.
    pub send_delay: Option<Histogram<u64>>,
    /// Records that failed for good, and the first failure.
    pub failed: u64,
    /// The first failure.
    pub first_error: Option<CliError>,
    /// Producing runs: the longest wait for an acknowledgement and the failures that
    /// were not retriable; `None` for `consume`.
    pub acknowledgements: Option<Acknowledgements>,
    /// Where the CPU time went over the run's window; `None` without `/proc` or when
    /// the window was too short for the machine's counters to move.
    pub cpu: Option<CpuUse>,
}

impl Outcome {
    /// Prints the report; fails if any record failed, after printing it.
    ///
    /// # Errors
    /// [`CliError::Undelivered`]; stdout errors.
    pub fn finish(self, topic: &str, json: bool) -> Result<(), CliError> {
        let report = self.report(topic);
        if json {
            print_json(&report)?;
        } else {
            print(&report.render())?;
        }
        match self.first_error {
            None => Ok(()),
            Some(first) => Err(CliError::Undelivered {
                failed: self.failed,
                total: self.records + self.failed,
                first: Box::new(first),
            }),
        }
    }

    fn report(&self, topic: &str) -> Report {
        let mut report = Report::new(self.mode, topic, self.records, self.bytes, self.elapsed)
            .with_failed(self.failed);
        if let Some((histogram, measured)) = &self.latency {
            report = report.with_latency(measured, &|q| quantile(histogram, q));
        }
        if let Some(histogram) = &self.send_delay {
            report = report.with_send_delay(&|q| quantile(histogram, q));
        }
        if let Some(acknowledgements) = self.acknowledgements {
            let gap_us = u64::try_from(acknowledgements.gap_max.as_micros()).unwrap_or(u64::MAX);
            report = report.with_acknowledgements(gap_us, acknowledgements.failed_non_retriable);
        }
        if let Some(cpu) = self.cpu {
            report = report.with_cpu(cpu);
        }
        report
    }
}

/// The `q` quantile of `histogram`, `None` if it is empty. The bucket's lowest value, so a
/// recorded value prints as itself (the histogram's error is below 0.1% either way).
fn quantile(histogram: &Histogram<u64>, q: f64) -> Option<u64> {
    (!histogram.is_empty()).then(|| histogram.lowest_equivalent(histogram.value_at_quantile(q)))
}

/// A progress bar on stderr, redrawn from a shared counter, shown only when stderr is
/// a terminal. Owns its redraw task; dropping it stops the task and clears the bar.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// A bar counting `counter` up to `total` records (a spinner without a total).
    pub fn start(label: &'static str, total: Option<u64>, counter: Arc<AtomicU64>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: ProgressBar::hidden(),
                ticker: None,
            };
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {msg}",
                )
                .expect("valid template"),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "{prefix} {spinner} [{elapsed_precise}] {human_pos} {msg}",
                )
                .expect("valid template"),
            ),
        }
        .with_prefix(label);
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(PROGRESS_TICK_MS));
            let start = tokio::time::Instant::now();
            loop {
                interval.tick().await;
                let records = counter.load(Ordering::Relaxed);
                let seconds = start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
                shown.set_position(records);
                shown.set_message(format!("({:.0} records/s)", records as f64 / seconds));
            }
        });
        Self {
            bar,
            ticker: Some(ticker),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_figures_follow_from_the_outcome() {
        let mut histogram = latency_histogram();
        for us in 1..=1_000 {
            histogram.record(us).expect("in range");
        }
        let mut delay = latency_histogram();
        delay.record(7).expect("in range");
        let outcome = Outcome {
            mode: "produce",
            records: 1_000,
            bytes: 2_000_000,
            elapsed: Duration::from_secs(2),
            latency: Some((histogram, "send to ack")),
            send_delay: Some(delay),
            failed: 0,
            first_error: None,
            acknowledgements: Some(Acknowledgements {
                gap_max: Duration::from_millis(3_200),
                failed_non_retriable: 0,
            }),
            cpu: Some(CpuUse {
                busy_percent: 75.0,
                steal_percent: 15.0,
                iowait_percent: 0.0,
                bench_cores: 1.5,
            }),
        };
        let report = outcome.report("t");
        assert_eq!(report.records_per_second, 500.0);
        assert_eq!(report.megabytes_per_second, 1.0);
        assert_eq!(report.latency_us_p50, Some(500));
        assert_eq!(report.latency_us_max, Some(1_000));
        assert!(report.render().contains("p99.9"));
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["latency_us_p90"], 900);
        assert_eq!(json["cpu_steal_percent"], 15.0);
        assert_eq!(json["send_delay_us_max"], 7);
        assert_eq!(json["ack_gap_us_max"], 3_200_000);
        assert_eq!(json["records_failed_non_retriable"], 0);
        assert!(report.render().contains("send delay"));
        assert!(report.render().contains("15.0% steal"));
    }

    #[test]
    fn a_mode_without_latency_omits_it() {
        let outcome = Outcome {
            mode: "consume",
            records: 10,
            bytes: 10,
            elapsed: Duration::from_secs(1),
            latency: None,
            send_delay: None,
            failed: 0,
            first_error: None,
            acknowledgements: None,
            cpu: None,
        };
        let report = outcome.report("t");
        assert!(!report.render().contains("latency"));
        assert!(!report.render().contains("cpu"));
        let json = serde_json::to_value(&report).expect("serializes");
        assert!(json.get("latency_us_p50").is_none());
        assert!(json.get("cpu_busy_percent").is_none());
        assert!(json.get("send_delay_us_p99").is_none());
        assert!(json.get("ack_gap_us_max").is_none());
    }
}
