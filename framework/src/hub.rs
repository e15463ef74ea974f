//! Layer 3: local sessions, channel membership and fan-out on this node.
//!
//! A delivery is encoded once by the caller; every recipient's queue receives a
//! refcounted clone of the same bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use uuid::Uuid;

use crate::protocol::Opcode;
use crate::session::{Connection, OpcodeCounters, SendError};

/// Why a session could not join a channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The session is in `max_channels_per_session` channels already.
    #[error("this session has joined the maximum of {0} channels")]
    TooManyChannels(usize),
    /// The channel holds `max_subscribers_per_channel` sessions already.
    #[error("the channel has the maximum of {0} subscribers")]
    ChannelFull(usize),
}

/// What a fan-out reached.
///
/// ```
/// let d = framework::hub::Delivered::default();
/// assert_eq!(d.dropped(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Sessions whose queue took the frame.
    pub queued: usize,
    /// Sessions already closing (disconnected, evicted, shutting down): the
    /// frame was not needed.
    pub closing: usize,
    /// Sessions whose queue was over `max_queued_bytes`: slow consumers, closed
    /// with 1008 because of this frame.
    pub slow_consumer: usize,
    /// Sessions whose peer was over the node's memory budget
    /// (`max_held_bytes_per_ip`, `max_held_bytes`), closed because of this frame.
    pub over_budget: usize,
}

impl Delivered {
    /// Sessions the frame did not reach, for whatever reason.
    pub fn dropped(&self) -> usize {
        self.closing + self.slow_consumer + self.over_budget
    }

    fn count(&mut self, result: Result<(), SendError>) {
        match result {
            Ok(()) => self.queued += 1,
            Err(SendError::Overflow) => self.slow_consumer += 1,
            Err(SendError::OverBudget) => self.over_budget += 1,
            Err(SendError::Closed | SendError::NotUtf8) => self.closing += 1,
        }
    }
}

/// Why a delivery was dropped: the `reason` label of
/// `framework_dropped_deliveries_total`.
///
/// ```
/// use framework::hub::DropReason;
/// assert_eq!(DropReason::SlowConsumer.label(), "slow_consumer");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The recipient was already closing.
    Closing,
    /// The recipient's queue overflowed: it is closed as a slow consumer.
    SlowConsumer,
    /// The recipient's peer was over the node's memory budget.
    OverBudget,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 3] = [
        DropReason::Closing,
        DropReason::SlowConsumer,
        DropReason::OverBudget,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Closing => "closing",
            DropReason::SlowConsumer => "slow_consumer",
            DropReason::OverBudget => "over_budget",
        }
    }
}

/// Deliveries this hub queued, for the node's metrics.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Frames and bytes queued, by the delivery's opcode (`Publish`, `Send`,
    /// `Broadcast`).
    pub queued: OpcodeCounters,
    /// Deliveries not queued, by [`DropReason`] (in [`DropReason::ALL`]'s order).
    dropped: [AtomicU64; 3],
}

impl DeliveryStats {
    fn record(&self, opcode: Opcode, frame_len: usize, d: Delivered) {
        if d.queued > 0 {
            self.queued
                .count(opcode.0, d.queued as u64, (d.queued * frame_len) as u64);
        }
        for (reason, n) in [d.closing, d.slow_consumer, d.over_budget]
            .into_iter()
            .enumerate()
        {
            if n > 0 {
                self.dropped[reason].fetch_add(n as u64, Relaxed);
            }
        }
    }

    /// Deliveries this hub dropped for `reason`.
    ///
    /// ```
    /// use framework::hub::{DropReason, Hub};
    /// let hub = Hub::new(1024, 1_000_000);
    /// assert_eq!(hub.stats().dropped(DropReason::Closing), 0);
    /// ```
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }
}

/// Recipients one writing task of a fan-out writes to (see [`Fanout`]).
const WRITES_PER_TASK: usize = 256;

/// How many subscribers ahead a fan-out asks for their state (a queueing
/// step takes tens of nanoseconds, a line from memory about a hundred).
const PREFETCH_AHEAD: usize = 8;

