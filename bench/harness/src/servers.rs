//! The servers under test: the framework's services and the peers, each written
//! the way its documentation shows. Every server binds 127.0.0.1, prints
//! `PORT <n>` on stdout once it accepts connections, and runs until killed. A node
//! of the cluster scenario also serves `run_service` (for `/metrics`) on a second
//! port, printed as `SERVICE <n>` before `PORT`.
//!
//! Every server runs on a default multi-threaded tokio runtime (one worker per CPU
//! it may run on: one when the runner pins it) and sets TCP_NODELAY on accepted
//! sockets, as the framework does.
//!
//! The hand-written floors (`floor`) are the protocol's frames handled by hand:
//! the rpc scenario's on tokio-tungstenite (below), the fan-out scenarios' on
//! bare sockets, one nonblocking write per delivery (see [`fanout_floor`]).
//!
//! The TLS twins (`-tls`) of the TLS scenarios are the same servers serving TLS
//! with the run's certificate: the framework through its own `TlsConfig`, the
//! peers as their documentation shows it.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use framework::protocol::fbs;
use framework::raw::RawConnection;
use framework::Message as _;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::spec::{AddRequest, AddResponse, Engine, Scenario, ADD_OPCODE, CHANNEL};

mod fanout_floor;

/// Runs server `kind` of `scenario` on `port` (0: any free port) until killed;
/// `cluster`: the engine URL a node of the cluster scenario joins; `tls`: the
/// directory of the run's certificate (a TLS twin, `-tls`).
pub fn main(
    kind: &str,
    scenario: Scenario,
    port: u16,
    cluster: Option<&str>,
    tls: Option<&Path>,
) -> anyhow::Result<()> {
    if crate::spec::find(scenario, kind).is_none() {
        bail!("scenario {} has no server {kind:?}", scenario.name());
    }
    if crate::spec::is_external(kind) {
        bail!("{kind} is a program of its own: the runner starts it");
    }
    if kind == "sockudo-ws" {
        // Its README: calibrate the clock before the runtime is built.
        sockudo_ws::init_clock();
    }
    let multi_node = matches!(scenario, Scenario::Cluster | Scenario::Recovery);
    if multi_node && (cluster.is_some() != Engine::of(kind).is_some()) {
        bail!("a cluster node over an engine needs --cluster URL, one alone none");
    }
    let history = crate::spec::has_history(kind);
    let cluster = cluster.map(String::from);
    let tls = tls.map(Path::to_path_buf);
    crate::sys::raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    runtime.block_on(async move {
        match (scenario, crate::spec::plain_kind(kind), tls) {
            (Scenario::Cluster | Scenario::Recovery, _, None) => {
                cluster_node(addr, cluster, history).await
            }
            (_, "framework" | "framework-raw" | "framework-history", tls) => {
                framework_server(scenario, kind, addr, tls).await
            }
            (_, "fastwebsockets", tls) => {
                let tls = tls.map(|dir| crate::tls::server_config(&dir)).transpose()?;
                fastwebsockets_echo(addr, tls.map(tokio_rustls::TlsAcceptor::from)).await
            }
            (_, _, Some(_)) => bail!("server {kind:?} has no TLS variant"),
            (_, "tokio-tungstenite", None) => tungstenite_echo(addr).await,
            (_, "sockudo-ws", None) => sockudo_ws_echo(addr).await,
            (_, "axum", None) => axum_echo(addr).await,
            (Scenario::Rpc, "floor", None) => floor(addr).await,
            (_, "floor", None) => fanout_floor::run(addr).await,
            (_, "jsonrpsee", None) => jsonrpsee_server(addr).await,
            (_, "socketioxide", None) => socketioxide_server(addr).await,
            _ => bail!("unknown server {kind:?}"),
        }
    })
}

fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "PORT {}", addr.port());
    let _ = out.flush();
}

async fn forever() -> anyhow::Result<()> {
    std::future::pending::<()>().await;
    Ok(())
}

// ---------------------------------------------------------------- framework

/// The rpc scenario's typed handler: the macro layer, as an application writes it.
#[framework::opcode(200)]
async fn add(req: AddRequest) -> AddResponse {
    AddResponse {
        id: req.id,
        sum: req.a.wrapping_add(req.b),
    }
}

/// The raw echo service, callback style (the C++ guide's `on_data`).
fn raw_echo(conn: RawConnection) {
    conn.on_data(|conn, data| {
        let _ = conn.send(data.into_bytes());
    });
}

