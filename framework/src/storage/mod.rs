//! Channel history and presence (protocol v1.1) behind one trait, [`Storage`]:
//! [`MemoryStorage`] for one node (the embedded default, part of
//! [`InMemoryBroker`](crate::broker::InMemoryBroker)) and Redis for a cluster
//! (`cluster::redis`).
//!
//! A publication on a channel with history is encoded once, with its epoch and a
//! placeholder offset ([`Pending::encode`]); the storage assigns the next offset,
//! writes it into the frame's eight offset bytes, keeps the frame and delivers it
//! to every subscriber in offset order. A history read or a recovery hands the
//! stored frames out as they are: nothing is re-encoded.

mod memory;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use uuid::Uuid;

pub use memory::MemoryStorage;

use crate::broker::BrokerError;
use crate::config::HistoryBounds;
use crate::protocol::{fbs, to_fbs_uuid, DecodeLimits, Frame, FrameFields, Opcode};

/// Where a channel's history stands: its epoch and the offset of its latest
/// publication (0: none yet in this epoch).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    /// The latest offset.
    pub offset: u64,
    /// The history's identity; it changes when the history was lost.
    pub epoch: String,
}

/// Publications read from a history.
#[derive(Debug, Clone, Default)]
pub struct HistorySlice {
    /// Encoded `Publish` frames (each with `offset` and `epoch`), ascending.
    pub publications: Vec<Bytes>,
    /// The channel's position when it was read.
    pub position: Position,
    /// The oldest offset still retained (`None`: nothing is).
    pub oldest: Option<u64>,
}

impl HistorySlice {
    /// Whether every publication after `offset` of `epoch` is in this slice or
    /// still to come: the epoch is the channel's, and nothing after `offset` was
    /// trimmed.
    pub fn continues(&self, epoch: &str, offset: u64) -> bool {
        epoch == self.position.epoch
            && offset <= self.position.offset
            && (offset == self.position.offset || self.oldest.is_some_and(|o| o <= offset + 1))
    }
}

/// One session in a channel's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    /// The session.
    pub session: Uuid,
    /// The node it lives on.
    pub node: Uuid,
    /// Its user (empty when anonymous).
    pub user_id: String,
    /// The application bytes attached to the connection
    /// ([`Connection::set_info`](crate::session::Connection::set_info)).
    pub info: Bytes,
}

impl PresenceEntry {
    /// The entry as a `ClientInfo` table (the payload of `Join` and `Leave`).
    ///
    /// ```
    /// use framework::storage::PresenceEntry;
    /// let entry = PresenceEntry {
    ///     session: uuid::Uuid::new_v4(),
    ///     node: uuid::Uuid::new_v4(),
    ///     user_id: "ada".into(),
    ///     info: bytes::Bytes::from_static(b"Ada"),
    /// };
    /// assert_eq!(PresenceEntry::decode(&entry.encode()), Some(entry));
    /// ```
    pub fn encode(&self) -> Bytes {
        let mut fbb = flatbuffers::FlatBufferBuilder::with_capacity(96 + self.info.len());
        let root = self.build(&mut fbb);
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    fn build<'b>(
        &self,
        fbb: &mut flatbuffers::FlatBufferBuilder<'b>,
    ) -> flatbuffers::WIPOffset<fbs::ClientInfo<'b>> {
        let user_id = fbb.create_string(&self.user_id);
        let info = fbb.create_vector(&self.info);
        let session = to_fbs_uuid(&self.session);
        let node = to_fbs_uuid(&self.node);
        fbs::ClientInfo::create(
            fbb,
            &fbs::ClientInfoArgs {
                session_id: Some(&session),
                user_id: Some(user_id),
                node_id: Some(&node),
                info: Some(info),
            },
        )
    }

    /// Reads a `ClientInfo` table (untrusted bytes: `None` when invalid).
    pub fn decode(bytes: &[u8]) -> Option<PresenceEntry> {
        let info = flatbuffers::root::<fbs::ClientInfo<'_>>(bytes).ok()?;
        Some(PresenceEntry {
            session: info.session_id().map(crate::protocol::from_fbs_uuid)?,
            node: info
                .node_id()
                .map(crate::protocol::from_fbs_uuid)
                .unwrap_or_default(),
            user_id: info.user_id().unwrap_or_default().to_string(),
            info: Bytes::copy_from_slice(info.info().map(|v| v.bytes()).unwrap_or_default()),
        })
    }
}