/// One frame on its way to many sessions.
///
/// The frame is queued for every recipient without waking it; tasks of
/// [`WRITES_PER_TASK`] recipients each then write the queues that were empty
/// (the others are written by whoever is writing them already). A wake-up and
/// a poll of every recipient's session were most of a delivery's cost: a
/// writing task does neither. It runs after the publishing task yields, so the
/// frames of several publications that arrived together go out in one write
/// per recipient; and a large fan-out is written by several tasks, which the
/// runtime spreads over its workers. Each recipient still gets a channel's
/// frames in the order they were published: the order is its queue's, fixed
/// when the frame is queued.
struct Fanout {
    /// Recipients whose queue this frame found empty.
    first: Vec<Connection>,
    out: Delivered,
}

impl Fanout {
    /// A fan-out to at most `recipients` sessions.
    fn new(recipients: usize) -> Self {
        Fanout {
            first: Vec::with_capacity(recipients),
            out: Delivered::default(),
        }
    }

    fn add(&mut self, conn: &Connection, frame: &Bytes) {
        let queued = conn.send_shared_quiet(frame.clone());
        if let Ok(true) = queued {
            self.first.push(conn.clone());
        }
        self.out.count(queued.map(|_| ()));
    }

    /// Starts the writing tasks (or, outside a runtime, writes at once); what
    /// the frame reached.
    fn finish(self) -> Delivered {
        let mut first = self.first;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                while !first.is_empty() {
                    let slice = first.split_off(first.len().saturating_sub(WRITES_PER_TASK));
                    runtime.spawn(async move {
                        // Each write is a system call of microseconds: the
                        // next sessions' state, then their writer, come in
                        // meanwhile.
                        slice.iter().take(2).for_each(Connection::prefetch_state);
                        slice.iter().take(1).for_each(Connection::prefetch_writer);
                        for (i, conn) in slice.iter().enumerate() {
                            if let Some(next) = slice.get(i + 2) {
                                next.prefetch_state();
                            }
                            if let Some(next) = slice.get(i + 1) {
                                next.prefetch_writer();
                            }
                            conn.flush();
                        }
                    });
                }
            }
            Err(_) => first.iter().for_each(Connection::flush),
        }
        self.out
    }
}

/// What a channel delivered to a recovering session, held until its replay
/// ends: the frames and their bytes (at most the session's `max_queued_bytes`;
/// past it the session is a slow consumer).
#[derive(Default)]
struct Held {
    frames: Vec<Bytes>,
    bytes: usize,
}

/// A channel's subscribers on this node.
#[derive(Default)]
struct Members {
    live: HashMap<Uuid, Connection>,
    /// Subscribers still recovering: what the channel delivered meanwhile, kept
    /// for them until their replay ends (`Hub::end_recovery`).
    recovering: HashMap<Uuid, parking_lot::Mutex<Held>>,
}

impl Members {
    fn len(&self) -> usize {
        self.live.len()
    }

    fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Delivers `frame` to every subscriber but `except` (see [`Fanout`]).
    fn deliver(&self, frame: &Bytes, except: Option<Uuid>) -> Delivered {
        let mut out = Fanout::new(self.live.len());
        // The state of the sessions a few places ahead is brought in while
        // this one's frame is queued (see `Connection::prefetch_state`).
        let mut ahead = self.live.values();
        ahead
            .by_ref()
            .take(PREFETCH_AHEAD)
            .for_each(Connection::prefetch_state);
        for (id, conn) in &self.live {
            if let Some(next) = ahead.next() {
                next.prefetch_state();
            }
            if Some(*id) == except {
                continue;
            }
            match self.recovering.get(id) {
                Some(held) => {
                    let mut held = held.lock();
                    if held.bytes + frame.len() > conn.max_queued() {
                        conn.slow_consumer();
                        out.out.slow_consumer += 1;
                    } else {
                        held.bytes += frame.len();
                        held.frames.push(frame.clone());
                        out.out.queued += 1;
                    }
                }
                None => out.add(conn, frame),
            }
        }
        out.finish()
    }
}

