//! The runner: for each scenario, rounds of every server in turn (framework, peer,
//! peer, ..., then again), each server a child process pinned to CPU 0 and the load
//! generator another pinned to CPU 1; medians, ratios, targets, and the markdown.
//!
//! The cluster scenario's servers are variants: one node alone, then three nodes
//! over an engine (redis-server, nats-server) that the runner starts for the run on
//! a free loopback port, pinned with the nodes, and kills at its end.
//!
//! The TLS scenarios run each server twice a round, plain and as its TLS twin;
//! the runner makes the run's certificate once, before the first scenario, in
//! the `tls` directory of the logs, and gives it to the twins and their load
//! generators (`--tls DIR`; Sockudo: its `SSL_*` variables).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

mod report;

use crate::load::LoadResult;
use crate::spec::{
    has_history, is_external, is_tls, servers, Engine, Scenario, ServerSpec, CLUSTER_NODES,
};

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
#[derive(Debug, Clone, Copy, Default)]
struct Params {
    conns: usize,
    warmup: f64,
    secs: f64,
    lat_secs: f64,
    /// Fanout: publishes in flight at the peak; storm: connections opened at once.
    window: usize,
    size: usize,
    /// Fanout and cluster: the latency phase's fixed rate in deliveries per
    /// second, the same for every server.
    rate: f64,
    /// Cluster: the phase publishing on a channel only node B's subscribers joined.
    quiet_secs: f64,
    /// Recovery: repetitions per run.
    reps: usize,
    /// Recovery: publications missed each time.
    missed: usize,
}

/// The fan-out scenarios' fixed rate in deliveries per second, the same for
/// every server and for 1,000 and 10,000 subscribers (50 and 5 publishes per
/// second). The slowest peaks seen on the loaded 2-core machine were Sockudo's,
/// about 124,000 deliveries/s to 1,000 subscribers and 92,000 to 10,000 (at
/// 100,000 it was overloaded), then jsonrpsee's, about 143,000: 50,000 leaves
/// every server below saturation (the report flags a server whose peak is below
/// it).
const FANOUT_RATE: f64 = 50_000.0;

