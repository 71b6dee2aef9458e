//! Broker sessions, kept by the controller (the metadata quorum's leader): who heartbeats,
//! who must register again, who is to be fenced or unfenced. And the wire types of the
//! calls brokers make to the controller through the quorum's `call_leader`.
//!
//! Pure, like the group engine: time comes in as an [`Instant`] and the image as an
//! argument; decisions go out as replies and [`Command`]s for the caller to propose.
//! Sessions live only in the controller's memory, as in KRaft: they are not replicated,
//! so a newly elected controller starts every registered broker's session afresh
//! ([`Sessions::reset`]) and never fences a broker for the silence of its predecessor's
//! term.
//!
//! # Goals and non-goals
//! - Goal: a broker silent for the session timeout is fenced once per lapse, at the
//!   incarnation that went silent, so a fence never hits a restarted process.
//! - Goal: a lagging controller decides nothing about brokers it has not caught up with.
//! - Non-goal: catching up before unfencing (KRaft unfences once the broker has applied
//!   the metadata up to its registration); today a fenced broker is unfenced at its next
//!   heartbeat.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::metadata::{BrokerState, Command, Image};

/// A call from a broker to the controller, as JSON bytes through `Quorum::call_leader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderRequest {
    /// The broker is alive; it has applied the metadata up to `applied`.
    Heartbeat {
        /// The node id.
        id: u32,
        /// The incarnation its registration gave it.
        incarnation: u64,
        /// The metadata log index its image has applied.
        applied: u64,
    },
    /// The controller's view of the cluster, for `cluster status`.
    Status,
}

/// What the controller answers a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatReply {
    /// The session is renewed.
    Ok,
    /// The broker is fenced at this incarnation: the controller proposes `UnfenceBroker`,
    /// and the broker is alive once that is applied. Heartbeats until then get this reply
    /// again; a repeated unfence is applied as a no-op.
    Unfence,
    /// The image has no such broker, or it has another incarnation of it: the broker must
    /// register again. A broker ignores this answer to a heartbeat it sent before its
    /// latest registration.
    Register,
    /// The controller has applied less metadata than the broker: nothing was decided;
    /// heartbeat again.
    ControllerBehind,
}

/// One broker's session.
#[derive(Debug, Clone, Copy)]
struct Session {
    incarnation: u64,
    last_heard: Instant,
    /// The metadata index the broker said it applied; 0 until it heartbeats.
    applied: u64,
}

/// Every registered broker's session, on the controller leader. Not thread-safe on its
/// own: the controller keeps it behind a mutex.
#[derive(Debug)]
pub struct Sessions {
    timeout: Duration,
    sessions: BTreeMap<u32, Session>,
}

impl Sessions {
    /// No sessions yet; a broker silent for `timeout` is fenced.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sessions: BTreeMap::new(),
        }
    }

    /// Starts every registered broker's session at `now`: for a newly elected controller,
    /// which knows nothing of the heartbeats its predecessor received.
    pub fn reset(&mut self, now: Instant, image: &Image) {
        self.sessions = image
            .brokers
            .values()
            .map(|broker| (broker.id, Session::new(broker.incarnation, now)))
            .collect();
    }

    /// Handles a heartbeat from broker `id` at `incarnation`, which has applied the
    /// metadata up to `applied`.
    pub fn heartbeat(
        &mut self,
        id: u32,
        incarnation: u64,
        applied: u64,
        now: Instant,
        image: &Image,
    ) -> HeartbeatReply {
        if applied > image.applied {
            // The broker may have registered in entries this controller has not applied:
            // judging it now could send it to register again for nothing.
            if let Some(session) = self.sessions.get_mut(&id)
                && session.incarnation == incarnation
            {
                session.last_heard = now;
            }
            return HeartbeatReply::ControllerBehind;
        }
        let Some(broker) = image.broker(id).filter(|b| b.incarnation == incarnation) else {
            return HeartbeatReply::Register;
        };
        let session = self
            .sessions
            .entry(id)
            .and_modify(|session| {
                if session.incarnation != incarnation {
                    *session = Session::new(incarnation, now);
                }
            })
            .or_insert_with(|| Session::new(incarnation, now));
        session.last_heard = now;
        session.applied = applied;
        match broker.state {
            BrokerState::Fenced => HeartbeatReply::Unfence,
            BrokerState::Alive | BrokerState::ShuttingDown => HeartbeatReply::Ok,
        }
    }

    /// A `FenceBroker` for each alive or shutting-down broker of `image` silent for the
    /// session timeout. A broker whose registration is newer than its session gets a
    /// fresh session from `now` instead.
    ///
    /// The same fence comes back on every call until it is applied (the broker is then
    /// fenced in the image) or the broker heartbeats: the caller proposes it again if a
    /// proposal was lost, and a repeat is applied as a no-op.
    pub fn expired(&mut self, now: Instant, image: &Image) -> Vec<Command> {
        let mut fences = Vec::new();
        for broker in image.brokers.values() {
            if broker.state == BrokerState::Fenced {
                continue;
            }
            let session = self
                .sessions
                .entry(broker.id)
                .or_insert_with(|| Session::new(broker.incarnation, now));
            if session.incarnation != broker.incarnation {
                *session = Session::new(broker.incarnation, now);
            }
            if now.saturating_duration_since(session.last_heard) >= self.timeout {
                fences.push(Command::FenceBroker {
                    id: broker.id,
                    incarnation: broker.incarnation,
                });
            }
        }
        fences
    }

    /// The metadata index broker `id` last said it applied, if it heartbeated to this
    /// controller.
    pub fn applied(&self, id: u32) -> Option<u64> {
        self.sessions
            .get(&id)
            .map(|session| session.applied)
            .filter(|&applied| applied > 0)
    }
}