/// Encodes a `PresenceList` payload: every entry, the number of sessions and of
/// distinct non-empty users.
///
/// ```
/// use framework::storage::{presence_list, PresenceEntry};
/// let e = |user: &str| PresenceEntry {
///     session: uuid::Uuid::new_v4(),
///     node: uuid::Uuid::nil(),
///     user_id: user.into(),
///     info: bytes::Bytes::new(),
/// };
/// let bytes = presence_list(&[e("ada"), e("ada"), e("")]);
/// let list = flatbuffers::root::<framework::protocol::fbs::PresenceList>(&bytes).unwrap();
/// assert_eq!((list.num_clients(), list.num_users()), (3, 1));
/// ```
pub fn presence_list(entries: &[PresenceEntry]) -> Bytes {
    let mut fbb = flatbuffers::FlatBufferBuilder::with_capacity(64 + entries.len() * 96);
    let clients: Vec<_> = entries.iter().map(|e| e.build(&mut fbb)).collect();
    let clients = fbb.create_vector(&clients);
    let users: std::collections::HashSet<&str> = entries
        .iter()
        .map(|e| e.user_id.as_str())
        .filter(|u| !u.is_empty())
        .collect();
    let root = fbs::PresenceList::create(
        &mut fbb,
        &fbs::PresenceListArgs {
            clients: Some(clients),
            num_clients: entries.len() as u32,
            num_users: users.len() as u32,
        },
    );
    fbb.finish_minimal(root);
    Bytes::copy_from_slice(fbb.finished_data())
}

/// Encodes a `HistoryPage` payload from stored `Publish` frames.
///
/// ```
/// use framework::storage::{history_page, Pending};
/// let pending = Pending::new("chat", b"hi", uuid::Uuid::new_v4(), None, None);
/// let frame = pending.encode("e1").with_offset(7);
/// let page = history_page(&[frame]);
/// let page = flatbuffers::root::<framework::protocol::fbs::HistoryPage>(&page).unwrap();
/// let first = page.publications().unwrap().get(0);
/// assert_eq!((first.offset(), first.payload().unwrap().bytes()), (7, &b"hi"[..]));
/// ```
pub fn history_page(frames: &[Bytes]) -> Bytes {
    let mut fbb = flatbuffers::FlatBufferBuilder::with_capacity(
        64 + frames.iter().map(|f| f.len() + 32).sum::<usize>(),
    );
    let limits = DecodeLimits::default();
    let mut publications = Vec::with_capacity(frames.len());
    for bytes in frames {
        let Ok(frame) = Frame::decode(bytes.clone(), &limits) else {
            continue;
        };
        let payload = fbb.create_vector(&frame.payload());
        let user_id = frame.user_id().map(|u| fbb.create_string(u));
        let emitter = frame.emitter_id().map(|id| to_fbs_uuid(&id));
        let trace = frame.trace_id().map(|id| to_fbs_uuid(&id));
        publications.push(fbs::Publication::create(
            &mut fbb,
            &fbs::PublicationArgs {
                offset: frame.offset(),
                payload: Some(payload),
                emitter_id: emitter.as_ref(),
                user_id,
                trace_id: trace.as_ref(),
            },
        ));
    }
    let publications = fbb.create_vector(&publications);
    let root = fbs::HistoryPage::create(
        &mut fbb,
        &fbs::HistoryPageArgs {
            publications: Some(publications),
        },
    );
    fbb.finish_minimal(root);
    Bytes::copy_from_slice(fbb.finished_data())
}

/// A publication on a channel with history, before its offset is known.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The channel.
    pub channel: Arc<str>,
    /// What was published.
    pub payload: Bytes,
    /// The emitting session (nil for the server API).
    pub emitter: Uuid,
    /// The emitter's user, when authenticated.
    pub user_id: Option<String>,
    /// The trace id.
    pub trace_id: Option<Uuid>,
}

/// The placeholder offset a [`Template`] carries until the storage sets it (any
/// non-zero value makes FlatBuffers write the field).
const PLACEHOLDER: u64 = u64::MAX;

impl Pending {
    /// A publication of `payload` on `channel`.
    pub fn new(
        channel: &str,
        payload: &[u8],
        emitter: Uuid,
        user_id: Option<&str>,
        trace_id: Option<Uuid>,
    ) -> Pending {
        Pending {
            channel: Arc::from(channel),
            payload: Bytes::copy_from_slice(payload),
            emitter,
            user_id: user_id.filter(|u| !u.is_empty()).map(str::to_string),
            trace_id,
        }
    }

