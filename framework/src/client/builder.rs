//! The client's options ([`ClientBuilder`]) and how it connects with them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::connection::{open, upgrade_request, Tracking};
use super::control::Control;
use super::reconnect::{ReconnectPolicy, Supervisor};
use super::{Client, ClientError};

/// Builds a [`Client`] with options: a token, a request timeout, reconnection.
///
/// ```no_run
/// use std::time::Duration;
/// use framework::client::{Client, ReconnectPolicy};
/// # async fn f() -> Result<(), framework::client::ClientError> {
/// let client = Client::builder("ws://127.0.0.1:8081/")
///     .token("eyJhbGciOi...")
///     .timeout(Duration::from_secs(5))
///     .reconnect(ReconnectPolicy { max_attempts: Some(50), ..ReconnectPolicy::default() })
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    token: Option<String>,
    timeout: Duration,
    reconnect: Option<ReconnectPolicy>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}

impl ClientBuilder {
    /// A builder for `url` with the defaults: no token, a 10 s timeout, no
    /// reconnection.
    pub(super) fn new(url: String) -> Self {
        ClientBuilder {
            url,
            token: None,
            timeout: Duration::from_secs(10),
            reconnect: None,
        }
    }

    /// Presents `token` in the `Authorization: Bearer` header of the upgrade (of
    /// every reconnection too, until [`Client::authenticate`] replaces it).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How long correlated calls wait for an answer (default 10 s); on a
    /// reconnecting client this includes waiting for the connection to come back.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reconnects by itself with `policy` whenever the connection is lost (see
    /// [`Client::connect_reconnecting`]). Without it (the default) a lost
    /// connection closes the client.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Connects and waits for `Welcome`. The first connection is not retried: its
    /// failure is returned.
    pub async fn connect(self) -> Result<Client, ClientError> {
        let request = upgrade_request(&self.url, self.token.as_deref())?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let tracking = Arc::new(Tracking::default());
        let opened = open(request, tracking.clone(), events_tx.clone()).await?;
        let reconnecting = self.reconnect.is_some();
        let ctl = Arc::new(Control::new(
            &opened,
            tracking,
            self.timeout,
            reconnecting,
            self.token,
        ));
        match self.reconnect {
            Some(policy) => {
                let supervisor = Supervisor {
                    ctl: ctl.clone(),
                    url: self.url,
                    policy,
                    events_tx,
                };
                tokio::spawn(supervisor.run(opened.ended));
            }
            None => drop(events_tx),
        }
        Ok(Client {
            ctl,
            events: tokio::sync::Mutex::new(events),
        })
    }
}
