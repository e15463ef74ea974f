//! The load generator: one process, one thread (a current-thread tokio runtime),
//! every connection a local task on the minimal client of [`crate::ws`]. Requests
//! are built by patching pre-encoded templates; responses are verified (ids,
//! sums, transaction ids) without allocating.
//!
//! It measures its own window: counts, latency histogram, the server's CPU time
//! (`/proc/PID/stat`) and its own, and prints one `RESULT {json}` line.
//!
//! The cluster scenario is the fanout load spread over several nodes (subscriber
//! `i` on node `i mod n`, the publisher on node A); it also reads the engine
//! process's CPU time and the nodes' `/metrics`, and ends with a phase that
//! publishes on a channel only node B's subscribers joined, watching node C.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use framework::protocol::{fbs, FrameFields, Opcode};
use framework::Message as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::pusher;
use crate::spec::{
    fanout_payload, parse_fanout_payload, AddRequest, AddResponse, Proto, Scenario, ServerSpec,
    ADD_OPCODE, CHANNEL, FANOUT_PAYLOAD, HISTORY_SIZE, RECOVERY_PREFIX, SOLO_CHANNEL,
};
use crate::sys;
use crate::ws::{find_bytes, WsConn, BINARY, TEXT};

/// What one load-generator run is asked to do.
#[derive(Debug, Clone)]
pub struct LoadArgs {
    pub scenario: Scenario,
    pub spec: ServerSpec,
    /// The server (cluster: node A, the publisher's).
    pub addr: SocketAddr,
    /// The server process; cluster: every node's, A first (their CPU is summed).
    pub server_pids: Vec<u32>,
    /// Cluster: the nodes' WebSocket addresses, A first (subscriber `i` joins node
    /// `i mod n`); empty: `addr` alone.
    pub nodes: Vec<SocketAddr>,
    /// Cluster: the nodes' `run_service` addresses (for `/metrics`), A first.
    pub metrics: Vec<SocketAddr>,
    /// Cluster: the engine process (redis-server, nats-server).
    pub engine_pid: Option<u32>,
    /// Connections (echo, rpc, idle, storm) or subscribers (fanout, cluster).
    pub conns: usize,
    pub warmup: Duration,
    /// Measurement window (fanout: the peak phase).
    pub secs: Duration,
    /// Fanout: the fixed-rate latency phase.
    pub lat_secs: Duration,
    /// Fanout: publishes in flight during the peak phase; storm: connections
    /// being opened at once.
    pub window: usize,
    /// Fanout: the latency phase's rate as a fraction of the peak, when no
    /// `lat_rate` is given.
    pub lat_fraction: f64,
    /// Fanout and cluster: the latency phase's rate in deliveries per second,
    /// the same for every server (instead of `lat_fraction` of each one's peak).
    pub lat_rate: Option<f64>,
    /// Cluster: the phase publishing on a channel only node B's subscribers joined.
    pub quiet_secs: Duration,
    /// Echo payload size.
    pub size: usize,
    /// Recovery: how many times the subscriber misses publications and recovers.
    pub reps: usize,
    /// Recovery: publications missed each time.
    pub missed: usize,
    /// The TLS twins of the TLS scenarios: connect over TLS with this client
    /// configuration (`None`: plain TCP).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// What one run measured (printed as JSON, read by the runner).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    pub ok: bool,
    pub error: Option<String>,
    /// Messages in the window: round trips (echo, rpc) or deliveries (fanout peak).
    pub messages: u64,
    pub window_s: f64,
    /// Messages per second in the window.
    pub throughput: f64,
    /// Round trip (echo, rpc) or publish-to-delivery (fanout, fixed-rate phase).
    pub p50_us: f64,
    pub p99_us: f64,
    /// Server CPU seconds (user + system) in the window.
    pub server_cpu_s: f64,
    pub server_cpu_per_100k: f64,
    /// The user-mode part of `server_cpu_per_100k` (the rest is the kernel's).
    pub server_user_per_100k: f64,
    /// The load generator's own CPU use in the window, as a fraction of one core.
    pub client_cpu: f64,
    /// CPU used by every other process of the machine in the window (user +
    /// system, as a fraction of one core): the noise of a shared machine.
    pub other_cpu: f64,
    /// Fanout: deliveries per second asked for in the latency phase.
    pub lat_rate: Option<f64>,
    /// Fanout: deliveries per second achieved in the latency phase.
    pub lat_throughput: Option<f64>,
    /// Fanout: server CPU in the latency phase, as a fraction of one core.
    pub lat_server_cpu: Option<f64>,
    /// Fanout: the load generator's CPU in the latency phase (fraction of one core).
    pub lat_client_cpu: Option<f64>,
    /// Fanout: publish-to-delivery measured when the subscriber task handled the
    /// delivery (the primary p50/p99 use the kernel's receive timestamp).
    pub p50_task_us: Option<f64>,
    pub p99_task_us: Option<f64>,
    /// Idle: connections held.
    pub idle_conns: Option<u64>,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    pub bytes_per_conn: Option<f64>,
    /// Cluster: server CPU seconds of each node in the peak window, A first
    /// (`server_cpu_s` is their sum).
    pub node_cpu_s: Option<Vec<f64>>,
    /// Cluster: the engine process's CPU seconds in the peak window, and per 100k
    /// deliveries.
    pub engine_cpu_s: Option<f64>,
    pub engine_cpu_per_100k: Option<f64>,
    /// Cluster: each node's CPU in the latency phase (fraction of one core), A first.
    pub lat_node_cpu: Option<Vec<f64>>,
    /// Cluster: the engine's CPU in the latency phase (fraction of one core).
    pub lat_engine_cpu: Option<f64>,
    /// Cluster: engine messages node C received per publish in the latency phase
    /// (`framework_cluster_received_total`; it has subscribers then).
    pub lat_received_c: Option<f64>,
    /// Cluster, quiet phase (publishing on a channel only node B's subscribers
    /// joined): publishes per second, each node's CPU (fraction of one core, A
    /// first), the engine's, the publishes and the engine messages node C and node
    /// B received in the window.
    pub quiet_rate: Option<f64>,
    pub quiet_node_cpu: Option<Vec<f64>>,
    pub quiet_engine_cpu: Option<f64>,
    pub quiet_publishes: Option<u64>,
    pub quiet_received_c: Option<u64>,
    pub quiet_received_b: Option<u64>,
    /// Cluster, quiet phase: node B's subscribers, every publication of the phase
    /// and the deliveries of them to node B's subscribers (all of them: checked).
    pub quiet_subscribers_b: Option<u64>,
    pub quiet_solo_publishes: Option<u64>,
    pub quiet_deliveries: Option<u64>,
    /// Fanout and cluster, `-history` variants: deliveries whose offset was
    /// checked (each one above the subscriber's previous by exactly 1).
    pub offsets_checked: Option<u64>,
    /// Recovery: publications missed and replayed each time (all checked).
    pub recovery_missed: Option<u64>,
    /// Recovery: milliseconds from sending the recovering `Subscribe` to its
    /// `Ack`, after every missed publication, one per repetition.
    pub recovery_ms: Option<Vec<f64>>,
    /// Recovery: milliseconds from sending the `Subscribe` to the first replayed
    /// publication, one per repetition.
    pub recovery_first_ms: Option<Vec<f64>>,
    /// Recovery: CPU milliseconds of the servers (every node, and the engine)
    /// over the recovery windows, per recovery (mean over the repetitions; from
    /// the scheduler's `/proc/PID/task/*/schedstat`).
    pub recovery_cpu_ms: Option<f64>,
    /// Recovery: the engine's part of `recovery_cpu_ms`.
    pub recovery_engine_cpu_ms: Option<f64>,
    /// Recovery: milliseconds the publisher took to publish the missed
    /// publications and get every `Ack` (the upper median over the repetitions).
    pub publish_ms: Option<f64>,
    /// Storm: the slowest connect of the storm (TCP, upgrade and the protocol's
    /// opening), and how many took over 900 ms: those waited for the kernel to
    /// send their SYN again (1 s after one was dropped on a full listen queue).
    pub max_us: Option<f64>,
    pub syn_retried: Option<u64>,
    /// Storm: the server was killed and started again on its port; milliseconds
    /// from the first connection lost to every client connected (and past the
    /// protocol's opening) again.
    pub reconnect_ms: Option<f64>,
    /// Storm: milliseconds from the new server listening to every client back.
    pub reconnect_up_ms: Option<f64>,
    /// Storm: milliseconds from the first connection lost to the new server
    /// listening (the restart itself).
    pub restart_ms: Option<f64>,
    /// Storm: connection attempts after the restart, and how many failed.
    pub reconnect_attempts: Option<u64>,
    pub reconnect_failed: Option<u64>,
    /// Storm: CPU seconds of the new server from its start to every client back.
    pub reconnect_server_cpu_s: Option<f64>,
    /// TLS twins: what the connections negotiated, and their handshakes.
    pub tls: Option<crate::tls::Negotiated>,
}