/// The framework's server of `scenario`: the raw echo service, or the protocol
/// service; with `tls`, serving TLS with the certificate and key in that
/// directory, as an application configures it (`Config::tls`).
async fn framework_server(
    scenario: Scenario,
    kind: &str,
    addr: SocketAddr,
    tls: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use crate::tls::{CERT_FILE, KEY_FILE};
    let config = framework::Config {
        // 10,000 idle connections all come from 127.0.0.1; the per-IP limit (default
        // 10,000) is about abuse, not memory, so it is lifted for the benchmark.
        max_connections_per_ip: 1_000_000,
        quotas: publish_quota_lifted(),
        // `framework-history`: the same server, with history on the fan-out channel.
        channel_options: if crate::spec::has_history(kind) {
            crate::spec::history_options()
        } else {
            Vec::new()
        },
        tls: tls
            .map(|dir| framework::config::TlsConfig::new(dir.join(CERT_FILE), dir.join(KEY_FILE))),
        ..framework::Config::default()
    };
    let app = framework::App::new().config(config);
    let raw = scenario.is_echo() || kind == "framework-raw";
    let handle = if raw {
        app.run_raw_websocket_service(addr, raw_echo)
            .start()
            .await?
    } else {
        let app = if scenario == Scenario::Rpc {
            app.with_registered()
        } else {
            app
        };
        app.run_websocket_service(addr).start().await?
    };
    let bound = if raw {
        handle.raw_addrs()[0]
    } else {
        handle.websocket_addr()
    };
    announce(bound);
    forever().await
}

/// The default quotas with the `Publish` rule lifted. By default a session may
/// publish 5,000 times a second (bursts of 10,000), and a refused publish is
/// answered with a `RateLimited` error instead of being delivered: the smoke run's
/// one publisher to 10 subscribers publishes tens of thousands of times a second,
/// went past the burst in some runs and then waited for deliveries that never
/// came. Like the per-IP connection limit, the quota is about abuse, not
/// throughput; it is still evaluated on every frame, as in a default server.
fn publish_quota_lifted() -> Vec<framework::config::QuotaRule> {
    use framework::config::{QuotaRule, Rate};
    use framework::protocol::Opcode;
    let publish = QuotaRule::opcode(Opcode::Publish);
    let unlimited = Rate::per_second(u32::MAX).burst(u32::MAX);
    framework::config::default_quotas()
        .into_iter()
        .map(|rule| {
            if rule.opcode == publish.opcode {
                publish.clone().frames(unlimited).bytes(unlimited)
            } else {
                rule
            }
        })
        .collect()
}

/// A node of the cluster scenario: the fanout scenario's protocol service (the
/// built-in `Subscribe` and `Publish`), joined to the cluster at `cluster` when
/// given (else alone, on the in-memory broker), plus `run_service` on a second
/// port for `/metrics` (`framework_cluster_received_total`). `history`: the
/// benchmark's channels keep history (in Redis over a Redis cluster, in the
/// node's memory alone).
async fn cluster_node(
    addr: SocketAddr,
    cluster: Option<String>,
    history: bool,
) -> anyhow::Result<()> {
    let config = framework::Config {
        max_connections_per_ip: 1_000_000,
        quotas: publish_quota_lifted(),
        cluster: cluster.map(framework::config::ClusterConfig::new),
        channel_options: if history {
            crate::spec::history_options()
        } else {
            Vec::new()
        },
        ..framework::Config::default()
    };
    let handle = framework::App::new()
        .config(config)
        .run_websocket_service(addr)
        .run_service(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
        .context("the node did not start")?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "SERVICE {}", handle.service_addr().port());
        let _ = out.flush();
    }
    announce(handle.websocket_addr());
    forever().await
}

// ---------------------------------------------------------------- tokio-tungstenite

/// A peer's listener, with the framework's default backlog
/// (`Config::listen_backlog`, 4096) instead of tokio's `bind`'s 128: the storm
/// scenario then measures how fast each server accepts and upgrades, not which
/// one drops SYNs (and waits a second for their retransmission) because its
/// accept queue is shorter.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(framework::Config::default().listen_backlog)
}

