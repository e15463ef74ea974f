//! The public values of the v1.1 calls: recovery answers, stream positions,
//! history pages and presence.

use bytes::Bytes;
use uuid::Uuid;

use crate::protocol::Frame;
use crate::storage::PresenceEntry;

/// The answer to a recovering `Subscribe` ([`Client::subscribe_recover`], and every
/// resubscription of a reconnecting client).
///
/// ```no_run
/// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
/// let recovery = client.subscribe_recover("chat:rust", "3f2a9c0d", 41).await?;
/// if !recovery.recovered {
///     // Something after offset 41 is gone (or the epoch changed): reload the
///     // state from the source of truth, then follow from `recovery.offset`.
/// }
/// # Ok(()) }
/// ```
///
/// [`Client::subscribe_recover`]: super::Client::subscribe_recover
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Whether every missed publication was replayed (they came through the
    /// delivery stream before this answer). `false` on a channel without history,
    /// after an epoch change, or when the history no longer reaches back.
    pub recovered: bool,
    /// The channel's current epoch (empty: the channel has no history).
    pub epoch: String,
    /// The channel's latest offset.
    pub offset: u64,
}

impl Recovered {
    /// The answer carried by the `Ack` of a recovering `Subscribe`.
    pub(super) fn from_ack(ack: &Frame) -> Self {
        Recovered {
            recovered: ack.recovered(),
            epoch: ack.epoch().unwrap_or_default().to_string(),
            offset: ack.offset(),
        }
    }
}

/// Where a client stands in a channel's history: the epoch and offset of the
/// last publication it received (or of the recovering `Subscribe` that joined).
///
/// ```no_run
/// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
/// if let Some(position) = client.position("chat:rust") {
///     println!("seen up to #{} of epoch {}", position.offset, position.epoch);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPosition {
    /// The history's identity.
    pub epoch: String,
    /// The last offset received.
    pub offset: u64,
}

/// One retained publication of a channel ([`HistoryPage::publications`]).
///
/// ```no_run
/// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
/// for publication in client.history("chat:rust", 0, 10).await?.publications {
///     println!("#{} by {:?}: {:?}", publication.offset, publication.emitter_id, publication.payload);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Its position in the channel's epoch (1, 2, 3, …).
    pub offset: u64,
    /// What was published.
    pub payload: Bytes,
    /// The publishing session (`None`: the server published it).
    pub emitter_id: Option<Uuid>,
    /// The publisher's user (empty when anonymous).
    pub user_id: String,
    /// The publication's trace id.
    pub trace_id: Option<Uuid>,
}

/// A page of a channel's history ([`Client::history`]).
///
/// ```no_run
/// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
/// let page = client.history("chat:rust", 0, 100).await?;
/// println!("epoch {}, latest #{}, {} retained", page.epoch, page.offset, page.publications.len());
/// # Ok(()) }
/// ```
///
/// [`Client::history`]: super::Client::history
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// The channel's current epoch.
    pub epoch: String,
    /// The channel's latest offset (that of its newest publication).
    pub offset: u64,
    /// The publications, ascending by offset.
    pub publications: Vec<Publication>,
}

/// Who is subscribed to a channel, on every node ([`Client::presence`]).
///
/// ```no_run
/// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
/// let presence = client.presence("chat:rust").await?;
/// for entry in &presence.clients {
///     println!("{} ({:?}) on node {}", entry.session, entry.user_id, entry.node);
/// }
/// println!("{} sessions, {} users", presence.num_clients, presence.num_users);
/// # Ok(()) }
/// ```
///
/// [`Client::presence`]: super::Client::presence
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presence {
    /// One entry per subscribed session.
    pub clients: Vec<PresenceEntry>,
    /// How many sessions are subscribed.
    pub num_clients: u32,
    /// How many distinct authenticated users they belong to.
    pub num_users: u32,
}
