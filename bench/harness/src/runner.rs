//! The runner: for each scenario, rounds of every server in turn (framework, peer,
//! peer, ..., then again), each server a child process pinned to CPU 0 and the load
//! generator another pinned to CPU 1; medians, ratios, targets, and the markdown.
//!
//! The cluster scenario's servers are variants: one node alone, then three nodes
//! over an engine (redis-server, nats-server) that the runner starts for the run on
//! a free loopback port, pinned with the nodes, and kills at its end.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::load::LoadResult;
use crate::spec::{has_history, servers, Engine, Scenario, ServerSpec, CLUSTER_NODES};

/// Runner options (`framework-bench run --help`).
#[derive(Debug, Clone)]
pub struct RunArgs {
    pub smoke: bool,
    pub rounds: usize,
    pub only: Vec<Scenario>,
    pub out: PathBuf,
    pub logs: PathBuf,
    /// Multiplies every measurement window (not counts).
    pub time_scale: f64,
}

/// Counts and durations of one scenario.
#[derive(Debug, Clone, Copy)]
struct Params {
    conns: usize,
    warmup: f64,
    secs: f64,
    lat_secs: f64,
    window: usize,
    size: usize,
    /// Cluster: the latency phase's fixed rate in deliveries per second, the same
    /// for every variant (0: half of each server's own peak, as fanout).
    rate: f64,
    /// Cluster: the phase publishing on a channel only node B's subscribers joined.
    quiet_secs: f64,
    /// Recovery: repetitions per run.
    reps: usize,
    /// Recovery: publications missed each time.
    missed: usize,
}

fn params(scenario: Scenario, smoke: bool, scale: f64) -> Params {
    let p = match (scenario, smoke) {
        (Scenario::Echo | Scenario::Rpc, false) => Params {
            conns: 100,
            warmup: 1.0,
            secs: 5.0,
            lat_secs: 0.0,
            window: 0,
            size: 32,
            rate: 0.0,
            quiet_secs: 0.0,
            reps: 0,
            missed: 0,
        },
        (Scenario::Echo | Scenario::Rpc, true) => Params {
            conns: 4,
            warmup: 0.2,
            secs: 0.6,
            lat_secs: 0.0,
            window: 0,
            size: 32,
            rate: 0.0,
            quiet_secs: 0.0,
            reps: 0,
            missed: 0,
        },
        (Scenario::Fanout, false) => Params {
            conns: 1000,
            warmup: 1.0,
            secs: 4.0,
            lat_secs: 4.0,
            window: 16,
            size: 64,
            rate: 0.0,
            quiet_secs: 0.0,
            reps: 0,
            missed: 0,
        },
        (Scenario::Fanout, true) => Params {
            conns: 10,
            warmup: 0.2,
            secs: 0.5,
            lat_secs: 0.5,
            window: 4,
            size: 64,
            rate: 0.0,
            quiet_secs: 0.0,
            reps: 0,
            missed: 0,
        },
        (Scenario::Idle, false) => Params {
            conns: 10_000,
            warmup: 1.0,
            secs: 0.0,
            lat_secs: 0.0,
            window: 0,
            size: 0,
            rate: 0.0,
            quiet_secs: 0.0,
            reps: 0,
            missed: 0,
        },
        (Scenario::Idle, true) => Params {
            conns: 100,
            warmup: 0.3,
            secs: 0.0,
            lat_secs: 0.0,
            window: 0,
            size: 0,
            rate: 0.0,
            quiet_secs: 0.0,
            reps: 0,
            missed: 0,
        },
        // The fixed rate: 50 publishes/s to 1,000 subscribers. The lowest peak seen
        // on the 2-core machine, NATS with other processes using half a core, was
        // about 126,000 deliveries/s; 50,000 leaves every variant below saturation,
        // at the same load (the report flags a variant whose peak is below it).
        (Scenario::Cluster, false) => Params {
            conns: 1000,
            warmup: 1.0,
            secs: 4.0,
            lat_secs: 4.0,
            window: 16,
            size: 64,
            rate: 50_000.0,
            quiet_secs: 2.0,
            reps: 0,
            missed: 0,
        },
        (Scenario::Cluster, true) => Params {
            conns: 30,
            warmup: 0.2,
            secs: 0.4,
            lat_secs: 0.4,
            window: 4,
            size: 64,
            rate: 3_000.0,
            quiet_secs: 0.3,
            reps: 0,
            missed: 0,
        },
        // 1,000 missed publications each time (the history keeps 1,000); every
        // repetition is a fresh channel, subscriber and publisher.
        (Scenario::Recovery, smoke) => Params {
            conns: 1,
            warmup: 0.0,
            secs: 0.0,
            lat_secs: 0.0,
            window: 0,
            size: crate::spec::FANOUT_PAYLOAD,
            rate: 0.0,
            quiet_secs: 0.0,
            reps: if smoke { 2 } else { 20 },
            missed: crate::spec::MISSED,
        },
    };
    Params {
        warmup: p.warmup * scale,
        secs: p.secs * scale,
        lat_secs: p.lat_secs * scale,
        quiet_secs: p.quiet_secs * scale,
        ..p
    }
}

/// One run's outcome.
#[derive(Debug, Clone)]
struct Run {
    round: usize,
    kind: &'static str,
    result: Result<LoadResult, String>,
}

