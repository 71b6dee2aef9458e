//! `strata bench metadata`: how long the cluster takes to make a topic and to tell every
//! broker about it.
//!
//! 1. One topic of `--partitions` partitions (1000) is created through the bootstrap
//!    broker: the time until the create is acknowledged, and until every broker's own
//!    Metadata answer shows all its partitions with a leader.
//! 2. `--topics` topics of one partition (200), one after another: for each, the time
//!    until its create is acknowledged, and from that acknowledgement until every broker
//!    shows it. p50, p99 and max over the topics.
//!
//! Each broker the bootstrap broker's Metadata lists is asked directly
//! ([`Admin::broker_metadata`]), every [`POLL_INTERVAL`] once the create is
//! acknowledged, so a figure is late by at most one interval and one round trip. The
//! topics are named after the run and deleted at the end, also when the run fails.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use strata_client::{Admin, BrokerInfo, ClientConfig, ClusterMetadata, NewTopic};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::parse_duration;
use super::report::latency_histogram;
use crate::Output;
use crate::error::CliError;
use crate::output::{print, print_json};

/// How often a broker is asked whether it shows a topic yet.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// The most small topics one run creates.
const TOPICS_MAX: u32 = 10_000;
/// Topics per delete request at the end, below the broker's `request_topics_max`.
const DELETE_TOPICS_PER_REQUEST: usize = 100;

/// `strata bench metadata`'s arguments.
#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// Partitions of the one large topic.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: u32,
    /// Topics of one partition, created one after another (0 skips this part).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=i64::from(TOPICS_MAX)))]
    topics: u32,
    /// How long a broker may take to show a topic before the run fails: 500ms, 10s, 2m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    wait: Duration,
}

/// Runs the bench and prints its report; deletes the topics it created, whatever
/// happened.
///
/// # Errors
/// A create the cluster refused, a broker that did not show a topic within `--wait`,
/// unreachable brokers; a failed delete at the end, if the run itself succeeded.
pub async fn run(bootstrap: &str, output: Output, args: MetadataArgs) -> Result<(), CliError> {
    // The creating client never fetches metadata, so it talks to the bootstrap broker
    // only (the first of the list that answers); the watcher asks each broker directly.
    let creator = Admin::new(ClientConfig::new(bootstrap))?;
    let watcher = Watcher::new(Admin::new(ClientConfig::new(bootstrap))?, args.wait).await?;
    let names = Names::for_this_run();
    let mut created = Vec::new();
    let measured = measure(&creator, &watcher, &names, &args, &mut created).await;
    let deleted = delete(&creator, &created).await;
    let report = measured?;
    deleted?;
    match output {
        Output::Json => print_json(&report),
        Output::Table => print(&report.render()),
    }
}

/// Both parts of the run, pushing each topic onto `created` as its create is sent.
async fn measure(
    creator: &Admin,
    watcher: &Watcher,
    names: &Names,
    args: &MetadataArgs,
    created: &mut Vec<String>,
) -> Result<MetadataReport, CliError> {
    let large = names.large();
    // Listed before the create, so that a create that fails after it took effect (a
    // timeout) is cleaned up too.
    created.push(large.clone());
    let start = Instant::now();
    create(creator, &large, args.partitions).await?;
    let acknowledged = start.elapsed();
    let shown = watcher.everywhere(&large, args.partitions, start).await?;
    let mut small = SmallTopics::new();
    for index in 0..args.topics {
        let name = names.small(index);
        created.push(name.clone());
        let start = Instant::now();
        create(creator, &name, 1).await?;
        let acknowledged_at = Instant::now();
        let shown = watcher.everywhere(&name, 1, acknowledged_at).await?;
        small.record(acknowledged_at - start, slowest(&shown));
    }
    Ok(MetadataReport::new(
        watcher
            .brokers
            .iter()
            .map(|broker| broker.node_id)
            .collect(),
        args.partitions,
        acknowledged,
        &shown,
        &small,
    ))
}

async fn create(creator: &Admin, name: &str, partitions: u32) -> Result<(), CliError> {
    creator
        .create_topic(NewTopic::new(name, partitions))
        .await
        .map_err(|error| CliError::from_client(error, name))
}