impl LoadResult {
    fn failed(error: String) -> Self {
        LoadResult {
            ok: false,
            error: Some(error),
            ..LoadResult::default()
        }
    }
}

/// Runs the load generator and prints `RESULT {json}`; exits non-zero on failure.
pub fn main(args: LoadArgs) -> anyhow::Result<()> {
    sys::raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let mut result = match local.block_on(&runtime, run(args)) {
        Ok(r) => r,
        Err(e) => LoadResult::failed(format!("{e:#}")),
    };
    result.tls = crate::tls::negotiated();
    println!("RESULT {}", serde_json::to_string(&result)?);
    // Leave at once: closing thousands of connections gracefully measures nothing.
    std::process::exit(if result.ok { 0 } else { 1 });
}

async fn run(args: LoadArgs) -> anyhow::Result<LoadResult> {
    match args.scenario {
        Scenario::Echo | Scenario::Echo64k | Scenario::EchoTls | Scenario::Rpc => {
            closed_loop(args).await
        }
        Scenario::Fanout | Scenario::Fanout10k | Scenario::FanoutTls | Scenario::Cluster => {
            fanout(args).await
        }
        Scenario::Idle => idle(args).await,
        Scenario::Storm => storm(args).await,
        Scenario::Recovery => recovery(args).await,
    }
}

// ---------------------------------------------------------------- shared state

struct Shared {
    count: Cell<u64>,
    measuring: Cell<bool>,
    stop: Cell<bool>,
    ready: Cell<usize>,
    hist: RefCell<Histogram<u64>>,
    error: RefCell<Option<String>>,
}

impl Shared {
    fn new() -> Rc<Shared> {
        Rc::new(Shared {
            count: Cell::new(0),
            measuring: Cell::new(false),
            stop: Cell::new(false),
            ready: Cell::new(0),
            hist: RefCell::new(
                Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("valid bounds"),
            ),
            error: RefCell::new(None),
        })
    }

