//! History and presence of a cluster in Redis (the [`Storage`] of a Redis
//! cluster). Names under the cluster's prefix `p`, `<c>` being the channel as
//! its subject token:
//!
//! - `p:h:<c>:m`, a hash: the channel's epoch (`e`) and latest offset (`o`);
//! - `p:h:<c>:s`, a stream: the kept `Publish` frames, entry id `<offset>-0`,
//!   with the time they were kept;
//! - `p:pr:<c>`, a hash: presence, field = node id + session id (32 bytes),
//!   value = the `ClientInfo`;
//! - `p:pn:<node>`, a set: the channels where that node has presence entries.
//!
//! One Lua script assigns the offset, writes it into the frame, appends, trims
//! and `PUBLISH`es the frame on the channel's subject, atomically: every node
//! receives a channel's publications in offset order, and two nodes never get
//! the same offset. Presence entries of a node that stopped beating are left
//! out of every read, and the first survivor that notices removes them (a
//! script, so only one gets them) and reports them for `Leave`.

use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::Script;
use uuid::Uuid;

use crate::broker::BrokerError;
use crate::config::HistoryBounds;
use crate::storage::{
    new_epoch, Departed, HistorySlice, Pending, Position, PresenceEntry, Storage,
};

use super::Liveness;

const APPEND: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[9]
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('DEL', KEYS[2])
end
if epoch ~= ARGV[1] then
  return {0, epoch}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local n = offset
local b = {}
for i = 1, 8 do b[i] = n % 256; n = math.floor(n / 256) end
local at = tonumber(ARGV[3])
local frame = string.sub(ARGV[2], 1, at) .. string.char(unpack(b)) .. string.sub(ARGV[2], at + 9)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], offset .. '-0', 'f', frame, 't', now)
local ttl = tonumber(ARGV[5])
for i = 1, 64 do
  local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if not first or tonumber(first[2][4]) > now - ttl then break end
  redis.call('XDEL', KEYS[2], first[1])
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[8] .. frame)
return {offset, epoch}
"#;

const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('DEL', KEYS[2])
end
local top = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local min = now - tonumber(ARGV[3])
local oldest = 0
local scan = '-'
while true do
  local batch = redis.call('XRANGE', KEYS[2], scan, '+', 'COUNT', 64)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    if tonumber(e[2][4]) > min then
      oldest = tonumber(string.match(e[1], '^(%d+)'))
      break
    end
  end
  if oldest > 0 or #batch < 64 then break end
  scan = '(' .. batch[#batch][1]
end
local out = {epoch, top, oldest}
if oldest > 0 then
  local from = math.max(oldest, tonumber(ARGV[1]) + 1)
  local entries = redis.call('XRANGE', KEYS[2], from .. '-0', '+', 'COUNT', ARGV[2])
  for _, e in ipairs(entries) do table.insert(out, e[2][2]) end
end
return out
"#;

const NODE_GONE: &str = r#"
local out = {}
for _, token in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. token
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 16) == ARGV[1] then
      redis.call('HDEL', key, all[i])
      table.insert(out, token)
      table.insert(out, all[i + 1])
    end
  end
end
redis.call('DEL', KEYS[1])
return out
"#;

/// How long presence keys live without a write (entries are filtered by their
/// node's liveness long before).
const PRESENCE_KEY_TTL_SECS: u64 = 24 * 3600;

/// Redis history and presence (see the module's documentation).
pub struct RedisStorage {
    conn: ConnectionManager,
    prefix: String,
    node: Uuid,
    /// The envelope head of this node's history publications.
    head: Bytes,
    alive: Liveness,
    epochs: DashMap<Arc<str>, String>,
    append: Script,
    read: Script,
    node_gone: Script,
    timeout: std::time::Duration,
    /// Channels where this node has presence entries, with how many: their keys'
    /// time-to-live is refreshed while there are any.
    present: DashMap<Arc<str>, usize>,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("cluster storage: {e}"))
}

