//! History and presence of a NATS cluster in JetStream (the [`Storage`] of a
//! NATS cluster; the server must run with JetStream, `nats-server -js`).
//!
//! - **History**: one stream per channel with history (`<p>-h-<hash>`, subject
//!   `<p>:hist.<hash>`, the channel's name in its description), bounded by the
//!   channel's size and time-to-live. A publication's offset is the stream's
//!   sequence: a node writes `last + 1` into the frame and publishes it with
//!   `Nats-Expected-Last-Sequence: last`, so two nodes never store the same
//!   offset (the loser re-reads the stream and tries again) and offsets never
//!   restart, also when the time-to-live emptied the stream. The epoch is the
//!   stream's creation time: a stream that was lost and made again is a new
//!   epoch. Each node with local subscribers of the channel follows the stream
//!   with an ordered consumer, so it delivers exactly the stored publications,
//!   in offset order.
//! - **Presence**: a stream `<p>-presence` keeping the last message of each
//!   subject (a key-value store of our own: JetStream's KV API needs a newer
//!   server than Debian's 2.9): `<p>:pres.<hash>.<node>` holds that node's
//!   entries in the channel, `<p>:pres.n.<node>` the channels it has entries in;
//!   an empty message deletes. A read lists the channel's keys and gets those of
//!   live nodes (also of nodes not heard from yet by a node that just started);
//!   the first survivor whose delete of a dead node's index matches its last sequence
//!   removes the node's entries and reports them for `Leave`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::Liveness;
use crate::broker::BrokerError;
use crate::config::HistoryBounds;
use crate::hub::Hub;
use crate::storage::{Departed, HistorySlice, Pending, Position, PresenceEntry, Storage};

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("cluster storage (JetStream): {e}"))
}

/// FNV-1a, 64 bits: a channel's name in stream names and keys (stable across
/// builds, unlike std's hasher).
fn hash(channel: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in channel.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Length-prefixed items, one after the other.
fn pack<'a>(items: impl Iterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for item in items {
        out.put_u32(item.len() as u32);
        out.put_slice(item);
    }
    out.freeze()
}

fn unpack(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + n {
            break;
        }
        out.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    out
}

/// JetStream history and presence (see the module's documentation).
pub struct NatsStorage {
    js: jetstream::Context,
    /// The cluster's prefix as stream and bucket names allow it.
    names: String,
    /// The cluster's prefix, for subjects.
    prefix: String,
    node: Uuid,
    hub: Arc<Hub>,
    alive: Liveness,
    timeout: Duration,
    /// What this node believes each channel's stream is at: (epoch, last offset).
    positions: DashMap<Arc<str>, (String, u64)>,
    /// The tasks delivering the channels this node follows.
    following: Mutex<HashMap<Arc<str>, JoinHandle<()>>>,
    /// This node's presence entries, by channel (what its keys hold).
    present: tokio::sync::Mutex<HashMap<Arc<str>, HashMap<Uuid, Bytes>>>,
    presence_stream: tokio::sync::OnceCell<stream::Stream>,
}

