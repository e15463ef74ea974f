//! History and presence in this process: the single node's storage.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use uuid::Uuid;

use super::{new_epoch, HistorySlice, Pending, Position, PresenceEntry, Storage};
use crate::broker::BrokerError;
use crate::config::HistoryBounds;
use crate::hub::Hub;

/// One channel's history.
struct ChannelHistory {
    epoch: String,
    top: u64,
    /// (when kept, offset, frame), ascending.
    kept: VecDeque<(Instant, u64, Bytes)>,
    last_write: Instant,
    /// How long the epoch outlives the last publication.
    meta_ttl: Duration,
    /// How long a publication is kept.
    ttl: Duration,
}

impl ChannelHistory {
    fn new(bounds: &HistoryBounds) -> Self {
        Self {
            epoch: new_epoch(),
            top: 0,
            kept: VecDeque::new(),
            last_write: Instant::now(),
            meta_ttl: bounds.meta_ttl,
            ttl: bounds.ttl,
        }
    }

    /// Drops what is past its size or time (uncounting it from `held`);
    /// `false` when the whole state has expired.
    fn trim(&mut self, bounds: &HistoryBounds, now: Instant, held: &AtomicUsize) -> bool {
        while self.kept.len() > bounds.size
            || self
                .kept
                .front()
                .is_some_and(|(at, _, _)| now.duration_since(*at) >= bounds.ttl)
        {
            self.pop(held);
        }
        now.duration_since(self.last_write) < self.meta_ttl
    }

    /// Drops the oldest publication.
    fn pop(&mut self, held: &AtomicUsize) -> bool {
        match self.kept.pop_front() {
            Some((_, _, frame)) => {
                held.fetch_sub(frame.len(), Relaxed);
                true
            }
            None => false,
        }
    }

    /// Drops everything (the state is replaced).
    fn clear(&mut self, held: &AtomicUsize) {
        while self.pop(held) {}
    }
}

/// History and presence kept in memory, delivering through the node's [`Hub`].
/// A restart loses them: every channel starts a new epoch. The publications of
/// all channels together hold at most `limit` bytes
/// (`Config::max_history_bytes`): past it, the oldest are trimmed (a recovery
/// past them answers `recovered = false`).
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use framework::{config::ChannelOptions, hub::Hub, storage::{MemoryStorage, Pending, Storage}};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let storage = MemoryStorage::new(uuid::Uuid::new_v4(), Arc::new(Hub::new(8, 8)));
/// let bounds = ChannelOptions::new("*").history(10, Duration::from_secs(60)).history_bounds().unwrap();
/// let first = storage.append(Pending::new("chat", b"a", uuid::Uuid::nil(), None, None), bounds).await.unwrap();
/// let second = storage.append(Pending::new("chat", b"b", uuid::Uuid::nil(), None, None), bounds).await.unwrap();
/// assert_eq!((first.offset, second.offset), (1, 2));
/// let read = storage.read("chat".into(), 1, 10, bounds).await.unwrap();
/// assert_eq!(read.publications.len(), 1);
/// # });
/// ```
pub struct MemoryStorage {
    node: Uuid,
    hub: Arc<Hub>,
    limit: usize,
    held: AtomicUsize,
    histories: DashMap<Arc<str>, Arc<Mutex<ChannelHistory>>>,
    presence: DashMap<Arc<str>, HashMap<Uuid, PresenceEntry>>,
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("histories", &self.histories.len())
            .field("presence", &self.presence.len())
            .finish()
    }
}

impl MemoryStorage {
    /// A storage for node `node`, delivering through `hub`, holding at most the
    /// default `max_history_bytes`. Inside a tokio runtime it also sweeps
    /// expired histories once a minute (until dropped).
    pub fn new(node: Uuid, hub: Arc<Hub>) -> Arc<MemoryStorage> {
        Self::with_limit(node, hub, crate::Config::default().max_history_bytes)
    }