/// Runs everything, writes the report, fails when any run failed.
pub fn main(args: RunArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the harness binary")?;
    let pin = Pinning::detect();
    std::fs::create_dir_all(&args.logs)
        .with_context(|| format!("cannot create {}", args.logs.display()))?;
    eprintln!(
        "bench: {} mode, {} round(s), {}; logs in {}",
        if args.smoke { "smoke" } else { "full" },
        args.rounds,
        pin.describe(),
        args.logs.display()
    );
    let started = Instant::now();
    let mut all: Vec<(Scenario, Params, Vec<Run>)> = Vec::new();
    for &scenario in &args.only {
        let p = params(scenario, args.smoke, args.time_scale);
        let mut runs = Vec::new();
        for round in 1..=args.rounds {
            for spec in servers(scenario) {
                // Fanout: the history variant's latency phase runs at the plain
                // framework's rate of the same round (both at the same load).
                let lat_rate = if scenario == Scenario::Fanout && has_history(spec.kind) {
                    runs.iter()
                        .find(|r: &&Run| r.round == round && r.kind == "framework")
                        .and_then(|r| r.result.as_ref().ok())
                        .and_then(|r| r.lat_rate)
                } else {
                    None
                };
                let result = if matches!(scenario, Scenario::Cluster | Scenario::Recovery) {
                    run_cluster(&exe, &pin, &args.logs, scenario, spec, round, &p)
                } else {
                    run_one(&exe, &pin, &args.logs, scenario, spec, round, &p, lat_rate)
                };
                eprintln!(
                    "[{} {round}/{}] {:<18} {}",
                    scenario.name(),
                    args.rounds,
                    spec.kind,
                    summary(scenario, &result)
                );
                runs.push(Run {
                    round,
                    kind: spec.kind,
                    result,
                });
                // Let the kernel finish tearing the last run's sockets down.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        all.push((scenario, p, runs));
    }
    let failures: Vec<String> = all
        .iter()
        .flat_map(|(s, _, runs)| {
            runs.iter().filter_map(move |r| match &r.result {
                Err(e) => Some(format!("{} {} round {}: {e}", s.name(), r.kind, r.round)),
                Ok(_) => None,
            })
        })
        .collect();
    let report = report(&args, &pin, &all, started.elapsed());
    if let Some(dir) = args.out.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(&args.out, report)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "bench: wrote {} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        bail!("{} run(s) failed", failures.len());
    }
    Ok(())
}

fn summary(scenario: Scenario, r: &Result<LoadResult, String>) -> String {
    match r {
        Err(e) => format!("FAILED: {e}"),
        Ok(r) if scenario == Scenario::Idle => format!(
            "{:.0} B/conn ({} conns, RSS {:.1} -> {:.1} MiB)",
            r.bytes_per_conn.unwrap_or(0.0),
            r.idle_conns.unwrap_or(0),
            r.rss_before.unwrap_or(0) as f64 / 1048576.0,
            r.rss_after.unwrap_or(0) as f64 / 1048576.0
        ),
        Ok(r) if scenario == Scenario::Recovery => {
            let ms = r.recovery_ms.clone().unwrap_or_default();
            format!(
                "{} missed publications recovered {} times: median {:.2} ms (fastest {:.2}, slowest {:.2}), first replayed after {:.2} ms, servers {:.2} CPU-ms per recovery{}; publishing them took {:.1} ms",
                r.recovery_missed.unwrap_or(0),
                ms.len(),
                r.p50_us / 1000.0,
                ms.iter().copied().fold(f64::INFINITY, f64::min),
                ms.iter().copied().fold(0.0, f64::max),
                median(r.recovery_first_ms.clone().unwrap_or_default()).unwrap_or(0.0),
                r.recovery_cpu_ms.unwrap_or(0.0),
                r.recovery_engine_cpu_ms
                    .map_or(String::new(), |e| format!(" (engine {e:.2})")),
                r.publish_ms.unwrap_or(0.0),
            )
        }
        Ok(r) if scenario == Scenario::Cluster => {
            let join = |v: Option<Vec<String>>| v.map_or("—".into(), |v| v.join(" / "));
            format!(
                "{:>10.0} deliveries/s  nodes {:.3} ({}) CPU-s/100k  engine {} CPU-s/100k  loadgen {:.0}%  others {:.0}% | at {:.0}/s: got {:.0}/s p50 {:.1} µs p99 {:.1} µs nodes {} engine {} | quiet at {}/s: node C {} CPU, received C {} B {}",
                r.throughput,
                r.server_cpu_per_100k,
                join(node_cpu_per_100k(r).map(|v| v.iter().map(|x| f3(Some(*x))).collect())),
                f3(r.engine_cpu_per_100k),
                r.client_cpu * 100.0,
                r.other_cpu * 100.0,
                r.lat_rate.unwrap_or(0.0),
                r.lat_throughput.unwrap_or(0.0),
                r.p50_us,
                r.p99_us,
                pct(r.lat_server_cpu),
                pct(r.lat_engine_cpu),
                f0(r.quiet_rate),
                pct1(r.quiet_node_cpu.as_ref().and_then(|v| v.get(2).copied())),
                r.quiet_received_c.map_or("—".into(), |x| x.to_string()),
                r.quiet_received_b.map_or("—".into(), |x| x.to_string()),
            )
        }
        Ok(r) if scenario == Scenario::Fanout => format!(
            "{:>10.0} deliveries/s  server {:.3} ({:.3} user) CPU-s/100k  loadgen {:.0}%  others {:.0}% | at {:.0}/s: got {:.0}/s p50 {:.1} µs p99 {:.1} µs server {:.0}% loadgen {:.0}%",
            r.throughput,
            r.server_cpu_per_100k,
            r.server_user_per_100k,
            r.client_cpu * 100.0,
            r.other_cpu * 100.0,
            r.lat_rate.unwrap_or(0.0),
            r.lat_throughput.unwrap_or(0.0),
            r.p50_us,
            r.p99_us,
            r.lat_server_cpu.unwrap_or(0.0) * 100.0,
            r.lat_client_cpu.unwrap_or(0.0) * 100.0,
        ),
        Ok(r) => format!(
            "{:>10.0} msg/s  p50 {:>8.1} µs  p99 {:>8.1} µs  server {:.3} ({:.3} user) CPU-s/100k  loadgen {:.0}%  others {:.0}%",
            r.throughput,
            r.p50_us,
            r.p99_us,
            r.server_cpu_per_100k,
            r.server_user_per_100k,
            r.client_cpu * 100.0,
            r.other_cpu * 100.0
        ),
    }
}

// ---------------------------------------------------------------- processes

struct Pinning {
    server: Option<&'static str>,
    client: Option<&'static str>,
}

impl Pinning {
    fn detect() -> Pinning {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let taskset = Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if taskset && cpus >= 2 {
            Pinning {
                server: Some("0"),
                client: Some("1"),
            }
        } else {
            Pinning {
                server: None,
                client: None,
            }
        }
    }

    fn describe(&self) -> String {
        match (self.server, self.client) {
            (Some(s), Some(c)) => {
                format!("servers pinned to CPU {s}, load generator to CPU {c} (taskset)")
            }
            _ => "no pinning (taskset missing or a single CPU)".to_string(),
        }
    }

    fn command(cpu: Option<&str>, exe: impl AsRef<std::ffi::OsStr>) -> Command {
        match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }
}

/// Kills the child when dropped (a failed run never leaves a server behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    match std::fs::File::create(dir.join(name)) {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    exe: &Path,
    pin: &Pinning,
    logs: &Path,
    scenario: Scenario,
    spec: &ServerSpec,
    round: usize,
    p: &Params,
    lat_rate: Option<f64>,
) -> Result<LoadResult, String> {
    let tag = format!("{}-{}-r{round}", scenario.name(), spec.kind);
    let mut server = Pinning::command(pin.server, exe);
    server
        .args([
            "server",
            "--server",
            spec.kind,
            "--scenario",
            scenario.name(),
        ])
        .args(["--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(logs, &format!("{tag}-server.log")));
    let mut server = Reaped(
        server
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?,
    );
    let pid = server.0.id();
    let (port, _) = read_ports(&mut server.0, Duration::from_secs(30))?;

    let mut load = Pinning::command(pin.client, exe);
    load.args(["load", "--server", spec.kind, "--scenario", scenario.name()])
        .args([
            "--port",
            &port.to_string(),
            "--server-pid",
            &pid.to_string(),
        ])
        .args([
            "--conns",
            &p.conns.to_string(),
            "--size",
            &p.size.to_string(),
        ])
        .args([
            "--warmup",
            &p.warmup.to_string(),
            "--secs",
            &p.secs.to_string(),
        ])
        .args(["--lat-secs", &p.lat_secs.to_string()])
        .args(["--window", &p.window.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(logs, &format!("{tag}-load.log")));
    if let Some(rate) = lat_rate {
        load.args(["--lat-rate", &rate.to_string()]);
    }
    let load = Reaped(
        load.spawn()
            .map_err(|e| format!("cannot start the load generator: {e}"))?,
    );
    let limit = Duration::from_secs_f64(p.warmup * 2.0 + p.secs + p.lat_secs + 150.0);
    let out = wait_output(load, limit)?;
    let alive = matches!(server.0.try_wait(), Ok(None));
    drop(server);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("the load generator printed no result (see {tag}-load.log)"))?;
    let result: LoadResult =
        serde_json::from_str(line).map_err(|e| format!("unreadable result: {e}"))?;
    if !result.ok {
        return Err(result.error.unwrap_or_else(|| "failed".into()));
    }
    if !alive {
        return Err(format!(
            "the server exited during the run (see {tag}-server.log)"
        ));
    }
    Ok(result)
}

/// The server's `PORT` line, and the `SERVICE` line before it when there is one
/// (cluster nodes: their `run_service` port).
fn read_ports(child: &mut Child, limit: Duration) -> Result<(u16, Option<u16>), String> {
    let stdout = child.stdout.take().ok_or("no server stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut service = None;
        let port = lines.find_map(|l| {
            let l = l.ok()?;
            let num = |p: &str| p.trim().parse::<u16>().ok();
            if let Some(p) = l.strip_prefix("SERVICE ") {
                service = num(p);
                return None;
            }
            l.strip_prefix("PORT ").and_then(num)
        });
        let _ = tx.send(port.map(|p| (p, service)));
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(limit) {
        Ok(Some(ports)) => Ok(ports),
        Ok(None) => Err("the server exited before printing its port".into()),
        Err(_) => Err(format!("the server printed no port within {limit:?}")),
    }
}

// ---------------------------------------------------------------- cluster

/// An engine process of one run: killed when dropped.
struct EngineProc {
    child: Reaped,
    url: String,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Whether the engine on 127.0.0.1:`port` answers: Redis `PING` → `+PONG`, NATS
/// greets every connection with `INFO`.
fn engine_answers(engine: Engine, port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut tcp) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    if engine == Engine::Redis && tcp.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    if tcp.read_exact(&mut buf).is_err() {
        return false;
    }
    match engine {
        Engine::Redis => buf == *b"+PONG",
        Engine::Nats => buf == *b"INFO ",
    }
}

/// Starts `engine` on a free loopback port, pinned with the servers, and waits
/// until it answers (a few tries: the free port may be taken in between).
fn start_engine(
    engine: Engine,
    pin: &Pinning,
    logs: &Path,
    tag: &str,
) -> Result<EngineProc, String> {
    let program = engine.program();
    if !on_path(program) {
        return Err(format!(
            "{program} is not installed (Debian's package {program}; scripts/bench.sh \
             installs it when missing)"
        ));
    }
    let mut last = String::new();
    for attempt in 1..=3 {
        let port = free_port()?;
        let log = format!("{tag}-engine.log");
        // Redis logs to stdout, NATS to stderr: both into one file.
        let (out, err) = match std::fs::File::create(logs.join(&log)) {
            Ok(f) => match f.try_clone() {
                Ok(g) => (Stdio::from(f), Stdio::from(g)),
                Err(_) => (Stdio::from(f), Stdio::null()),
            },
            Err(_) => (Stdio::null(), Stdio::null()),
        };
        let mut cmd = Pinning::command(pin.server, program);
        cmd.args(engine.args(port))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let mut child = Reaped(
            cmd.spawn()
                .map_err(|e| format!("cannot start {program}: {e}"))?,
        );
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if engine_answers(engine, port) {
                return Ok(EngineProc {
                    child,
                    url: engine.url(port),
                });
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                last = format!("{program} exited ({status}) on attempt {attempt}, see {log}");
                break;
            }
            if Instant::now() >= end {
                last = format!("{program} did not answer on port {port} within 10 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Err(last)
}

/// One run of the cluster (or recovery) scenario: the engine (for a cluster
/// variant), the nodes (A, B, C: each a `server` process, pinned like every
/// server, joined through the engine; one node alone for the in-memory variant),
/// then the load generator with every node's port, PID and `/metrics` port.
fn run_cluster(
    exe: &Path,
    pin: &Pinning,
    logs: &Path,
    scenario: Scenario,
    spec: &ServerSpec,
    round: usize,
    p: &Params,
) -> Result<LoadResult, String> {
    let tag = format!("{}-{}-r{round}", scenario.name(), spec.kind);
    let mut engine = match Engine::of(spec.kind) {
        Some(e) => Some(start_engine(e, pin, logs, &tag)?),
        None => None,
    };
    let count = if engine.is_some() { CLUSTER_NODES } else { 1 };
    let mut nodes: Vec<(Reaped, u16, u16)> = Vec::new();
    for i in 0..count {
        let name = char::from(b'a' + i as u8);
        let mut cmd = Pinning::command(pin.server, exe);
        cmd.args([
            "server",
            "--server",
            spec.kind,
            "--scenario",
            scenario.name(),
        ])
        .args(["--port", "0"]);
        if let Some(e) = &engine {
            cmd.args(["--cluster", &e.url]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(logs, &format!("{tag}-node-{name}.log")));
        let mut child = Reaped(
            cmd.spawn()
                .map_err(|e| format!("cannot start node {name}: {e}"))?,
        );
        let (port, service) = read_ports(&mut child.0, Duration::from_secs(30))
            .map_err(|e| format!("node {name}: {e} (see {tag}-node-{name}.log)"))?;
        let service = service.ok_or_else(|| format!("node {name} printed no SERVICE port"))?;
        nodes.push((child, port, service));
    }
    let join = |f: &dyn Fn(&(Reaped, u16, u16)) -> String| {
        nodes.iter().map(f).collect::<Vec<_>>().join(",")
    };

    let mut load = Pinning::command(pin.client, exe);
    load.args(["load", "--server", spec.kind, "--scenario", scenario.name()])
        .args(["--port", &nodes[0].1.to_string()])
        .args(["--server-pid", &join(&|n| n.0 .0.id().to_string())])
        .args(["--nodes", &join(&|n| n.1.to_string())])
        .args(["--metrics", &join(&|n| n.2.to_string())])
        .args([
            "--conns",
            &p.conns.to_string(),
            "--size",
            &p.size.to_string(),
        ])
        .args([
            "--warmup",
            &p.warmup.to_string(),
            "--secs",
            &p.secs.to_string(),
        ])
        .args(["--lat-secs", &p.lat_secs.to_string()])
        .args(["--window", &p.window.to_string()])
        .args(["--lat-rate", &p.rate.to_string()])
        .args(["--quiet-secs", &p.quiet_secs.to_string()])
        .args(["--reps", &p.reps.to_string()])
        .args(["--missed", &p.missed.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(logs, &format!("{tag}-load.log")));
    if let Some(e) = &engine {
        load.args(["--engine-pid", &e.child.0.id().to_string()]);
    }
    let load = Reaped(
        load.spawn()
            .map_err(|e| format!("cannot start the load generator: {e}"))?,
    );
    let limit = Duration::from_secs_f64(
        p.warmup * 2.0 + p.secs + p.lat_secs + p.quiet_secs + 150.0 + p.reps as f64 * 60.0,
    );
    let out = wait_output(load, limit)?;
    let mut dead = Vec::new();
    for (i, n) in nodes.iter_mut().enumerate() {
        if !matches!(n.0 .0.try_wait(), Ok(None)) {
            dead.push(format!("node {}", char::from(b'a' + i as u8)));
        }
    }
    let engine_dead = engine
        .as_mut()
        .is_some_and(|e| !matches!(e.child.0.try_wait(), Ok(None)));
    // Nodes first, then the engine: no node sees its engine vanish.
    drop(nodes);
    drop(engine);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("the load generator printed no result (see {tag}-load.log)"))?;
    let result: LoadResult =
        serde_json::from_str(line).map_err(|e| format!("unreadable result: {e}"))?;
    if !result.ok {
        return Err(result.error.unwrap_or_else(|| "failed".into()));
    }
    if !dead.is_empty() {
        return Err(format!(
            "{} exited during the run (see {tag}-node-*.log)",
            dead.join(", ")
        ));
    }
    if engine_dead {
        return Err(format!(
            "the engine exited during the run (see {tag}-engine.log)"
        ));
    }
    Ok(result)
}

fn wait_output(mut child: Reaped, limit: Duration) -> Result<String, String> {
    let mut stdout = child.0.stdout.take().ok_or("no load generator stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let end = Instant::now() + limit;
    loop {
        match child.0.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                drop(child);
                return Err(format!(
                    "the load generator did not finish within {limit:?}"
                ));
            }
            Err(e) => return Err(format!("waiting for the load generator: {e}")),
        }
    }
    drop(child);
    reader
        .join()
        .map_err(|_| "reader thread panicked".to_string())
}

// ---------------------------------------------------------------- statistics

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn ok_runs<'a>(runs: &'a [Run], kind: &str) -> Vec<&'a LoadResult> {
    runs.iter()
        .filter(|r| r.kind == kind)
        .filter_map(|r| r.result.as_ref().ok())
        .collect()
}

fn med(runs: &[Run], kind: &str, f: impl Fn(&LoadResult) -> Option<f64>) -> Option<f64> {
    median(ok_runs(runs, kind).into_iter().filter_map(f).collect())
}

/// Median over rounds of `f(framework run) / f(peer run)` of the same round.
fn ratio(runs: &[Run], peer: &str, f: impl Fn(&LoadResult) -> Option<f64>) -> Option<f64> {
    ratio_of(runs, servers_framework(runs), peer, f)
}

/// Median over rounds of `f(run of a) / f(run of b)` of the same round.
fn ratio_of(
    runs: &[Run],
    fw: &str,
    peer: &str,
    f: impl Fn(&LoadResult) -> Option<f64>,
) -> Option<f64> {
    let mut v = Vec::new();
    let rounds = runs.iter().map(|r| r.round).max().unwrap_or(0);
    for round in 1..=rounds {
        let get = |kind: &str| {
            runs.iter()
                .find(|r| r.round == round && r.kind == kind)
                .and_then(|r| r.result.as_ref().ok())
                .and_then(&f)
        };
        if let (Some(a), Some(b)) = (get(fw), get(peer)) {
            if b > 0.0 {
                v.push(a / b);
            }
        }
    }
    median(v)
}

fn servers_framework(runs: &[Run]) -> &'static str {
    runs.first().map_or("framework", |r| r.kind)
}

fn thr(r: &LoadResult) -> Option<f64> {
    Some(r.throughput)
}
fn cpu(r: &LoadResult) -> Option<f64> {
    (r.server_cpu_per_100k > 0.0).then_some(r.server_cpu_per_100k)
}
fn p50(r: &LoadResult) -> Option<f64> {
    Some(r.p50_us)
}
fn p99(r: &LoadResult) -> Option<f64> {
    Some(r.p99_us)
}
fn client(r: &LoadResult) -> Option<f64> {
    Some(r.client_cpu)
}
fn user(r: &LoadResult) -> Option<f64> {
    (r.server_cpu_per_100k > 0.0).then_some(r.server_user_per_100k)
}
fn other(r: &LoadResult) -> Option<f64> {
    Some(r.other_cpu)
}
fn per_conn(r: &LoadResult) -> Option<f64> {
    r.bytes_per_conn
}
/// Cluster: each node's CPU-s per 100k deliveries of the peak window, A first.
fn node_cpu_per_100k(r: &LoadResult) -> Option<Vec<f64>> {
    let n = r.messages as f64;
    if n <= 0.0 {
        return None;
    }
    r.node_cpu_s
        .as_ref()
        .map(|v| v.iter().map(|x| x * 100_000.0 / n).collect())
}
/// Cluster: the nodes' and the engine's CPU-s per 100k deliveries together.
fn total_cpu(r: &LoadResult) -> Option<f64> {
    cpu(r).map(|c| c + r.engine_cpu_per_100k.unwrap_or(0.0))
}
fn nth(v: &Option<Vec<f64>>, i: usize) -> Option<f64> {
    v.as_ref().and_then(|v| v.get(i).copied())
}

// ---------------------------------------------------------------- report

fn f0(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| group(v.round() as i64))
}
fn f1(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.1}"))
}
fn f3(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.3}"))
}
fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.0}%", v * 100.0))
}
fn pct1(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.1}%", v * 100.0))
}
fn x2(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.2}×"))
}
fn group(v: i64) -> String {
    let s = v.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn cmd_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> Vec<(&'static str, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".into(), |m| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("unknown".into(), |kb| format!("{:.1} GiB", kb / 1048576.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |s| s.trim().to_string());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut commit = cmd_output("git", &["rev-parse", "--short", "HEAD"]);
    if !cmd_output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        commit.push_str(" (with uncommitted changes)");
    }
    vec![
        ("CPUs (nproc)", nproc.to_string()),
        ("CPU model", model),
        ("memory", mem),
        ("kernel", kernel),
        ("rustc", cmd_output("rustc", &["--version"])),
        (
            "build",
            if cfg!(debug_assertions) {
                "debug (dev profile): numbers are meaningless".into()
            } else {
                "release".into()
            },
        ),
        ("date (UTC)", cmd_output("date", &["-u", "+%Y-%m-%d %H:%M"])),
        ("commit", commit),
    ]
}

