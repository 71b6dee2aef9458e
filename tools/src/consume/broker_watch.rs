//! Says on stderr while the broker cannot be reached, and notices a topic deleted under
//! a running command. Shared by `produce` and `consume`: the client retries on its own
//! and silently, so a command that waits on it checks the topic here once in a while.

use std::time::Duration;

use strata_client::{Admin, ClientConfig, Error as ClientError, TopicDetails};
use tokio::time::Instant;

use crate::error::CliError;

/// How often a command that waits on the broker checks it.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often the user is told that the broker is still unreachable.
const SAY_EVERY: Duration = Duration::from_secs(3);
/// Pause between lookups while waiting for the broker, on top of the client's backoff.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// The watch's own connect limit, so that an unanswered connect (a dropped SYN) is
/// reported within two seconds, as a refused one is.
const CONNECT_TIMEOUT_MS: u64 = 1_500;
/// The watch's own reconnect backoff ceiling: checks stay about a second apart.
const RECONNECT_BACKOFF_MS_MAX: u64 = 1_000;
/// A lookup answered more slowly than this counts as no answer.
const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// Looks a topic up for a command and tells the user while the broker cannot be
/// reached. Owned by the command's task.
#[derive(Debug)]
pub struct BrokerWatch {
    admin: Admin,
    bootstrap: String,
    topic: String,
    /// When the user was last told the broker is unreachable, while it still is.
    said_at: Option<Instant>,
    checked_at: Instant,
    last_error: Option<ClientError>,
}

impl BrokerWatch {
    /// A watch of `topic` through `bootstrap`. Connects lazily.
    ///
    /// # Errors
    /// An invalid bootstrap list.
    pub fn new(bootstrap: &str, topic: &str) -> Result<Self, CliError> {
        let config = ClientConfig {
            connect_timeout_ms: CONNECT_TIMEOUT_MS,
            reconnect_backoff_ms_max: RECONNECT_BACKOFF_MS_MAX,
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            ..ClientConfig::new(bootstrap)
        };
        Ok(Self {
            admin: Admin::new(config)?,
            bootstrap: bootstrap.to_owned(),
            topic: topic.to_owned(),
            said_at: None,
            checked_at: Instant::now(),
            last_error: None,
        })
    }

    /// Describes the topic; `None` if the broker cannot be reached, which the user is
    /// told (at once, then every few seconds while it lasts).
    ///
    /// # Errors
    /// The topic does not exist; any error that retrying cannot fix.
    pub async fn check(&mut self) -> Result<Option<TopicDetails>, CliError> {
        self.checked_at = Instant::now();
        let topic = self.topic.clone();
        let topic_error = |error| CliError::from_client(error, &topic);
        match self
            .admin
            .describe_topics(Some(&[self.topic.as_str()][..]))
            .await
        {
            Ok(topics) => {
                if self.said_at.take().is_some() {
                    eprintln!("reached the broker at {} again", self.bootstrap);
                }
                self.last_error = None;
                let (_, details) = topics.into_iter().next().ok_or_else(|| {
                    topic_error(ClientError::Protocol {
                        address: self.bootstrap.clone(),
                        reason: "DescribeTopics answer names no topic".into(),
                    })
                })?;
                details.map(Some).map_err(topic_error)
            }
            Err(error) if error.is_retriable() => {
                let due = self.said_at.is_none_or(|at| at.elapsed() >= SAY_EVERY);
                if due {
                    eprintln!("{error}; retrying");
                    self.said_at = Some(Instant::now());
                }
                self.last_error = Some(error);
                Ok(None)
            }
            Err(error) => Err(topic_error(error)),
        }
    }

    /// Checks until the broker answers, or until `deadline` (then fails with the last
    /// connection error).
    ///
    /// # Errors
    /// As for [`check`](Self::check); the connection error at `deadline`.
    pub async fn wait_for_topic(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<TopicDetails, CliError> {
        loop {
            if let Some(details) = self.check().await? {
                return Ok(details);
            }
            let pause_until = Instant::now() + RETRY_PAUSE;
            match deadline {
                Some(deadline) if pause_until >= deadline => {
                    let error = self.last_error.take().expect("check failed to connect");
                    return Err(CliError::from_client(error, &self.topic));
                }
                _ => tokio::time::sleep_until(pause_until).await,
            }
        }
    }

    /// Checks the topic if the last check is [`CHECK_EVERY`] old: a command that waits
    /// on the broker calls this between its waits.
    ///
    /// # Errors
    /// [`CliError::TopicDeleted`]; errors that retrying cannot fix.
    pub async fn check_if_due(&mut self) -> Result<(), CliError> {
        if self.checked_at.elapsed() < CHECK_EVERY {
            return Ok(());
        }
        self.check_still_there().await
    }

    /// Checks the topic now, for a command that has been using it.
    ///
    /// # Errors
    /// [`CliError::TopicDeleted`]; errors that retrying cannot fix.
    pub async fn check_still_there(&mut self) -> Result<(), CliError> {
        match self.check().await {
            Err(CliError::UnknownTopic(topic)) => Err(CliError::TopicDeleted(topic)),
            other => other.map(drop),
        }
    }
}
