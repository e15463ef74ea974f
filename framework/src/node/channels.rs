//! Protocol v1.1 on the node: history with recovery, presence and join/leave
//! events, for the channels `Config::channel_options` configures.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::{Identity, Node, SubscribeError};
use crate::broker::BrokerError;
use crate::config::{ChannelOptions, HistoryBounds};
use crate::protocol::{FrameFields, Opcode};
use crate::session::Connection;
use crate::storage::{HistorySlice, Pending, Position, PresenceEntry, Storage};

/// Why a history or presence operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The channel is not configured for history.
    #[error("channel `{0}` keeps no history")]
    NoHistory(String),
    /// The channel is not configured for presence.
    #[error("channel `{0}` has no presence")]
    NoPresence(String),
    /// The storage could not be reached.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// The most publications one `History` page returns.
pub const MAX_HISTORY_PAGE: usize = 1000;

/// A subscription being recovered: the missed publications are queued already;
/// live ones wait until [`resume`](Self::resume) (or the drop), so the caller can
/// queue the `Ack` between the two.
#[must_use = "live publications are held until the recovery resumes"]
pub struct Recovery {
    node: Node,
    conn: Connection,
    channel: Arc<str>,
    /// The last offset queued (replayed, or the position when not recovered).
    last: u64,
    held: bool,
    /// Whether every missed publication was replayed.
    pub recovered: bool,
    /// The channel's position when its history was read.
    pub position: Position,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("channel", &self.channel)
            .field("recovered", &self.recovered)
            .field("position", &self.position)
            .finish()
    }
}

impl Recovery {
    /// Queues what the channel delivered during the recovery (after the replayed
    /// publications, without duplicates), then delivers live.
    pub fn resume(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if std::mem::take(&mut self.held) {
            self.node
                .hub()
                .end_recovery(&self.conn, &self.channel, self.last);
        }
    }
}

impl Drop for Recovery {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Node {
    /// The options of `channel` (`Config::channel_options`), if any entry matches.
    ///
    /// ```no_run
    /// # fn f(node: framework::node::Node) {
    /// let keeps_history = node.channel_options("chat:rust").is_some_and(|o| o.has_history());
    /// # }
    /// ```
    pub fn channel_options(&self, channel: &str) -> Option<&ChannelOptions> {
        crate::config::options_for(&self.0.config.channel_options, channel)
    }

    fn history_bounds(&self, channel: &str) -> Option<HistoryBounds> {
        self.channel_options(channel)
            .and_then(ChannelOptions::history_bounds)
    }

    /// This node's interest in `channel` starts or ends: the broker's, and the
    /// storage's following of a channel with history.
    pub(super) async fn interest(&self, channel: &str, on: bool) -> Result<(), BrokerError> {
        let broker = self.0.broker.channel_interest(Arc::from(channel), on).await;
        if !self.0.config.channel_options.is_empty() {
            if let (Some(bounds), Some(storage)) =
                (self.history_bounds(channel), self.0.broker.storage())
            {
                storage.follow(Arc::from(channel), bounds, on).await?;
            }
        }
        broker
    }

    fn storage(&self) -> Result<Arc<dyn Storage>, BrokerError> {
        self.0.broker.storage().ok_or_else(|| {
            BrokerError::Unavailable(
                "this broker keeps no history or presence (the cluster's engine has no storage)"
                    .into(),
            )
        })
    }

    /// Appends a publication to a channel with history (delivering it); `None`
    /// when the channel keeps none.
    pub(super) async fn publish_history(
        &self,
        pending: Pending,
    ) -> Option<Result<Position, BrokerError>> {
        let bounds = self.history_bounds(&pending.channel)?;
        let appended = match self.storage() {
            Ok(storage) => storage.append(pending, bounds).await,
            Err(e) => Err(e),
        };
        if appended.is_ok() {
            self.0.metrics.history_appends.fetch_add(1, Relaxed);
        }
        Some(appended)
    }