struct Target {
    scenario: Scenario,
    text: String,
    shown: String,
    pass: Option<bool>,
    /// The same bound applied to server CPU per message (for throughput targets).
    cpu_shown: String,
    cpu_pass: Option<bool>,
}

fn verdict(p: Option<bool>) -> &'static str {
    match p {
        Some(true) => "**PASS**",
        Some(false) => "**MISS**",
        None => "n/a",
    }
}

/// A throughput target `framework ≥ bound × peer`, with its CPU twin:
/// `peer CPU/100k ÷ framework CPU/100k ≥ bound`.
fn throughput_target(
    scenario: Scenario,
    runs: &[Run],
    peer: &str,
    label: &str,
    bound: f64,
) -> Target {
    let r = ratio(runs, peer, thr);
    let c = ratio(runs, peer, cpu).map(|x| 1.0 / x);
    Target {
        scenario,
        text: format!("throughput ≥ {bound}× {label}"),
        shown: x2(r),
        pass: r.map(|r| r >= bound),
        cpu_shown: x2(c),
        cpu_pass: c.map(|c| c >= bound),
    }
}

fn targets(all: &[(Scenario, Params, Vec<Run>)]) -> Vec<Target> {
    let mut out = Vec::new();
    for (scenario, p, runs) in all {
        let runs = runs.as_slice();
        match scenario {
            Scenario::Echo => {
                out.push(throughput_target(
                    *scenario,
                    runs,
                    "fastwebsockets",
                    "fastwebsockets",
                    1.0,
                ));
                let c = ratio(runs, "fastwebsockets", cpu);
                out.push(Target {
                    scenario: *scenario,
                    text: "server CPU per message ≤ fastwebsockets'".into(),
                    shown: x2(c),
                    pass: c.map(|c| c <= 1.0),
                    cpu_shown: "—".into(),
                    cpu_pass: None,
                });
                out.push(throughput_target(
                    *scenario,
                    runs,
                    "tokio-tungstenite",
                    "tokio-tungstenite",
                    1.1,
                ));
            }
            Scenario::Rpc => {
                out.push(throughput_target(
                    *scenario,
                    runs,
                    "floor",
                    "the hand-written floor",
                    0.9,
                ));
                out.push(throughput_target(
                    *scenario,
                    runs,
                    "jsonrpsee",
                    "jsonrpsee",
                    3.0,
                ));
                out.push(throughput_target(
                    *scenario,
                    runs,
                    "socketioxide",
                    "socketioxide",
                    3.0,
                ));
            }
            Scenario::Fanout => {
                let mut t = throughput_target(*scenario, runs, "socketioxide", "socketioxide", 3.0);
                t.text = "deliveries/s ≥ 3× socketioxide".into();
                out.push(t);
                let l = med(runs, "framework", p99);
                out.push(Target {
                    scenario: *scenario,
                    text: format!(
                        "p99 publish-to-delivery at half the peak ≤ 5 ms ({} subscribers)",
                        group(p.conns as i64)
                    ),
                    shown: l.map_or("—".into(), |l| format!("{:.2} ms", l / 1000.0)),
                    pass: l.map(|l| l <= 5000.0),
                    cpu_shown: "—".into(),
                    cpu_pass: None,
                });
            }
            // Measured, not targeted: what the cluster costs beside one node.
            Scenario::Cluster | Scenario::Recovery => {}
            Scenario::Idle => {
                let b = med(runs, "framework", per_conn);
                out.push(Target {
                    scenario: *scenario,
                    text: "≤ 4 KiB of server memory per idle connection".into(),
                    shown: b.map_or("—".into(), |b| format!("{:.2} KiB", b / 1024.0)),
                    pass: b.map(|b| b <= 4096.0),
                    cpu_shown: "—".into(),
                    cpu_pass: None,
                });
                let r = ratio(runs, "tokio-tungstenite", per_conn);
                out.push(Target {
                    scenario: *scenario,
                    text: "≤ 0.1× the memory of tokio-tungstenite (default settings)".into(),
                    shown: x2(r),
                    pass: r.map(|r| r <= 0.1),
                    cpu_shown: "—".into(),
                    cpu_pass: None,
                });
            }
        }
    }
    out
}