impl Session {
    fn new(incarnation: u64, now: Instant) -> Self {
        Self {
            incarnation,
            last_heard: now,
            applied: 0,
        }
    }
}

/// A request as the bytes sent through `call_leader`.
pub fn encode_request(request: &LeaderRequest) -> Vec<u8> {
    serde_json::to_vec(request).expect("a leader request always serializes")
}

/// A request from the bytes a broker sent.
///
/// # Errors
/// The bytes are no request; the message says where decoding stopped.
pub fn decode_request(bytes: &[u8]) -> Result<LeaderRequest, String> {
    serde_json::from_slice(bytes)
        .map_err(|error| format!("undecodable controller request: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::Outcome;

    const TIMEOUT: Duration = Duration::from_secs(3);

    fn register(image: &mut Image, id: u32) -> u64 {
        let index = image.applied + 1;
        let command = Command::RegisterBroker {
            id,
            address: format!("127.0.0.1:{}", 9400 + id),
            cluster_address: format!("127.0.0.1:{}", 9500 + id),
            log_id: "test-log".to_owned(),
            unclean: false,
        };
        match image.apply(index, &command) {
            Outcome::Registered { incarnation } => incarnation,
            other => panic!("registration refused: {other:?}"),
        }
    }

    fn apply(image: &mut Image, command: &Command) {
        let index = image.applied + 1;
        assert_eq!(image.apply(index, command), Outcome::Done);
    }

    fn fence(id: u32, incarnation: u64) -> Command {
        Command::FenceBroker { id, incarnation }
    }

    #[test]
    fn a_broker_that_heartbeats_is_never_fenced() {
        let mut image = Image::default();
        let incarnation = register(&mut image, 1);
        let start = Instant::now();
        let mut sessions = Sessions::new(TIMEOUT);
        sessions.reset(start, &image);
        for tick in 1..=40 {
            let now = start + Duration::from_millis(250) * tick;
            let reply = sessions.heartbeat(1, incarnation, image.applied, now, &image);
            assert_eq!(reply, HeartbeatReply::Ok);
            assert_eq!(sessions.expired(now, &image), vec![]);
        }
        assert_eq!(sessions.applied(1), Some(image.applied));
    }

    #[test]
    fn a_silent_broker_is_fenced_at_its_incarnation_after_the_timeout() {
        let mut image = Image::default();
        register(&mut image, 1);
        let incarnation = register(&mut image, 2);
        let start = Instant::now();
        let mut sessions = Sessions::new(TIMEOUT);
        sessions.reset(start, &image);
        let almost = start + TIMEOUT - Duration::from_millis(1);
        sessions.heartbeat(1, 1, image.applied, almost, &image);
        assert_eq!(sessions.expired(almost, &image), vec![]);
        let lapsed = start + TIMEOUT;
        assert_eq!(
            sessions.expired(lapsed, &image),
            vec![fence(2, incarnation)]
        );
        // Asked again until it is applied; then never again.
        assert_eq!(
            sessions.expired(lapsed, &image),
            vec![fence(2, incarnation)]
        );
        apply(&mut image, &fence(2, incarnation));
        assert_eq!(
            sessions.expired(lapsed + TIMEOUT, &image),
            vec![fence(1, 1)]
        );
    }

    #[test]
    fn a_new_controller_never_fences_at_once() {
        let mut image = Image::default();
        register(&mut image, 1);
        let mut sessions = Sessions::new(TIMEOUT);
        let start = Instant::now();
        sessions.reset(start, &image);
        // Elected long after the broker's last heartbeat to the old controller.
        let elected = start + TIMEOUT * 10;
        let mut successor = Sessions::new(TIMEOUT);
        successor.reset(elected, &image);
        assert_eq!(successor.expired(elected + TIMEOUT / 2, &image), vec![]);
        assert_eq!(sessions.expired(elected, &image), vec![fence(1, 1)]);
    }

    #[test]
    fn a_registration_after_the_reset_gets_a_full_session() {
        let mut image = Image::default();
        let mut sessions = Sessions::new(TIMEOUT);
        let start = Instant::now();
        sessions.reset(start, &image);
        register(&mut image, 3);
        let registered = start + TIMEOUT * 2;
        assert_eq!(sessions.expired(registered, &image), vec![]);
        assert_eq!(
            sessions.expired(registered + TIMEOUT, &image),
            vec![fence(3, 1)]
        );
    }

    #[test]
    fn a_restart_replaces_the_session_of_the_old_incarnation() {
        let mut image = Image::default();
        register(&mut image, 1);
        let mut sessions = Sessions::new(TIMEOUT);
        let start = Instant::now();
        sessions.reset(start, &image);
        let restarted = start + TIMEOUT - Duration::from_millis(1);
        let incarnation = register(&mut image, 1);
        assert_eq!(sessions.expired(restarted, &image), vec![]);
        assert_eq!(sessions.expired(start + TIMEOUT, &image), vec![]);
        assert_eq!(
            sessions.expired(restarted + TIMEOUT, &image),
            vec![fence(1, incarnation)]
        );
    }

    #[test]
    fn unknown_brokers_and_old_incarnations_must_register() {
        let mut image = Image::default();
        register(&mut image, 1);
        register(&mut image, 1);
        let mut sessions = Sessions::new(TIMEOUT);
        let now = Instant::now();
        sessions.reset(now, &image);
        let applied = image.applied;
        assert_eq!(
            sessions.heartbeat(7, 1, applied, now, &image),
            HeartbeatReply::Register
        );
        assert_eq!(
            sessions.heartbeat(1, 1, applied, now, &image),
            HeartbeatReply::Register
        );
        assert_eq!(
            sessions.heartbeat(1, 3, applied, now, &image),
            HeartbeatReply::Register
        );
        assert_eq!(
            sessions.heartbeat(1, 2, applied, now, &image),
            HeartbeatReply::Ok
        );
    }

    #[test]
    fn a_fenced_broker_that_heartbeats_is_to_be_unfenced() {
        let mut image = Image::default();
        let incarnation = register(&mut image, 1);
        apply(&mut image, &fence(1, incarnation));
        let mut sessions = Sessions::new(TIMEOUT);
        let now = Instant::now();
        sessions.reset(now, &image);
        let reply = sessions.heartbeat(1, incarnation, image.applied, now, &image);
        assert_eq!(reply, HeartbeatReply::Unfence);
        apply(&mut image, &Command::UnfenceBroker { id: 1, incarnation });
        let reply = sessions.heartbeat(1, incarnation, image.applied, now, &image);
        assert_eq!(reply, HeartbeatReply::Ok);
    }

    #[test]
    fn a_shutting_down_broker_is_fenced_once_silent() {
        let mut image = Image::default();
        let incarnation = register(&mut image, 1);
        apply(&mut image, &Command::ShutdownBroker { id: 1, incarnation });
        let mut sessions = Sessions::new(TIMEOUT);
        let start = Instant::now();
        sessions.reset(start, &image);
        let reply = sessions.heartbeat(1, incarnation, image.applied, start, &image);
        assert_eq!(reply, HeartbeatReply::Ok);
        assert_eq!(
            sessions.expired(start + TIMEOUT, &image),
            vec![fence(1, incarnation)]
        );
    }

    #[test]
    fn a_lagging_controller_decides_nothing_but_keeps_the_session() {
        let mut image = Image::default();
        let incarnation = register(&mut image, 1);
        let mut sessions = Sessions::new(TIMEOUT);
        let start = Instant::now();
        sessions.reset(start, &image);
        let later = start + TIMEOUT - Duration::from_millis(1);
        let ahead = image.applied + 5;
        assert_eq!(
            sessions.heartbeat(1, incarnation, ahead, later, &image),
            HeartbeatReply::ControllerBehind
        );
        // A registration this controller has not applied yet is not judged either.
        assert_eq!(
            sessions.heartbeat(2, 1, ahead, later, &image),
            HeartbeatReply::ControllerBehind
        );
        assert_eq!(sessions.expired(start + TIMEOUT, &image), vec![]);
    }

    #[test]
    fn requests_round_trip_and_garbage_is_an_error() {
        let heartbeat = LeaderRequest::Heartbeat {
            id: 2,
            incarnation: 5,
            applied: 77,
        };
        for request in [heartbeat, LeaderRequest::Status] {
            assert_eq!(decode_request(&encode_request(&request)), Ok(request));
        }
        for garbage in [&b""[..], b"{", b"\xff\xfe", b"{\"Heartbeat\":{\"id\":-1}}"] {
            assert!(decode_request(garbage).is_err());
        }
    }
}
