//! The one accept loop of every listener. Each TCP connection, in a task of its
//! own, learns who its client is (a trusted proxy's PROXY header, see
//! [`proxy`](super::proxy)), takes a per-IP slot and is served as HTTP/1 by
//! hyper, with a deadline on the request head (with TLS: after its handshake;
//! HTTP/2 when ALPN chose it);
//! WebSocket upgrades go to the listener's service, other requests to its routes.
//! Accept failures (out of file descriptors, above all) back off exponentially
//! instead of spinning, and the loop serves again once descriptors are free.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use super::http::Routes;
use super::limits::ConnSlot;
use super::plain::{Hold, PlainIo};
use super::proxy::Peer;
use super::Shared;

/// What every request of a connection carries in its extensions.
#[derive(Clone)]
pub(crate) struct ConnInfo {
    /// The client: the TCP peer, or whom a trusted proxy named.
    pub(crate) peer: SocketAddr,
    /// The connection's place in the connection limits.
    pub(crate) slot: Arc<ConnSlot>,
    /// Plain HTTP/1 connections: the framework's upgrade asks to hold its 101
    /// back for the session's first write (see [`plain`](super::plain)).
    pub(crate) hold: Option<Hold>,
}

/// The first backoff after a failed accept, doubled per failure up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Streams one HTTP/2 connection may have open at once (hyper's default, made
/// explicit): requests and WebSockets together.
const MAX_H2_STREAMS: u32 = 200;

/// The fewest connections the accept loop takes off the listen queue in one
/// turn before it lets the tasks it spawned run (a turn takes as many as the
/// queue holds, `listen_backlog`, when that is more). tokio's cooperative
/// budget alone would stop it after 128: with every client of a restarted node
/// reconnecting at once, the loop then ran once per round of the runtime's
/// queue (the 128 handshakes it had just spawned, and their sessions), the
/// listen queue filled meanwhile, and the kernel dropped SYNs, each client so
/// dropped waiting a second or three to try again. Taken off the queue at once,
/// connections wait as tasks instead, and are served in the order they came.
const MIN_ACCEPT_BURST: u32 = 128;

/// Errors that mean the process or system is out of a resource: waiting helps.
fn is_exhaustion(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux values).
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Accepts connections until shutdown, serving each with `routes`, over TLS
/// when the listener has an acceptor.
pub(crate) async fn serve(
    listener: TcpListener,
    routes: Routes,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut failures: u64 = 0;
    // One wait for the shutdown for the loop's life, polled only when no
    // connection is waiting: each poll of the token's future locks the token's
    // mutex (and a new one registers with its `Notify`, another lock, and
    // unregisters when dropped), which every listener and connection of the
    // app shares. A flood still sees the shutdown: it is checked at the end of
    // every burst.
    let cancelled = shared.shutdown.cancelled();
    tokio::pin!(cancelled);
    let max_burst = shared.node.config().listen_backlog.max(MIN_ACCEPT_BURST);
    let mut burst: u32 = 0;
    loop {
        if burst >= max_burst {
            burst = 0;
            if shared.shutdown.is_cancelled() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let accepted = tokio::select! {
            biased;
            // Outside the cooperative budget: see `MIN_ACCEPT_BURST`. A turn
            // ends when the queue is empty.
            accepted = tokio::task::coop::unconstrained(std::future::poll_fn(|cx| {
                let polled = listener.poll_accept(cx);
                if polled.is_pending() {
                    burst = 0;
                }
                polled
            })) => accepted,
            _ = &mut cancelled => break,
        };
        burst += 1;
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                shared.node.metrics().accept_errors.fetch_add(1, Relaxed);
                if !is_exhaustion(&e) {
                    // A connection reset before it was accepted: nothing to wait for.
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
                failures += 1;
                // Loud once per streak, then quiet: a log line per retry would
                // flood the logs exactly when the machine is struggling.
                if failures == 1 {
                    tracing::warn!(error = %e, "accept failed; backing off until descriptors are free");
                } else {
                    tracing::debug!(error = %e, ?backoff, "accept still failing");
                }
                tokio::select! {
                    _ = &mut cancelled => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(failures, "accepting again");
            failures = 0;
            backoff = BACKOFF_MIN;
        }
        let _ = tcp.set_nodelay(true);
        // The connection's own task learns who the client is (a PROXY header
        // is read there, never in this loop), then serves it; a TLS connection
        // gets a task of its own kind, so a plain connection's stays small.
        match &tls {
            None => shared
                .tracker
                .spawn(serve_plain(tcp, peer, routes.clone(), shared.clone())),
            Some(acceptor) => shared.tracker.spawn(serve_tls(
                acceptor.clone(),
                tcp,
                peer,
                routes.clone(),
                shared.clone(),
            )),
        };
    }
}

/// Who the connection's client is (see [`proxy::admit`](super::proxy::admit));
/// `None` when the connection ends first (or the app shuts down).
async fn admit(shared: &Arc<Shared>, tcp: &mut TcpStream, peer: SocketAddr) -> Option<Peer> {
    // Without a PROXY header to read, `admit` is ready at once and the
    // shutdown's future is never polled (polling it locks the token's mutex).
    tokio::select! {
        biased;
        peer = super::proxy::admit(shared, tcp, peer) => peer,
        _ = shared.shutdown.cancelled() => None,
    }
}

/// What answers the requests of a connection: the listener's routes, each
/// request admitted for its client (over a connection limit, every request is
/// answered with the refusal and the connection closed: never left hanging).
struct Answer {
    routes: Routes,
    peer: Peer,
    /// Plain connections: see [`ConnInfo::hold`].
    hold: Option<Hold>,
}

impl Answer {
    fn into_service(
        self,
    ) -> impl hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = impl std::future::Future<
            Output = Result<axum::response::Response, std::convert::Infallible>,
        > + Send,
    > + Clone
           + Send
           + 'static {
        let this = Arc::new(self);
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let answer = match this.peer.request(req.headers()) {
                Ok(mut info) => {
                    info.hold.clone_from(&this.hold);
                    let slot = info.slot.clone();
                    req.extensions_mut().insert(info);
                    Ok((this.routes.answer(req.map(Body::new)), slot))
                }
                Err(refused) => Err(super::http::refused(refused)),
            };
            async move {
                match answer {
                    // The request's slot is held until it is answered.
                    Ok((routed, _slot)) => Ok(routed.await),
                    Err(response) => Ok(response),
                }
            }
        })
    }
}

