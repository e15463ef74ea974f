//! Reconnection: the backoff policy, the connection events, and the task that
//! reconnects a client and resubscribes its channels.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::protocol::{Frame, FrameFields, Opcode};

use super::connection::{open, upgrade_request};
use super::control::Control;
use super::{expect, ClientError, Recovered, StreamPosition};

/// How a reconnecting client waits between connection attempts: exponential
/// backoff, capped, with random jitter so that many clients dropped at once do
/// not come back at once.
///
/// Attempt `n` (from 0) waits `min(initial_delay × multiplierⁿ, max_delay)`, less a
/// random part of at most `jitter` of it.
///
/// ```
/// use std::time::Duration;
/// use framework::client::ReconnectPolicy;
/// let policy = ReconnectPolicy {
///     initial_delay: Duration::from_millis(100),
///     max_delay: Duration::from_secs(5),
///     max_attempts: Some(20),
///     ..ReconnectPolicy::default()
/// };
/// let third = policy.delay(2); // 400 ms, less up to half of it
/// assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
/// assert!(policy.delay(30) <= Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// The wait before the first attempt (default 250 ms).
    pub initial_delay: Duration,
    /// The longest wait (default 10 s).
    pub max_delay: Duration,
    /// How much each failed attempt multiplies the wait (default 2; below 1 counts as 1).
    pub multiplier: f64,
    /// The largest fraction of a wait taken off at random (0 to 1; default 0.5).
    pub jitter: f64,
    /// How many attempts in a row before giving up (`None`, the default: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The wait before attempt `attempt` (0: the first after a disconnection).
    pub fn delay(&self, attempt: u32) -> Duration {
        let max = self.max_delay.as_secs_f64();
        let factor = self.multiplier.max(1.0).powi(attempt.min(1024) as i32);
        let base = (self.initial_delay.as_secs_f64() * factor).min(max);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let wait = base * (1.0 - jitter * unit_random());
        if wait.is_finite() && wait > 0.0 {
            Duration::from_secs_f64(wait)
        } else {
            Duration::ZERO
        }
    }
}

