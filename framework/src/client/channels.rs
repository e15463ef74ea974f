//! The calls of protocol v1.1 on a channel's stream: a recovering `Subscribe`,
//! the positions and recoveries a client keeps, history and presence.

use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::{fbs, from_fbs_uuid, FrameFields, Opcode};
use crate::storage::PresenceEntry;

use super::{
    expect, Client, ClientError, HistoryPage, Presence, Publication, Recovered, StreamPosition,
};

impl Client {
    /// Joins `channel` recovering what this client missed after `offset` of
    /// `epoch` (from a delivery's [`Frame::offset`] and [`Frame::epoch`], or a
    /// [`HistoryPage`]). The missed publications are delivered first, through the
    /// ordinary delivery stream ([`recv`](Self::recv)), then the `Ack` resolves
    /// this call, then live publications follow: no gap, no duplicate.
    /// `recovered = false` (another epoch, history trimmed, or a channel without
    /// history) means nothing was replayed and the caller must resynchronise.
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
    /// let recovery = client.subscribe_recover("chat:rust", "3f2a9c0d", 41).await?;
    /// if recovery.recovered {
    ///     // Publications 42..=recovery.offset are already waiting in `recv`.
    ///     while let Some(replayed) = client.try_recv() {
    ///         assert_eq!(replayed.epoch(), Some("3f2a9c0d"));
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// [`Frame::offset`]: crate::protocol::Frame::offset
    /// [`Frame::epoch`]: crate::protocol::Frame::epoch
    pub async fn subscribe_recover(
        &self,
        channel: &str,
        epoch: &str,
        offset: u64,
    ) -> Result<Recovered, ClientError> {
        let fields = FrameFields::new(Opcode::Subscribe.0)
            .channel(channel)
            .requires_ack(true)
            .recover(true)
            .epoch(epoch)
            .offset(offset);
        let ack = self.call_tracked(fields, Some(Arc::from(channel))).await?;
        expect(&ack, Opcode::Ack)?;
        let recovery = Recovered::from_ack(&ack);
        self.ctl
            .recoveries
            .lock()
            .insert(channel.to_string(), recovery.clone());
        Ok(recovery)
    }

    /// The last `epoch`/`offset` this client received on `channel` (from a
    /// publication, or the `Ack` of a recovering `Subscribe`); `None` when it is
    /// not subscribed or the channel has no history (no offsets).
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
    /// client.subscribe("chat:rust").await?;
    /// let delivery = client.recv().await.expect("a publication");
    /// let position = client.position("chat:rust").expect("chat:* has history");
    /// assert_eq!(Some(position.offset), Some(delivery.offset()));
    /// # Ok(()) }
    /// ```
    pub fn position(&self, channel: &str) -> Option<StreamPosition> {
        self.ctl
            .tracking
            .channels
            .lock()
            .get(channel)
            .cloned()
            .flatten()
    }

    /// The answer to the last recovering `Subscribe` of `channel`:
    /// [`subscribe_recover`](Self::subscribe_recover), or the resubscription of a
    /// reconnecting client.
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) {
    /// if let Some(recovery) = client.last_recovery("chat:rust") {
    ///     println!("recovered: {}, now at #{}", recovery.recovered, recovery.offset);
    /// }
    /// # }
    /// ```
    pub fn last_recovery(&self, channel: &str) -> Option<Recovered> {
        self.ctl.recoveries.lock().get(channel).cloned()
    }

    /// The retained publications of `channel` with an offset greater than `since`
    /// (0: from the oldest retained), at most `limit` of them (0: the server's
    /// cap), ascending, in the channel's current epoch; the page also gives that
    /// epoch and the latest offset. A channel without history is
    /// `Error`/`InvalidArgument`.
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
    /// // Page through everything retained, 100 at a time.
    /// let mut since = 0;
    /// loop {
    ///     let page = client.history("chat:rust", since, 100).await?;
    ///     let Some(last) = page.publications.last() else { break };
    ///     since = last.offset;
    ///     for publication in &page.publications {
    ///         println!("#{}: {:?}", publication.offset, publication.payload);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn history(
        &self,
        channel: &str,
        since: u64,
        limit: u32,
    ) -> Result<HistoryPage, ClientError> {
        let reply = self
            .call(
                FrameFields::new(Opcode::History.0)
                    .channel(channel)
                    .offset(since)
                    .limit(limit),
            )
            .await?;
        expect(&reply, Opcode::History)?;
        let mut page = HistoryPage {
            epoch: reply.epoch().unwrap_or_default().to_string(),
            offset: reply.offset(),
            publications: Vec::new(),
        };
        let payload = reply.payload();
        if payload.is_empty() {
            return Ok(page);
        }
        let table = flatbuffers::root::<fbs::HistoryPage<'_>>(&payload)
            .map_err(|e| ClientError::Protocol(format!("HistoryPage: {e}")))?;
        page.publications = table
            .publications()
            .map(|list| {
                list.iter()
                    .map(|p| Publication {
                        offset: p.offset(),
                        payload: Bytes::copy_from_slice(
                            p.payload().map(|v| v.bytes()).unwrap_or_default(),
                        ),
                        emitter_id: p.emitter_id().map(from_fbs_uuid),
                        user_id: p.user_id().unwrap_or_default().to_string(),
                        trace_id: p.trace_id().map(from_fbs_uuid),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(page)
    }

    /// The sessions subscribed to `channel` now, on every node. A channel without
    /// presence is `Error`/`InvalidArgument`.
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
    /// let presence = client.presence("chat:rust").await?;
    /// assert_eq!(presence.clients.len(), presence.num_clients as usize);
    /// # Ok(()) }
    /// ```
    pub async fn presence(&self, channel: &str) -> Result<Presence, ClientError> {
        let reply = self
            .call(FrameFields::new(Opcode::Presence.0).channel(channel))
            .await?;
        expect(&reply, Opcode::Presence)?;
        let payload = reply.payload();
        if payload.is_empty() {
            return Ok(Presence::default());
        }
        let list = flatbuffers::root::<fbs::PresenceList<'_>>(&payload)
            .map_err(|e| ClientError::Protocol(format!("PresenceList: {e}")))?;
        let clients = match list.clients() {
            Some(clients) => clients
                .iter()
                .map(|c| {
                    Ok(PresenceEntry {
                        session: c.session_id().map(from_fbs_uuid).ok_or_else(|| {
                            ClientError::Protocol("ClientInfo without session_id".into())
                        })?,
                        node: c.node_id().map(from_fbs_uuid).unwrap_or_default(),
                        user_id: c.user_id().unwrap_or_default().to_string(),
                        info: Bytes::copy_from_slice(
                            c.info().map(|v| v.bytes()).unwrap_or_default(),
                        ),
                    })
                })
                .collect::<Result<Vec<_>, ClientError>>()?,
            None => Vec::new(),
        };
        Ok(Presence {
            clients,
            num_clients: list.num_clients(),
            num_users: list.num_users(),
        })
    }
}