fn report(
    args: &RunArgs,
    pin: &Pinning,
    all: &[(Scenario, Params, Vec<Run>)],
    took: Duration,
) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Written by `scripts/bench.sh{}` (the runner of `bench/harness`); every number \
         below is measured output of that run. Servers and the load generator are \
         separate processes; {}. Each scenario runs every server in turn, {} round(s), \
         framework first in each round; the tables give medians over rounds, and each \
         ratio is the median of the per-round ratios (framework ÷ peer of the same \
         round).\n",
        if args.smoke { " --smoke" } else { "" },
        pin.describe(),
        args.rounds
    );
    if args.smoke {
        let _ = writeln!(
            w,
            "**Smoke run**: tiny counts and sub-second windows; it checks that every \
             server and scenario works, the numbers mean nothing.\n"
        );
    }
    let _ = writeln!(w, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in machine() {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    let _ = writeln!(
        w,
        "| run time | {:.0} s (without the build) |",
        took.as_secs_f64()
    );
    let _ = writeln!(w);

    let _ = writeln!(w, "## Targets\n");
    let _ = writeln!(
        w,
        "Throughput targets carry a second verdict: the same bound applied to the \
         servers' CPU time per message (peer CPU-s per 100k ÷ framework CPU-s per \
         100k), which stays meaningful when the load generator, not the server, is \
         the bottleneck.\n"
    );
    let _ = writeln!(
        w,
        "| scenario | target | measured | verdict | same bound on server CPU per message | verdict |\n|---|---|---|---|---|---|"
    );
    for t in targets(all) {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            t.scenario.name(),
            t.text,
            t.shown,
            verdict(t.pass),
            t.cpu_shown,
            if t.cpu_shown == "—" {
                ""
            } else {
                verdict(t.cpu_pass)
            }
        );
    }
    let _ = writeln!(w);

    for (scenario, p, runs) in all {
        scenario_section(w, *scenario, p, runs);
    }

    // Written by hand (what profiles showed and what changed), kept across runs.
    let _ = writeln!(w, "## Profile-driven changes\n");
    let notes = std::fs::read_to_string("bench/profile-driven-changes.md")
        .unwrap_or_else(|_| "_bench/profile-driven-changes.md is missing._\n".to_string());
    let _ = writeln!(w, "{}", notes.trim_end());
    let _ = writeln!(w);

    let _ = writeln!(w, "## Method\n");
    let _ = writeln!(
        w,
        "- **Load generator**: one process on one thread (a current-thread tokio \
         runtime), every connection a task; a minimal RFC 6455 client with one read \
         and one write buffer per connection, pre-encoded request templates patched \
         in place (no allocation per message), one `write` per message; every \
         response is verified (echo bytes, sums, ids, transaction ids). Its own CPU \
         use is the *loadgen CPU* column (100% = one core: the client is the \
         bottleneck and throughputs converge; compare *server CPU-s per 100k* then).\n\
         - **Server CPU-s per 100k messages**: user + system time of the server \
         process (`/proc/PID/stat` fields 14 + 15 ÷ `CLK_TCK`), read by the load \
         generator at the start and end of the measurement window only. A message is \
         one round trip (echo, rpc) or one delivery (fanout).\n\
         - **Servers**: each peer as its documentation writes it, on a default \
         multi-threaded tokio runtime (one worker when pinned), TCP_NODELAY on \
         accepted sockets (as the framework). jsonrpsee's connection limit (default \
         100) and the framework's per-IP limit (default 10,000) are raised so the \
         idle scenario can open 10,000 connections from 127.0.0.1.\n\
         - **echo**: {} connections, one {}-byte binary message in flight on each, \
         closed loop; {} s warm-up, {} s window. Latency is the round trip.\n\
         - **rpc**: same closed loop. Framework and floor: a protocol v1 `Message` \
         (opcode 200, transaction id, FlatBuffers payload `{{id: u64, a: i64, b: \
         i64}}`) answered with `{{id, sum}}`; the floor is the same frames verified, \
         decoded and encoded by hand on tokio-tungstenite + flatbuffers. jsonrpsee: a \
         JSON-RPC method call. socketioxide: an event answered through its ack.\n\
         - **fanout**: 1 publisher and {} subscribers of one channel (room, \
         subscription), {}-byte payload carrying a sequence number and the send \
         time. Peak: at most {} publishes not yet delivered to every subscriber, \
         deliveries/s over {} s. Then publishes at a fixed rate of half that peak \
         (each server at half its own peak) for {} s: p50/p99 of publish-to-delivery \
         (send time, `CLOCK_REALTIME`, in the payload; receive time from the \
         kernel's `SO_TIMESTAMPNS` on the subscriber's socket).\n\
         - **idle**: {} connections opened (and the protocol's own opening done: \
         Welcome, Socket.IO connect), held {} s; the server's `VmRSS` after minus \
         before, ÷ connections (user-space memory only: kernel socket buffers are not \
         in RSS).",
        params(Scenario::Echo, args.smoke, args.time_scale).conns,
        params(Scenario::Echo, args.smoke, args.time_scale).size,
        params(Scenario::Echo, args.smoke, args.time_scale).warmup,
        params(Scenario::Echo, args.smoke, args.time_scale).secs,
        params(Scenario::Fanout, args.smoke, args.time_scale).conns,
        crate::spec::FANOUT_PAYLOAD,
        params(Scenario::Fanout, args.smoke, args.time_scale).window,
        params(Scenario::Fanout, args.smoke, args.time_scale).secs,
        params(Scenario::Fanout, args.smoke, args.time_scale).lat_secs,
        group(params(Scenario::Idle, args.smoke, args.time_scale).conns as i64),
        params(Scenario::Idle, args.smoke, args.time_scale).warmup,
    );
    let c = params(Scenario::Cluster, args.smoke, args.time_scale);
    let _ = writeln!(
        w,
        "- **cluster**: the fanout load ({} subscribers, {}-byte payload, at most {} \
         publishes in flight for the peak) over {} framework nodes, each a `server` \
         process with `Config::cluster` naming the engine and `run_service` on a second \
         port for `/metrics`; the publisher on node A, subscriber *i* on node *i* mod {}. \
         The engine (`redis-server --save '' --appendonly no`, `nats-server`: Debian's \
         packages) is started by the runner for each run on a free loopback port, pinned \
         with the servers, waited for (Redis `PING`, NATS `INFO`) and killed at the run's \
         end, after the nodes. Beside them, the same load on one node with the in-memory \
         broker. Peak over {} s; then {} s at a fixed {} deliveries/s for every variant \
         (publish-to-delivery as in fanout); then {} s at that publish rate on a channel \
         only node B's subscribers joined. Nodes' CPU is their `/proc/PID/stat` times \
         summed, the engine's is read the same way; engine messages a node received are \
         the change of its `framework_cluster_received_total`.\n",
        c.conns,
        crate::spec::FANOUT_PAYLOAD,
        c.window,
        CLUSTER_NODES,
        CLUSTER_NODES,
        c.secs,
        c.lat_secs,
        group(c.rate as i64),
        c.quiet_secs,
    );
    let r = params(Scenario::Recovery, args.smoke, args.time_scale);
    let _ = writeln!(
        w,
        "- **history** (protocol v1.1): the `-history` variants are the same servers \
         with `ChannelOptions::new(\"bench\").history({size}, {ttl} s)` (and the same \
         on `recovery:*`): `framework-history` in fanout (history in the node's \
         `MemoryStorage`), `redis-history` in cluster (history in Redis, every node \
         configured alike). They run in the same rounds as the plain variants, right \
         after them; their subscribers check every delivery's offset.\n\
         - **recovery**: {reps} repetitions per run of: subscribe, receive one \
         publication, disconnect, {missed} publications acknowledged, reconnect, \
         recovering `Subscribe`, timed until its `Ack` (every replayed offset, epoch \
         and payload checked). `framework-history`: one node; `redis-history`: three \
         nodes over Redis, publisher on node A, subscriber on node B.\n",
        size = crate::spec::HISTORY_SIZE,
        ttl = crate::spec::HISTORY_TTL.as_secs(),
        reps = r.reps,
        missed = group(r.missed as i64),
    );
    let _ = writeln!(
        w,
        "Rerun: `bash scripts/bench.sh` (full, about 9 minutes after the build), \
         `bash scripts/bench.sh --smoke` (seconds), options after the script name \
         (`--rounds N`, `--only echo,rpc` or `--only fanout,cluster,recovery`, `--time-scale X`). Absolute numbers on a \
         shared machine drift between runs; the ratios of one run are the result.\n"
    );

    let _ = writeln!(w, "## Every run\n\n<details><summary>per round</summary>\n");
    let _ = writeln!(
        w,
        "| scenario | round | server | msgs/s | p50 µs | p99 µs | server CPU-s/100k (user) | loadgen CPU | other processes' CPU | bytes/conn | result |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (scenario, _, runs) in all {
        for r in runs {
            match &r.result {
                Ok(x) => {
                    // Recovery: replayed publications/s at the median recovery
                    // time, the recovery time's median and slowest, the servers'
                    // CPU (scheduler time, not split) per 100k replayed; the
                    // load generator's CPU is not read.
                    let measured = |v: f64| (*scenario != Scenario::Recovery).then_some(v);
                    let _ = writeln!(
                        w,
                        "| {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | ok |",
                        scenario.name(),
                        r.round,
                        r.kind,
                        f0(Some(x.throughput)),
                        f1(Some(x.p50_us)),
                        f1(Some(x.p99_us)),
                        f3(Some(x.server_cpu_per_100k)),
                        f3(measured(x.server_user_per_100k)),
                        pct(measured(x.client_cpu)),
                        pct(measured(x.other_cpu)),
                        f0(x.bytes_per_conn),
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        w,
                        "| {} | {} | {} | | | | | | | | FAILED: {} |",
                        scenario.name(),
                        r.round,
                        r.kind,
                        e.replace('|', "/")
                    );
                }
            }
        }
    }
    let _ = writeln!(w, "\n</details>");
    md
}