impl RedisStorage {
    pub(crate) fn new(
        conn: ConnectionManager,
        prefix: &str,
        node: Uuid,
        head: Bytes,
        alive: Liveness,
        timeout: std::time::Duration,
    ) -> Self {
        Self {
            conn,
            prefix: prefix.to_string(),
            node,
            head,
            alive,
            epochs: DashMap::new(),
            append: Script::new(APPEND),
            read: Script::new(READ),
            node_gone: Script::new(NODE_GONE),
            timeout,
            present: DashMap::new(),
        }
    }

    /// Refreshes the time-to-live of the presence keys this node has entries in
    /// (so long-lived subscribers never expire), every hour until dropped.
    pub(crate) fn keep_presence_alive(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(storage) = weak.upgrade() else {
                    return;
                };
                let keys: Vec<String> = storage
                    .present
                    .iter()
                    .map(|e| storage.presence_key(e.key()))
                    .chain(std::iter::once(storage.node_key(&storage.node)))
                    .collect();
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.expire(key, PRESENCE_KEY_TTL_SECS as i64).ignore();
                }
                let mut conn = storage.conn.clone();
                if let Err(e) = storage.timed(pipe.query_async::<()>(&mut conn)).await {
                    tracing::warn!(error = %e, "presence keys not refreshed");
                }
            }
        });
    }

    fn token(channel: &str) -> String {
        super::subject_token(channel)
    }

    fn history_keys(&self, channel: &str) -> (String, String) {
        let token = Self::token(channel);
        (
            format!("{}:h:{token}:m", self.prefix),
            format!("{}:h:{token}:s", self.prefix),
        )
    }

    fn presence_key(&self, channel: &str) -> String {
        format!("{}:pr:{}", self.prefix, Self::token(channel))
    }

    fn node_key(&self, node: &Uuid) -> String {
        format!("{}:pn:{}", self.prefix, node.as_simple())
    }

    async fn timed<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }

    async fn remove_node(&self, node: Uuid) -> Result<Departed, BrokerError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.node_gone.key(self.node_key(&node));
        invocation
            .arg(node.as_bytes().as_slice())
            .arg(format!("{}:pr:", self.prefix));
        let flat: Vec<Vec<u8>> = self.timed(invocation.invoke_async(&mut conn)).await?;
        Ok(flat
            .chunks(2)
            .filter_map(|pair| {
                let token = std::str::from_utf8(pair.first()?).ok()?;
                let channel = super::decode_subject(token.as_bytes())?;
                let entry = PresenceEntry::decode(pair.get(1)?)?;
                Some((Arc::from(channel), entry))
            })
            .collect())
    }
}