/// Deletes `names`, a request per [`DELETE_TOPICS_PER_REQUEST`]; the first failure.
async fn delete(creator: &Admin, names: &[String]) -> Result<(), CliError> {
    let mut first_error = None;
    for chunk in names.chunks(DELETE_TOPICS_PER_REQUEST) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let results = match creator.delete_topics(&chunk).await {
            Ok(results) => results,
            Err(error) => {
                first_error.get_or_insert(CliError::from(error));
                continue;
            }
        };
        for (name, result) in results {
            if let Err(error) = result {
                first_error.get_or_insert(CliError::from_client(error, &name));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The run's topic names: `strata-bench-metadata-<ms since the epoch, base 36>-...`, so
/// that runs never meet each other's topics.
struct Names {
    prefix: String,
}

impl Names {
    fn for_this_run() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        Self::with_stamp(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    fn with_stamp(stamp: u64) -> Self {
        Self {
            prefix: format!("strata-bench-metadata-{}", base36(stamp)),
        }
    }

    fn large(&self) -> String {
        format!("{}-large", self.prefix)
    }

    fn small(&self, index: u32) -> String {
        format!("{}-{index}", self.prefix)
    }
}

fn base36(mut value: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut digits = Vec::new();
    loop {
        digits.push(DIGITS[(value % 36) as usize]);
        value /= 36;
        if value == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII digits")
}

/// Asks every broker of the cluster, each over its own connection, whether it shows a
/// topic yet. Thread-safe (clones share the client).
#[derive(Clone)]
struct Watcher {
    admin: Admin,
    /// Every broker the bootstrap broker's Metadata listed at the start, by node id.
    brokers: Vec<BrokerInfo>,
    wait: Duration,
}

impl Watcher {
    async fn new(admin: Admin, wait: Duration) -> Result<Self, CliError> {
        let brokers = admin.cluster_metadata().await?.brokers;
        if brokers.is_empty() {
            return Err(CliError::Bench(
                "the bootstrap broker's metadata lists no live broker".into(),
            ));
        }
        Ok(Self {
            admin,
            brokers,
            wait,
        })
    }

    /// How long after `since` each broker showed all `partitions` of `topic` with a
    /// leader, by node id: all brokers are asked at once.
    async fn everywhere(
        &self,
        topic: &str,
        partitions: u32,
        since: Instant,
    ) -> Result<Vec<(u32, Duration)>, CliError> {
        let mut tasks = JoinSet::new();
        for broker in &self.brokers {
            let watcher = self.clone();
            let broker = broker.clone();
            let topic = topic.to_owned();
            tasks.spawn(async move {
                let shown = watcher
                    .until_shown(&broker, &topic, partitions, since)
                    .await;
                shown.map(|after| (broker.node_id, after))
            });
        }
        let mut shown = Vec::with_capacity(self.brokers.len());
        while let Some(joined) = tasks.join_next().await {
            let joined = joined.map_err(|error| {
                CliError::Bench(format!("a metadata watch task failed: {error}"))
            })?;
            shown.push(joined?);
        }
        shown.sort_by_key(|(node_id, _)| *node_id);
        Ok(shown)
    }

    /// Asks `broker` until it shows the topic; fails once `wait` has passed since `since`.
    async fn until_shown(
        &self,
        broker: &BrokerInfo,
        topic: &str,
        partitions: u32,
        since: Instant,
    ) -> Result<Duration, CliError> {
        let mut last_error = None;
        loop {
            match self
                .admin
                .broker_metadata(&broker.address, Some(&[topic]))
                .await
            {
                Ok(metadata) if shows(&metadata, topic, partitions) => return Ok(since.elapsed()),
                Ok(_) => {}
                Err(error) => last_error = Some(error),
            }
            if since.elapsed() >= self.wait {
                let last = last_error.map_or_else(String::new, |error| {
                    format!("; its last answer was an error: {error}")
                });
                return Err(CliError::Bench(format!(
                    "broker {} at {} did not show topic '{topic}' with {partitions} led \
                     partitions within {:?} (--wait){last}",
                    broker.node_id, broker.address, self.wait
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// Whether `metadata` holds `topic` with exactly `partitions` partitions, each with a
/// leader.
fn shows(metadata: &ClusterMetadata, topic: &str, partitions: u32) -> bool {
    metadata
        .topics
        .iter()
        .find(|info| info.name == topic)
        .is_some_and(|info| {
            info.partition_count() == partitions
                && info
                    .partitions
                    .iter()
                    .all(|partition| partition.leader.is_some())
        })
}

/// The longest of the brokers' times.
fn slowest(shown: &[(u32, Duration)]) -> Duration {
    shown
        .iter()
        .map(|(_, after)| *after)
        .max()
        .unwrap_or_default()
}

/// Part 2's figures: per topic, create to acknowledgement, and acknowledgement to shown
/// by every broker, in µs.
struct SmallTopics {
    created: Histogram<u64>,
    shown: Histogram<u64>,
}

impl SmallTopics {
    fn new() -> Self {
        Self {
            created: latency_histogram(),
            shown: latency_histogram(),
        }
    }

    fn record(&mut self, created: Duration, shown: Duration) {
        self.created.saturating_record(micros(created));
        self.shown.saturating_record(micros(shown));
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// p50, p99 and max of a histogram in µs, `None` when it is empty; as the other
/// reports, the bucket's lowest value.
fn quantiles(histogram: &Histogram<u64>) -> Option<Quantiles> {
    let at = |q: f64| histogram.lowest_equivalent(histogram.value_at_quantile(q));
    (!histogram.is_empty()).then(|| Quantiles {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    })
}

/// Three figures of one distribution, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Quantiles {
    p50: u64,
    p99: u64,
    max: u64,
}

/// When one broker showed the large topic, in µs from its create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct BrokerShown {
    broker: u32,
    us: u64,
}

/// The run's figures, printed as text or as one JSON object.
#[derive(Debug, Serialize)]
struct MetadataReport {
    /// `metadata`, as other bench reports name their mode.
    mode: &'static str,
    /// Node ids of the brokers watched.
    brokers: Vec<u32>,
    /// Partitions of the large topic.
    partitions: u32,
    /// From the large topic's create request to its acknowledgement.
    large_topic_create_us: u64,
    /// From the same create request until the last broker showed every partition led.
    large_topic_shown_us: u64,
    /// The same, broker by broker.
    large_topic_shown_by_broker: Vec<BrokerShown>,
    /// Topics of one partition created.
    topics: u32,
    /// Per topic, create request to acknowledgement.
    #[serde(skip_serializing_if = "Option::is_none")]
    topic_create_us: Option<Quantiles>,
    /// Per topic, acknowledgement to shown by every broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    topic_shown_us: Option<Quantiles>,
    /// How often each broker was asked.
    poll_interval_us: u64,
}

impl MetadataReport {
    fn new(
        brokers: Vec<u32>,
        partitions: u32,
        acknowledged: Duration,
        shown: &[(u32, Duration)],
        small: &SmallTopics,
    ) -> Self {
        Self {
            mode: "metadata",
            brokers,
            partitions,
            large_topic_create_us: micros(acknowledged),
            large_topic_shown_us: micros(slowest(shown)),
            large_topic_shown_by_broker: shown
                .iter()
                .map(|(broker, after)| BrokerShown {
                    broker: *broker,
                    us: micros(*after),
                })
                .collect(),
            topics: u32::try_from(small.created.len()).unwrap_or(u32::MAX),
            topic_create_us: quantiles(&small.created),
            topic_shown_us: quantiles(&small.shown),
            poll_interval_us: micros(POLL_INTERVAL),
        }
    }

    fn render(&self) -> String {
        let by_broker: Vec<String> = self
            .large_topic_shown_by_broker
            .iter()
            .map(|shown| format!("broker {} {}", shown.broker, millis(shown.us)))
            .collect();
        let mut text = format!(
            "metadata: {} broker(s), each asked directly every {}\n\
             1 topic of {} partitions: create acknowledged after {}, shown with every \
             leader by every broker after {} ({})\n",
            self.brokers.len(),
            millis(self.poll_interval_us),
            self.partitions,
            millis(self.large_topic_create_us),
            millis(self.large_topic_shown_us),
            by_broker.join(", "),
        );
        if let (Some(created), Some(shown)) = (self.topic_create_us, self.topic_shown_us) {
            text.push_str(&format!(
                "{} topics of 1 partition, one after another: create acknowledged {}; \
                 from the acknowledgement to shown by every broker {}\n",
                self.topics,
                spread(created),
                spread(shown),
            ));
        }
        text
    }
}

fn millis(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1e3)
}

fn spread(quantiles: Quantiles) -> String {
    format!(
        "p50 {} / p99 {} / max {}",
        millis(quantiles.p50),
        millis(quantiles.p99),
        millis(quantiles.max)
    )
}

#[cfg(test)]
mod tests {
    use strata_client::{PartitionInfo, TopicInfo};

    use super::*;

    fn metadata(topic: &str, leaders: &[Option<u32>]) -> ClusterMetadata {
        ClusterMetadata {
            cluster_id: "c".into(),
            controller_id: Some(1),
            brokers: Vec::new(),
            topics: vec![TopicInfo {
                name: topic.into(),
                partitions: leaders
                    .iter()
                    .enumerate()
                    .map(|(index, leader)| PartitionInfo {
                        partition: index as u32,
                        leader: *leader,
                        leader_epoch: 0,
                        replicas: Vec::new(),
                        in_sync_replicas: Vec::new(),
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn a_topic_shows_once_every_partition_has_a_leader() {
        let led = metadata("t", &[Some(1), Some(2), Some(3)]);
        assert!(shows(&led, "t", 3));
        assert!(!shows(&led, "t", 4), "a partition still missing");
        assert!(!shows(&led, "other", 3), "another topic");
        assert!(!shows(&metadata("t", &[Some(1), None, Some(3)]), "t", 3));
    }

    #[test]
    fn names_are_unique_per_run_and_valid_topic_names() {
        let names = Names::with_stamp(36 * 36 + 35);
        assert_eq!(names.large(), "strata-bench-metadata-10z-large");
        assert_eq!(names.small(7), "strata-bench-metadata-10z-7");
        assert_eq!(base36(0), "0");
        let long = Names::with_stamp(u64::MAX);
        assert!(
            long.small(TOPICS_MAX).len() < 249,
            "under the topic name limit"
        );
    }

    fn report(topics: &[(u64, u64)]) -> MetadataReport {
        let mut small = SmallTopics::new();
        for (created, shown) in topics {
            small.record(
                Duration::from_micros(*created),
                Duration::from_micros(*shown),
            );
        }
        let shown = [
            (1, Duration::from_millis(800)),
            (2, Duration::from_millis(830)),
        ];
        MetadataReport::new(vec![1, 2], 1000, Duration::from_millis(790), &shown, &small)
    }

    #[test]
    fn the_report_takes_the_slowest_broker_and_the_topics_quantiles() {
        let topics: Vec<(u64, u64)> = (1..=100).map(|i| (i * 1_000, i * 10)).collect();
        let report = report(&topics);
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["mode"], "metadata");
        assert_eq!(json["large_topic_create_us"], 790_000);
        assert_eq!(json["large_topic_shown_us"], 830_000);
        assert_eq!(
            json["large_topic_shown_by_broker"],
            serde_json::json!([{"broker": 1, "us": 800_000}, {"broker": 2, "us": 830_000}])
        );
        assert_eq!(json["topics"], 100);
        assert_eq!(json["topic_shown_us"]["p50"], 500);
        assert_eq!(json["topic_shown_us"]["p99"], 990);
        assert_eq!(json["topic_shown_us"]["max"], 1000);
        let max = json["topic_create_us"]["max"].as_u64().expect("a number");
        assert!(
            (99_900..=100_000).contains(&max),
            "within the histogram's precision"
        );
        let text = report.render();
        assert!(text.contains("after 790.0 ms"), "{text}");
        assert!(text.contains("broker 2 830.0 ms"), "{text}");
        assert!(text.contains("100 topics of 1 partition"), "{text}");
    }

    #[test]
    fn without_small_topics_their_figures_are_left_out() {
        let report = report(&[]);
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["topics"], 0);
        assert!(json.get("topic_create_us").is_none());
        assert!(json.get("topic_shown_us").is_none());
        assert!(!report.render().contains("topics of 1 partition"));
    }
}