    /// The `Publish` delivery in epoch `epoch`, its offset still to be written.
    pub fn encode(&self, epoch: &str) -> Template {
        let mut fields = FrameFields::new(Opcode::Publish.0)
            .channel(&self.channel)
            .payload(&self.payload)
            .emitter_id(Some(self.emitter))
            .trace_id(self.trace_id)
            .offset(PLACEHOLDER)
            .epoch(epoch);
        if let Some(user) = &self.user_id {
            fields = fields.user_id(user);
        }
        let frame = fields.encode();
        let offset_at = Frame::decode(frame.clone(), &own_frames())
            .ok()
            .and_then(|f| {
                let table = &f.message()._tab;
                let field = table.vtable().get(fbs::Message::VT_OFFSET) as usize;
                (field != 0).then(|| table.loc() + field)
            })
            .expect("an encoded frame with a non-default offset has the field");
        Template { frame, offset_at }
    }
}

/// An encoded `Publish` delivery whose eight offset bytes are still to be set.
#[derive(Debug, Clone)]
pub struct Template {
    /// The frame, with a placeholder offset.
    pub frame: Bytes,
    /// Where its offset's eight little-endian bytes are.
    pub offset_at: usize,
}

impl Template {
    /// The frame with `offset` written in.
    pub fn with_offset(&self, offset: u64) -> Bytes {
        let mut out = self.frame.to_vec();
        out[self.offset_at..self.offset_at + 8].copy_from_slice(&offset.to_le_bytes());
        Bytes::from(out)
    }
}

/// The offset of a stored `Publish` frame (0 when it has none or is invalid).
pub(crate) fn offset_of(frame: &Bytes) -> u64 {
    Frame::decode(frame.clone(), &own_frames()).map_or(0, |f| f.offset())
}

/// Limits for frames this node encoded itself (never smaller than they are).
fn own_frames() -> DecodeLimits {
    DecodeLimits::for_max_size(1 << 30)
}

/// A new epoch: 16 random hex digits.
pub(crate) fn new_epoch() -> String {
    let id = Uuid::new_v4();
    id.as_simple().to_string()[..16].to_string()
}

/// Presence entries removed with their channels (those of a dead node).
pub type Departed = Vec<(Arc<str>, PresenceEntry)>;

/// Keeps channel history and presence, and delivers publications on channels with
/// history in offset order. Every storage passes the same test suite
/// (`tests/history.rs`, `tests/presence.rs`).
pub trait Storage: Send + Sync + 'static {
    /// Gives `publication` the channel's next offset, keeps it within `bounds` and
    /// delivers it to the channel's subscribers on every node: deliveries of one
    /// channel are in offset order.
    fn append(
        &self,
        publication: Pending,
        bounds: HistoryBounds,
    ) -> BoxFuture<'_, Result<Position, BrokerError>>;

    /// The oldest `limit` retained publications of `channel` with an offset above
    /// `since`, ascending, with the channel's position.
    fn read(
        &self,
        channel: Arc<str>,
        since: u64,
        limit: usize,
        bounds: HistoryBounds,
    ) -> BoxFuture<'_, Result<HistorySlice, BrokerError>>;

    /// This node gained its first (`on`) or lost its last local subscriber of
    /// `channel`, which keeps history: a storage that does not deliver
    /// publications to every node by itself starts or stops following the
    /// channel here (confirmed before it returns). Nothing by default.
    fn follow(
        &self,
        _channel: Arc<str>,
        _bounds: HistoryBounds,
        _on: bool,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async { Ok(()) })
    }

    /// Adds (or replaces) `entry` in `channel`'s presence.
    fn presence_add(
        &self,
        channel: Arc<str>,
        entry: PresenceEntry,
    ) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Removes `session` from `channel`'s presence.
    fn presence_remove(
        &self,
        channel: Arc<str>,
        session: Uuid,
    ) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// The sessions in `channel`'s presence, on live nodes.
    fn presence(&self, channel: Arc<str>)
        -> BoxFuture<'_, Result<Vec<PresenceEntry>, BrokerError>>;

    /// Removes the presence entries of the dead node `node` and returns them with
    /// their channels — to one caller only, however many survivors ask. Nothing
    /// by default (a storage of one node).
    fn node_gone(&self, _node: Uuid) -> BoxFuture<'_, Result<Departed, BrokerError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