/// A plain connection: its client, then HTTP/1.
async fn serve_plain(mut tcp: TcpStream, peer: SocketAddr, routes: Routes, shared: Arc<Shared>) {
    let Some(peer) = admit(&shared, &mut tcp, peer).await else {
        return;
    };
    // The framework's 101 is held back, to go out with the session's first frames.
    let hold = Hold::default();
    let io = TokioIo::new(PlainIo::new(tcp, hold.clone()));
    let answer = Answer {
        routes,
        peer,
        hold: Some(hold),
    };
    serve_http1(io, answer, shared).await
}

/// Serves one connection as HTTP/1 (with upgrades), with a deadline on each
/// request head, until it ends or the app shuts down.
async fn serve_http1<I>(io: I, answer: Answer, shared: Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // Only what serving needs: the connection's task holds no `Shared`.
    let config = shared.node.config();
    let (shutdown, header_timeout, drain) = (
        shared.shutdown.clone(),
        config.handshake_timeout,
        config.shutdown_timeout,
    );
    drop(shared);
    let keep_alive = answer.peer.keep_alive();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(keep_alive);
    let conn = builder
        .serve_connection(io, answer.into_service())
        .with_upgrades();
    tokio::pin!(conn);
    // The connection first: an upgrade whose request was already there is
    // served in the first poll, without the shutdown's future ever being
    // polled (each poll locks the token's mutex, shared by every connection).
    tokio::select! {
        biased;
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "http connection ended");
            }
        }
        _ = shutdown.cancelled() => {
            // Requests in flight finish (bounded); idle connections close.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(drain, conn).await;
        }
    }
}

/// A TLS connection: its client (a PROXY header comes before the TLS
/// handshake), the handshake (within `handshake_timeout`), then HTTP/2 when
/// ALPN chose it (only `run_service` offers it), else HTTP/1.
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    mut tcp: TcpStream,
    peer: SocketAddr,
    routes: Routes,
    shared: Arc<Shared>,
) {
    let Some(client) = admit(&shared, &mut tcp, peer).await else {
        return;
    };
    let timeout = shared.node.config().handshake_timeout;
    let Some(stream) = super::tls::handshake(&acceptor, tcp, timeout, &shared.node, peer).await
    else {
        return;
    };
    drop(acceptor);
    let answer = Answer {
        routes,
        peer: client,
        hold: None,
    };
    if super::tls::is_h2(&stream) {
        serve_http2(TokioIo::new(stream), answer, shared).await
    } else {
        serve_http1(TokioIo::new(stream), answer, shared).await
    }
}

/// Serves one HTTP/2 connection: requests and WebSockets (RFC 8441 extended
/// CONNECT) as streams. The peer is pinged every `ping_interval` (closed when it
/// does not answer within `pong_timeout`), and a connection on which no stream
/// opened for `handshake_timeout` is sent GOAWAY, as an idle HTTP/1 connection is
/// closed; the streams still open (WebSockets) go on to their end.
async fn serve_http2<I>(io: I, answer: Answer, shared: Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let shutdown = shared.shutdown.clone();
    let config = shared.node.config();
    let (idle, drain) = (config.handshake_timeout, config.shutdown_timeout);
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(MAX_H2_STREAMS);
    if !config.ping_interval.is_zero() {
        builder
            .keep_alive_interval(config.ping_interval)
            .keep_alive_timeout(config.pong_timeout);
    }
    drop(shared);
    let opened = Arc::new(AtomicU64::new(0));
    let service = {
        let (inner, opened) = (answer.into_service(), opened.clone());
        hyper::service::service_fn(move |req| {
            opened.fetch_add(1, Relaxed);
            hyper::service::Service::call(&inner, req)
        })
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut seen = 0;
    let mut going_away = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "http/2 connection ended");
                }
                return;
            }
            _ = tokio::time::sleep(idle), if !going_away => {
                let now = opened.load(Relaxed);
                if now == seen {
                    conn.as_mut().graceful_shutdown();
                    going_away = true;
                }
                seen = now;
            }
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(drain, conn).await;
                return;
            }
        }
    }
}