    /// A storage whose histories hold at most `limit` bytes together.
    pub fn with_limit(node: Uuid, hub: Arc<Hub>, limit: usize) -> Arc<MemoryStorage> {
        let storage = Arc::new(MemoryStorage {
            node,
            hub,
            limit,
            held: AtomicUsize::new(0),
            histories: DashMap::new(),
            presence: DashMap::new(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&storage)));
        }
        storage
    }

    /// Channels with a history state in memory.
    pub fn history_channels(&self) -> usize {
        self.histories.len()
    }

    /// Bytes the histories hold now.
    pub fn history_bytes(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// Trims the oldest publications, channel by channel, until the histories
    /// are within `limit` (channels busy meanwhile are left alone this time).
    fn enforce_limit(&self, appended: &Arc<str>) {
        if self.held.load(Relaxed) <= self.limit {
            return;
        }
        if let Some(h) = self.histories.get(appended).map(|h| h.clone()) {
            let mut h = h.lock();
            // The newest stays: it was just delivered with its offset.
            while h.kept.len() > 1 && self.held.load(Relaxed) > self.limit {
                h.pop(&self.held);
            }
        }
        for entry in self.histories.iter() {
            if self.held.load(Relaxed) <= self.limit {
                return;
            }
            if let Some(mut h) = entry.value().try_lock() {
                while self.held.load(Relaxed) > self.limit && h.pop(&self.held) {}
            }
        }
    }

    fn channel(&self, channel: &Arc<str>, bounds: &HistoryBounds) -> Arc<Mutex<ChannelHistory>> {
        if let Some(h) = self.histories.get(channel) {
            return h.clone();
        }
        self.histories
            .entry(channel.clone())
            .or_insert_with(|| Arc::new(Mutex::new(ChannelHistory::new(bounds))))
            .clone()
    }

    /// Forgets publications past their time and channels whose state expired.
    fn sweep_once(&self) {
        let now = Instant::now();
        self.histories.retain(|_, h| {
            let mut h = h.lock();
            while h
                .kept
                .front()
                .is_some_and(|(at, _, _)| now.duration_since(*at) >= h.ttl)
            {
                h.pop(&self.held);
            }
            let alive = now.duration_since(h.last_write) < h.meta_ttl;
            if !alive {
                h.clear(&self.held);
            }
            alive
        });
    }
}

async fn sweep(storage: Weak<MemoryStorage>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        match storage.upgrade() {
            Some(s) => s.sweep_once(),
            None => return,
        }
    }
}

impl Storage for MemoryStorage {
    fn append(
        &self,
        publication: Pending,
        bounds: HistoryBounds,
    ) -> BoxFuture<'_, Result<Position, BrokerError>> {
        let state = self.channel(&publication.channel, &bounds);
        let now = Instant::now();
        let mut h = state.lock();
        h.meta_ttl = bounds.meta_ttl;
        h.ttl = bounds.ttl;
        if !h.trim(&bounds, now, &self.held) {
            h.clear(&self.held);
            *h = ChannelHistory::new(&bounds);
        }
        h.top += 1;
        h.last_write = now;
        let offset = h.top;
        let frame = publication.encode(&h.epoch).with_offset(offset);
        self.held.fetch_add(frame.len(), Relaxed);
        h.kept.push_back((now, offset, frame.clone()));
        h.trim(&bounds, now, &self.held);
        // Delivered under the channel's lock: every subscriber sees offset order.
        self.hub.publish_local(&publication.channel, &frame);
        let position = Position {
            offset,
            epoch: h.epoch.clone(),
        };
        drop(h);
        self.enforce_limit(&publication.channel);
        Box::pin(async move { Ok(position) })
    }

    fn read(
        &self,
        channel: Arc<str>,
        since: u64,
        limit: usize,
        bounds: HistoryBounds,
    ) -> BoxFuture<'_, Result<HistorySlice, BrokerError>> {
        let state = self.channel(&channel, &bounds);
        let mut h = state.lock();
        let now = Instant::now();
        if !h.trim(&bounds, now, &self.held) {
            h.clear(&self.held);
            *h = ChannelHistory::new(&bounds);
        }
        let publications = h
            .kept
            .iter()
            .filter(|(_, offset, _)| *offset > since)
            .take(limit)
            .map(|(_, _, frame)| frame.clone())
            .collect();
        let slice = HistorySlice {
            publications,
            position: Position {
                offset: h.top,
                epoch: h.epoch.clone(),
            },
            oldest: h.kept.front().map(|(_, offset, _)| *offset),
        };
        drop(h);
        Box::pin(async move { Ok(slice) })
    }

    fn presence_add(
        &self,
        channel: Arc<str>,
        mut entry: PresenceEntry,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        entry.node = self.node;
        self.presence
            .entry(channel)
            .or_default()
            .insert(entry.session, entry);
        Box::pin(async { Ok(()) })
    }

    fn presence_remove(
        &self,
        channel: Arc<str>,
        session: Uuid,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        if let Some(mut entries) = self.presence.get_mut(&channel) {
            entries.remove(&session);
        }
        self.presence.remove_if(&channel, |_, e| e.is_empty());
        Box::pin(async { Ok(()) })
    }

    fn presence(
        &self,
        channel: Arc<str>,
    ) -> BoxFuture<'_, Result<Vec<PresenceEntry>, BrokerError>> {
        let entries = self
            .presence
            .get(&channel)
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(entries) })
    }
}