/// The canonical tokio-tungstenite echo server, default `WebSocketConfig`.
async fn tungstenite_echo(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = listen(addr)?;
    announce(listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// The zero-framework floor of the rpc scenario: the same protocol frames as the
/// framework (a `FWK1` `Message` with opcode 200, a transaction id and the typed
/// payload), verified, decoded and answered by hand on tokio-tungstenite +
/// flatbuffers, with the builders reused per connection.
async fn floor(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = listen(addr)?;
    announce(listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(floor_connection(tcp));
    }
}

async fn floor_connection(tcp: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let mut inner = FlatBufferBuilder::with_capacity(128);
    let mut outer = FlatBufferBuilder::with_capacity(256);
    while let Some(Ok(msg)) = ws.next().await {
        let tokio_tungstenite::tungstenite::Message::Binary(bytes) = msg else {
            continue;
        };
        let Some(reply) = floor_answer(&bytes, &mut inner, &mut outer) else {
            continue;
        };
        let reply = tokio_tungstenite::tungstenite::Message::Binary(reply);
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}

fn floor_answer(
    bytes: &[u8],
    inner: &mut FlatBufferBuilder<'static>,
    outer: &mut FlatBufferBuilder<'static>,
) -> Option<Bytes> {
    if bytes.len() < 8 || !flatbuffers::buffer_has_identifier(bytes, "FWK1", false) {
        return None;
    }
    let msg = flatbuffers::root::<fbs::Message<'_>>(bytes).ok()?;
    if msg.opcode().0 != ADD_OPCODE {
        return None;
    }
    let req = AddRequest::decode(msg.payload()?.bytes()).ok()?;
    let resp = AddResponse {
        id: req.id,
        sum: req.a.wrapping_add(req.b),
    };
    inner.reset();
    let root = resp.build_table(inner);
    inner.finish_minimal(root);
    outer.reset();
    let payload = outer.create_vector(inner.finished_data());
    let reply = fbs::Message::create(
        outer,
        &fbs::MessageArgs {
            opcode: fbs::Opcode(ADD_OPCODE),
            transaction_id: msg.transaction_id(),
            payload: Some(payload),
            ..Default::default()
        },
    );
    outer.finish(reply, Some("FWK1"));
    Some(Bytes::copy_from_slice(outer.finished_data()))
}

// ---------------------------------------------------------------- fastwebsockets

/// fastwebsockets' own `echo_server` example (hyper upgrade + FragmentCollector);
/// with `tls`, as its `tls_server` example: tokio-rustls' `TlsAcceptor` on each
/// accepted connection, then the same hyper connection, and vectored writes off.
async fn fastwebsockets_echo(
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    use fastwebsockets::{upgrade, OpCode, WebSocketError};
    use http_body_util::Empty;
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use tokio::io::{AsyncRead, AsyncWrite};

    async fn handle_client(fut: upgrade::UpgradeFut, tls: bool) -> Result<(), WebSocketError> {
        let mut ws = fut.await?;
        if tls {
            ws.set_writev(false);
        }
        let mut ws = fastwebsockets::FragmentCollector::new(ws);
        loop {
            let frame = ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                _ => {}
            }
        }
        Ok(())
    }

    async fn server_upgrade(
        mut req: hyper::Request<Incoming>,
        tls: bool,
    ) -> Result<hyper::Response<Empty<hyper::body::Bytes>>, WebSocketError> {
        let (response, fut) = upgrade::upgrade(&mut req)?;
        tokio::spawn(async move {
            let _ = tokio::task::unconstrained(handle_client(fut, tls)).await;
        });
        Ok(response)
    }

    async fn serve<S>(io: S, tls: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = hyper_util::rt::TokioIo::new(io);
        let _ = http1::Builder::new()
            .serve_connection(io, service_fn(|req| server_upgrade(req, tls)))
            .with_upgrades()
            .await;
    }

    let listener = listen(addr)?;
    announce(listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(tcp, false).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve(stream, true).await;
                    }
                }
            }
        });
    }
}

// ---------------------------------------------------------------- sockudo-ws

/// sockudo-ws' own `simple_echo` example: its handshake helpers on the TCP
/// stream, then `WebSocketStream::server` with the default `Config` and the
/// Stream + Sink API.
async fn sockudo_ws_echo(addr: SocketAddr) -> anyhow::Result<()> {
    use sockudo_ws::handshake::{build_response, generate_accept_key, parse_request};
    use sockudo_ws::{Config, Message, WebSocketStream};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn handshake(mut stream: TcpStream) -> sockudo_ws::Result<TcpStream> {
        let mut buf = bytes::BytesMut::with_capacity(4096);
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(sockudo_ws::Error::ConnectionClosed);
            }
            if let Some((req, _)) = parse_request(&buf)? {
                let accept = generate_accept_key(req.key);
                stream
                    .write_all(&build_response(&accept, None, None))
                    .await?;
                stream.flush().await?;
                return Ok(stream);
            }
        }
    }

    async fn connection(tcp: TcpStream) -> sockudo_ws::Result<()> {
        let mut ws = WebSocketStream::server(handshake(tcp).await?, Config::default());
        while let Some(msg) = ws.next().await {
            match msg? {
                Message::Text(t) => ws.send(Message::Text(t)).await?,
                Message::Binary(b) => ws.send(Message::Binary(b)).await?,
                Message::Close(_) => break,
                // Pongs are answered by the stream itself.
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        Ok(())
    }

    let listener = listen(addr)?;
    announce(listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(tcp));
    }
}