impl std::fmt::Debug for NatsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStorage")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl NatsStorage {
    pub(crate) fn new(
        client: async_nats::Client,
        prefix: &str,
        node: Uuid,
        hub: Arc<Hub>,
        alive: Liveness,
        timeout: Duration,
    ) -> Self {
        let names: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            js: jetstream::new(client),
            names,
            prefix: prefix.to_string(),
            node,
            hub,
            alive,
            timeout,
            positions: DashMap::new(),
            following: Mutex::new(HashMap::new()),
            present: tokio::sync::Mutex::new(HashMap::new()),
            presence_stream: tokio::sync::OnceCell::new(),
        }
    }

    async fn timed<T, E: std::fmt::Display>(
        &self,
        op: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }

    fn subject(&self, channel: &str) -> String {
        format!("{}:hist.{}", self.prefix, hash(channel))
    }

    /// The channel's stream (made when missing) and its (epoch, last offset,
    /// oldest kept offset).
    async fn stream(
        &self,
        channel: &str,
        bounds: &HistoryBounds,
    ) -> Result<(stream::Stream, String, u64, Option<u64>), BrokerError> {
        let config = stream::Config {
            name: format!("{}-h-{}", self.names, hash(channel)),
            subjects: vec![self.subject(channel)],
            description: Some(channel.to_string()),
            max_messages: bounds.size as i64,
            max_age: bounds.ttl,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        };
        let mut stream = self.timed(self.js.get_or_create_stream(config)).await?;
        let info = self.timed(stream.info()).await?.clone();
        if info.config.description.as_deref() != Some(channel) {
            return Err(unavailable(format!(
                "the stream of `{channel}` belongs to another channel"
            )));
        }
        let epoch = format!("{:016x}", info.created.unix_timestamp_nanos() as u64);
        let oldest = (info.state.messages > 0).then_some(info.state.first_sequence);
        Ok((stream, epoch, info.state.last_sequence, oldest))
    }

    /// The presence stream (made when missing).
    async fn presence_stream(&self) -> Result<&stream::Stream, BrokerError> {
        self.presence_stream
            .get_or_try_init(|| async {
                let config = stream::Config {
                    name: format!("{}-presence", self.names),
                    subjects: vec![format!("{}:pres.>", self.prefix)],
                    max_messages_per_subject: 1,
                    ..Default::default()
                };
                self.timed(self.js.get_or_create_stream(config)).await
            })
            .await
    }

    fn key(&self, key: &str) -> String {
        format!("{}:pres.{key}", self.prefix)
    }

    /// Sets `key` (an empty value deletes it); `after`: only if its last
    /// sequence is this one (`false` when it was not).
    async fn put(&self, key: &str, value: Bytes, after: Option<u64>) -> Result<bool, BrokerError> {
        self.presence_stream().await?;
        let mut publish = jetstream::message::PublishMessage::build().payload(value);
        if let Some(seq) = after {
            publish = publish.expected_last_subject_sequence(seq);
        }
        let sent = self
            .timed(self.js.send_publish(self.key(key), publish))
            .await?;
        match tokio::time::timeout(self.timeout, sent).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e))
                if after.is_some()
                    && e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence =>
            {
                Ok(false)
            }
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(format!("no ack within {:?}", self.timeout))),
        }
    }

    /// The value of `key` and its sequence (`None`: never set, or deleted).
    async fn get(&self, key: &str) -> Result<Option<(Bytes, u64)>, BrokerError> {
        let stream = self.presence_stream().await?;
        match self
            .timed(async {
                match stream.get_last_raw_message_by_subject(&self.key(key)).await {
                    Ok(m) => Ok(Some(m)),
                    Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?
        {
            Some(m) if !m.payload.is_empty() => Ok(Some((m.payload, m.sequence))),
            _ => Ok(None),
        }
    }

    /// Writes this node's entries in `channel` (and its index of channels).
    async fn write_presence(
        &self,
        present: &HashMap<Arc<str>, HashMap<Uuid, Bytes>>,
        channel: &Arc<str>,
    ) -> Result<(), BrokerError> {
        let key = format!("{}.{}", hash(channel), self.node.as_simple());
        let value = match present.get(channel) {
            Some(entries) if !entries.is_empty() => pack(entries.values().map(|b| b.as_ref())),
            _ => Bytes::new(),
        };
        self.put(&key, value, None).await?;
        let index = pack(present.keys().map(|c| c.as_bytes()));
        self.put(&format!("n.{}", self.node.as_simple()), index, None)
            .await?;
        Ok(())
    }

    async fn remove_node(&self, node: Uuid) -> Result<Departed, BrokerError> {
        let index_key = format!("n.{}", node.as_simple());
        let Some((index, seq)) = self.get(&index_key).await? else {
            return Ok(Vec::new());
        };
        // Only the survivor whose delete follows the index's last sequence
        // reports the entries.
        if !self.put(&index_key, Bytes::new(), Some(seq)).await? {
            return Ok(Vec::new());
        }
        let mut gone = Vec::new();
        for channel in unpack(&index) {
            let Ok(channel) = std::str::from_utf8(channel) else {
                continue;
            };
            let key = format!("{}.{}", hash(channel), node.as_simple());
            if let Some((value, _)) = self.get(&key).await? {
                for entry in unpack(&value).into_iter().filter_map(PresenceEntry::decode) {
                    gone.push((Arc::from(channel), entry));
                }
            }
            let _ = self.put(&key, Bytes::new(), None).await;
        }
        Ok(gone)
    }
}

impl Drop for NatsStorage {
    fn drop(&mut self) {
        for (_, task) in self.following.lock().drain() {
            task.abort();
        }
    }
}

impl Storage for NatsStorage {
    fn append(
        &self,
        publication: Pending,
        bounds: HistoryBounds,
    ) -> BoxFuture<'_, Result<Position, BrokerError>> {
        Box::pin(async move {
            let subject = self.subject(&publication.channel);
            for attempt in 0..64u32 {
                let known = self.positions.get(&publication.channel).map(|p| p.clone());
                let (epoch, last) = match known {
                    Some(p) => p,
                    None => {
                        let (_, epoch, last, _) =
                            self.stream(&publication.channel, &bounds).await?;
                        (epoch, last)
                    }
                };
                let frame = publication.encode(&epoch).with_offset(last + 1);
                let publish = jetstream::message::PublishMessage::build()
                    .payload(frame)
                    .expected_last_sequence(last);
                let sent = self
                    .timed(self.js.send_publish(subject.clone(), publish))
                    .await?;
                match tokio::time::timeout(self.timeout, sent).await {
                    Ok(Ok(ack)) => {
                        self.positions
                            .insert(publication.channel.clone(), (epoch.clone(), ack.sequence));
                        return Ok(Position {
                            offset: ack.sequence,
                            epoch,
                        });
                    }
                    Ok(Err(e))
                        if matches!(
                            e.kind(),
                            jetstream::context::PublishErrorKind::WrongLastSequence
                                | jetstream::context::PublishErrorKind::StreamNotFound
                        ) =>
                    {
                        // Another node published first (or the stream is gone):
                        // read where the stream is and try again.
                        self.positions.remove(&publication.channel);
                        if attempt > 2 {
                            let pause = u64::from(attempt.min(10)) * (1 + u64::from(rand_u8() % 4));
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                        }
                    }
                    Ok(Err(e)) => return Err(unavailable(e)),
                    Err(_) => return Err(unavailable(format!("no ack within {:?}", self.timeout))),
                }
            }
            Err(unavailable("too many concurrent publishers on one channel"))
        })
    }

    fn read(
        &self,
        channel: Arc<str>,
        since: u64,
        limit: usize,
        bounds: HistoryBounds,
    ) -> BoxFuture<'_, Result<HistorySlice, BrokerError>> {
        Box::pin(async move {
            let (stream, epoch, last, oldest) = self.stream(&channel, &bounds).await?;
            self.positions
                .insert(channel.clone(), (epoch.clone(), last));
            let mut publications = Vec::new();
            if let Some(first) = oldest {
                let start = first.max(since + 1);
                if start <= last {
                    let want = ((last - start + 1) as usize).min(limit.max(1));
                    let consumer = self
                        .timed(stream.create_consumer(consumer::pull::Config {
                            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                                start_sequence: start,
                            },
                            ack_policy: consumer::AckPolicy::None,
                            inactive_threshold: Duration::from_secs(30),
                            ..Default::default()
                        }))
                        .await?;
                    let mut batch = self
                        .timed(
                            consumer
                                .fetch()
                                .max_messages(want)
                                .expires(self.timeout / 2)
                                .messages(),
                        )
                        .await?;
                    while publications.len() < want {
                        match tokio::time::timeout(self.timeout, batch.next()).await {
                            Ok(Some(Ok(message))) => publications.push(message.payload.clone()),
                            Ok(Some(Err(e))) => return Err(unavailable(e)),
                            _ => break,
                        }
                    }
                }
            }
            Ok(HistorySlice {
                publications,
                position: Position {
                    offset: last,
                    epoch,
                },
                oldest,
            })
        })
    }

    fn follow(
        &self,
        channel: Arc<str>,
        bounds: HistoryBounds,
        on: bool,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            if !on {
                if let Some(task) = self.following.lock().remove(&channel) {
                    task.abort();
                }
                return Ok(());
            }
            if self.following.lock().contains_key(&channel) {
                return Ok(());
            }
            let (stream, epoch, last, _) = self.stream(&channel, &bounds).await?;
            self.positions.insert(channel.clone(), (epoch, last));
            let consumer = self
                .timed(stream.create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: last + 1,
                    },
                    ..Default::default()
                }))
                .await?;
            let mut messages = self.timed(consumer.messages()).await?;
            let hub = self.hub.clone();
            let name = channel.clone();
            let task = tokio::spawn(async move {
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(message) => {
                            hub.publish_local(&name, &message.payload);
                        }
                        Err(e) => {
                            tracing::warn!(channel = %name, error = %e, "following a channel's stream");
                        }
                    }
                }
            });
            if let Some(old) = self.following.lock().insert(channel, task) {
                old.abort();
            }
            Ok(())
        })
    }

    fn presence_add(
        &self,
        channel: Arc<str>,
        mut entry: PresenceEntry,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            entry.node = self.node;
            let mut present = self.present.lock().await;
            present
                .entry(channel.clone())
                .or_default()
                .insert(entry.session, entry.encode());
            self.write_presence(&present, &channel).await
        })
    }

    fn presence_remove(
        &self,
        channel: Arc<str>,
        session: Uuid,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let mut present = self.present.lock().await;
            if let Some(entries) = present.get_mut(&channel) {
                entries.remove(&session);
                if entries.is_empty() {
                    present.remove(&channel);
                }
            }
            self.write_presence(&present, &channel).await
        })
    }

    fn presence(
        &self,
        channel: Arc<str>,
    ) -> BoxFuture<'_, Result<Vec<PresenceEntry>, BrokerError>> {
        Box::pin(async move {
            // The nodes with a key in the channel, as the stream lists them: also
            // nodes this one has not heard a heartbeat from yet (it just started).
            let stream = self.presence_stream().await?;
            let keys = self.key(&format!("{}.", hash(&channel)));
            let nodes: Vec<Uuid> = self
                .timed(async {
                    let mut listed = stream.info_with_subjects(format!("{keys}*")).await?;
                    let mut nodes = Vec::new();
                    while let Some((subject, _)) = listed.next().await.transpose()? {
                        if let Some(node) = subject
                            .strip_prefix(&keys)
                            .and_then(|id| Uuid::try_parse(id).ok())
                        {
                            nodes.push(node);
                        }
                    }
                    Ok::<_, async_nats::jetstream::stream::InfoError>(nodes)
                })
                .await?;
            let mut entries = Vec::new();
            for node in nodes {
                if !(self.alive)(&node) {
                    continue;
                }
                let key = format!("{}.{}", hash(&channel), node.as_simple());
                if let Some((value, _)) = self.get(&key).await? {
                    entries.extend(unpack(&value).into_iter().filter_map(PresenceEntry::decode));
                }
            }
            Ok(entries)
        })
    }

    fn node_gone(&self, node: Uuid) -> BoxFuture<'_, Result<Departed, BrokerError>> {
        Box::pin(self.remove_node(node))
    }
}

/// A random byte (jitter for retries).
fn rand_u8() -> u8 {
    Uuid::new_v4().as_bytes()[0]
}