impl Storage for RedisStorage {
    fn append(
        &self,
        publication: Pending,
        bounds: HistoryBounds,
    ) -> BoxFuture<'_, Result<Position, BrokerError>> {
        Box::pin(async move {
            let (meta, stream) = self.history_keys(&publication.channel);
            let subject = super::channel_subject_of(&self.prefix, &publication.channel);
            // The epoch this node believes in; a channel Redis has no state for
            // (never published, or lost) gets `fresh`, so a cached epoch of lost
            // state is never reused.
            let fresh = new_epoch();
            let mut epoch = self
                .epochs
                .get(&publication.channel)
                .map(|e| e.clone())
                .unwrap_or_else(|| fresh.clone());
            // At most twice: the second time with the epoch Redis has.
            for _ in 0..2 {
                let template = publication.encode(&epoch);
                let mut conn = self.conn.clone();
                let mut invocation = self.append.key(&meta);
                invocation
                    .key(&stream)
                    .arg(&epoch)
                    .arg(template.frame.as_ref())
                    .arg(template.offset_at)
                    .arg(bounds.size)
                    .arg(bounds.ttl.as_millis() as u64)
                    .arg(bounds.meta_ttl.as_secs().max(1))
                    .arg(&subject)
                    .arg(self.head.as_ref())
                    .arg(&fresh);
                let (offset, current): (u64, String) =
                    self.timed(invocation.invoke_async(&mut conn)).await?;
                if self.epochs.len() > 100_000 {
                    self.epochs.clear();
                }
                self.epochs
                    .insert(publication.channel.clone(), current.clone());
                if offset > 0 {
                    return Ok(Position {
                        offset,
                        epoch: current,
                    });
                }
                epoch = current;
            }
            Err(unavailable("the channel's epoch kept changing"))
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
            let (meta, stream) = self.history_keys(&channel);
            let mut conn = self.conn.clone();
            let mut invocation = self.read.key(&meta);
            invocation
                .key(&stream)
                .arg(since)
                .arg(limit.max(1))
                .arg(bounds.ttl.as_millis() as u64)
                .arg(new_epoch())
                .arg(bounds.meta_ttl.as_secs().max(1));
            let out: Vec<redis::Value> = self.timed(invocation.invoke_async(&mut conn)).await?;
            let mut values = out.into_iter();
            let text = |v: Option<redis::Value>| -> Option<String> {
                redis::from_redis_value::<String>(v?).ok()
            };
            let number = |v: Option<redis::Value>| -> u64 {
                v.and_then(|v| redis::from_redis_value::<u64>(v).ok())
                    .unwrap_or(0)
            };
            let epoch = text(values.next()).ok_or_else(|| unavailable("bad read reply"))?;
            let top = number(values.next());
            let oldest = number(values.next());
            let publications = values
                .filter_map(|v| redis::from_redis_value::<Vec<u8>>(v).ok())
                .map(Bytes::from)
                .collect();
            self.epochs.insert(channel, epoch.clone());
            Ok(HistorySlice {
                publications,
                position: Position { offset: top, epoch },
                oldest: (oldest > 0).then_some(oldest),
            })
        })
    }

    fn presence_add(
        &self,
        channel: Arc<str>,
        mut entry: PresenceEntry,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            entry.node = self.node;
            *self.present.entry(channel.clone()).or_insert(0) += 1;
            let key = self.presence_key(&channel);
            let mut field = self.node.as_bytes().to_vec();
            field.extend_from_slice(entry.session.as_bytes());
            let node_key = self.node_key(&self.node);
            let mut conn = self.conn.clone();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hset(&key, field, entry.encode().as_ref())
                .ignore()
                .expire(&key, PRESENCE_KEY_TTL_SECS as i64)
                .ignore()
                .sadd(&node_key, Self::token(&channel))
                .ignore()
                .expire(&node_key, PRESENCE_KEY_TTL_SECS as i64)
                .ignore();
            self.timed(pipe.query_async::<()>(&mut conn)).await
        })
    }

    fn presence_remove(
        &self,
        channel: Arc<str>,
        session: Uuid,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            if let Some(mut n) = self.present.get_mut(&channel) {
                *n = n.saturating_sub(1);
            }
            self.present.remove_if(&channel, |_, n| *n == 0);
            let key = self.presence_key(&channel);
            let mut field = self.node.as_bytes().to_vec();
            field.extend_from_slice(session.as_bytes());
            let mut conn = self.conn.clone();
            let cmd = redis::cmd("HDEL").arg(&key).arg(field).clone();
            self.timed(cmd.query_async::<()>(&mut conn)).await
        })
    }

    fn presence(
        &self,
        channel: Arc<str>,
    ) -> BoxFuture<'_, Result<Vec<PresenceEntry>, BrokerError>> {
        Box::pin(async move {
            let key = self.presence_key(&channel);
            let mut conn = self.conn.clone();
            let cmd = redis::cmd("HGETALL").arg(&key).clone();
            let all: Vec<(Vec<u8>, Vec<u8>)> = self.timed(cmd.query_async(&mut conn)).await?;
            Ok(all
                .into_iter()
                .filter(|(field, _)| {
                    field.len() == 32
                        && Uuid::from_slice(&field[..16]).is_ok_and(|node| (self.alive)(&node))
                })
                .filter_map(|(_, value)| PresenceEntry::decode(&value))
                .collect())
        })
    }

    fn node_gone(&self, node: Uuid) -> BoxFuture<'_, Result<Departed, BrokerError>> {
        Box::pin(self.remove_node(node))
    }
}