fn scenario_section(w: &mut String, scenario: Scenario, p: &Params, runs: &[Run]) {
    let fw = servers_framework(runs);
    let _ = match scenario {
        Scenario::Echo => writeln!(
            w,
            "## echo — raw service, {} connections, one {}-byte message in flight each\n",
            p.conns, p.size
        ),
        Scenario::Rpc => writeln!(
            w,
            "## rpc — typed request/response (opcode 200), {} connections, closed loop\n",
            p.conns
        ),
        Scenario::Fanout => writeln!(
            w,
            "## fanout — 1 publisher, {} subscribers, {}-byte payload\n",
            group(p.conns as i64),
            crate::spec::FANOUT_PAYLOAD
        ),
        Scenario::Idle => writeln!(
            w,
            "## idle — memory per idle connection, {} connections\n",
            group(p.conns as i64)
        ),
        Scenario::Cluster => writeln!(
            w,
            "## cluster — 1 publisher, {} subscribers over {} nodes, {}-byte payload\n",
            group(p.conns as i64),
            CLUSTER_NODES,
            crate::spec::FANOUT_PAYLOAD
        ),
        Scenario::Recovery => writeln!(
            w,
            "## recovery — {} missed publications ({}-byte payload) replayed by a recovering Subscribe\n",
            group(p.missed as i64),
            crate::spec::FANOUT_PAYLOAD
        ),
    };
    let failed = |kind: &str| {
        let n = runs
            .iter()
            .filter(|r| r.kind == kind && r.result.is_err())
            .count();
        if n > 0 {
            format!(" ({n} failed)")
        } else {
            String::new()
        }
    };
    match scenario {
        Scenario::Cluster => cluster_section(w, p, runs, &failed),
        Scenario::Recovery => recovery_section(w, p, runs, &failed),
        Scenario::Echo | Scenario::Rpc | Scenario::Fanout => {
            let fanout = scenario == Scenario::Fanout;
            let _ = writeln!(
                w,
                "| server | {} | {} | server CPU-s per 100k {} | of which user space | loadgen CPU | framework ÷ server, throughput | framework ÷ server, CPU per message |\n|---|---|---|---|---|---|---|---|",
                if fanout { "peak deliveries/s" } else { "msgs/s" },
                if fanout {
                    "latency at half peak p50 / p99 (µs)"
                } else {
                    "round trip p50 / p99 (µs)"
                },
                if fanout { "deliveries" } else { "messages" },
            );
            // The history variant is compared with the plain framework below.
            for spec in servers(scenario).iter().filter(|s| !has_history(s.kind)) {
                let is_fw = spec.kind == fw;
                let _ = writeln!(
                    w,
                    "| {}{} | {} | {} / {} | {} | {} | {} | {} | {} |",
                    spec.label,
                    failed(spec.kind),
                    f0(med(runs, spec.kind, thr)),
                    f1(med(runs, spec.kind, p50)),
                    f1(med(runs, spec.kind, p99)),
                    f3(med(runs, spec.kind, cpu)),
                    f3(med(runs, spec.kind, user)),
                    pct(med(runs, spec.kind, client)),
                    if is_fw {
                        "—".into()
                    } else {
                        x2(ratio(runs, spec.kind, thr))
                    },
                    if is_fw {
                        "—".into()
                    } else {
                        x2(ratio(runs, spec.kind, cpu))
                    },
                );
            }
            let client_cpu = med(runs, fw, client).unwrap_or(0.0);
            let _ = writeln!(w);
            let others: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.result.as_ref().ok())
                .filter_map(other)
                .collect();
            if let Some(o) = median(others) {
                let _ = writeln!(
                    w,
                    "Other processes of the machine used a median {:.0}% of a core during \
                     these windows{}.\n",
                    o * 100.0,
                    if o >= 0.1 {
                        " (a shared, noisy machine: absolute numbers and latencies are \
                         unreliable; compare CPU per message)"
                    } else {
                        ""
                    }
                );
            }
            if client_cpu >= 0.9 {
                let _ = writeln!(
                    w,
                    "The load generator used {:.0}% of its core against the framework: \
                     the client is the bottleneck, so throughput ratios understate \
                     differences; the CPU-per-message column is the comparison that \
                     holds.\n",
                    client_cpu * 100.0
                );
            }
            if fanout {
                let _ = writeln!(
                    w,
                    "CPU per message ratios below 1 favour the framework. Latency is \
                     measured with each server at half of its own peak; the latency \
                     phase itself:\n"
                );
                let _ = writeln!(
                    w,
                    "| server | deliveries/s asked | achieved | server CPU | loadgen CPU | p50 / p99 at the kernel's receive (µs) | p50 / p99 when the subscriber task ran (µs) |\n|---|---|---|---|---|---|---|"
                );
                for spec in servers(scenario).iter().filter(|s| !has_history(s.kind)) {
                    let _ = writeln!(
                        w,
                        "| {} | {} | {} | {} | {} | {} / {} | {} / {} |",
                        spec.label,
                        f0(med(runs, spec.kind, |r| r.lat_rate)),
                        f0(med(runs, spec.kind, |r| r.lat_throughput)),
                        pct(med(runs, spec.kind, |r| r.lat_server_cpu)),
                        pct(med(runs, spec.kind, |r| r.lat_client_cpu)),
                        f1(med(runs, spec.kind, p50)),
                        f1(med(runs, spec.kind, p99)),
                        f1(med(runs, spec.kind, |r| r.p50_task_us)),
                        f1(med(runs, spec.kind, |r| r.p99_task_us)),
                    );
                }
                let _ = writeln!(
                    w,
                    "\nLatency is measured to the kernel's receive timestamp of the \
                     delivery on the subscriber's socket (`SO_TIMESTAMPNS`), so the load \
                     generator's own queueing is left out; the last column includes it. \
                     A server CPU near 100% in this phase means half of the (batched) \
                     peak rate saturates the server once deliveries no longer batch.\n"
                );
                fanout_history_section(w, runs, &failed);
            } else {
                let _ = writeln!(
                    w,
                    "Throughput ratios above 1 and CPU-per-message ratios below 1 favour \
                     the framework.\n"
                );
            }
        }
        Scenario::Idle => {
            let _ = writeln!(
                w,
                "| server | bytes per connection | KiB per connection | RSS before → after (MiB) | framework ÷ server |\n|---|---|---|---|---|"
            );
            for spec in servers(scenario) {
                let is_fw = spec.kind == fw;
                let b = med(runs, spec.kind, per_conn);
                let _ = writeln!(
                    w,
                    "| {}{} | {} | {} | {} → {} | {} |",
                    spec.label,
                    failed(spec.kind),
                    f0(b),
                    f1(b.map(|b| b / 1024.0)),
                    f1(med(runs, spec.kind, |r| r
                        .rss_before
                        .map(|x| x as f64 / 1048576.0))),
                    f1(med(runs, spec.kind, |r| r
                        .rss_after
                        .map(|x| x as f64 / 1048576.0))),
                    if is_fw {
                        "—".into()
                    } else {
                        x2(ratio(runs, spec.kind, per_conn))
                    },
                );
            }
            let _ = writeln!(w, "\nRatios below 1 favour the framework.\n");
        }
    }
}

