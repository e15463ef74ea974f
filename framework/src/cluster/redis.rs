//! The Redis engine: publish/subscribe over one RESP3 connection to Redis (5 or
//! later with `HELLO 3`; tested with Redis 7).
//!
//! The client is the `redis` crate (redis-rs), the most used and maintained
//! Rust client, through its `ConnectionManager`: one multiplexed connection for
//! commands and pub/sub messages (RESP3 pushes), which reconnects with
//! exponential backoff by itself — also after the server dropped it while idle —
//! and resubscribes to every channel it had. `PUBLISH` answers how many
//! subscribers got the message, which tells the cluster core at once when a
//! node is gone.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};

use super::{EngineError, Inbox};
use crate::broker::BrokerError;
use crate::config::ClusterConfig;

/// The Redis side of a cluster node (see the module's documentation).
#[derive(Clone)]
pub struct RedisEngine {
    pub(crate) conn: ConnectionManager,
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine").finish_non_exhaustive()
    }
}

fn engine_error(e: redis::RedisError) -> EngineError {
    EngineError(e.to_string())
}

impl RedisEngine {
    /// Connects to the Redis at `config.url`, delivering what it receives to
    /// `inbox`. Fails (within `config.timeout`) when Redis cannot be reached.
    pub async fn connect(config: &ClusterConfig, inbox: Inbox) -> Result<Self, BrokerError> {
        let unavailable =
            |e: String| BrokerError::Unavailable(format!("redis at {}: {e}", config.url));
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| unavailable(e.to_string()))?;
        let redis = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(redis);
        let client = redis::Client::open(info).map_err(|e| unavailable(e.to_string()))?;
        let push = move |push: PushInfo| -> Result<(), std::convert::Infallible> {
            if push.kind == PushKind::Message {
                let mut data = push.data.into_iter();
                if let (Some(Value::BulkString(subject)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                {
                    inbox(&subject, Bytes::from(payload));
                }
            } else if push.kind == PushKind::Disconnection {
                tracing::warn!("redis connection lost: reconnecting");
            }
            Ok(())
        };
        let manager = ConnectionManagerConfig::new()
            .set_push_sender(push)
            .set_automatic_resubscription()
            .set_response_timeout(Some(config.timeout))
            .set_connection_timeout(Some(config.timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(usize::MAX);
        let connecting = client.get_connection_manager_with_config(manager);
        let conn = match tokio::time::timeout(config.timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(unavailable(e.to_string())),
            Err(_) => {
                return Err(unavailable(format!(
                    "no answer within {:?}",
                    config.timeout
                )))
            }
        };
        Ok(Self { conn })
    }
}

impl super::Engine for RedisEngine {
    fn publish(
        &self,
        subject: String,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<Option<usize>, EngineError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let receivers: usize = redis::cmd("PUBLISH")
                .arg(subject)
                .arg(payload.as_ref())
                .query_async(&mut conn)
                .await
                .map_err(engine_error)?;
            Ok(Some(receivers))
        })
    }

    fn subscribe(&self, subject: String) -> BoxFuture<'_, Result<(), EngineError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move { conn.subscribe(subject).await.map_err(engine_error) })
    }

    fn unsubscribe(&self, subject: String) -> BoxFuture<'_, Result<(), EngineError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move { conn.unsubscribe(subject).await.map_err(engine_error) })
    }
}