    /// `CLOCK_REALTIME` nanoseconds: the clock of the kernel's receive timestamps.
    fn realtime(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn record(&self, latency: Duration) {
        self.count.set(self.count.get() + 1);
        if self.measuring.get() {
            let ns = (latency.as_nanos() as u64).max(1);
            let _ = self.hist.borrow_mut().record(ns);
        }
    }

    fn fail(&self, what: String) {
        if self.stop.get() {
            return;
        }
        let mut e = self.error.borrow_mut();
        if e.is_none() {
            *e = Some(what);
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        match self.error.borrow().as_ref() {
            Some(e) => Err(anyhow!("{e}")),
            None => Ok(()),
        }
    }

    /// Sleeps `d`, failing early when a connection failed.
    async fn watch(&self, d: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + d;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            tokio::time::sleep((end - now).min(Duration::from_millis(50))).await;
        }
    }

    async fn wait_ready(&self, n: usize, limit: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + limit;
        while self.ready.get() < n {
            self.check()?;
            if Instant::now() >= end {
                bail!(
                    "only {} of {n} connections were ready after {limit:?}",
                    self.ready.get()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.check()
    }
}

/// A point of the measurement window.
struct Snap {
    at: Instant,
    count: u64,
    /// (user, system) of each server process (cluster: each node, A first).
    servers: Vec<Option<(Duration, Duration)>>,
    engine: Option<Duration>,
    client: Option<Duration>,
    machine: Option<Duration>,
}

fn snap(count: u64, args: &LoadArgs) -> Snap {
    Snap {
        at: Instant::now(),
        count,
        servers: args
            .server_pids
            .iter()
            .map(|&p| sys::cpu_times(p))
            .collect(),
        engine: args.engine_pid.and_then(sys::cpu_time),
        client: sys::cpu_time(std::process::id()),
        machine: sys::machine_busy(),
    }
}

impl Snap {
    /// Each server process's (user, system) seconds since `a` (`None` when one
    /// could not be read).
    fn servers_since(&self, a: &Snap) -> Option<Vec<(f64, f64)>> {
        if self.servers.is_empty() || self.servers.len() != a.servers.len() {
            return None;
        }
        a.servers
            .iter()
            .zip(&self.servers)
            .map(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => Some(((y.0 - x.0).as_secs_f64(), (y.1 - x.1).as_secs_f64())),
                _ => None,
            })
            .collect()
    }
}

fn window(result: &mut LoadResult, a: &Snap, b: &Snap) {
    let secs = (b.at - a.at).as_secs_f64();
    result.messages = b.count - a.count;
    result.window_s = secs;
    result.throughput = result.messages as f64 / secs;
    let (mut server, mut client, mut engine) = (0.0, 0.0, 0.0);
    let per = if result.messages > 0 {
        100_000.0 / result.messages as f64
    } else {
        0.0
    };
    if let Some(each) = b.servers_since(a) {
        let user: f64 = each.iter().map(|x| x.0).sum();
        server = user + each.iter().map(|x| x.1).sum::<f64>();
        result.server_cpu_s = server;
        result.server_cpu_per_100k = server * per;
        result.server_user_per_100k = user * per;
        if each.len() > 1 {
            result.node_cpu_s = Some(each.iter().map(|x| x.0 + x.1).collect());
        }
    }
    if let (Some(x), Some(y)) = (a.engine, b.engine) {
        engine = (y - x).as_secs_f64();
        result.engine_cpu_s = Some(engine);
        result.engine_cpu_per_100k = Some(engine * per);
    }
    if let (Some(x), Some(y)) = (a.client, b.client) {
        client = (y - x).as_secs_f64();
        result.client_cpu = client / secs;
    }
    if let (Some(x), Some(y)) = (a.machine, b.machine) {
        let other = (y.saturating_sub(x)).as_secs_f64() - server - engine - client;
        result.other_cpu = (other / secs).max(0.0);
    }
}

fn percentiles(result: &mut LoadResult, hist: &Histogram<u64>) {
    if hist.is_empty() {
        return;
    }
    result.p50_us = hist.value_at_quantile(0.50) as f64 / 1000.0;
    result.p99_us = hist.value_at_quantile(0.99) as f64 / 1000.0;
}

// ---------------------------------------------------------------- connecting

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Connects to server `a.spec` at `addr` (over TLS with `a.tls`) and completes
/// the protocol's own opening (Welcome, Socket.IO connect).
async fn open(a: &LoadArgs, addr: SocketAddr, buf: usize) -> std::io::Result<WsConn> {
    let connect = async {
        let mut conn = WsConn::connect(addr, a.tls.as_ref(), a.spec.path, buf).await?;
        match a.spec.proto {
            Proto::Framework => {
                let f = conn.recv().await?;
                let msg = flatbuffers::root::<fbs::Message<'_>>(f.payload).map_err(io_err)?;
                if msg.opcode() != Opcode::Welcome {
                    return Err(io_err("the first frame is not Welcome"));
                }
            }
            Proto::SocketIo => {
                let f = conn.recv().await?;
                if f.opcode != TEXT || !f.payload.starts_with(b"0") {
                    return Err(io_err("no Engine.IO open packet"));
                }
                conn.send(TEXT, b"40").await?;
                loop {
                    let (_, r) = sio_recv(&mut conn).await?;
                    if conn.slice(r).starts_with(b"40") {
                        break;
                    }
                }
            }
            Proto::Pusher => {
                let (_, r) = pusher::recv(&mut conn).await?;
                if !pusher::is_event(conn.slice(r.clone()), "pusher:connection_established") {
                    let first = String::from_utf8_lossy(conn.slice(r)).into_owned();
                    return Err(io_err(format!(
                        "the first event is not pusher:connection_established: {first}"
                    )));
                }
            }
            Proto::Raw | Proto::Floor | Proto::JsonRpc => {}
        }
        Ok(conn)
    };
    tokio::time::timeout(Duration::from_secs(30), connect)
        .await
        .map_err(|_| io_err("connect timed out"))?
}

/// The next Socket.IO message, answering Engine.IO pings on the way.
async fn sio_recv(conn: &mut WsConn) -> std::io::Result<(u8, std::ops::Range<usize>)> {
    loop {
        let (op, r) = conn.recv_range().await?;
        if conn.slice(r.clone()) == b"2" {
            conn.send(TEXT, b"3").await?;
            continue;
        }
        return Ok((op, r));
    }
}

/// Reads until the connection fails (answering pings: WebSocket, Engine.IO,
/// Pusher) and returns why.
async fn hold(conn: &mut WsConn, proto: Proto) -> std::io::Error {
    loop {
        let got = match proto {
            Proto::SocketIo => sio_recv(conn).await.map(drop),
            Proto::Pusher => pusher::recv(conn).await.map(drop),
            _ => conn.recv_range().await.map(drop),
        };
        if let Err(e) = got {
            return e;
        }
    }
}

/// Spawns `n` local tasks running `task(index)`, at most `parallel` connecting at
/// once (a listen backlog overflow would cost a 1 s SYN retry).
fn spawn_all<F, Fut>(shared: &Rc<Shared>, n: usize, parallel: usize, task: F)
where
    F: Fn(usize, Rc<Shared>, Rc<Semaphore>) -> Fut + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + 'static,
{
    let gate = Rc::new(Semaphore::new(parallel));
    let task = Rc::new(task);
    for i in 0..n {
        let (shared, gate, task) = (shared.clone(), gate.clone(), task.clone());
        tokio::task::spawn_local(async move {
            if let Err(e) = task(i, shared.clone(), gate).await {
                shared.fail(format!("connection {i}: {e}"));
            }
        });
    }
}

// ---------------------------------------------------------------- echo and rpc

/// A pre-encoded protocol request with the places of its variable fields.
struct Template {
    bytes: Vec<u8>,
    tx: usize,
    id: usize,
    a: usize,
    b: usize,
}

const TX_SENTINEL: [u8; 16] = *b"\x5a\xa5txid-sentinel\xa5";
const ID_SENTINEL: u64 = 0x1122_3344_5566_7788;
const A_SENTINEL: i64 = 0x0a1b_2c3d_4e5f_6071;
const B_SENTINEL: i64 = 0x0b2c_3d4e_5f60_7182;

fn unique(hay: &[u8], needle: &[u8]) -> anyhow::Result<usize> {
    let at = find_bytes(hay, needle).context("sentinel not found in the template")?;
    if find_bytes(&hay[at + 1..], needle).is_some() {
        bail!("sentinel found twice in the template");
    }
    Ok(at)
}

fn rpc_template() -> anyhow::Result<Template> {
    let payload = AddRequest {
        id: ID_SENTINEL,
        a: A_SENTINEL,
        b: B_SENTINEL,
    }
    .encode();
    let frame = FrameFields::new(ADD_OPCODE)
        .transaction_id(Some(Uuid::from_bytes(TX_SENTINEL)))
        .payload(&payload)
        .encode()
        .to_vec();
    Ok(Template {
        tx: unique(&frame, &TX_SENTINEL)?,
        id: unique(&frame, &ID_SENTINEL.to_le_bytes())?,
        a: unique(&frame, &A_SENTINEL.to_le_bytes())?,
        b: unique(&frame, &B_SENTINEL.to_le_bytes())?,
        bytes: frame,
    })
}

async fn closed_loop(args: LoadArgs) -> anyhow::Result<LoadResult> {
    let shared = Shared::new();
    let template = Rc::new(rpc_template()?);
    let a = Rc::new(args.clone());
    spawn_all(&shared, args.conns, 64, move |i, shared, gate| {
        let (a, template) = (a.clone(), template.clone());
        async move {
            let permit = gate.acquire().await.map_err(io_err)?;
            // Echo: room for a whole echoed message (64 KiB in echo64k).
            let mut conn = open(&a, a.addr, (16 * 1024).max(a.size + 16)).await?;
            drop(permit);
            shared.ready.set(shared.ready.get() + 1);
            match (a.scenario, a.spec.proto) {
                (s, _) if s.is_echo() => echo_loop(&mut conn, &shared, a.size).await,
                (_, Proto::Framework | Proto::Floor) => {
                    fb_rpc_loop(&mut conn, &shared, &template, i as u64).await
                }
                (_, Proto::JsonRpc) => json_rpc_loop(&mut conn, &shared, i as i64).await,
                (_, Proto::SocketIo) => sio_rpc_loop(&mut conn, &shared, i as i64).await,
                (_, Proto::Raw | Proto::Pusher) => Err(io_err("no rpc on this server")),
            }
        }
    });
    shared
        .wait_ready(args.conns, Duration::from_secs(60))
        .await?;
    shared.watch(args.warmup).await?;
    let start = snap(shared.count.get(), &args);
    shared.hist.borrow_mut().reset();
    shared.measuring.set(true);
    shared.watch(args.secs).await?;
    shared.measuring.set(false);
    let end = snap(shared.count.get(), &args);
    shared.stop.set(true);
    let mut result = LoadResult {
        ok: true,
        ..LoadResult::default()
    };
    window(&mut result, &start, &end);
    percentiles(&mut result, &shared.hist.borrow());
    if result.messages == 0 {
        bail!("no message completed in the window");
    }
    Ok(result)
}

async fn echo_loop(conn: &mut WsConn, shared: &Shared, size: usize) -> std::io::Result<()> {
    let mut payload = vec![0u8; size];
    // The frame is masked once; each message patches its first word (a 64 KiB
    // message copied and masked anew every time made the load generator, not
    // the server, the bottleneck).
    let (mut frame, at) = conn.encode(BINARY, &payload);
    let mut seq: u64 = 0;
    while !shared.stop.get() {
        seq += 1;
        // A changing first word: an echo of a stale buffer would be caught.
        let n = payload.len().min(8);
        payload[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
        conn.patch(&mut frame, at, 0, &payload[..n]);
        let started = Instant::now();
        conn.send_encoded(&frame).await?;
        let f = conn.recv().await?;
        if f.opcode != BINARY || f.payload != payload.as_slice() {
            return Err(io_err("the echo differs from the message"));
        }
        shared.record(started.elapsed());
    }
    Ok(())
}

async fn fb_rpc_loop(
    conn: &mut WsConn,
    shared: &Shared,
    t: &Template,
    conn_index: u64,
) -> std::io::Result<()> {
    let mut req = t.bytes.clone();
    let mut seq: u64 = 0;
    while !shared.stop.get() {
        seq += 1;
        let (a, b) = (seq as i64, conn_index as i64 - 7);
        let mut tx = [0u8; 16];
        tx[..8].copy_from_slice(&conn_index.to_le_bytes());
        tx[8..].copy_from_slice(&seq.to_le_bytes());
        req[t.tx..t.tx + 16].copy_from_slice(&tx);
        req[t.id..t.id + 8].copy_from_slice(&seq.to_le_bytes());
        req[t.a..t.a + 8].copy_from_slice(&a.to_le_bytes());
        req[t.b..t.b + 8].copy_from_slice(&b.to_le_bytes());
        let started = Instant::now();
        conn.send(BINARY, &req).await?;
        let f = conn.recv().await?;
        let msg = flatbuffers::root::<fbs::Message<'_>>(f.payload).map_err(io_err)?;
        if msg.opcode() == Opcode::Error {
            return Err(io_err(format!(
                "server error {:?}: {}",
                msg.error_code(),
                msg.error_message().unwrap_or_default()
            )));
        }
        if msg.opcode().0 != ADD_OPCODE
            || msg.transaction_id().map(|u| <[u8; 16]>::from(u.bytes())) != Some(tx)
        {
            return Err(io_err("response with the wrong opcode or transaction id"));
        }
        let payload = msg
            .payload()
            .ok_or_else(|| io_err("response without payload"))?;
        let resp = AddResponse::decode(payload.bytes()).map_err(io_err)?;
        if resp.id != seq || resp.sum != a.wrapping_add(b) {
            return Err(io_err("wrong sum"));
        }
        shared.record(started.elapsed());
    }
    Ok(())
}

#[derive(Deserialize)]
struct JsonRpcResponse {
    id: u64,
    result: Option<AddResponse>,
    error: Option<serde::de::IgnoredAny>,
}

async fn json_rpc_loop(conn: &mut WsConn, shared: &Shared, conn_index: i64) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut req = Vec::with_capacity(128);
    let mut seq: u64 = 0;
    while !shared.stop.get() {
        seq += 1;
        let (a, b) = (seq as i64, conn_index - 7);
        req.clear();
        write!(
            req,
            r#"{{"jsonrpc":"2.0","id":{seq},"method":"add","params":{{"id":{seq},"a":{a},"b":{b}}}}}"#
        )?;
        let started = Instant::now();
        conn.send(TEXT, &req).await?;
        let f = conn.recv().await?;
        let r: JsonRpcResponse = serde_json::from_slice(f.payload).map_err(io_err)?;
        if r.error.is_some() {
            return Err(io_err(String::from_utf8_lossy(f.payload)));
        }
        match r.result {
            Some(x) if r.id == seq && x.id == seq && x.sum == a.wrapping_add(b) => {}
            _ => return Err(io_err("wrong JSON-RPC response")),
        }
        shared.record(started.elapsed());
    }
    Ok(())
}

async fn sio_rpc_loop(conn: &mut WsConn, shared: &Shared, conn_index: i64) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut req = Vec::with_capacity(128);
    let mut seq: u64 = 0;
    while !shared.stop.get() {
        seq += 1;
        let (a, b) = (seq as i64, conn_index - 7);
        req.clear();
        write!(req, r#"42{seq}["add",{{"id":{seq},"a":{a},"b":{b}}}]"#)?;
        let started = Instant::now();
        conn.send(TEXT, &req).await?;
        let (_, r) = sio_recv(conn).await?;
        let p = conn.slice(r);
        // ACK: "43" <ack id> <JSON array of the ack's arguments>
        let body = p.strip_prefix(b"43").ok_or_else(|| io_err("not an ack"))?;
        let digits = body.iter().take_while(|b| b.is_ascii_digit()).count();
        let ack_id: u64 = std::str::from_utf8(&body[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io_err("ack without id"))?;
        let (x,): (AddResponse,) = serde_json::from_slice(&body[digits..]).map_err(io_err)?;
        if ack_id != seq || x.id != seq || x.sum != a.wrapping_add(b) {
            return Err(io_err("wrong Socket.IO ack"));
        }
        shared.record(started.elapsed());
    }
    Ok(())
}

// ---------------------------------------------------------------- fanout

const RING: usize = 1024;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// At most `window` publishes not yet delivered to every subscriber.
    Peak,
    /// Open loop at a fixed number of publishes per second.
    Rate(f64),
}

struct Fan {
    subs: u32,
    /// Latency to the moment the subscriber task handled the delivery.
    task_hist: RefCell<Histogram<u64>>,
    ring: RefCell<Vec<u32>>,
    /// Every publish below this sequence number reached every subscriber.
    done: Cell<u64>,
    progress: Notify,
    mode: Cell<Mode>,
    /// The latency phase is being measured.
    lat: Cell<bool>,
    /// Publishes sent so far (the next sequence number).
    published: Cell<u64>,
    /// Cluster: publish on [`SOLO_CHANNEL`] instead of [`CHANNEL`].
    solo: Cell<bool>,
    /// The first sequence number published on [`SOLO_CHANNEL`] (`u64::MAX`: none).
    solo_from: Cell<u64>,
    /// Deliveries of [`SOLO_CHANNEL`] publishes.
    solo_count: Cell<u64>,
    /// The publisher sends nothing more.
    halt: Cell<bool>,
    /// The channel keeps history: every delivery of it carries an offset, one
    /// above the subscriber's previous (checked; without history: none).
    history: bool,
    /// Deliveries whose offset was checked.
    offsets: Cell<u64>,
}

/// The node subscriber `i` connects to (cluster: `i mod n`, A first).
fn node_of(a: &LoadArgs, i: usize) -> SocketAddr {
    if a.nodes.is_empty() {
        a.addr
    } else {
        a.nodes[i % a.nodes.len()]
    }
}

/// Whether subscriber `i` also joins [`SOLO_CHANNEL`]: the subscribers of node B
/// in a cluster of three or more nodes.
fn joins_solo(a: &LoadArgs, i: usize) -> bool {
    a.scenario == Scenario::Cluster && a.nodes.len() >= 3 && i % a.nodes.len() == 1
}

async fn fanout(args: LoadArgs) -> anyhow::Result<LoadResult> {
    let shared = Shared::new();
    let fan = Rc::new(Fan {
        subs: args.conns as u32,
        task_hist: RefCell::new(
            Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("valid bounds"),
        ),
        ring: RefCell::new(vec![0; RING]),
        done: Cell::new(0),
        progress: Notify::new(),
        mode: Cell::new(Mode::Peak),
        lat: Cell::new(false),
        published: Cell::new(0),
        solo: Cell::new(false),
        solo_from: Cell::new(u64::MAX),
        solo_count: Cell::new(0),
        halt: Cell::new(false),
        history: crate::spec::has_history(args.spec.kind),
        offsets: Cell::new(0),
    });
    if args.window == 0 || args.window >= RING {
        bail!("the window must be in 1..{RING}");
    }
    let a = Rc::new(args.clone());
    {
        let (a, fan) = (a.clone(), fan.clone());
        spawn_all(&shared, args.conns, 64, move |i, shared, gate| {
            let (a, fan) = (a.clone(), fan.clone());
            async move {
                let permit = gate.acquire().await.map_err(io_err)?;
                let mut conn = open(&a, node_of(&a, i), 16 * 1024).await?;
                subscribe(&mut conn, a.spec.proto, i, CHANNEL).await?;
                if joins_solo(&a, i) {
                    subscribe(&mut conn, a.spec.proto, i, SOLO_CHANNEL).await?;
                }
                // The TLS scenarios time a delivery in user space, once it is
                // read (and decrypted) and parsed, plain and TLS alike: over
                // TLS the kernel's timestamp is that of encrypted records.
                if !a.scenario.is_tls() {
                    conn.enable_rx_timestamps()?;
                }
                drop(permit);
                shared.ready.set(shared.ready.get() + 1);
                subscriber(&mut conn, a.spec.proto, &shared, &fan).await
            }
        });
    }
    // 10,000 subscribers take a while to connect and subscribe.
    let limit = Duration::from_secs(60.max(args.conns as u64 / 100));
    shared.wait_ready(args.conns, limit).await?;
    {
        let (a, fan, s) = (a.clone(), fan.clone(), shared.clone());
        tokio::task::spawn_local(async move {
            if let Err(e) = publisher(&a, &s, &fan).await {
                s.fail(format!("publisher: {e}"));
            }
        });
    }
    let cluster = args.scenario == Scenario::Cluster && args.metrics.len() >= 3;
    let health_before = if cluster {
        Some(cluster_health(&args.metrics).await?)
    } else {
        None
    };

    // Peak: deliveries per second with a window of publishes in flight.
    watch_progress(&shared, args.warmup).await?;
    let start = snap(shared.count.get(), &args);
    watch_progress(&shared, args.secs).await?;
    let end = snap(shared.count.get(), &args);
    let mut result = LoadResult {
        ok: true,
        ..LoadResult::default()
    };
    window(&mut result, &start, &end);
    if result.messages == 0 {
        bail!("no delivery in the peak window");
    }

    // Latency at the scenario's fixed rate (or at `lat_fraction` of the peak),
    // open loop.
    let rate = args
        .lat_rate
        .unwrap_or(result.throughput * args.lat_fraction);
    fan.mode.set(Mode::Rate(rate / args.conns as f64));
    // The peak's publishes still in flight (16 × 10,000 deliveries in fanout10k)
    // are delivered first: a server draining them would otherwise be measured
    // above the fixed rate, with their queueing as its latency.
    let in_flight = fan.published.get();
    let end = Instant::now() + Duration::from_secs(60);
    while fan.done.get() < in_flight {
        if Instant::now() >= end {
            bail!(
                "the peak's publishes were not all delivered 60 s after it ({} of {in_flight})",
                fan.done.get()
            );
        }
        shared.watch(Duration::from_millis(10)).await?;
    }
    shared
        .watch((args.warmup / 2).max(Duration::from_millis(50)))
        .await?;
    let received_c = |m: &[SocketAddr]| {
        let c = m.get(2).copied();
        async move {
            match c {
                Some(c) => received(c).await.map(Some),
                None => Ok(None),
            }
        }
    };
    let c0 = received_c(&args.metrics).await?;
    let p0 = fan.published.get();
    shared.hist.borrow_mut().reset();
    fan.task_hist.borrow_mut().reset();
    fan.lat.set(true);
    let lat_a = snap(shared.count.get(), &args);
    shared.watch(args.lat_secs).await?;
    fan.lat.set(false);
    let lat_b = snap(shared.count.get(), &args);
    let p1 = fan.published.get();
    let c1 = received_c(&args.metrics).await?;
    let mut lat = LoadResult::default();
    window(&mut lat, &lat_a, &lat_b);
    let lat_n = lat.messages;
    result.lat_rate = Some(rate);
    result.lat_throughput = Some(lat.throughput);
    result.lat_server_cpu = Some(lat.server_cpu_s / lat.window_s);
    result.lat_client_cpu = Some(lat.client_cpu);
    result.lat_node_cpu = lat
        .node_cpu_s
        .map(|v| v.iter().map(|x| x / lat.window_s).collect());
    result.lat_engine_cpu = lat.engine_cpu_s.map(|x| x / lat.window_s);
    if let (Some(c0), Some(c1)) = (c0, c1) {
        if p1 > p0 {
            result.lat_received_c = Some(c1.saturating_sub(c0) as f64 / (p1 - p0) as f64);
        }
    }
    percentiles(&mut result, &shared.hist.borrow());
    {
        let task = fan.task_hist.borrow();
        if !task.is_empty() {
            result.p50_task_us = Some(task.value_at_quantile(0.50) as f64 / 1000.0);
            result.p99_task_us = Some(task.value_at_quantile(0.99) as f64 / 1000.0);
        }
    }
    if lat_n == 0 {
        bail!("no delivery in the latency window");
    }

    if cluster && !args.quiet_secs.is_zero() {
        quiet(&args, &shared, &fan, &mut result).await?;
    }
    fan.halt.set(true);
    if fan.history {
        if fan.offsets.get() == 0 {
            bail!("history on, but no delivery was checked for its offset");
        }
        result.offsets_checked = Some(fan.offsets.get());
    }
    if let Some(before) = health_before {
        let after = cluster_health(&args.metrics).await?;
        if after.0 > before.0 || after.1 > before.1 {
            bail!(
                "the cluster was degraded during the run: {} engine errors, {} publishes \
                 not carried to the other nodes (see the nodes' logs)",
                after.0 - before.0,
                after.1 - before.1
            );
        }
    }
    shared.stop.set(true);
    Ok(result)
}

/// The cluster's quiet phase: the publisher (on node A) switches to
/// [`SOLO_CHANNEL`], which only node B's subscribers joined, at the same rate;
/// node C has no subscriber of it, so it should receive nothing from the engine
/// and spend no CPU on it.
async fn quiet(
    args: &LoadArgs,
    shared: &Shared,
    fan: &Fan,
    result: &mut LoadResult,
) -> anyhow::Result<()> {
    let (b, c) = (args.metrics[1], args.metrics[2]);
    fan.solo.set(true);
    // Publishes of the main channel still in flight reach node C first.
    shared.watch(Duration::from_millis(300)).await?;
    let (b0, c0) = (received(b).await?, received(c).await?);
    let p0 = fan.published.get();
    let start = snap(shared.count.get(), args);
    shared.watch(args.quiet_secs).await?;
    let end = snap(shared.count.get(), args);
    let p1 = fan.published.get();
    let (b1, c1) = (received(b).await?, received(c).await?);
    fan.halt.set(true);
    let mut w = LoadResult::default();
    window(&mut w, &start, &end);
    let secs = w.window_s;
    result.quiet_rate = Some((p1 - p0) as f64 / secs);
    result.quiet_publishes = Some(p1 - p0);
    result.quiet_node_cpu = w.node_cpu_s.map(|v| v.iter().map(|x| x / secs).collect());
    result.quiet_engine_cpu = w.engine_cpu_s.map(|x| x / secs);
    result.quiet_received_c = Some(c1.saturating_sub(c0));
    result.quiet_received_b = Some(b1.saturating_sub(b0));

    // Every publish on the solo channel reached every subscriber on node B.
    let subs_b = (0..args.conns).filter(|&i| joins_solo(args, i)).count() as u64;
    let solo = fan.published.get().saturating_sub(fan.solo_from.get());
    let want = solo * subs_b;
    let end = Instant::now() + Duration::from_secs(3);
    while fan.solo_count.get() < want && Instant::now() < end {
        shared.watch(Duration::from_millis(20)).await?;
    }
    result.quiet_subscribers_b = Some(subs_b);
    result.quiet_solo_publishes = Some(solo);
    result.quiet_deliveries = Some(fan.solo_count.get());
    if solo == 0 || fan.solo_count.get() != want {
        bail!(
            "quiet phase: {} deliveries of {solo} publishes to node B's {subs_b} subscribers, \
             {want} expected",
            fan.solo_count.get()
        );
    }
    Ok(())
}

/// Engine errors and undelivered publishes, summed over the nodes' `/metrics`.
async fn cluster_health(metrics: &[SocketAddr]) -> anyhow::Result<(u64, u64)> {
    let (mut errors, mut undelivered) = (0, 0);
    for &m in metrics {
        let text = scrape(m).await?;
        errors += metric(&text, "framework_cluster_engine_errors_total").unwrap_or(0);
        undelivered += metric(&text, "framework_cluster_undelivered_total").unwrap_or(0);
    }
    Ok((errors, undelivered))
}

/// `framework_cluster_received_total` of the node serving `/metrics` at `addr`.
async fn received(addr: SocketAddr) -> anyhow::Result<u64> {
    let text = scrape(addr).await?;
    metric(&text, "framework_cluster_received_total")
        .with_context(|| format!("no framework_cluster_received_total at {addr}/metrics"))
}

/// The body of `GET /metrics` (HTTP/1.1, one request per connection).
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fetch = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await?;
        std::io::Result::Ok(out)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .map_err(|_| anyhow!("GET {addr}/metrics timed out"))?
        .with_context(|| format!("GET {addr}/metrics"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {addr}/metrics: no HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET {addr}/metrics: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_string())
}

/// The value of the unlabelled metric `name` in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// Sleeps `d`; fails when deliveries stop for 5 s (a lost message stalls the window).
async fn watch_progress(shared: &Shared, d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    let (mut last, mut since) = (shared.count.get(), Instant::now());
    while Instant::now() < end {
        shared.watch(Duration::from_millis(100)).await?;
        let now = shared.count.get();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_secs(5) {
            bail!("deliveries stalled (a publish was lost?) at {now} deliveries");
        }
    }
    Ok(())
}

async fn subscribe(
    conn: &mut WsConn,
    proto: Proto,
    i: usize,
    channel: &str,
) -> std::io::Result<()> {
    match proto {
        // The floor: the same frames, without Welcome (already past in `open`).
        Proto::Framework | Proto::Floor => {
            let frame = FrameFields::new(Opcode::Subscribe.0)
                .channel(channel)
                .requires_ack(true)
                .transaction_id(Some(Uuid::from_u128(i as u128 + 1)))
                .encode();
            conn.send(BINARY, &frame).await?;
            let f = conn.recv().await?;
            let msg = flatbuffers::root::<fbs::Message<'_>>(f.payload).map_err(io_err)?;
            if msg.opcode() != Opcode::Ack {
                return Err(io_err(format!(
                    "Subscribe answered with {:?}",
                    msg.opcode()
                )));
            }
        }
        Proto::SocketIo => {
            conn.send(TEXT, br#"420["join"]"#).await?;
            let (_, r) = sio_recv(conn).await?;
            if !conn.slice(r).starts_with(b"430") {
                return Err(io_err("join not acknowledged"));
            }
        }
        Proto::JsonRpc => {
            let req = br#"{"jsonrpc":"2.0","id":1,"method":"subscribe_bench","params":[]}"#;
            conn.send(TEXT, req).await?;
            let f = conn.recv().await?;
            if find_bytes(f.payload, b"\"result\"").is_none() {
                return Err(io_err(String::from_utf8_lossy(f.payload)));
            }
        }
        Proto::Pusher => {
            conn.send(TEXT, pusher::subscribe_event(channel).as_bytes())
                .await?;
            let (_, r) = pusher::recv(conn).await?;
            let p = conn.slice(r);
            if !pusher::is_event(p, "pusher_internal:subscription_succeeded") {
                return Err(io_err(format!(
                    "pusher:subscribe answered with {}",
                    String::from_utf8_lossy(p)
                )));
            }
        }
        Proto::Raw => return Err(io_err("no fanout on this server")),
    }
    Ok(())
}

/// The 64-byte payload inside one delivery, and its offset (protocol v1.1, on
/// a channel with history; 0 otherwise).
fn delivery_payload(proto: Proto, p: &[u8]) -> Option<(&[u8], u64)> {
    match proto {
        Proto::Framework | Proto::Floor => {
            let msg = flatbuffers::root::<fbs::Message<'_>>(p).ok()?;
            if msg.opcode() != Opcode::Publish {
                return None;
            }
            Some((msg.payload()?.bytes(), msg.offset()))
        }
        Proto::SocketIo => {
            let rest = p.strip_prefix(br#"42["msg",""#)?;
            Some((rest.get(..FANOUT_PAYLOAD)?, 0))
        }
        Proto::JsonRpc => {
            let at = find_bytes(p, br#""result":""#)? + 10;
            Some((p.get(at..at + FANOUT_PAYLOAD)?, 0))
        }
        Proto::Pusher => {
            if !pusher::is_event(p, "msg") {
                return None;
            }
            Some((pusher::data(p, FANOUT_PAYLOAD)?, 0))
        }
        Proto::Raw => None,
    }
}

async fn subscriber(
    conn: &mut WsConn,
    proto: Proto,
    shared: &Shared,
    fan: &Fan,
) -> std::io::Result<()> {
    // The offset of the last delivery of the main channel (0: none yet).
    let mut last_offset = 0u64;
    while !shared.stop.get() {
        let (_, r) = match proto {
            Proto::SocketIo => sio_recv(conn).await?,
            Proto::Pusher => pusher::recv(conn).await?,
            _ => conn.recv_range().await?,
        };
        let now = shared.realtime();
        let rx = conn.last_rx_ns().unwrap_or(now);
        let p = conn.slice(r);
        let Some(((seq, sent), offset)) = delivery_payload(proto, p)
            .and_then(|(payload, offset)| Some((parse_fanout_payload(payload)?, offset)))
        else {
            return Err(io_err(format!(
                "unexpected delivery: {}",
                String::from_utf8_lossy(&p[..p.len().min(120)])
            )));
        };
        if seq >= fan.solo_from.get() {
            // The cluster's quiet phase: counted apart, not timed.
            fan.solo_count.set(fan.solo_count.get() + 1);
            continue;
        }
        if fan.history {
            // Every subscriber receives the channel's publications in offset
            // order, each once: 1 above the previous one it received.
            if offset == 0 || (last_offset != 0 && offset != last_offset + 1) {
                return Err(io_err(format!(
                    "history on: delivery with offset {offset} after offset {last_offset}"
                )));
            }
            last_offset = offset;
            fan.offsets.set(fan.offsets.get() + 1);
        } else if offset != 0 {
            return Err(io_err(format!(
                "history off, but a delivery carries offset {offset}"
            )));
        }
        shared.count.set(shared.count.get() + 1);
        if fan.lat.get() {
            let _ = shared
                .hist
                .borrow_mut()
                .record(rx.saturating_sub(sent).max(1));
            let _ = fan
                .task_hist
                .borrow_mut()
                .record(now.saturating_sub(sent).max(1));
        }
        let mut ring = fan.ring.borrow_mut();
        let slot = &mut ring[seq as usize % RING];
        *slot += 1;
        if *slot == fan.subs && seq + 1 > fan.done.get() {
            fan.done.set(seq + 1);
            fan.progress.notify_one();
        }
    }
    Ok(())
}

async fn publisher(a: &LoadArgs, shared: &Shared, fan: &Fan) -> anyhow::Result<()> {
    use std::io::Write as _;
    // Sockudo publishes through its HTTP API (the same port; a connection per
    // request, as it closes each after answering), the others over a WebSocket.
    let pusher = a.spec.proto == Proto::Pusher;
    let mut conn = if pusher {
        None
    } else {
        Some(open(a, a.addr, 16 * 1024).await?)
    };
    let mut requests: std::collections::VecDeque<pusher::HttpConn> = Default::default();
    // Framework and floor: a pre-encoded Publish frame whose payload is patched in place
    // (cluster: a second one on the channel only node B's subscribers joined).
    let publish_on = |channel: &str| -> anyhow::Result<(Vec<u8>, usize)> {
        let template = FrameFields::new(Opcode::Publish.0)
            .channel(channel)
            .payload(&[b'P'; FANOUT_PAYLOAD])
            .encode()
            .to_vec();
        let at = unique(&template, &[b'P'; FANOUT_PAYLOAD])?;
        Ok((template, at))
    };
    let main = publish_on(CHANNEL)?;
    let solo = publish_on(SOLO_CHANNEL)?;
    let mut msg: Vec<u8> = Vec::with_capacity(256);
    let mut payload = [0u8; FANOUT_PAYLOAD];
    let mut seq: u64 = 0;
    let mut rate_start: Option<(Instant, u64)> = None;
    while !shared.stop.get() {
        if fan.halt.get() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        match fan.mode.get() {
            Mode::Peak => {
                while seq >= fan.done.get() + a.window as u64 {
                    fan.progress.notified().await;
                }
            }
            Mode::Rate(per_s) => {
                let (t0, s0) = *rate_start.get_or_insert((Instant::now(), seq));
                let due = t0 + Duration::from_secs_f64((seq - s0) as f64 / per_s);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if fan.halt.get() {
            continue;
        }
        let (template, at, channel) = if fan.solo.get() {
            if fan.solo_from.get() == u64::MAX {
                fan.solo_from.set(seq);
            }
            (&solo.0, solo.1, SOLO_CHANNEL)
        } else {
            (&main.0, main.1, CHANNEL)
        };
        fan.ring.borrow_mut()[seq as usize % RING] = 0;
        fanout_payload(&mut payload, seq, shared.realtime());
        let p = std::str::from_utf8(&payload).expect("ASCII payload");
        msg.clear();
        if pusher {
            // Each response is checked as it arrives, without waiting for it.
            let ts = shared.realtime() / 1_000_000_000;
            pusher::publish_request(&mut msg, a.addr, channel, p, ts);
            let mut http = pusher::HttpConn::connect(a.addr, a.tls.as_ref()).await?;
            http.send(&msg).await?;
            requests.push_back(http);
            for http in requests.iter_mut() {
                http.discard_available()?;
            }
            requests.retain(|h| !h.done());
        } else if let Some(conn) = conn.as_mut() {
            match a.spec.proto {
                Proto::Framework | Proto::Floor => {
                    msg.extend_from_slice(template);
                    msg[at..at + FANOUT_PAYLOAD].copy_from_slice(&payload);
                    conn.send(BINARY, &msg).await?;
                }
                Proto::SocketIo => {
                    write!(msg, r#"42["publish","{p}"]"#)?;
                    conn.send(TEXT, &msg).await?;
                }
                Proto::JsonRpc => {
                    write!(
                        msg,
                        r#"{{"jsonrpc":"2.0","id":{seq},"method":"publish","params":["{p}"]}}"#
                    )?;
                    conn.send(TEXT, &msg).await?;
                }
                Proto::Raw | Proto::Pusher => bail!("no fanout on this server"),
            }
            // Responses (JSON-RPC results, pings) are read and dropped as they come.
            conn.discard_available()?;
        }
        seq += 1;
        fan.published.set(seq);
    }
    Ok(())
}

// ---------------------------------------------------------------- recovery

/// What one recovery measured.
struct Recovered {
    /// Sending the recovering `Subscribe` → its `Ack` (after every replay).
    total: Duration,
    /// Sending the `Subscribe` → the first replayed publication.
    first: Duration,
    /// Publishing the missed publications → every publisher `Ack`.
    publish: Duration,
    /// CPU seconds of the nodes and of the engine over `total`.
    servers_cpu: f64,
    engine_cpu: f64,
}

/// The recovery scenario: `reps` times, on a fresh channel with history, a
/// subscriber (on node B in a cluster, else on the node) receives one live
/// publication, disconnects, misses `missed` publications (published from node
/// A, each acknowledged), reconnects and sends a recovering `Subscribe` with the
/// epoch and offset of the publication it received. Timed from sending that
/// `Subscribe` until its `Ack`, which comes after the replay. Checked: exactly
/// the missed offsets arrive, in order, in the same epoch, each missed payload
/// once, then the `Ack` with `recovered = true`, that epoch and the latest offset.
async fn recovery(args: LoadArgs) -> anyhow::Result<LoadResult> {
    if args.reps == 0 || args.missed == 0 {
        bail!("the recovery scenario needs --reps and --missed above 0");
    }
    if args.missed > HISTORY_SIZE {
        bail!(
            "--missed {} is over the history size, {HISTORY_SIZE}",
            args.missed
        );
    }
    let publisher_at = args.nodes.first().copied().unwrap_or(args.addr);
    let subscriber_at = args.nodes.get(1).copied().unwrap_or(args.addr);
    // Channels of this run only (each run has fresh servers and engine anyway).
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let mut all = Vec::with_capacity(args.reps);
    for rep in 0..args.reps {
        let channel = format!("{RECOVERY_PREFIX}{run}:{rep}");
        let one = tokio::time::timeout(
            Duration::from_secs(60),
            recover_once(&args, &channel, publisher_at, subscriber_at),
        )
        .await
        .map_err(|_| anyhow!("repetition {}: not done within 60 s", rep + 1))?
        .with_context(|| format!("repetition {}", rep + 1))?;
        all.push(one);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let times: Vec<f64> = all.iter().map(|r| ms(r.total)).collect();
    let firsts: Vec<f64> = all.iter().map(|r| ms(r.first)).collect();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let mut publish: Vec<f64> = all.iter().map(|r| ms(r.publish)).collect();
    publish.sort_by(f64::total_cmp);
    let n = all.len() as f64;
    let servers_cpu: f64 = all.iter().map(|r| r.servers_cpu).sum();
    let engine_cpu: f64 = all.iter().map(|r| r.engine_cpu).sum();
    let replayed = (args.missed * args.reps) as u64;
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    };
    Ok(LoadResult {
        ok: true,
        // Per run: replayed publications, their rate at the median recovery
        // time, the recovery time's median and (nearest-rank) 99th percentile in
        // µs, the servers' CPU per 100k replayed publications.
        messages: replayed,
        window_s: times.iter().sum::<f64>() / 1000.0,
        throughput: args.missed as f64 / (median / 1000.0),
        p50_us: median * 1000.0,
        p99_us: quantile(&sorted, 0.99) * 1000.0,
        server_cpu_s: servers_cpu,
        server_cpu_per_100k: (servers_cpu + engine_cpu) * 100_000.0 / replayed as f64,
        recovery_missed: Some(args.missed as u64),
        recovery_ms: Some(times),
        recovery_first_ms: Some(firsts),
        recovery_cpu_ms: Some((servers_cpu + engine_cpu) * 1000.0 / n),
        recovery_engine_cpu_ms: args.engine_pid.map(|_| engine_cpu * 1000.0 / n),
        publish_ms: Some(publish[publish.len() / 2]),
        ..LoadResult::default()
    })
}

/// Time on a CPU of the servers (each node) and of the engine, from the
/// scheduler: a recovery lasts milliseconds, below the 10 ms ticks of
/// `/proc/PID/stat`.
struct SchedCpu {
    servers: Vec<Option<Duration>>,
    engine: Option<Duration>,
}

impl SchedCpu {
    fn read(a: &LoadArgs) -> SchedCpu {
        SchedCpu {
            servers: a.server_pids.iter().map(|&p| sys::sched_cpu(p)).collect(),
            engine: a.engine_pid.and_then(sys::sched_cpu),
        }
    }

    /// Seconds of the servers (summed) and of the engine since `a`.
    fn since(&self, a: &SchedCpu) -> anyhow::Result<(f64, f64)> {
        let d = |x: Option<Duration>, y: Option<Duration>| match (x, y) {
            (Some(x), Some(y)) => Ok(y.saturating_sub(x).as_secs_f64()),
            _ => Err(anyhow!(
                "cannot read the servers' /proc/PID/task/*/schedstat (pass --server-pid)"
            )),
        };
        if self.servers.is_empty() {
            bail!("no server process to read the CPU time of (pass --server-pid)");
        }
        let mut servers = 0.0;
        for (x, y) in a.servers.iter().zip(&self.servers) {
            servers += d(*x, *y)?;
        }
        let engine = match (a.engine, self.engine) {
            (None, None) => 0.0,
            (x, y) => d(x, y)?,
        };
        Ok((servers, engine))
    }
}

/// The nearest-rank `q` quantile of ascending `sorted` (not empty).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A transaction id: `n` and a marker (never the nil UUID).
fn tx_id(n: u64) -> [u8; 16] {
    let mut tx = [0u8; 16];
    tx[..8].copy_from_slice(&n.to_le_bytes());
    tx[8..].copy_from_slice(b"recovery");
    tx
}

fn tx_of(msg: &fbs::Message<'_>) -> Option<[u8; 16]> {
    msg.transaction_id().map(|u| <[u8; 16]>::from(u.bytes()))
}

/// Reads frames until the reply to `tx`: an `Ack` (returned), else an error.
async fn expect_ack(conn: &mut WsConn, tx: [u8; 16], what: &str) -> anyhow::Result<(u64, String)> {
    loop {
        let f = conn.recv().await?;
        let msg = flatbuffers::root::<fbs::Message<'_>>(f.payload).map_err(io_err)?;
        if tx_of(&msg) != Some(tx) {
            continue;
        }
        return match msg.opcode() {
            Opcode::Ack => Ok((msg.offset(), msg.epoch().unwrap_or_default().to_string())),
            Opcode::Error => Err(anyhow!(
                "{what} answered with Error {:?}: {}",
                msg.error_code(),
                msg.error_message().unwrap_or_default()
            )),
            other => Err(anyhow!("{what} answered with {other:?}")),
        };
    }
}

async fn recover_once(
    a: &LoadArgs,
    channel: &str,
    publisher_at: SocketAddr,
    subscriber_at: SocketAddr,
) -> anyhow::Result<Recovered> {
    let missed = a.missed;
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    // 1. Subscribed, the subscriber receives one live publication: where it is.
    let mut sub = open(a, subscriber_at, 16 * 1024).await?;
    let subscribe = FrameFields::new(Opcode::Subscribe.0)
        .channel(channel)
        .requires_ack(true)
        .transaction_id(Some(Uuid::from_bytes(tx_id(u64::MAX))))
        .encode();
    sub.send(BINARY, &subscribe).await?;
    expect_ack(&mut sub, tx_id(u64::MAX), "Subscribe").await?;
    let mut publisher = open(a, publisher_at, 64 * 1024).await?;
    let mut payload = [0u8; FANOUT_PAYLOAD];
    fanout_payload(&mut payload, missed as u64, now_ns());
    let first = FrameFields::new(Opcode::Publish.0)
        .channel(channel)
        .payload(&payload)
        .requires_ack(true)
        .transaction_id(Some(Uuid::from_bytes(tx_id(u64::MAX))))
        .encode();
    publisher.send(BINARY, &first).await?;
    let (acked, _) = expect_ack(&mut publisher, tx_id(u64::MAX), "Publish").await?;
    let (epoch, offset) = {
        let f = sub.recv().await?;
        let msg = flatbuffers::root::<fbs::Message<'_>>(f.payload).map_err(io_err)?;
        let seq = msg
            .payload()
            .and_then(|p| parse_fanout_payload(p.bytes()))
            .map(|x| x.0);
        if msg.opcode() != Opcode::Publish
            || msg.channel() != Some(channel)
            || seq != Some(missed as u64)
        {
            bail!(
                "the subscriber's first frame is not the first publication ({:?})",
                msg.opcode()
            );
        }
        let epoch = msg.epoch().unwrap_or_default().to_string();
        if msg.offset() == 0 || epoch.is_empty() || msg.offset() != acked {
            bail!(
                "the first publication has offset {} (the publisher's Ack: {acked}) and epoch {epoch:?}",
                msg.offset()
            );
        }
        (epoch, msg.offset())
    };

    // 2. Disconnected, it misses `missed` publications: sent in one write, each
    // acknowledged (so each is in the history) before it comes back.
    drop(sub);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let template = FrameFields::new(Opcode::Publish.0)
        .channel(channel)
        .payload(&[b'P'; FANOUT_PAYLOAD])
        .requires_ack(true)
        .transaction_id(Some(Uuid::from_bytes(TX_SENTINEL)))
        .encode()
        .to_vec();
    let (at, tx_at) = (
        unique(&template, &[b'P'; FANOUT_PAYLOAD])?,
        unique(&template, &TX_SENTINEL)?,
    );
    let mut frame = template.clone();
    let published = Instant::now();
    for i in 0..missed {
        fanout_payload(&mut payload, i as u64, now_ns());
        frame[at..at + FANOUT_PAYLOAD].copy_from_slice(&payload);
        frame[tx_at..tx_at + 16].copy_from_slice(&tx_id(i as u64));
        publisher.queue(BINARY, &frame);
    }
    publisher.flush().await?;
    let mut acks = vec![false; missed];
    let mut offsets = Vec::with_capacity(missed);
    while offsets.len() < missed {
        let f = publisher.recv().await?;
        let msg = flatbuffers::root::<fbs::Message<'_>>(f.payload).map_err(io_err)?;
        match msg.opcode() {
            Opcode::Ack => {
                let i = tx_of(&msg)
                    .filter(|tx| tx[8..] == *b"recovery")
                    .map(|tx| u64::from_le_bytes(tx[..8].try_into().expect("8 bytes")) as usize)
                    .filter(|&i| i < missed && !acks[i])
                    .ok_or_else(|| anyhow!("an unexpected Ack to the publisher"))?;
                acks[i] = true;
                offsets.push(msg.offset());
            }
            Opcode::Error => bail!(
                "a missed publication was refused: {:?}: {}",
                msg.error_code(),
                msg.error_message().unwrap_or_default()
            ),
            other => bail!("the publisher received {other:?}"),
        }
    }
    let publish = published.elapsed();
    offsets.sort_unstable();
    let want: Vec<u64> = (offset + 1..=offset + missed as u64).collect();
    if offsets != want {
        bail!(
            "the missed publications were acknowledged with offsets {}..{}, not {}..{}",
            offsets[0],
            offsets[missed - 1],
            offset + 1,
            offset + missed as u64
        );
    }
    drop(publisher);

    // 3. Back, it recovers: the missed publications, then the Ack.
    let mut sub = open(a, subscriber_at, 64 * 1024).await?;
    let tx = tx_id(u64::MAX - 1);
    let recover = FrameFields::new(Opcode::Subscribe.0)
        .channel(channel)
        .recover(true)
        .epoch(&epoch)
        .offset(offset)
        .transaction_id(Some(Uuid::from_bytes(tx)))
        .encode();
    let mut seen = vec![false; missed];
    let mut got = 0u64;
    let mut first = None;
    let before = SchedCpu::read(a);
    let t0 = Instant::now();
    sub.send(BINARY, &recover).await?;
    loop {
        let f = sub.recv().await?;
        let msg = flatbuffers::root::<fbs::Message<'_>>(f.payload).map_err(io_err)?;
        match msg.opcode() {
            Opcode::Publish => {
                first.get_or_insert_with(|| t0.elapsed());
                let want = offset + got + 1;
                if msg.channel() != Some(channel) || msg.epoch() != Some(epoch.as_str()) {
                    bail!("a replayed publication of another channel or epoch");
                }
                if msg.offset() != want {
                    bail!(
                        "replayed offset {} where {want} was due (after {got} of {missed})",
                        msg.offset()
                    );
                }
                let seq = msg
                    .payload()
                    .and_then(|p| parse_fanout_payload(p.bytes()))
                    .map(|x| x.0 as usize)
                    .filter(|&i| i < missed && !seen[i])
                    .ok_or_else(|| anyhow!("offset {want}: a payload not missed, or twice"))?;
                seen[seq] = true;
                got += 1;
            }
            Opcode::Ack if tx_of(&msg) == Some(tx) => {
                let total = t0.elapsed();
                let after = SchedCpu::read(a);
                if got != missed as u64 {
                    bail!("the Ack came after {got} of {missed} missed publications");
                }
                let last = offset + missed as u64;
                if !msg.recovered() || msg.offset() != last || msg.epoch() != Some(epoch.as_str()) {
                    bail!(
                        "the Ack says recovered = {}, offset {} (not {last}), epoch {:?} (not {epoch:?})",
                        msg.recovered(),
                        msg.offset(),
                        msg.epoch().unwrap_or_default()
                    );
                }
                let (servers_cpu, engine_cpu) = after.since(&before)?;
                return Ok(Recovered {
                    total,
                    first: first.unwrap_or(total),
                    publish,
                    servers_cpu,
                    engine_cpu,
                });
            }
            Opcode::Error => bail!(
                "the recovering Subscribe answered with Error {:?}: {}",
                msg.error_code(),
                msg.error_message().unwrap_or_default()
            ),
            other => bail!("unexpected {other:?} during the recovery"),
        }
    }
}

// ---------------------------------------------------------------- idle

async fn idle(args: LoadArgs) -> anyhow::Result<LoadResult> {
    let pid = *args
        .server_pids
        .first()
        .context("the idle scenario needs --server-pid")?;
    let shared = Shared::new();
    let before = sys::rss_bytes(pid).context("cannot read the server's VmRSS")?;
    let a = Rc::new(args.clone());
    spawn_all(&shared, args.conns, 128, move |_, shared, gate| {
        let a = a.clone();
        async move {
            let permit = gate.acquire().await.map_err(io_err)?;
            let mut conn = open(&a, a.addr, 1024).await?;
            drop(permit);
            shared.ready.set(shared.ready.get() + 1);
            // Hold the connection; answer pings (WebSocket, Engine.IO, Pusher).
            Err(hold(&mut conn, a.spec.proto).await)
        }
    });
    let t = Instant::now();
    shared
        .wait_ready(args.conns, Duration::from_secs(120))
        .await?;
    let connect_s = t.elapsed().as_secs_f64();
    shared
        .watch(args.warmup.max(Duration::from_millis(500)))
        .await?;
    let after = sys::rss_bytes(pid).context("cannot read the server's VmRSS")?;
    shared.check()?;
    shared.stop.set(true);
    let n = args.conns as u64;
    Ok(LoadResult {
        ok: true,
        messages: n,
        window_s: connect_s,
        idle_conns: Some(n),
        rss_before: Some(before),
        rss_after: Some(after),
        bytes_per_conn: Some((after as f64 - before as f64) / n as f64),
        client_cpu: 0.0,
        ..LoadResult::default()
    })
}

// ---------------------------------------------------------------- storm

/// What the clients of the storm scenario share.
#[derive(Default)]
struct StormState {
    /// The server is being restarted: a lost connection is reconnected.
    restarting: Cell<bool>,
    /// When the first connection was lost after the restart began.
    first_lost: Cell<Option<Instant>>,
    /// Clients connected again (past the protocol's opening) after the restart.
    back: Cell<usize>,
    /// Connection attempts after the restart, and the failed ones.
    attempts: Cell<u64>,
    failed: Cell<u64>,
    /// The last failure of an attempt (reported when not every client came back).
    last_error: RefCell<Option<String>>,
}

/// One client of the storm: connects (at most `window` clients connecting at
/// once), holds the connection; once the server is restarted, reconnects as
/// the framework's client does (`ReconnectPolicy::default()`: 250 ms doubling
/// up to 10 s, up to half of each wait taken off at random) until it is back.
async fn storm_client(
    a: Rc<LoadArgs>,
    shared: Rc<Shared>,
    st: Rc<StormState>,
    gate: Rc<Semaphore>,
) -> std::io::Result<()> {
    let policy = framework::client::ReconnectPolicy::default();
    let mut conn = {
        let _permit = gate.acquire().await.map_err(io_err)?;
        let t = Instant::now();
        let conn = open(&a, a.addr, 1024).await?;
        shared.record(t.elapsed());
        conn
    };
    shared.ready.set(shared.ready.get() + 1);
    let e = hold(&mut conn, a.spec.proto).await;
    if !st.restarting.get() {
        return Err(e);
    }
    drop(conn);
    if st.first_lost.get().is_none() {
        st.first_lost.set(Some(Instant::now()));
    }
    let mut attempt = 0;
    let mut conn = loop {
        tokio::time::sleep(policy.delay(attempt)).await;
        attempt += 1;
        st.attempts.set(st.attempts.get() + 1);
        match open(&a, a.addr, 1024).await {
            Ok(conn) => break conn,
            Err(e) => {
                st.failed.set(st.failed.get() + 1);
                *st.last_error.borrow_mut() = Some(e.to_string());
            }
        }
    };
    st.back.set(st.back.get() + 1);
    Err(hold(&mut conn, a.spec.proto).await)
}

/// The storm scenario: `conns` clients connect (TCP, upgrade, and the
/// protocol's opening: `Welcome`, Engine.IO open + Socket.IO connect, Pusher's
/// `connection_established`), at most `window` at once: connections per second
/// and the server's CPU per connection. Then it prints `RESTART`: the runner
/// kills the server, starts it again on the same port and answers `UP <pid>`
/// on standard input; every client reconnects with backoff and jitter, and the
/// time until all are back is measured.
async fn storm(args: LoadArgs) -> anyhow::Result<LoadResult> {
    use std::io::{BufRead as _, Write as _};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let shared = Shared::new();
    let st = Rc::new(StormState::default());
    let a = Rc::new(args.clone());
    shared.measuring.set(true);
    let start = snap(0, &args);
    {
        let (a, st) = (a.clone(), st.clone());
        spawn_all(
            &shared,
            args.conns,
            args.window.max(1),
            move |_, shared, gate| storm_client(a.clone(), shared, st.clone(), gate),
        );
    }
    shared
        .wait_ready(args.conns, Duration::from_secs(120))
        .await?;
    let end = snap(shared.count.get(), &args);
    shared.measuring.set(false);
    let mut result = LoadResult {
        ok: true,
        ..LoadResult::default()
    };
    window(&mut result, &start, &end);
    {
        let hist = shared.hist.borrow();
        percentiles(&mut result, &hist);
        result.max_us = Some(hist.max() as f64 / 1000.0);
        let retry = Duration::from_millis(900).as_nanos() as u64;
        result.syn_retried = Some(hist.count_between(retry, hist.max().max(retry)));
    }
    // Every connection stays open a moment (a server that drops some fails).
    shared.watch(args.warmup).await?;

    // The restart.
    st.restarting.set(true);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "RESTART")?;
        out.flush()?;
    }
    let line = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .map_err(|_| anyhow!("the runner did not restart the server within 60 s"))?
        .context("the runner closed the load generator's input")?;
    let up_at = Instant::now();
    let pid: u32 = line
        .strip_prefix("UP ")
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("expected `UP <pid>` from the runner, got {line:?}"))?;
    let limit = up_at + Duration::from_secs(120);
    while st.back.get() < args.conns {
        shared.check()?;
        if Instant::now() >= limit {
            bail!(
                "{} of {} clients were back 120 s after the restart ({} attempts, {} failed; last: {})",
                st.back.get(),
                args.conns,
                st.attempts.get(),
                st.failed.get(),
                st.last_error.borrow().as_deref().unwrap_or("—")
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let done = Instant::now();
    let lost = st
        .first_lost
        .get()
        .context("no connection was lost when the server was killed")?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    result.reconnect_ms = Some(ms(done - lost));
    result.reconnect_up_ms = Some(ms(done - up_at));
    result.restart_ms = Some(ms(up_at.saturating_duration_since(lost)));
    result.reconnect_attempts = Some(st.attempts.get());
    result.reconnect_failed = Some(st.failed.get());
    result.reconnect_server_cpu_s = sys::cpu_time(pid).map(|d| d.as_secs_f64());
    shared.stop.set(true);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn reads_an_unlabelled_metric() {
        let text = "# HELP framework_cluster_received_total Publishes...\n\
                    # TYPE framework_cluster_received_total counter\n\
                    framework_cluster_received_total 42\n\
                    framework_cluster_received_total_other 7\n";
        assert_eq!(metric(text, "framework_cluster_received_total"), Some(42));
        assert_eq!(metric(text, "framework_cluster_undelivered_total"), None);
    }
}