fn cluster_section(w: &mut String, p: &Params, runs: &[Run], failed: &dyn Fn(&str) -> String) {
    let single = servers_framework(runs);
    let specs = servers(Scenario::Cluster);
    let per_publish = p.rate / p.conns.max(1) as f64;
    let _ = writeln!(
        w,
        "Cross-node fan-out: {nodes} framework nodes (separate processes) joined through \
         the engine, the publisher on node A, subscriber *i* on node *i* mod {nodes}; the \
         engine process runs pinned with the nodes, so nodes and engine share the servers' \
         core as the single node has it alone. Beside them, the same load on one node with \
         the in-memory broker, in the same rounds. Latency is measured at one fixed rate \
         for every variant, {} deliveries/s ({} publishes/s to {} subscribers). Ratios are \
         the variant ÷ 1 node of the same round; above 1 the cluster costs more.\n",
        f0(Some(p.rate)),
        f0(Some(per_publish)),
        group(p.conns as i64),
        nodes = CLUSTER_NODES,
    );
    let _ = writeln!(
        w,
        "| variant | peak deliveries/s | p50 / p99 at {} deliveries/s (µs) | nodes' CPU-s per 100k deliveries | of it node A / B / C | engine's CPU-s per 100k deliveries | nodes + engine | ÷ 1 node, CPU per delivery | ÷ 1 node, peak | loadgen CPU |\n|---|---|---|---|---|---|---|---|---|---|",
        f0(Some(p.rate))
    );
    for spec in specs {
        let alone = spec.kind == single;
        let each = |i: usize| f3(med(runs, spec.kind, |r| nth(&node_cpu_per_100k(r), i)));
        let _ = writeln!(
            w,
            "| {}{} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} |",
            spec.label,
            failed(spec.kind),
            f0(med(runs, spec.kind, thr)),
            f1(med(runs, spec.kind, p50)),
            f1(med(runs, spec.kind, p99)),
            f3(med(runs, spec.kind, cpu)),
            if alone {
                "—".to_string()
            } else {
                format!("{} / {} / {}", each(0), each(1), each(2))
            },
            f3(med(runs, spec.kind, |r| r.engine_cpu_per_100k)),
            f3(med(runs, spec.kind, total_cpu)),
            if alone {
                "—".into()
            } else {
                x2(ratio_of(runs, spec.kind, single, total_cpu))
            },
            if alone {
                "—".into()
            } else {
                x2(ratio_of(runs, spec.kind, single, thr))
            },
            pct(med(runs, spec.kind, client)),
        );
    }
    let _ = writeln!(w);
    let others: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .filter_map(other)
        .collect();
    if let Some(o) = median(others) {
        let _ = writeln!(
            w,
            "Other processes of the machine used a median {:.0}% of a core during \
             these windows{}.\n",
            o * 100.0,
            if o >= 0.1 {
                " (a shared, noisy machine: absolute numbers and latencies are \
                 unreliable; compare CPU per delivery)"
            } else {
                ""
            }
        );
    }
    let short: Vec<&str> = specs
        .iter()
        .filter(|s| med(runs, s.kind, thr).is_some_and(|t| t < p.rate))
        .map(|s| s.label)
        .collect();
    if !short.is_empty() {
        let _ = writeln!(
            w,
            "**The fixed rate is above the peak of {}**: its latency is that of an \
             overloaded server.\n",
            short.join(", ")
        );
    }
    let _ = writeln!(
        w,
        "The latency phase (open loop at the fixed rate); CPU as a fraction of one core. \
         At the peak, publishes queue up and one write carries several deliveries; at a \
         fixed rate below it every delivery is written alone, so this phase compares the \
         variants' CPU per delivery without that batching (the ratio is per delivery \
         achieved):\n"
    );
    let _ = writeln!(
        w,
        "| variant | deliveries/s asked | achieved | nodes' CPU (sum) | engine CPU | nodes + engine ÷ 1 node | loadgen CPU | p50 / p99 at the kernel's receive (µs) | p50 / p99 when the subscriber task ran (µs) |\n|---|---|---|---|---|---|---|---|---|"
    );
    // Server CPU per delivery at the fixed rate (the same for every variant).
    let lat_total = |r: &LoadResult| {
        let cpu = r.lat_server_cpu? + r.lat_engine_cpu.unwrap_or(0.0);
        let got = r.lat_throughput?;
        (cpu > 0.0 && got > 0.0).then(|| cpu / got)
    };
    for spec in specs {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} |",
            spec.label,
            f0(med(runs, spec.kind, |r| r.lat_rate)),
            f0(med(runs, spec.kind, |r| r.lat_throughput)),
            pct(med(runs, spec.kind, |r| r.lat_server_cpu)),
            pct(med(runs, spec.kind, |r| r.lat_engine_cpu)),
            if spec.kind == single {
                "—".into()
            } else {
                x2(ratio_of(runs, spec.kind, single, lat_total))
            },
            pct(med(runs, spec.kind, |r| r.lat_client_cpu)),
            f1(med(runs, spec.kind, p50)),
            f1(med(runs, spec.kind, p99)),
            f1(med(runs, spec.kind, |r| r.p50_task_us)),
            f1(med(runs, spec.kind, |r| r.p99_task_us)),
        );
    }
    cluster_history_section(w, p, runs, failed);
    let _ = writeln!(
        w,
        "\nA node without subscribers of a channel: node A publishes at the same rate on \
         a channel only node B's subscribers joined. Node C's CPU and the engine messages \
         it received (`framework_cluster_received_total` of its `/metrics`) over that \
         window, beside node C in the latency phase, when a third of the subscribers of \
         the main channel are on it:\n"
    );
    let _ = writeln!(
        w,
        "| variant | publishes/s | publishes in the window | node C CPU | engine messages node C received | engine messages node B received per publish | node C with subscribers: CPU | … engine messages per publish |\n|---|---|---|---|---|---|---|---|"
    );
    for spec in specs.iter().filter(|s| s.kind != single) {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            spec.label,
            f0(med(runs, spec.kind, |r| r.quiet_rate)),
            f0(med(runs, spec.kind, |r| r
                .quiet_publishes
                .map(|x| x as f64))),
            pct1(med(runs, spec.kind, |r| nth(&r.quiet_node_cpu, 2))),
            f0(med(runs, spec.kind, |r| r
                .quiet_received_c
                .map(|x| x as f64))),
            f3(med(runs, spec.kind, |r| {
                match (r.quiet_received_b, r.quiet_publishes) {
                    (Some(b), Some(n)) if n > 0 => Some(b as f64 / n as f64),
                    _ => None,
                }
            })),
            pct1(med(runs, spec.kind, |r| nth(&r.lat_node_cpu, 2))),
            f3(med(runs, spec.kind, |r| r.lat_received_c)),
        );
    }
    let _ = writeln!(
        w,
        "\nA node subscribes to a channel's engine subject only while it has a local \
         subscriber, so the engine never sends node C the publications of a channel \
         nobody on it joined: zero messages, and its CPU is that of an idle node \
         (heartbeats, timers; CPU time is counted in ticks of {} ms, so in a short \
         window one tick shows as whole percents). Every run checks that each \
         publication of that phase reached every subscriber on node B, and that no node \
         counted an engine error or an undelivered publication.\n",
        1000 / crate::sys::clk_tck().max(1)
    );
}