// ---------------------------------------------------------------- axum

/// axum's WebSocket echo (feature `ws`).
async fn axum_echo(addr: SocketAddr) -> anyhow::Result<()> {
    use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
    use axum::serve::ListenerExt;

    async fn echo(mut socket: WebSocket) {
        while let Some(Ok(msg)) = socket.recv().await {
            match msg {
                Message::Binary(_) | Message::Text(_) => {}
                Message::Close(_) => break,
                _ => continue,
            }
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    }

    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(echo) }),
    );
    let listener = listen(addr)?;
    announce(listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

// ---------------------------------------------------------------- jsonrpsee

/// jsonrpsee: method `add` (rpc), subscription `subscribe_bench` with method
/// `publish` feeding a broadcast channel (fanout; the notification is serialized
/// once per publish and cloned per subscriber), nothing else for idle.
async fn jsonrpsee_server(addr: SocketAddr) -> anyhow::Result<()> {
    use jsonrpsee::server::{RpcModule, Server, ServerConfig};
    use jsonrpsee::types::ErrorObjectOwned;
    use serde_json::value::RawValue;
    use tokio::sync::broadcast;

    type Feed = broadcast::Sender<Box<RawValue>>;

    // The defaults allow 100 connections; the scenarios need up to 10,000.
    let config = ServerConfig::builder().max_connections(100_000).build();
    let server = Server::builder().set_config(config).build(addr).await?;
    let bound = server.local_addr()?;

    let (feed, _) = broadcast::channel::<Box<RawValue>>(4096);
    let mut module = RpcModule::new(feed);
    module.register_method("add", |params, _, _| {
        let req: AddRequest = params.parse()?;
        Ok::<_, ErrorObjectOwned>(AddResponse {
            id: req.id,
            sum: req.a.wrapping_add(req.b),
        })
    })?;
    module.register_method("publish", |params, feed: &Feed, _| {
        let (payload,): (String,) = params.parse()?;
        let raw = serde_json::value::to_raw_value(&payload)
            .map_err(|e| ErrorObjectOwned::owned(-32603, e.to_string(), None::<()>))?;
        let _ = feed.send(raw);
        Ok::<_, ErrorObjectOwned>(())
    })?;
    module.register_subscription(
        "subscribe_bench",
        CHANNEL,
        "unsubscribe_bench",
        |_, pending, feed, _| async move {
            let mut rx = feed.subscribe();
            let sink = pending.accept().await?;
            loop {
                match rx.recv().await {
                    Ok(item) => {
                        if sink.send(item).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            Ok(())
        },
    )?;
    let handle = server.start(module);
    announce(bound);
    handle.stopped().await;
    Ok(())
}

// ---------------------------------------------------------------- socketioxide

/// socketioxide on axum: event `add` answered through its ack (rpc), `join` +
/// `publish` broadcasting to a room (fanout), the default namespace for idle.
async fn socketioxide_server(addr: SocketAddr) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    use socketioxide::extract::{AckSender, Data, SocketRef};
    use socketioxide::SocketIo;

    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |s: SocketRef| {
        s.on(
            "add",
            async |ack: AckSender, Data(req): Data<AddRequest>| {
                let _ = ack.send(&AddResponse {
                    id: req.id,
                    sum: req.a.wrapping_add(req.b),
                });
            },
        );
        s.on("join", async |s: SocketRef, ack: AckSender| {
            s.join(CHANNEL);
            let _ = ack.send(&());
        });
        s.on(
            "publish",
            async |s: SocketRef, Data(payload): Data<String>| {
                let _ = s.to(CHANNEL).emit("msg", &payload).await;
            },
        );
    });
    let app = axum::Router::new()
        .route("/", axum::routing::get(async || "socketioxide"))
        .layer(layer);
    let listener = listen(addr)?;
    announce(listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .await
        .context("socketioxide server")?;
    Ok(())
}
