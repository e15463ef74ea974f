//! The NATS engine: core NATS publish/subscribe (JetStream only for channel
//! history and presence, in [`NatsStorage`](super::NatsStorage)), through
//! `async-nats`, the official Rust client, which reconnects with backoff and
//! restores every subscription by itself.
//!
//! NATS does not say how many subscribers got a message, so a send to a node
//! that died is `NotFound` once that node's heartbeats stopped (within
//! `heartbeat_timeout`), where Redis tells at once. Each publish and subscribe is
//! confirmed by a round trip — a request to a subject nobody serves, which the
//! server answers "no responders" after everything sent before it; concurrent
//! operations share one (at most one is in flight, and every operation queued
//! while it is joins the next) — so it fails
//! with `Unavailable` within `timeout` when the server is unreachable or paused
//! (a flush only reaches the socket, and a paused server's socket still takes
//! bytes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, Shared};
use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::{EngineError, Inbox};
use crate::broker::BrokerError;
use crate::config::ClusterConfig;

/// One round trip to the server, shared by every operation it confirms.
type Round = Shared<BoxFuture<'static, Result<(), EngineError>>>;

/// Round trips to the server: one in flight at most; operations queued meanwhile
/// join the next.
struct Prober {
    client: async_nats::Client,
    /// A subject nobody serves: requests to it are round trips to the server.
    subject: String,
    /// The round not sent yet, and the one in flight (or last sent).
    rounds: Mutex<(Option<Round>, Option<Round>)>,
}

impl Prober {
    /// A round trip sent after everything queued before this call.
    fn confirm(self: &Arc<Self>) -> Round {
        let mut rounds = self.rounds.lock();
        if let Some(next) = &rounds.0 {
            return next.clone();
        }
        let previous = rounds.1.clone();
        let prober = Arc::clone(self);
        let round = async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            {
                // Sent now: later operations join the next round.
                let mut rounds = prober.rounds.lock();
                let this = rounds.0.take();
                rounds.1 = this;
            }
            prober.round_trip().await
        }
        .boxed()
        .shared();
        rounds.0 = Some(round.clone());
        round
    }

    async fn round_trip(&self) -> Result<(), EngineError> {
        use async_nats::RequestErrorKind;
        match self
            .client
            .request(self.subject.clone(), Bytes::new())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
            Err(e) => Err(EngineError(e.to_string())),
        }
    }
}

/// The NATS side of a cluster node (see the module's documentation).
pub struct NatsEngine {
    client: async_nats::Client,
    prober: Arc<Prober>,
    inbox: Inbox,
    /// The task forwarding each subject's messages (aborting it unsubscribes).
    subscriptions: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl std::fmt::Debug for NatsEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsEngine").finish_non_exhaustive()
    }
}

impl NatsEngine {
    /// Connects to the NATS server at `config.url` (`nats://host:port`),
    /// delivering what it receives to `inbox`. Fails (within `config.timeout`)
    /// when the server cannot be reached.
    pub async fn connect(config: &ClusterConfig, inbox: Inbox) -> Result<Self, BrokerError> {
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(config.timeout)
            .request_timeout(Some(config.timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((50u64 << attempts.min(6)).min(2_000))
            })
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!("nats connection lost: reconnecting")
                    }
                    async_nats::Event::Connected => tracing::info!("nats connected"),
                    async_nats::Event::SlowConsumer(sid) => {
                        tracing::warn!(sid, "nats: this node is a slow consumer")
                    }
                    other => tracing::debug!(event = %other, "nats"),
                }
            });
        let connecting = options.connect(config.url.as_str());
        let client = match tokio::time::timeout(config.timeout, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(BrokerError::Unavailable(format!(
                    "nats at {}: {e}",
                    config.url
                )))
            }
            Err(_) => {
                return Err(BrokerError::Unavailable(format!(
                    "nats at {}: no answer within {:?}",
                    config.url, config.timeout
                )))
            }
        };
        Ok(Self {
            prober: Arc::new(Prober {
                client: client.clone(),
                subject: format!("{}:probe", config.prefix),
                rounds: Mutex::new((None, None)),
            }),
            client,
            inbox,
            subscriptions: Mutex::new(HashMap::new()),
        })
    }

    /// The connection (JetStream storage shares it).
    pub(crate) fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// A round trip to the server, after what was sent before.
    async fn round_trip(&self) -> Result<(), EngineError> {
        self.prober.confirm().await
    }
}

impl super::Engine for NatsEngine {
    fn publish(
        &self,
        subject: String,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<Option<usize>, EngineError>> {
        Box::pin(async move {
            self.client
                .publish(subject, payload)
                .await
                .map_err(|e| EngineError(e.to_string()))?;
            self.round_trip().await?;
            Ok(None)
        })
    }

    fn subscribe(&self, subject: String) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            if self.subscriptions.lock().contains_key(&subject) {
                return Ok(());
            }
            let mut subscriber = self
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|e| EngineError(e.to_string()))?;
            let inbox = Arc::clone(&self.inbox);
            let task = tokio::spawn(async move {
                while let Some(message) = subscriber.next().await {
                    inbox(message.subject.as_bytes(), message.payload);
                }
            });
            if let Some(old) = self.subscriptions.lock().insert(subject, task) {
                old.abort();
            }
            // The server has the subscription once it answered what followed it.
            self.round_trip().await
        })
    }

    fn unsubscribe(&self, subject: String) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            if let Some(task) = self.subscriptions.lock().remove(&subject) {
                // Dropping the subscriber unsubscribes.
                task.abort();
            }
            Ok(())
        })
    }
}

impl Drop for NatsEngine {
    fn drop(&mut self) {
        for (_, task) in self.subscriptions.lock().drain() {
            task.abort();
        }
    }
}