// ---------------------------------------------------------------- history

/// Servers' CPU-s per 100k deliveries in the latency phase (nodes and engine).
fn lat_cpu_per_100k(r: &LoadResult) -> Option<f64> {
    let cpu = r.lat_server_cpu? + r.lat_engine_cpu.unwrap_or(0.0);
    let got = r.lat_throughput?;
    (cpu > 0.0 && got > 0.0).then(|| cpu * 100_000.0 / got)
}

/// A `| a ÷ b |` cell pair `x / y` of two ratios.
fn x2_pair(a: Option<f64>, b: Option<f64>) -> String {
    format!("{} / {}", x2(a), x2(b))
}

/// Fanout: the framework with history on the channel beside the plain one.
fn fanout_history_section(w: &mut String, runs: &[Run], failed: &dyn Fn(&str) -> String) {
    let (plain, hist) = ("framework", "framework-history");
    if !runs.iter().any(|r| r.kind == hist) {
        return;
    }
    let _ = writeln!(
        w,
        "### History on vs off (one node, in memory)\n\n\
         The same server with `ChannelOptions::new(\"bench\").history({}, {} s)`: every \
         publication gets the channel's next offset and is appended to the node's \
         `MemoryStorage` before it is delivered (the last {} kept, each at most {} s), \
         and every delivery carries `offset` and `epoch`; each subscriber checks that \
         the offsets it receives go up by exactly 1. Its latency phase runs at the plain \
         server's rate of the same round (half the plain peak), so both are measured at \
         the same load. The last row is history ÷ plain, the median of the per-round \
         ratios; above 1, history costs more.\n",
        crate::spec::HISTORY_SIZE,
        crate::spec::HISTORY_TTL.as_secs(),
        group(crate::spec::HISTORY_SIZE as i64),
        crate::spec::HISTORY_TTL.as_secs(),
    );
    let _ = writeln!(
        w,
        "| variant | peak deliveries/s | server CPU-s per 100k deliveries (peak) | of which user space | fixed rate: deliveries/s asked / achieved | server CPU at the fixed rate | CPU-s per 100k deliveries at the fixed rate | p50 / p99 at the fixed rate (µs) | loadgen CPU (peak) |\n|---|---|---|---|---|---|---|---|---|"
    );
    for kind in [plain, hist] {
        let label = servers(Scenario::Fanout)
            .iter()
            .find(|s| s.kind == kind)
            .map_or(kind, |s| s.label);
        let _ = writeln!(
            w,
            "| {label}{} | {} | {} | {} | {} / {} | {} | {} | {} / {} | {} |",
            failed(kind),
            f0(med(runs, kind, thr)),
            f3(med(runs, kind, cpu)),
            f3(med(runs, kind, user)),
            f0(med(runs, kind, |r| r.lat_rate)),
            f0(med(runs, kind, |r| r.lat_throughput)),
            pct(med(runs, kind, |r| r.lat_server_cpu)),
            f3(med(runs, kind, lat_cpu_per_100k)),
            f1(med(runs, kind, p50)),
            f1(med(runs, kind, p99)),
            pct(med(runs, kind, client)),
        );
    }
    let r = |f: fn(&LoadResult) -> Option<f64>| ratio_of(runs, hist, plain, f);
    let _ = writeln!(
        w,
        "| **history ÷ plain** | {} | {} | {} | — | {} | {} | {} | — |\n",
        x2(r(thr)),
        x2(r(cpu)),
        x2(r(user)),
        x2(r(|r| r.lat_server_cpu)),
        x2(r(lat_cpu_per_100k)),
        x2_pair(r(p50), r(p99)),
    );
    let over = ok_runs(runs, hist)
        .iter()
        .filter(|r| r.lat_rate.is_some_and(|rate| rate > r.throughput))
        .count();
    if over > 0 {
        let _ = writeln!(
            w,
            "**In {over} round(s) the fixed rate (half the plain peak) was above the \
             history variant's own peak**: its latency there is that of an overloaded \
             server.\n"
        );
    }
    let checked: Vec<f64> = ok_runs(runs, hist)
        .iter()
        .filter_map(|r| r.offsets_checked.map(|x| x as f64))
        .collect();
    if let Some(n) = median(checked) {
        let _ = writeln!(
            w,
            "Offsets checked per run (every delivery to every subscriber): median {}.\n",
            f0(Some(n))
        );
    }
}