/// The sessions of this node and the channels they joined.
///
/// ```
/// let hub = framework::hub::Hub::new(1024, 1_000_000);
/// assert_eq!(hub.session_count(), 0);
/// assert_eq!(hub.channel_count(), 0);
/// ```
pub struct Hub {
    sessions: DashMap<Uuid, Connection>,
    channels: DashMap<Arc<str>, Members>,
    max_channels_per_session: usize,
    max_subscribers_per_channel: usize,
    stats: DeliveryStats,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("sessions", &self.sessions.len())
            .field("channels", &self.channels.len())
            .finish()
    }
}

impl Hub {
    /// An empty hub with the given membership limits.
    pub fn new(max_channels_per_session: usize, max_subscribers_per_channel: usize) -> Self {
        Self {
            sessions: DashMap::new(),
            channels: DashMap::new(),
            max_channels_per_session,
            max_subscribers_per_channel,
            stats: DeliveryStats::default(),
        }
    }

    /// What this hub delivered so far.
    pub fn stats(&self) -> &DeliveryStats {
        &self.stats
    }

    /// Adds a live session.
    pub fn register(&self, conn: &Connection) {
        self.sessions.insert(conn.id(), conn.clone());
    }

    /// Removes a session and its memberships. Returns the channels that lost their
    /// last local subscriber.
    pub fn unregister(&self, conn: &Connection) -> Vec<Arc<str>> {
        self.sessions.remove(&conn.id());
        let joined: Vec<Arc<str>> = conn.0.channels.lock().drain().collect();
        joined
            .into_iter()
            .filter(|ch| self.remove_member(ch, conn.id()))
            .collect()
    }

    /// The live session with this id, if this node owns it.
    pub fn session(&self, id: &Uuid) -> Option<Connection> {
        self.sessions.get(id).map(|c| c.clone())
    }