    /// The oldest `limit` (at most [`MAX_HISTORY_PAGE`]) retained publications of
    /// `channel` with an offset above `since`, ascending, and the channel's
    /// position.
    ///
    /// ```no_run
    /// # async fn f(node: framework::node::Node) -> Result<(), framework::node::ChannelError> {
    /// let page = node.history("chat:rust", 0, 50).await?;
    /// println!("{} publications, latest offset {}", page.publications.len(), page.position.offset);
    /// # Ok(()) }
    /// ```
    pub async fn history(
        &self,
        channel: &str,
        since: u64,
        limit: usize,
    ) -> Result<HistorySlice, ChannelError> {
        let bounds = self
            .history_bounds(channel)
            .ok_or_else(|| ChannelError::NoHistory(channel.to_string()))?;
        let limit = limit.clamp(1, MAX_HISTORY_PAGE);
        Ok(self
            .storage()?
            .read(Arc::from(channel), since, limit, bounds)
            .await?)
    }

    /// The sessions subscribed to `channel` on every node.
    ///
    /// ```no_run
    /// # async fn f(node: framework::node::Node) -> Result<(), framework::node::ChannelError> {
    /// for entry in node.presence("chat:rust").await? {
    ///     println!("{} ({}) on node {}", entry.session, entry.user_id, entry.node);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn presence(&self, channel: &str) -> Result<Vec<PresenceEntry>, ChannelError> {
        if !self.channel_options(channel).is_some_and(|o| o.presence) {
            return Err(ChannelError::NoPresence(channel.to_string()));
        }
        Ok(self.storage()?.presence(Arc::from(channel)).await?)
    }

    /// The presence entry of `conn`.
    pub fn presence_entry(&self, conn: &Connection) -> PresenceEntry {
        PresenceEntry {
            session: conn.id(),
            node: self.node_id(),
            user_id: conn
                .extension::<Identity>()
                .map(|i| i.user_id().to_string())
                .unwrap_or_default(),
            info: conn.info(),
        }
    }

    /// After `conn` joined `channel`: its presence entry and the `Join` event,
    /// where configured.
    pub(super) async fn joined(&self, conn: &Connection, channel: &str) -> Result<(), BrokerError> {
        let Some(options) = self.channel_options(channel) else {
            return Ok(());
        };
        if !options.presence && !options.join_leave {
            return Ok(());
        }
        let (presence, join_leave) = (options.presence, options.join_leave);
        let entry = self.presence_entry(conn);
        if presence {
            self.storage()?
                .presence_add(Arc::from(channel), entry.clone())
                .await?;
        }
        if join_leave {
            self.announce(Opcode::Join, channel, &entry).await?;
        }
        Ok(())
    }

    /// After `session` left `channel` (unsubscribed, disconnected): its presence
    /// entry goes, and the `Leave` event, where configured.
    pub(super) async fn left(&self, entry: &PresenceEntry, channel: &str) {
        let Some(options) = self.channel_options(channel) else {
            return;
        };
        let (presence, join_leave) = (options.presence, options.join_leave);
        if presence {
            if let Ok(storage) = self.storage() {
                if let Err(e) = storage
                    .presence_remove(Arc::from(channel), entry.session)
                    .await
                {
                    tracing::warn!(%channel, session = %entry.session, error = %e, "presence entry not removed");
                }
            }
        }
        if join_leave {
            let _ = self.announce(Opcode::Leave, channel, entry).await;
        }
    }

    /// Sends a `Join` or `Leave` about `entry` to the other subscribers.
    async fn announce(
        &self,
        opcode: Opcode,
        channel: &str,
        entry: &PresenceEntry,
    ) -> Result<(), BrokerError> {
        let info = entry.encode();
        let frame = FrameFields::new(opcode.0)
            .channel(channel)
            .payload(&info)
            .encode();
        self.0
            .broker
            .publish_event(Arc::from(channel), frame, entry.session)
            .await
    }