/// Cluster: three nodes over Redis with history on the channel (kept in Redis)
/// beside the same without.
fn cluster_history_section(
    w: &mut String,
    p: &Params,
    runs: &[Run],
    failed: &dyn Fn(&str) -> String,
) {
    let (plain, hist) = ("redis", "redis-history");
    if !runs.iter().any(|r| r.kind == hist) {
        return;
    }
    let _ = writeln!(
        w,
        "\nHistory on vs off over Redis: the same three nodes with \
         `ChannelOptions::new(\"bench\").history({}, {} s)` on every node. Each \
         publication is then one Lua script in Redis (next offset, `XADD` to the \
         channel's stream, trim by size and time, `PUBLISH` to the nodes) instead of a \
         plain `PUBLISH`, and every delivery carries `offset` and `epoch`; each \
         subscriber checks that its offsets go up by exactly 1. Same rounds, same fixed \
         rate ({} deliveries/s). The last row is history ÷ plain, the median of the \
         per-round ratios; above 1, history costs more.\n",
        crate::spec::HISTORY_SIZE,
        crate::spec::HISTORY_TTL.as_secs(),
        f0(Some(p.rate)),
    );
    let _ = writeln!(
        w,
        "| variant | peak deliveries/s | nodes + engine CPU-s per 100k deliveries (peak) | of it the engine | p50 / p99 at {} deliveries/s (µs) | nodes + engine CPU-s per 100k deliveries at that rate | engine CPU at that rate |\n|---|---|---|---|---|---|---|",
        f0(Some(p.rate))
    );
    for kind in [plain, hist] {
        let label = servers(Scenario::Cluster)
            .iter()
            .find(|s| s.kind == kind)
            .map_or(kind, |s| s.label);
        let _ = writeln!(
            w,
            "| {label}{} | {} | {} | {} | {} / {} | {} | {} |",
            failed(kind),
            f0(med(runs, kind, thr)),
            f3(med(runs, kind, total_cpu)),
            f3(med(runs, kind, |r| r.engine_cpu_per_100k)),
            f1(med(runs, kind, p50)),
            f1(med(runs, kind, p99)),
            f3(med(runs, kind, lat_cpu_per_100k)),
            pct1(med(runs, kind, |r| r.lat_engine_cpu)),
        );
    }
    let r = |f: fn(&LoadResult) -> Option<f64>| ratio_of(runs, hist, plain, f);
    let _ = writeln!(
        w,
        "| **history ÷ plain** | {} | {} | {} | {} | {} | {} |",
        x2(r(thr)),
        x2(r(total_cpu)),
        x2(r(|r| r.engine_cpu_per_100k)),
        x2_pair(r(p50), r(p99)),
        x2(r(lat_cpu_per_100k)),
        x2(r(|r| r.lat_engine_cpu)),
    );
}

/// Recovery: the time a recovering `Subscribe` takes to replay what was missed.
fn recovery_section(w: &mut String, p: &Params, runs: &[Run], failed: &dyn Fn(&str) -> String) {
    let _ = writeln!(
        w,
        "Each repetition, on a fresh channel with `history({}, {} s)`: a subscriber \
         subscribes and receives one live publication (its epoch and offset *n*), \
         disconnects; a publisher publishes {} publications of {} bytes and waits for \
         every `Ack` (so all are stored); the subscriber reconnects and sends \
         `Subscribe` with `recover = true`, that epoch and offset *n*. Timed on the load \
         generator from sending that `Subscribe` until its `Ack` arrived, after the \
         replayed publications (the connection and its `Welcome` are not in the time). \
         Every recovery is checked: exactly offsets *n*+1 … *n*+{}, in order, in the same \
         epoch, each missed payload once, then an `Ack` with `recovered = true`, that \
         epoch and offset *n*+{}; a run that fails a check is reported as failed, not as \
         a number. One node: subscriber and publisher on it, history in its memory. \
         Redis: three nodes, the publisher on node A, the subscriber on node B, which \
         reads the history from Redis (the engine pinned with the nodes, as in \
         cluster). {} repetitions per run.\n",
        crate::spec::HISTORY_SIZE,
        crate::spec::HISTORY_TTL.as_secs(),
        group(p.missed as i64),
        crate::spec::FANOUT_PAYLOAD,
        group(p.missed as i64),
        group(p.missed as i64),
        p.reps,
    );
    let _ = writeln!(
        w,
        "| variant | recoveries (all rounds) | recovery time, median (ms) | fastest / p90 / slowest (ms) | first replayed publication after (ms) | replayed publications/s | servers' CPU per recovery (ms) | of it the engine (ms) | publishing the {} missed, with their Acks (ms) |\n|---|---|---|---|---|---|---|---|---|",
        group(p.missed as i64)
    );
    for spec in servers(Scenario::Recovery) {
        let ok = ok_runs(runs, spec.kind);
        let mut pooled: Vec<f64> = ok
            .iter()
            .flat_map(|r| r.recovery_ms.clone().unwrap_or_default())
            .collect();
        pooled.sort_by(f64::total_cmp);
        let spread = if pooled.is_empty() {
            "—".to_string()
        } else {
            let q = |q: f64| {
                let rank = ((q * pooled.len() as f64).ceil() as usize).clamp(1, pooled.len());
                pooled[rank - 1]
            };
            format!("{:.2} / {:.2} / {:.2}", pooled[0], q(0.9), q(1.0))
        };
        let ms2 = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}"));
        let _ = writeln!(
            w,
            "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            spec.label,
            failed(spec.kind),
            pooled.len(),
            ms2(med(runs, spec.kind, |r| Some(r.p50_us / 1000.0))),
            spread,
            ms2(med(runs, spec.kind, |r| median(
                r.recovery_first_ms.clone().unwrap_or_default()
            ))),
            f0(med(runs, spec.kind, thr)),
            ms2(med(runs, spec.kind, |r| r.recovery_cpu_ms)),
            ms2(med(runs, spec.kind, |r| r.recovery_engine_cpu_ms)),
            f1(med(runs, spec.kind, |r| r.publish_ms)),
        );
    }
    let _ = writeln!(
        w,
        "\nThe median is over rounds of each run's median; fastest, p90 and slowest are \
         over every recovery of every round. Servers' CPU is the time every thread of the \
         nodes and of the engine spent on a CPU from sending the `Subscribe` to its \
         `Ack` (the scheduler's nanoseconds, `/proc/PID/task/*/schedstat`: a recovery is \
         shorter than the {} ms ticks of `/proc/PID/stat`), the mean per recovery of a \
         run, the median over rounds; it includes the nodes' idle work (heartbeats) in \
         those milliseconds.\n",
        1000 / crate::sys::clk_tck().max(1)
    );
}