fn params(scenario: Scenario, smoke: bool, scale: f64) -> Params {
    let p = match (scenario, smoke) {
        (Scenario::Echo | Scenario::Echo64k | Scenario::EchoTls | Scenario::Rpc, smoke) => Params {
            conns: if smoke { 4 } else { 100 },
            warmup: if smoke { 0.1 } else { 1.0 },
            secs: if smoke { 0.4 } else { 5.0 },
            size: if scenario == Scenario::Echo64k {
                64 * 1024
            } else {
                32
            },
            ..Params::default()
        },
        (Scenario::Fanout | Scenario::Fanout10k | Scenario::FanoutTls, false) => Params {
            conns: if scenario == Scenario::Fanout10k {
                10_000
            } else {
                1000
            },
            warmup: 1.0,
            secs: 4.0,
            lat_secs: 4.0,
            window: 16,
            size: crate::spec::FANOUT_PAYLOAD,
            rate: FANOUT_RATE,
            ..Params::default()
        },
        (Scenario::Fanout | Scenario::Fanout10k | Scenario::FanoutTls, true) => Params {
            conns: if scenario == Scenario::Fanout10k {
                40
            } else {
                10
            },
            warmup: 0.1,
            secs: 0.3,
            lat_secs: 0.3,
            window: 4,
            size: crate::spec::FANOUT_PAYLOAD,
            rate: 2_000.0,
            ..Params::default()
        },
        (Scenario::Idle, smoke) => Params {
            conns: if smoke { 100 } else { 10_000 },
            warmup: if smoke { 0.3 } else { 1.0 },
            ..Params::default()
        },
        // 10,000 clients, 200 connecting at once (well inside every server's
        // listen backlog), held 0.5 s before the restart.
        (Scenario::Storm, smoke) => Params {
            conns: if smoke { 100 } else { 10_000 },
            warmup: if smoke { 0.1 } else { 0.5 },
            window: if smoke { 20 } else { 200 },
            ..Params::default()
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
            ..Params::default()
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
            ..Params::default()
        },
        // 1,000 missed publications each time (the history keeps 1,000); every
        // repetition is a fresh channel, subscriber and publisher.
        (Scenario::Recovery, smoke) => Params {
            conns: 1,
            size: crate::spec::FANOUT_PAYLOAD,
            reps: if smoke { 2 } else { 20 },
            missed: crate::spec::MISSED,
            ..Params::default()
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

/// One scenario's runs, and the servers it could not run (with why).
struct Done {
    scenario: Scenario,
    p: Params,
    runs: Vec<Run>,
    skipped: Vec<(&'static str, String)>,
}

/// Where Sockudo's binary is: `$BENCH_SOCKUDO`, else where `scripts/bench.sh`
/// installs it.
fn sockudo_bin() -> PathBuf {
    std::env::var_os("BENCH_SOCKUDO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/sockudo/bin/sockudo"))
}

/// The directory of the run's certificate (see [`crate::tls`]), beside the logs.
fn tls_dir(logs: &Path) -> PathBuf {
    logs.join("tls")
}

/// `--tls DIR` for a TLS twin's server and load generator (nothing for a plain
/// server).
fn tls_args(logs: &Path, kind: &str) -> Vec<std::ffi::OsString> {
    if is_tls(kind) {
        vec!["--tls".into(), tls_dir(logs).into()]
    } else {
        Vec::new()
    }
}

/// Why an external server cannot run here (`None`: it can), and whether that is
/// a failed build (reported in a full run, not fatal).
fn unavailable(kind: &str) -> Option<(String, bool)> {
    if !is_external(kind) {
        return None;
    }
    let bin = sockudo_bin();
    if bin.is_file() {
        return None;
    }
    // scripts/bench.sh leaves the end of a failed build's output here.
    let error = bin
        .parent()
        .and_then(Path::parent)
        .map(|root| root.join("build-error.txt"))
        .and_then(|f| std::fs::read_to_string(f).ok());
    Some(match error {
        Some(e) => (
            format!("Sockudo could not be built here: {}", e.trim()),
            true,
        ),
        None => (
            format!(
                "Sockudo is not built ({} is missing): `scripts/bench.sh` builds it in \
                 full mode only (a release build of many minutes, over the smoke run's \
                 budget)",
                bin.display()
            ),
            false,
        ),
    })
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
    if args.only.iter().any(|s| s.is_tls()) {
        let dir = tls_dir(&args.logs);
        crate::tls::generate(&dir)?;
        eprintln!("bench: TLS certificate of the run in {}", dir.display());
    }
    let started = Instant::now();
    let mut all: Vec<Done> = Vec::new();
    for &scenario in &args.only {
        let p = params(scenario, args.smoke, args.time_scale);
        let mut done = Done {
            scenario,
            p,
            runs: Vec::new(),
            skipped: Vec::new(),
        };
        for spec in servers(scenario) {
            if let Some((why, build_failed)) = unavailable(spec.kind) {
                // A full run always has Sockudo, or the error of its build.
                if !args.smoke && !build_failed {
                    bail!("{}: {why}", spec.label);
                }
                eprintln!("[{}] {:<18} skipped: {why}", scenario.name(), spec.kind);
                done.skipped.push((spec.kind, why));
            }
        }
        for round in 1..=args.rounds {
            for spec in servers(scenario) {
                if done.skipped.iter().any(|(k, _)| *k == spec.kind) {
                    continue;
                }
                let result = match scenario {
                    Scenario::Cluster | Scenario::Recovery => {
                        run_cluster(&exe, &pin, &args.logs, scenario, spec, round, &p)
                    }
                    Scenario::Storm => run_storm(&exe, &pin, &args.logs, spec, round, &p),
                    _ => run_one(&exe, &pin, &args.logs, scenario, spec, round, &p),
                };
                eprintln!(
                    "[{} {round}/{}] {:<18} {}{}",
                    scenario.name(),
                    args.rounds,
                    spec.kind,
                    summary(scenario, &result),
                    match result.as_ref().map(|r| r.tls.as_ref()) {
                        Ok(Some(t)) => format!(
                            " | {}; {} handshakes ({} resumed)",
                            t.session, t.handshakes, t.resumed
                        ),
                        _ => String::new(),
                    }
                );
                done.runs.push(Run {
                    round,
                    kind: spec.kind,
                    result,
                });
                // Let the kernel finish tearing the last run's sockets down.
                std::thread::sleep(Duration::from_millis(if args.smoke { 50 } else { 200 }));
            }
        }
        all.push(done);
    }
    let failures: Vec<String> = all
        .iter()
        .flat_map(|d| {
            d.runs.iter().filter_map(move |r| match &r.result {
                Err(e) => Some(format!(
                    "{} {} round {}: {e}",
                    d.scenario.name(),
                    r.kind,
                    r.round
                )),
                Ok(_) => None,
            })
        })
        .collect();
    let report = report::report(&args, &pin, &all, started.elapsed());
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
        Ok(r) if scenario == Scenario::Storm => format!(
            "{:>8.0} connections/s  connect p50 {:.1} ms p99 {:.1} ms max {:.0} ms ({} over 900 ms)  server {:.3} ({:.3} user) CPU-s/100k  loadgen {:.0}%  others {:.0}% | restart: all back {:.0} ms after the first loss, {:.0} ms after the new server listened ({} attempts, {} failed)",
            r.throughput,
            r.p50_us / 1000.0,
            r.p99_us / 1000.0,
            r.max_us.unwrap_or(0.0) / 1000.0,
            r.syn_retried.unwrap_or(0),
            r.server_cpu_per_100k,
            r.server_user_per_100k,
            r.client_cpu * 100.0,
            r.other_cpu * 100.0,
            r.reconnect_ms.unwrap_or(0.0),
            r.reconnect_up_ms.unwrap_or(0.0),
            r.reconnect_attempts.unwrap_or(0),
            r.reconnect_failed.unwrap_or(0),
        ),
        Ok(r) if scenario.is_fanout() => format!(
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

/// Starts server `spec` of `scenario` on `port` (0: any free port), pinned to the
/// servers' CPU, and waits until it accepts connections: a `server` process of
/// this harness (which prints its port), or Sockudo's own binary. `log`: the
/// name of its log file in `logs`.
fn start_server(
    exe: &Path,
    pin: &Pinning,
    logs: &Path,
    scenario: Scenario,
    spec: &ServerSpec,
    port: u16,
    log: &str,
) -> Result<(Reaped, u16), String> {
    if is_external(spec.kind) {
        return start_sockudo(pin, logs, is_tls(spec.kind), port, log);
    }
    let mut server = Pinning::command(pin.server, exe);
    server
        .args([
            "server",
            "--server",
            spec.kind,
            "--scenario",
            scenario.name(),
        ])
        .args(["--port", &port.to_string()])
        .args(tls_args(logs, spec.kind))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(logs, log));
    let mut server = Reaped(
        server
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?,
    );
    let (port, _) = read_ports(&mut server.0, Duration::from_secs(30))
        .map_err(|e| format!("{e} (see {log})"))?;
    Ok((server, port))
}

/// Sockudo with the one app of the benchmark, configured through its
/// environment (its documented `SOCKUDO_DEFAULT_APP_*` and server variables),
/// from an empty working directory (no `config/config.toml` is read). Its limits
/// of 100 connections and 100 HTTP API events per second for the default app,
/// and its per-IP rate limiter, are lifted as the framework's per-IP limit is:
/// every client here comes from 127.0.0.1. Everything else keeps its defaults
/// (metrics on, on a port of their own). With `tls`, it serves TLS on that port
/// (`SSL_ENABLED`, `SSL_CERT_PATH`, `SSL_KEY_PATH`: its documented variables;
/// rustls with ring, through axum-server), its HTTP API included.
fn start_sockudo(
    pin: &Pinning,
    logs: &Path,
    tls: bool,
    port: u16,
    log: &str,
) -> Result<(Reaped, u16), String> {
    let bin = std::fs::canonicalize(sockudo_bin())
        .map_err(|e| format!("{}: {e}", sockudo_bin().display()))?;
    let port = if port == 0 { free_port()? } else { port };
    let dir = logs.join("sockudo-cwd");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (out, err) = match std::fs::File::create(logs.join(log)) {
        Ok(f) => match f.try_clone() {
            Ok(g) => (Stdio::from(f), Stdio::from(g)),
            Err(_) => (Stdio::from(f), Stdio::null()),
        },
        Err(_) => (Stdio::null(), Stdio::null()),
    };
    let mut cmd = Pinning::command(pin.server, &bin);
    cmd.current_dir(&dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("METRICS_HOST", "127.0.0.1")
        .env("METRICS_PORT", free_port()?.to_string())
        .env("SOCKUDO_DEFAULT_APP_ID", crate::spec::PUSHER_APP_ID)
        .env("SOCKUDO_DEFAULT_APP_KEY", crate::spec::PUSHER_KEY)
        .env("SOCKUDO_DEFAULT_APP_SECRET", crate::spec::PUSHER_SECRET)
        .env("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "1000000")
        .env(
            "SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND",
            "1000000",
        )
        .env("RATE_LIMITER_ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if tls {
        // Absolute: it runs in a directory of its own.
        let dir = std::fs::canonicalize(tls_dir(logs)).map_err(|e| format!("TLS files: {e}"))?;
        cmd.env("SSL_ENABLED", "true")
            .env("SSL_CERT_PATH", dir.join(crate::tls::CERT_FILE))
            .env("SSL_KEY_PATH", dir.join(crate::tls::KEY_FILE));
    }
    let mut child = Reaped(
        cmd.spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?,
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok((child, port));
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!("Sockudo exited ({status}), see {log}"));
        }
        if Instant::now() >= end {
            return Err(format!(
                "Sockudo did not listen on {port} within 30 s, see {log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The load generator's command for `spec` of `scenario`: the scenario's counts
/// and windows, the server's port and process.
fn load_command(
    exe: &Path,
    pin: &Pinning,
    scenario: Scenario,
    spec: &ServerSpec,
    p: &Params,
    port: u16,
    pids: &str,
) -> Command {
    let mut load = Pinning::command(pin.client, exe);
    load.args(["load", "--server", spec.kind, "--scenario", scenario.name()])
        .args(["--port", &port.to_string(), "--server-pid", pids])
        .args(["--conns", &p.conns.to_string()])
        .args(["--size", &p.size.to_string()])
        .args(["--warmup", &p.warmup.to_string()])
        .args(["--secs", &p.secs.to_string()])
        .args(["--lat-secs", &p.lat_secs.to_string()])
        .args(["--window", &p.window.to_string()]);
    if p.rate > 0.0 {
        load.args(["--lat-rate", &p.rate.to_string()]);
    }
    load
}

/// The load generator's `RESULT` line, checked.
fn parse_result(out: &str, tag: &str) -> Result<LoadResult, String> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("the load generator printed no result (see {tag}-load.log)"))?;
    let result: LoadResult =
        serde_json::from_str(line).map_err(|e| format!("unreadable result: {e}"))?;
    if !result.ok {
        return Err(result.error.unwrap_or_else(|| "failed".into()));
    }
    Ok(result)
}

fn run_one(
    exe: &Path,
    pin: &Pinning,
    logs: &Path,
    scenario: Scenario,
    spec: &ServerSpec,
    round: usize,
    p: &Params,
) -> Result<LoadResult, String> {
    let tag = format!("{}-{}-r{round}", scenario.name(), spec.kind);
    let (mut server, port) = start_server(
        exe,
        pin,
        logs,
        scenario,
        spec,
        0,
        &format!("{tag}-server.log"),
    )?;
    let mut load = load_command(
        exe,
        pin,
        scenario,
        spec,
        p,
        port,
        &server.0.id().to_string(),
    );
    load.args(tls_args(logs, spec.kind))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(logs, &format!("{tag}-load.log")));
    let load = Reaped(
        load.spawn()
            .map_err(|e| format!("cannot start the load generator: {e}"))?,
    );
    let limit = Duration::from_secs_f64(p.warmup * 2.0 + p.secs + p.lat_secs + 150.0);
    let out = wait_output(load, limit)?;
    let alive = matches!(server.0.try_wait(), Ok(None));
    drop(server);
    let result = parse_result(&out, &tag)?;
    if !alive {
        return Err(format!(
            "the server exited during the run (see {tag}-server.log)"
        ));
    }
    // A TLS twin's numbers are TLS ones only if its connections were TLS.
    if is_tls(spec.kind) != result.tls.is_some() {
        return Err(format!(
            "expected {} connections, the load generator made {}",
            if is_tls(spec.kind) { "TLS" } else { "plain" },
            if result.tls.is_some() {
                "TLS ones"
            } else {
                "none over TLS"
            }
        ));
    }
    Ok(result)
}

/// One run of the storm scenario: the server, then the load generator, which
/// opens the storm's connections and prints `RESTART`; the server is then
/// killed (SIGKILL) and started again on the same port (retried while the port
/// is not free yet), and the load generator is told `UP <pid>`; it measures
/// until every client is back.
fn run_storm(
    exe: &Path,
    pin: &Pinning,
    logs: &Path,
    spec: &ServerSpec,
    round: usize,
    p: &Params,
) -> Result<LoadResult, String> {
    use std::io::Write as _;
    let scenario = Scenario::Storm;
    let tag = format!("{}-{}-r{round}", scenario.name(), spec.kind);
    let (server, port) = start_server(
        exe,
        pin,
        logs,
        scenario,
        spec,
        0,
        &format!("{tag}-server.log"),
    )?;
    let mut server = Some(server);
    let pid = server.as_ref().map_or(0, |s| s.0.id());
    let mut load = load_command(exe, pin, scenario, spec, p, port, &pid.to_string());
    load.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file(logs, &format!("{tag}-load.log")));
    let mut load = Reaped(
        load.spawn()
            .map_err(|e| format!("cannot start the load generator: {e}"))?,
    );
    let mut input = load.0.stdin.take().ok_or("no load generator stdin")?;
    let stdout = load.0.stdout.take().ok_or("no load generator stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(300);
    let mut restarted = false;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err("the load generator did not finish within 300 s".into())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!(
                    "the load generator printed no result (see {tag}-load.log)"
                ))
            }
        };
        if line == "RESTART" && !restarted {
            restarted = true;
            if !matches!(server.as_mut().map(|s| s.0.try_wait()), Some(Ok(None))) {
                return Err(format!(
                    "the server exited during the storm (see {tag}-server.log)"
                ));
            }
            // SIGKILL, and reaped: its port is free once its listener is closed.
            drop(server.take());
            let log = format!("{tag}-server-restarted.log");
            let mut tries = 0;
            let (again, _) = loop {
                tries += 1;
                match start_server(exe, pin, logs, scenario, spec, port, &log) {
                    Ok(s) => break s,
                    Err(e) if tries >= 100 => {
                        return Err(format!("the server did not start again on {port}: {e}"))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            writeln!(input, "UP {}", again.0.id())
                .and_then(|()| input.flush())
                .map_err(|e| format!("cannot tell the load generator: {e}"))?;
            server = Some(again);
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            let result = parse_result(&format!("RESULT {json}"), &tag)?;
            let alive = matches!(server.as_mut().map(|s| s.0.try_wait()), Some(Ok(None)));
            if !alive {
                return Err(format!(
                    "the restarted server exited during the run (see {tag}-server-restarted.log)"
                ));
            }
            drop(load);
            return Ok(result);
        }
    }
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

    let mut load = load_command(
        exe,
        pin,
        scenario,
        spec,
        p,
        nodes[0].1,
        &join(&|n| n.0 .0.id().to_string()),
    );
    load.args(["--nodes", &join(&|n| n.1.to_string())])
        .args(["--metrics", &join(&|n| n.2.to_string())])
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
    let result = parse_result(&out, &tag)?;
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
    ratio_between(runs, fw, runs, peer, f)
}

/// Median over rounds of `f(run of a in a_runs) / f(run of b in b_runs)` of the
/// same round number (two scenarios of one run: round *r* of each).
fn ratio_between(
    a_runs: &[Run],
    a: &str,
    b_runs: &[Run],
    b: &str,
    f: impl Fn(&LoadResult) -> Option<f64>,
) -> Option<f64> {
    let mut v = Vec::new();
    let rounds = a_runs.iter().map(|r| r.round).max().unwrap_or(0);
    for round in 1..=rounds {
        let get = |runs: &[Run], kind: &str| {
            runs.iter()
                .find(|r| r.round == round && r.kind == kind)
                .and_then(|r| r.result.as_ref().ok())
                .and_then(&f)
        };
        if let (Some(x), Some(y)) = (get(a_runs, a), get(b_runs, b)) {
            if y > 0.0 {
                v.push(x / y);
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
