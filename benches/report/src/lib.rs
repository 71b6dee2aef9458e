//! The report of one load-tool run: the JSON object `strata bench --json` and
//! `nats-bench` print, and the text `strata bench` prints for people.
//!
//! `benches/run-baseline.sh` reads both tools' output with the same `jq` paths and puts
//! Strata and NATS JetStream side by side in one table. So the fields, and how the
//! throughput figures follow from a run's counts, live once, here: a field renamed or
//! dropped changes both tools at once, and the script must follow it.
//!
//! Each tool keeps its own histograms and passes their quantiles in; this crate
//! depends on serde only.
//!
//! # Layout
//! One file: the report, the CPU use it may carry, and its rendering for people.

use std::time::Duration;

use serde::Serialize;

/// Where the machine's CPU time went during a run. On a shared virtual machine the
/// hypervisor's steal freezes the broker and the load tool alike, so a run's figures
/// mean little without it. Plain data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// Share of all cores' time spent running code, in percent.
    pub busy_percent: f64,
    /// Share of all cores' time the hypervisor took, in percent.
    pub steal_percent: f64,
    /// Share of all cores' time idle with I/O outstanding, in percent.
    pub iowait_percent: f64,
    /// Cores' worth of CPU time the load tool itself used.
    pub bench_cores: f64,
}

/// One run's figures, serialized as one JSON object; a figure the run did not measure
/// is left out of it. Plain data: the fields are public because they are the JSON
/// contract the baseline script reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `produce`, `consume` or `e2e`.
    pub mode: &'static str,
    /// The topic (Strata) or stream (NATS).
    pub topic: String,
    /// Records delivered (produce) or received (consume, e2e).
    pub records: u64,
    /// Key and value bytes of those records.
    pub bytes: u64,
    pub elapsed_seconds: f64,
    pub records_per_second: f64,
    /// Megabytes (10^6 bytes) of keys and values per second.
    pub megabytes_per_second: f64,
    /// What the latency figures time, e.g. "send to ack".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_measured: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us_p50: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us_p90: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us_p99: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us_p99_9: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us_max: Option<u64>,
    /// Paced runs: how late sends went out against the schedule. Latency is timed from
    /// the actual send, so a run that fell behind shows here, not there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_delay_us_p50: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_delay_us_p99: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_delay_us_max: Option<u64>,
    /// Records that failed for good.
    pub records_failed: u64,
    /// Producing runs: of `records_failed`, those whose error is not retriable (a retry
    /// could not have helped); the rest ran out of retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_failed_non_retriable: Option<u64>,
    /// Producing runs: the longest time one producer went without an acknowledgement,
    /// from its first send to its last acknowledgement: a failover's window of
    /// unavailability as the producer saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_gap_us_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_busy_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_steal_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_iowait_percent: Option<f64>,
    /// Cores' worth of CPU time the load tool itself used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench_cpu_cores: Option<f64>,
}

impl Report {
    /// The report of a run that moved `records` records of `bytes` key and value bytes
    /// in `elapsed`, with no latency, send delay, failure or CPU figures yet.
    pub fn new(
        mode: &'static str,
        topic: &str,
        records: u64,
        bytes: u64,
        elapsed: Duration,
    ) -> Self {
        let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        Self {
            mode,
            topic: topic.to_owned(),
            records,
            bytes,
            elapsed_seconds: elapsed.as_secs_f64(),
            records_per_second: records as f64 / seconds,
            megabytes_per_second: bytes as f64 / 1e6 / seconds,
            latency_measured: None,
            latency_us_p50: None,
            latency_us_p90: None,
            latency_us_p99: None,
            latency_us_p99_9: None,
            latency_us_max: None,
            send_delay_us_p50: None,
            send_delay_us_p99: None,
            send_delay_us_max: None,
            records_failed: 0,
            records_failed_non_retriable: None,
            ack_gap_us_max: None,
            cpu_busy_percent: None,
            cpu_steal_percent: None,
            cpu_iowait_percent: None,
            bench_cpu_cores: None,
        }
    }

    /// Adds latencies in µs, `quantile(q)` being the value at quantile `q` (0.5 to 1.0)
    /// of the tool's histogram, `None` if it recorded nothing.
    #[must_use]
    pub fn with_latency(
        mut self,
        measured: &'static str,
        quantile: &impl Fn(f64) -> Option<u64>,
    ) -> Self {
        self.latency_measured = Some(measured);
        self.latency_us_p50 = quantile(0.50);
        self.latency_us_p90 = quantile(0.90);
        self.latency_us_p99 = quantile(0.99);
        self.latency_us_p99_9 = quantile(0.999);
        self.latency_us_max = quantile(1.0);
        self
    }

