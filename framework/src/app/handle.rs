//! The running app: bound addresses, the node, graceful shutdown.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{AppError, ListenAddr};
use crate::node::Node;

/// Binds a listener on each address, each with `backlog` connections queued
/// until accepted (`Config::listen_backlog`; tokio's own `bind` uses 128).
pub(super) fn bind_all(addrs: &[ListenAddr], backlog: u32) -> Result<Vec<TcpListener>, AppError> {
    addrs
        .iter()
        .map(|&ListenAddr(addr)| {
            bind(addr, backlog).map_err(|source| AppError::Bind { addr, source })
        })
        .collect()
}

fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As tokio's `bind`: a restarted server binds again at once, while the last
    // one's connections are still in TIME_WAIT (never on Windows, where it
    // would let another process take the port).
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

pub(super) fn local_addrs(listeners: &[TcpListener]) -> Vec<SocketAddr> {
    listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect()
}

/// SIGINT and SIGTERM, listened for from the moment this is made: installed
/// before the listeners bind, so a process manager's SIGTERM right after start
/// is a graceful shutdown, never the default action (the process killed).
pub(super) struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub(super) fn install() -> Result<Self, AppError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate()).map_err(AppError::Signal)?,
                int: signal(SignalKind::interrupt()).map_err(AppError::Signal)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves at the first SIGINT or SIGTERM.
    pub(super) async fn wait(mut self) -> Result<(), AppError> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Ok(()),
                _ = self.int.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            tokio::signal::ctrl_c().await.map_err(AppError::Signal)
        }
    }
}

/// A running app: its bound addresses, its node, and graceful shutdown.
///
/// ```no_run
/// # async fn f() -> Result<(), framework::app::AppError> {
/// let handle = framework::App::new()
///     .run_websocket_service("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())
///     .start()
///     .await?;
/// println!("listening on {}", handle.websocket_addr());
/// handle.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AppHandle {
    pub(super) node: Node,
    pub(super) websocket_addrs: Vec<SocketAddr>,
    pub(super) service_addrs: Vec<SocketAddr>,
    pub(super) raw_addrs: Vec<SocketAddr>,
    pub(super) shutdown: CancellationToken,
    pub(super) draining: CancellationToken,
    pub(super) tracker: TaskTracker,
    pub(super) accept_loops: Vec<tokio::task::JoinHandle<()>>,
    pub(super) tls: Option<std::sync::Arc<crate::services::tls::Tls>>,
}

impl AppHandle {
    /// Addresses of the protocol WebSocket services, in configuration order.
    pub fn websocket_addrs(&self) -> &[SocketAddr] {
        &self.websocket_addrs
    }

    /// The first protocol WebSocket service's address.
    ///
    /// # Panics
    /// When no `run_websocket_service` was configured.
    pub fn websocket_addr(&self) -> SocketAddr {
        self.websocket_addrs[0]
    }

    /// Addresses of the HTTP + WebSocket services (`run_service`), in order.
    pub fn service_addrs(&self) -> &[SocketAddr] {
        &self.service_addrs
    }

    /// The first `run_service` address.
    ///
    /// # Panics
    /// When no `run_service` was configured.
    pub fn service_addr(&self) -> SocketAddr {
        self.service_addrs[0]
    }

    /// Addresses of the raw WebSocket services, in configuration order.
    pub fn raw_addrs(&self) -> &[SocketAddr] {
        &self.raw_addrs
    }

    /// The running node (publish from the server, counters, sessions).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Loads the TLS certificate and key again from their files (as SIGHUP and a
    /// change of the files do): new handshakes get the new certificate, open
    /// connections keep theirs. `Ok(false)` when the app serves no TLS; on an
    /// error the certificate in use stays.
    ///
    /// ```no_run
    /// # async fn f(handle: framework::AppHandle) {
    /// match handle.reload_tls().await {
    ///     Ok(true) => println!("new certificate in use"),
    ///     Ok(false) => println!("no TLS configured"),
    ///     Err(e) => eprintln!("kept the old certificate: {e}"),
    /// }
    /// # }
    /// ```
    pub async fn reload_tls(&self) -> Result<bool, AppError> {
        let Some(tls) = &self.tls else {
            return Ok(false);
        };
        tls.reload_counted(&self.node, "AppHandle::reload_tls")
            .map(|()| true)
            .map_err(AppError::Tls)
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Graceful shutdown: `/readyz` answers 503 and new upgrades are refused at
    /// once; after `Config::drain_grace` the listeners stop accepting; every
    /// session is closed with 1001 after its queue drains, within
    /// `Config::shutdown_timeout`.
    pub async fn shutdown(self) {
        // Readiness turns 503 first; keep serving through the grace period.
        self.draining.cancel();
        let grace = self.node.config().drain_grace;
        if !grace.is_zero() {
            tokio::time::sleep(grace).await;
        }
        self.shutdown.cancel();
        for l in self.accept_loops {
            let _ = l.await;
        }
        self.tracker.close();
        let deadline = self.node.config().shutdown_timeout + std::time::Duration::from_secs(1);
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still open after the shutdown deadline");
        }
    }
}
