//! The state a client shares with its reconnection task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::connection::{Link, Opened, Tracking};
use super::{ClientError, ConnectionEvent, Recovered};

/// The state a client shares with its reconnection task.
pub(super) struct Control {
    /// The connection calls use; `None` while a reconnecting client reconnects.
    pub(super) link: watch::Sender<Option<Arc<Link>>>,
    /// No connection will come any more (always, without reconnection).
    pub(super) finished: AtomicBool,
    pub(super) reconnecting: bool,
    pub(super) timeout_ns: AtomicU64,
    /// The session and node ids of the last connection handed to users.
    pub(super) session: Mutex<(Uuid, Uuid)>,
    /// The authenticated user and token expiry, from `Welcome` or the last `Auth`.
    pub(super) identity: Mutex<(String, u64)>,
    /// The token presented at each (re)connection.
    pub(super) token: Mutex<Option<String>>,
    pub(super) recoveries: Mutex<HashMap<String, Recovered>>,
    pub(super) events: broadcast::Sender<ConnectionEvent>,
    pub(super) tracking: Arc<Tracking>,
    /// Stops reconnecting (the client was closed or dropped).
    pub(super) cancel: CancellationToken,
}

impl Control {
    pub(super) fn new(
        opened: &Opened,
        tracking: Arc<Tracking>,
        timeout: Duration,
        reconnecting: bool,
        token: Option<String>,
    ) -> Self {
        Control {
            link: watch::Sender::new(Some(opened.link.clone())),
            finished: AtomicBool::new(!reconnecting),
            reconnecting,
            timeout_ns: AtomicU64::new(duration_ns(timeout)),
            session: Mutex::new((opened.link.session_id, opened.link.node_id)),
            identity: Mutex::new((opened.user_id.clone(), opened.expires_at_ms)),
            token: Mutex::new(token),
            recoveries: Mutex::new(HashMap::new()),
            events: broadcast::channel(256).0,
            tracking,
            cancel: CancellationToken::new(),
        }
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_nanos(self.timeout_ns.load(Ordering::Relaxed))
    }

    pub(super) fn emit(&self, event: ConnectionEvent) {
        let _ = self.events.send(event);
    }

    /// The current connection, when it is up.
    pub(super) fn live_link(&self) -> Option<Arc<Link>> {
        self.link.borrow().as_ref().filter(|l| l.alive()).cloned()
    }

    /// The connection to call on: the current one, or (reconnecting) the next one,
    /// waiting for it until `deadline`.
    pub(super) async fn ready_link(
        &self,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Arc<Link>, ClientError> {
        let mut rx = self.link.subscribe();
        loop {
            let current = rx
                .borrow_and_update()
                .as_ref()
                .filter(|l| l.alive())
                .cloned();
            if let Some(link) = current {
                return Ok(link);
            }
            if self.finished.load(Ordering::Acquire) {
                return Err(ClientError::Closed);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Err(_) => return Err(ClientError::Timeout(timeout)),
                Ok(Err(_)) => return Err(ClientError::Closed),
                Ok(Ok(())) => {}
            }
        }
    }
}

pub(super) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