    /// Adds a paced run's send delays in µs, from quantiles as in [`Report::with_latency`].
    #[must_use]
    pub fn with_send_delay(mut self, quantile: &impl Fn(f64) -> Option<u64>) -> Self {
        self.send_delay_us_p50 = quantile(0.50);
        self.send_delay_us_p99 = quantile(0.99);
        self.send_delay_us_max = quantile(1.0);
        self
    }

    /// Adds the count of records that failed for good.
    #[must_use]
    pub fn with_failed(mut self, records_failed: u64) -> Self {
        self.records_failed = records_failed;
        self
    }

    /// Adds a producing run's acknowledgement figures: the longest gap between one
    /// producer's acknowledgements, in µs, and how many records failed with an error
    /// that is not retriable.
    #[must_use]
    pub fn with_acknowledgements(mut self, ack_gap_us_max: u64, failed_non_retriable: u64) -> Self {
        self.ack_gap_us_max = Some(ack_gap_us_max);
        self.records_failed_non_retriable = Some(failed_non_retriable);
        self
    }

    /// Adds where the machine's CPU time went during the run.
    #[must_use]
    pub fn with_cpu(mut self, cpu: CpuUse) -> Self {
        self.cpu_busy_percent = Some(cpu.busy_percent);
        self.cpu_steal_percent = Some(cpu.steal_percent);
        self.cpu_iowait_percent = Some(cpu.iowait_percent);
        self.bench_cpu_cores = Some(cpu.bench_cores);
        self
    }