/// A random number in `[0, 1)`.
fn unit_random() -> f64 {
    (Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

/// What happens to a reconnecting client's connection
/// ([`Client::connection_events`]), in this order: `Disconnected`, any number of
/// `ReconnectFailed`, one `Resubscribed` or `ResubscribeFailed` per channel, then
/// `Reconnected` (or `GaveUp`).
///
/// ```no_run
/// use framework::client::{Client, ConnectionEvent};
/// # async fn f(client: Client) {
/// let mut events = client.connection_events();
/// while let Ok(event) = events.recv().await {
///     match event {
///         ConnectionEvent::Disconnected { close } => println!("lost ({close:?})"),
///         ConnectionEvent::Resubscribed { channel, recovery } => {
///             println!("{channel}: recovered = {}", recovery.recovered)
///         }
///         ConnectionEvent::Reconnected { session_id, .. } => println!("back as {session_id}"),
///         other => println!("{other:?}"),
///     }
/// }
/// # }
/// ```
///
/// [`Client::connection_events`]: super::Client::connection_events
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The connection ended (with the server's close code and reason, if it sent
    /// one); reconnection starts.
    Disconnected {
        /// The close frame's code and reason.
        close: Option<(u16, String)>,
    },
    /// A connection attempt failed; the next one follows after the backoff.
    ReconnectFailed {
        /// Attempts since the disconnection (from 1).
        attempt: u32,
        /// Why it failed.
        error: String,
    },
    /// A channel was subscribed again on the new connection; whatever was
    /// replayed is already in the delivery stream.
    Resubscribed {
        /// The channel.
        channel: String,
        /// The answer (`recovered = false`: publications may have been missed).
        recovery: Recovered,
    },
    /// The server refused to subscribe a channel again (e.g. `Forbidden`); the
    /// client no longer counts it as subscribed.
    ResubscribeFailed {
        /// The channel.
        channel: String,
        /// The server's error.
        error: String,
    },
    /// The client is connected again and every channel is resubscribed.
    Reconnected {
        /// The new session.
        session_id: Uuid,
        /// The node that owns it.
        node_id: Uuid,
        /// How many attempts it took.
        attempts: u32,
    },
    /// [`ReconnectPolicy::max_attempts`] attempts failed: the client is closed.
    GaveUp,
}

/// The task that reconnects a reconnecting client.
pub(super) struct Supervisor {
    pub(super) ctl: Arc<Control>,
    pub(super) url: String,
    /// The TLS configuration every connection is made with (`None`: the system's
    /// roots, for `wss://`).
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
    pub(super) policy: ReconnectPolicy,
    /// Keeps the delivery stream open between connections.
    pub(super) events_tx: mpsc::UnboundedSender<Frame>,
}

impl Supervisor {
    pub(super) async fn run(self, mut ended: oneshot::Receiver<()>) {
        let cancel = self.ctl.cancel.clone();
        'life: loop {
            tokio::select! {
                _ = cancel.cancelled() => break 'life,
                _ = &mut ended => {}
            }
            self.ctl.link.send_replace(None);
            let close = self.ctl.tracking.close.lock().clone();
            self.ctl.emit(ConnectionEvent::Disconnected { close });
            let mut attempt = 0u32;
            loop {
                if self.policy.max_attempts.is_some_and(|max| attempt >= max) {
                    self.ctl.emit(ConnectionEvent::GaveUp);
                    break 'life;
                }
                let delay = self.policy.delay(attempt);
                attempt += 1;
                let result = tokio::select! {
                    _ = cancel.cancelled() => break 'life,
                    result = async {
                        tokio::time::sleep(delay).await;
                        self.reconnect(attempt).await
                    } => result,
                };
                match result {
                    Ok(next) => {
                        ended = next;
                        continue 'life;
                    }
                    Err(error) => self.ctl.emit(ConnectionEvent::ReconnectFailed {
                        attempt,
                        error: error.to_string(),
                    }),
                }
            }
        }
        self.ctl.finished.store(true, Ordering::Release);
        // Wakes calls waiting for a connection: none will come.
        self.ctl.link.send_modify(|_| {});
    }

    /// Connects, resubscribes every channel (recovering from its position), then
    /// hands the connection to users.
    async fn reconnect(&self, attempts: u32) -> Result<oneshot::Receiver<()>, ClientError> {
        let token = self.ctl.token.lock().clone();
        let request = upgrade_request(&self.url, token.as_deref())?;
        let opened = open(
            request,
            self.tls.clone(),
            self.ctl.tracking.clone(),
            self.events_tx.clone(),
        )
        .await?;
        let link = opened.link;
        let timeout = self.ctl.timeout();
        let channels: Vec<(String, Option<StreamPosition>)> = self
            .ctl
            .tracking
            .channels
            .lock()
            .iter()
            .map(|(c, p)| (c.clone(), p.clone()))
            .collect();
        for (channel, position) in channels {
            let position = position.unwrap_or_default();
            let fields = FrameFields::new(Opcode::Subscribe.0)
                .channel(&channel)
                .requires_ack(true)
                .recover(true)
                .epoch(&position.epoch)
                .offset(position.offset);
            match link
                .call(fields, Some(Arc::from(channel.as_str())), timeout)
                .await
            {
                Ok(ack) => {
                    expect(&ack, Opcode::Ack)?;
                    let recovery = Recovered::from_ack(&ack);
                    self.ctl
                        .recoveries
                        .lock()
                        .insert(channel.clone(), recovery.clone());
                    self.ctl
                        .emit(ConnectionEvent::Resubscribed { channel, recovery });
                }
                Err(ClientError::Server { code, message, .. }) => {
                    self.ctl.tracking.channels.lock().remove(&channel);
                    self.ctl.emit(ConnectionEvent::ResubscribeFailed {
                        channel,
                        error: format!("{code:?}: {message}"),
                    });
                }
                // This connection failed too (dropping `link` closes it).
                Err(e) => return Err(e),
            }
        }
        *self.ctl.identity.lock() = (opened.user_id, opened.expires_at_ms);
        *self.ctl.tracking.close.lock() = None;
        let (session_id, node_id) = (link.session_id, link.node_id);
        *self.ctl.session.lock() = (session_id, node_id);
        self.ctl.link.send_replace(Some(link));
        self.ctl.emit(ConnectionEvent::Reconnected {
            session_id,
            node_id,
            attempts,
        });
        Ok(opened.ended)
    }
}