    /// Sessions on this node.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Channels with at least one subscriber on this node.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Subscribers of `channel` on this node.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |m| m.len())
    }

    /// Joins `channel`. `Ok(true)` when the channel had no local subscriber before
    /// (the node's interest in it starts); joining twice is a no-op.
    pub fn subscribe(&self, conn: &Connection, channel: &str) -> Result<bool, JoinError> {
        self.join(conn, channel, false)
    }

    fn join(&self, conn: &Connection, channel: &str, recovering: bool) -> Result<bool, JoinError> {
        let mut joined = conn.0.channels.lock();
        if joined.contains(channel) {
            return Ok(false);
        }
        if joined.len() >= self.max_channels_per_session {
            return Err(JoinError::TooManyChannels(self.max_channels_per_session));
        }
        let key: Arc<str> = match self.channels.get(channel) {
            Some(entry) => entry.key().clone(),
            None => Arc::from(channel),
        };
        let mut members = self.channels.entry(key.clone()).or_default();
        if members.len() >= self.max_subscribers_per_channel {
            return Err(JoinError::ChannelFull(self.max_subscribers_per_channel));
        }
        let first = members.is_empty();
        if recovering {
            members.recovering.insert(conn.id(), Default::default());
        }
        members.live.insert(conn.id(), conn.clone());
        joined.insert(key);
        Ok(first)
    }

    /// Joins `channel` (as [`subscribe`](Self::subscribe)), keeping what the
    /// channel delivers for this session aside until
    /// [`end_recovery`](Self::end_recovery): the session first gets what it
    /// missed, then these. `Ok(None)` when it had joined already (nothing is
    /// kept aside); `Ok(Some(first))` otherwise.
    pub fn subscribe_recovering(
        &self,
        conn: &Connection,
        channel: &str,
    ) -> Result<Option<bool>, JoinError> {
        if conn.0.channels.lock().contains(channel) {
            return Ok(None);
        }
        self.join(conn, channel, true).map(Some)
    }

    /// Ends the recovery of `conn` on `channel`: queues what the channel delivered
    /// meanwhile with an offset above `after`, in offset order, then delivers
    /// live again. No publication of the channel is queued in between.
    pub fn end_recovery(&self, conn: &Connection, channel: &str, after: u64) {
        let Some(mut members) = self.channels.get_mut(channel) else {
            return;
        };
        let Some(held) = members.recovering.remove(&conn.id()) else {
            return;
        };
        let mut held: Vec<(u64, Bytes)> = held
            .into_inner()
            .frames
            .into_iter()
            .map(|f| (crate::storage::offset_of(&f), f))
            .collect();
        held.sort_by_key(|(offset, _)| *offset);
        let mut last = after;
        for (offset, frame) in held {
            // Events (`Join`, `Leave`: no offset) go first; publications the
            // replay covered are skipped.
            if offset == 0 {
                let _ = conn.send_shared(frame);
            } else if offset > last {
                last = offset;
                let _ = conn.send_shared(frame);
            }
        }
        // `members` (the channel's write lock) is held until here.
        drop(members);
    }

    /// Leaves `channel`. `true` when it was the last local subscriber (the node's
    /// interest ends); leaving a channel not joined is a no-op.
    pub fn unsubscribe(&self, conn: &Connection, channel: &str) -> bool {
        let removed = conn.0.channels.lock().remove(channel);
        removed && self.remove_member(channel, conn.id())
    }

    fn remove_member(&self, channel: &str, id: Uuid) -> bool {
        let emptied = match self.channels.get_mut(channel) {
            Some(mut members) => {
                members.live.remove(&id);
                members.recovering.remove(&id);
                members.is_empty()
            }
            None => return false,
        };
        // Re-checked under the shard lock: a subscriber may have joined meanwhile.
        emptied
            && self
                .channels
                .remove_if(channel, |_, m| m.is_empty())
                .is_some()
    }

    /// Queues `frame` for every local subscriber of `channel`.
    pub fn publish_local(&self, channel: &str, frame: &Bytes) -> Delivered {
        let out = self
            .channels
            .get(channel)
            .map(|m| m.deliver(frame, None))
            .unwrap_or_default();
        self.stats.record(Opcode::Publish, frame.len(), out);
        out
    }

    /// Queues the event `frame` (`Join`, `Leave`) for every local subscriber of
    /// `channel` but `except`.
    pub fn event_local(&self, channel: &str, frame: &Bytes, except: Uuid) -> Delivered {
        let out = self
            .channels
            .get(channel)
            .map(|m| m.deliver(frame, Some(except)))
            .unwrap_or_default();
        self.stats.record(Opcode::Publish, frame.len(), out);
        out
    }

    /// The local subscribers of `channel` (a snapshot).
    pub fn subscribers(&self, channel: &str) -> Vec<Connection> {
        self.channels
            .get(channel)
            .map(|m| m.live.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Queues `frame` for the local session `id`; `None` when this node does not own it.
    pub fn send_local(&self, id: &Uuid, frame: Bytes) -> Option<Result<(), SendError>> {
        let len = frame.len();
        let result = self.sessions.get(id).map(|conn| conn.send(frame))?;
        let mut d = Delivered::default();
        d.count(result);
        self.stats.record(Opcode::Send, len, d);
        Some(result)
    }

    /// Queues `frame` for every local session.
    pub fn broadcast_local(&self, frame: &Bytes) -> Delivered {
        let mut fanout = Fanout::new(self.sessions.len());
        for conn in self.sessions.iter() {
            fanout.add(&conn, frame);
        }
        let out = fanout.finish();
        self.stats.record(Opcode::Broadcast, frame.len(), out);
        out
    }

    /// Every local session (a snapshot).
    pub fn sessions(&self) -> Vec<Connection> {
        self.sessions.iter().map(|c| c.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        Connection::new(
            Uuid::nil(),
            "127.0.0.1:9".parse().unwrap(),
            1 << 20,
            crate::session::budget::Charge::unlimited(),
        )
    }

    #[test]
    fn membership_is_idempotent_and_tracks_interest() {
        let hub = Hub::new(2, 10);
        let a = conn();
        let b = conn();
        hub.register(&a);
        hub.register(&b);
        assert_eq!(hub.subscribe(&a, "x"), Ok(true));
        assert_eq!(hub.subscribe(&a, "x"), Ok(false));
        assert_eq!(hub.subscribe(&b, "x"), Ok(false));
        assert_eq!(hub.subscriber_count("x"), 2);
        assert!(!hub.unsubscribe(&a, "x"));
        assert!(!hub.unsubscribe(&a, "x"));
        assert!(hub.unsubscribe(&b, "x"));
        assert_eq!(hub.channel_count(), 0);
    }

    #[test]
    fn limits_are_enforced() {
        let hub = Hub::new(1, 1);
        let a = conn();
        let b = conn();
        assert_eq!(hub.subscribe(&a, "x"), Ok(true));
        assert_eq!(hub.subscribe(&a, "y"), Err(JoinError::TooManyChannels(1)));
        assert_eq!(hub.subscribe(&b, "x"), Err(JoinError::ChannelFull(1)));
        assert_eq!(hub.channel_count(), 1);
    }

    #[test]
    fn unregister_leaves_every_channel() {
        let hub = Hub::new(10, 10);
        let a = conn();
        hub.register(&a);
        hub.subscribe(&a, "x").unwrap();
        hub.subscribe(&a, "y").unwrap();
        let mut emptied = hub.unregister(&a);
        emptied.sort();
        assert_eq!(emptied, vec![Arc::from("x"), Arc::from("y")]);
        assert_eq!((hub.session_count(), hub.channel_count()), (0, 0));
    }

    /// What a recovering session is held back, in the order `end_recovery`
    /// queues it: events first, then publications above `after` by offset, each
    /// once.
    #[test]
    fn a_recovery_holds_live_frames_then_releases_them_in_offset_order() {
        let hub = Hub::new(10, 10);
        let (a, b) = (conn(), conn());
        hub.subscribe(&b, "x").unwrap();
        assert_eq!(hub.subscribe_recovering(&a, "x"), Ok(Some(false)));
        let frame = |offset| {
            crate::storage::Pending::new("x", &[offset as u8], Uuid::nil(), None, None)
                .encode("e")
                .with_offset(offset)
        };
        for offset in [4, 2, 3, 2] {
            hub.publish_local("x", &frame(offset));
        }
        let join = Bytes::from_static(b"join");
        hub.event_local("x", &join, Uuid::from_u128(7));
        assert!(a.0.outbox.take().is_empty(), "held while recovering");
        assert_eq!(b.0.outbox.take().len(), 5, "others get everything live");
        hub.end_recovery(&a, "x", 2);
        let got: Vec<Bytes> =
            a.0.outbox
                .take()
                .into_iter()
                .map(|o| match o {
                    crate::session::Outbound::Shared(f) => f,
                    _ => panic!("a delivery"),
                })
                .collect();
        assert_eq!(got[0], join);
        let offsets: Vec<u64> = got[1..].iter().map(crate::storage::offset_of).collect();
        assert_eq!(
            offsets,
            vec![3, 4],
            "above the replay, once each, ascending"
        );
        // Live again.
        hub.publish_local("x", &frame(5));
        assert_eq!(a.0.outbox.take().len(), 1);
    }

    #[test]
    fn publish_shares_one_allocation() {
        let hub = Hub::new(10, 10);
        let a = conn();
        let b = conn();
        hub.subscribe(&a, "x").unwrap();
        hub.subscribe(&b, "x").unwrap();
        let frame = Bytes::from(vec![1u8; 32]);
        assert_eq!(hub.publish_local("x", &frame).queued, 2);
        for c in [&a, &b] {
            match c.0.outbox.take().pop_front() {
                Some(crate::session::Outbound::Shared(got)) => {
                    assert_eq!(got.as_ptr(), frame.as_ptr())
                }
                _ => panic!("no frame"),
            }
        }
    }
}