    /// The report for people, one line per kind of figure, latencies in ms.
    pub fn render(&self) -> String {
        let ms = |us: u64| us as f64 / 1_000.0;
        let mut text = format!(
            "bench {} on '{}': {} records, {} bytes in {:.3} s\n\
             throughput: {:.1} records/s, {:.3} MB/s\n",
            self.mode,
            self.topic,
            self.records,
            self.bytes,
            self.elapsed_seconds,
            self.records_per_second,
            self.megabytes_per_second,
        );
        if let (Some(measured), Some(p50), Some(p90), Some(p99), Some(p99_9), Some(max)) = (
            self.latency_measured,
            self.latency_us_p50,
            self.latency_us_p90,
            self.latency_us_p99,
            self.latency_us_p99_9,
            self.latency_us_max,
        ) {
            text.push_str(&format!(
                "latency ({measured}): p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, \
                 p99.9 {:.3} ms, max {:.3} ms\n",
                ms(p50),
                ms(p90),
                ms(p99),
                ms(p99_9),
                ms(max),
            ));
        }
        if let (Some(p50), Some(p99), Some(max)) = (
            self.send_delay_us_p50,
            self.send_delay_us_p99,
            self.send_delay_us_max,
        ) {
            text.push_str(&format!(
                "send delay (paced sends behind their schedule): p50 {:.3} ms, p99 {:.3} ms, \
                 max {:.3} ms\n",
                ms(p50),
                ms(p99),
                ms(max),
            ));
        }
        if let (Some(busy), Some(steal), Some(iowait), Some(cores)) = (
            self.cpu_busy_percent,
            self.cpu_steal_percent,
            self.cpu_iowait_percent,
            self.bench_cpu_cores,
        ) {
            text.push_str(&format!(
                "cpu (all cores): {busy:.1}% busy, {steal:.1}% steal, {iowait:.1}% iowait; \
                 this tool used {cores:.2} cores\n"
            ));
        }
        if let Some(gap) = self.ack_gap_us_max {
            text.push_str(&format!(
                "longest wait between acknowledgements: {:.3} ms\n",
                ms(gap)
            ));
        }
        match self.records_failed_non_retriable {
            _ if self.records_failed == 0 => {}
            Some(non_retriable) => text.push_str(&format!(
                "failed: {} records ({non_retriable} with an error that is not retriable)\n",
                self.records_failed
            )),
            None => text.push_str(&format!("failed: {} records\n", self.records_failed)),
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram of the values 1 to 1000, one each, as a quantile function.
    fn one_to_a_thousand(q: f64) -> Option<u64> {
        Some((q * 1_000.0).round().max(1.0) as u64)
    }

    #[test]
    fn throughput_follows_from_the_counts() {
        let report = Report::new("produce", "t", 1_000, 2_000_000, Duration::from_secs(2));
        assert_eq!(report.records_per_second, 500.0);
        assert_eq!(report.megabytes_per_second, 1.0);
        assert_eq!(report.elapsed_seconds, 2.0);
        let instant = Report::new("produce", "t", 1, 1, Duration::ZERO);
        assert!(instant.records_per_second.is_finite());
    }

    #[test]
    fn latency_and_send_delay_take_their_quantiles() {
        let report = Report::new("e2e", "t", 1, 1, Duration::from_secs(1))
            .with_latency("send to receipt", &one_to_a_thousand)
            .with_send_delay(&one_to_a_thousand);
        assert_eq!(report.latency_measured, Some("send to receipt"));
        assert_eq!(report.latency_us_p50, Some(500));
        assert_eq!(report.latency_us_p90, Some(900));
        assert_eq!(report.latency_us_p99, Some(990));
        assert_eq!(report.latency_us_p99_9, Some(999));
        assert_eq!(report.latency_us_max, Some(1_000));
        assert_eq!(report.send_delay_us_p50, Some(500));
        assert_eq!(report.send_delay_us_p99, Some(990));
        assert_eq!(report.send_delay_us_max, Some(1_000));
        let text = report.render();
        assert!(text.contains("latency (send to receipt): p50 0.500 ms"));
        assert!(text.contains("p99.9 0.999 ms, max 1.000 ms"));
        assert!(text.contains("send delay (paced sends behind their schedule): p50 0.500 ms"));
    }

    /// The fields `benches/run-baseline.sh` reads with `jq`, by these names.
    #[test]
    fn json_has_the_fields_the_baseline_script_reads() {
        let cpu = CpuUse {
            busy_percent: 75.0,
            steal_percent: 15.0,
            iowait_percent: 1.0,
            bench_cores: 1.5,
        };
        let report = Report::new("e2e", "t", 10, 20_000_000, Duration::from_secs(2))
            .with_latency("publish to receipt", &one_to_a_thousand)
            .with_send_delay(&one_to_a_thousand)
            .with_cpu(cpu)
            .with_failed(3);
        let json = serde_json::to_value(&report).expect("serializes");
        for (key, value) in [
            ("megabytes_per_second", serde_json::json!(10.0)),
            ("records_per_second", serde_json::json!(5.0)),
            ("latency_us_p50", serde_json::json!(500)),
            ("latency_us_p99", serde_json::json!(990)),
            ("latency_us_p99_9", serde_json::json!(999)),
            ("send_delay_us_p99", serde_json::json!(990)),
            ("send_delay_us_max", serde_json::json!(1_000)),
            ("cpu_busy_percent", serde_json::json!(75.0)),
            ("cpu_steal_percent", serde_json::json!(15.0)),
            ("cpu_iowait_percent", serde_json::json!(1.0)),
            ("bench_cpu_cores", serde_json::json!(1.5)),
            ("records_failed", serde_json::json!(3)),
        ] {
            assert_eq!(json.get(key), Some(&value), "{key}");
        }
        let text = report.render();
        assert!(text.contains("75.0% busy, 15.0% steal, 1.0% iowait; this tool used 1.50 cores"));
        assert!(text.contains("failed: 3 records"));
    }

    #[test]
    fn acknowledgement_figures_are_reported_with_their_names() {
        let report = Report::new("produce", "t", 10, 10, Duration::from_secs(1))
            .with_failed(5)
            .with_acknowledgements(3_250_000, 2);
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["ack_gap_us_max"], 3_250_000);
        assert_eq!(json["records_failed_non_retriable"], 2);
        assert_eq!(json["records_failed"], 5);
        let text = report.render();
        assert!(text.contains("longest wait between acknowledgements: 3250.000 ms"));
        assert!(text.contains("failed: 5 records (2 with an error that is not retriable)"));
    }

    #[test]
    fn figures_not_measured_are_left_out() {
        let report = Report::new("consume", "t", 10, 10, Duration::from_secs(1));
        let json = serde_json::to_value(&report).expect("serializes");
        for key in [
            "latency_measured",
            "latency_us_p50",
            "send_delay_us_p99",
            "cpu_busy_percent",
            "bench_cpu_cores",
            "ack_gap_us_max",
            "records_failed_non_retriable",
        ] {
            assert!(json.get(key).is_none(), "{key}");
        }
        assert_eq!(json["records_failed"], 0);
        let text = report.render();
        assert!(!text.contains("latency"));
        assert!(!text.contains("send delay"));
        assert!(!text.contains("cpu"));
        assert!(!text.contains("failed"));
    }
}