    /// Joins `conn` to `channel` and replays what it missed since `offset` of
    /// `epoch`: the missed publications are queued when this returns; live ones
    /// follow once the returned [`Recovery`] resumes. On a channel without
    /// history (or one already joined) nothing is replayed and `recovered` is
    /// `false` (`true` for a joined channel whose position is `epoch`/`offset`).
    ///
    /// ```no_run
    /// # async fn f(node: framework::node::Node, conn: framework::session::Connection) {
    /// let recovery = node.subscribe_recover(&conn, "chat:rust", "3f2a9c0d1e4b5a6f", 41).await.unwrap();
    /// println!("recovered: {} (now at {})", recovery.recovered, recovery.position.offset);
    /// recovery.resume();
    /// # }
    /// ```
    pub async fn subscribe_recover(
        &self,
        conn: &Connection,
        channel: &str,
        epoch: &str,
        offset: u64,
    ) -> Result<Recovery, SubscribeError> {
        let recovery = |recovered, position: Position, held| Recovery {
            node: self.clone(),
            conn: conn.clone(),
            channel: Arc::from(channel),
            last: position.offset,
            held,
            recovered,
            position,
        };
        let Some(bounds) = self.history_bounds(channel) else {
            self.subscribe(conn, channel).await?;
            return Ok(recovery(false, Position::default(), false));
        };
        let storage = self.storage()?;
        let Some(first) = self.0.hub.subscribe_recovering(conn, channel)? else {
            // Joined already: live publications flow; nothing to replay.
            let slice = storage
                .read(Arc::from(channel), u64::MAX, 1, bounds)
                .await?;
            let same = slice.position.epoch == epoch && slice.position.offset == offset;
            return Ok(recovery(same, slice.position, false));
        };
        // From here, what the channel delivers to `conn` is held aside.
        let mut pending = recovery(false, Position::default(), true);
        let undo = |e: BrokerError| async move {
            self.unsubscribe(conn, channel).await.ok();
            SubscribeError::Broker(e)
        };
        if first {
            if let Err(e) = self.interest(channel, true).await {
                pending.held = false;
                return Err(undo(e).await);
            }
        }
        let slice = match storage
            .read(Arc::from(channel), offset, bounds.size, bounds)
            .await
        {
            Ok(slice) => slice,
            Err(e) => {
                pending.held = false;
                return Err(undo(e).await);
            }
        };
        if let Err(e) = self.joined(conn, channel).await {
            pending.held = false;
            return Err(undo(e).await);
        }
        pending.recovered = slice.continues(epoch, offset);
        pending.last = slice.position.offset;
        // Offset 0 in the current epoch replays everything retained, even when
        // the oldest were trimmed (then `recovered` stays false).
        let replay = pending.recovered || (offset == 0 && epoch == slice.position.epoch);
        if replay {
            pending.last = offset;
            // Paced by the client's reading: the replay never fills more than
            // half the session's queue, so a long one does not close the
            // session as a slow consumer.
            let budget = (self.0.config.max_queued_bytes / 2).max(1);
            for frame in slice.publications {
                let at = crate::storage::offset_of(&frame);
                if at <= pending.last {
                    continue;
                }
                while conn.queued_bytes() > 0
                    && conn.queued_bytes() + frame.len() > budget
                    && !conn.is_closing()
                {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                pending.last = at;
                let _ = conn.send_shared(frame);
            }
        }
        pending.position = slice.position;
        let counter = if pending.recovered {
            &self.0.metrics.recovered
        } else {
            &self.0.metrics.not_recovered
        };
        counter.fetch_add(1, Relaxed);
        Ok(pending)
    }

    /// Sends `Leave` for the entries of sessions whose node died (where
    /// configured), as the broker reports them.
    pub(crate) fn watch_departures(&self) {
        let Some(mut departures) = self.0.broker.departures() else {
            return;
        };
        let node = self.clone();
        tokio::spawn(async move {
            while let Some(batch) = departures.recv().await {
                for (channel, entry) in batch {
                    if node.channel_options(&channel).is_some_and(|o| o.join_leave) {
                        let _ = node.announce(Opcode::Leave, &channel, &entry).await;
                    }
                }
            }
        });
    }
}
