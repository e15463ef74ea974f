//! The report: `BENCHMARKS.md` from the runs of every scenario (the machine, the
//! targets and their verdicts, one section per scenario, the method, every run).
//! Every table goes through [`table`].

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use super::*;

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

impl Target {
    /// A target without a CPU twin: `value` shown by `show`, passing `pass`.
    fn plain(
        scenario: Scenario,
        text: impl Into<String>,
        value: Option<f64>,
        show: fn(Option<f64>) -> String,
        pass: impl Fn(f64) -> bool,
    ) -> Target {
        Target {
            scenario,
            text: text.into(),
            shown: show(value),
            pass: value.map(pass),
            cpu_shown: "—".into(),
            cpu_pass: None,
        }
    }

    /// A measurement shown beside the targets with no bound set (verdict n/a).
    fn informational(scenario: Scenario, text: impl Into<String>, shown: String) -> Target {
        Target {
            scenario,
            text: text.into(),
            shown,
            pass: None,
            cpu_shown: "—".into(),
            cpu_pass: None,
        }
    }

    /// A ratio target `framework ÷ peer ≤ bound` on `f` (CPU, latency).
    fn at_most(
        scenario: Scenario,
        runs: &[Run],
        peer: &str,
        text: impl Into<String>,
        bound: f64,
        f: fn(&LoadResult) -> Option<f64>,
    ) -> Target {
        Target::plain(scenario, text, ratio(runs, peer, f), x2, |r| r <= bound)
    }
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
    text: String,
    bound: f64,
) -> Target {
    let r = ratio(runs, peer, thr);
    let c = ratio(runs, peer, cpu).map(|x| 1.0 / x);
    Target {
        scenario,
        text,
        shown: x2(r),
        pass: r.map(|r| r >= bound),
        cpu_shown: x2(c),
        cpu_pass: c.map(|c| c >= bound),
    }
}

fn ms2(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.2} ms", v / 1000.0))
}

fn kib2(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.2} KiB", v / 1024.0))
}

/// The targets of issue 13 (and, marked so, those of earlier rounds that it
/// did not replace), in the order of the scenarios run.
fn targets(all: &[Done]) -> Vec<Target> {
    let of = |s: Scenario| all.iter().find(|d| d.scenario == s);
    let mut out = Vec::new();
    for d in all {
        let (s, runs) = (d.scenario, d.runs.as_slice());
        let tput = |peer: &str, label: &str, bound: f64| {
            throughput_target(
                s,
                runs,
                peer,
                format!("throughput ≥ {bound:.1}× {label}"),
                bound,
            )
        };
        match s {
            Scenario::Echo => {
                out.push(tput("fastwebsockets", "fastwebsockets", 1.0));
                out.push(Target::at_most(
                    s,
                    runs,
                    "fastwebsockets",
                    "server user-space CPU per message ≤ fastwebsockets'",
                    1.0,
                    user,
                ));
                out.push(tput(
                    "tokio-tungstenite",
                    "tokio-tungstenite (an earlier round's target)",
                    1.1,
                ));
            }
            Scenario::Echo64k => {
                out.push(tput("fastwebsockets", "fastwebsockets", 1.0));
                out.push(tput("tokio-tungstenite", "tokio-tungstenite", 1.2));
            }
            Scenario::Rpc => {
                out.push(Target::at_most(
                    s,
                    runs,
                    "jsonrpsee",
                    "server user-space CPU per message ≤ 0.4× jsonrpsee's",
                    0.4,
                    user,
                ));
                out.push(Target::at_most(
                    s,
                    runs,
                    "floor",
                    "server user-space CPU per message ≤ 0.6× the hand-written floor's",
                    0.6,
                    user,
                ));
                out.push(tput("floor", "the hand-written floor", 1.2));
                out.push(tput(
                    "socketioxide",
                    "socketioxide (an earlier round's target)",
                    3.0,
                ));
            }
            Scenario::Fanout => {
                let rate = group(d.p.rate as i64);
                out.push(throughput_target(
                    s,
                    runs,
                    "socketioxide",
                    "peak deliveries/s ≥ 2.5× socketioxide".into(),
                    2.5,
                ));
                out.push(Target::at_most(
                    s,
                    runs,
                    "socketioxide",
                    "server CPU per delivery ≤ 0.4× socketioxide's, at the peak",
                    0.4,
                    cpu,
                ));
                out.push(Target::at_most(
                    s,
                    runs,
                    "socketioxide",
                    format!(
                        "server CPU per delivery ≤ 0.4× socketioxide's, at {rate} deliveries/s"
                    ),
                    0.4,
                    lat_cpu_per_100k,
                ));
                out.push(Target::plain(
                    s,
                    format!(
                        "p99 publish-to-delivery at {rate} deliveries/s ≤ 5 ms ({} subscribers)",
                        group(d.p.conns as i64)
                    ),
                    med(runs, "framework", p99),
                    ms2,
                    |l| l <= 5000.0,
                ));
                out.push(Target::at_most(
                    s,
                    runs,
                    "socketioxide",
                    format!("p99 at {rate} deliveries/s ≤ 0.5× socketioxide's"),
                    0.5,
                    p99,
                ));
                // How far from the writes alone: measured, no bound set.
                out.push(Target::informational(
                    s,
                    format!(
                        "p99 at {rate} deliveries/s ÷ the hand-written floor's (no bound \
                         set: how far from the writes alone; the floor's p99: {})",
                        ms2(med(runs, "floor", p99))
                    ),
                    x2(ratio(runs, "floor", p99)),
                ));
                out.push(Target::informational(
                    s,
                    format!(
                        "server CPU per delivery at {rate} deliveries/s ÷ the hand-written \
                         floor's (no bound set; the floor's: {} CPU-s per 100k)",
                        f3(med(runs, "floor", lat_cpu_per_100k))
                    ),
                    x2(ratio(runs, "floor", lat_cpu_per_100k)),
                ));
            }
            Scenario::Fanout10k => {
                // The same server, 10,000 subscribers ÷ 1,000, round by round.
                if let Some(k1) = of(Scenario::Fanout) {
                    for (when, f) in [
                        ("at the peak", cpu as fn(&LoadResult) -> Option<f64>),
                        ("at the fixed rate", lat_cpu_per_100k),
                    ] {
                        let r = ratio_between(runs, "framework", &k1.runs, "framework", f);
                        out.push(Target::plain(
                            s,
                            format!(
                                "server CPU per delivery does not grow with subscribers \
                                 (10,000 ÷ 1,000 ≤ 1.0×), {when}"
                            ),
                            r,
                            x2,
                            |r| r <= 1.0,
                        ));
                    }
                }
            }
            Scenario::Idle => {
                let b = med(runs, "framework", per_conn);
                out.push(Target::plain(
                    s,
                    "≤ 2.5 KiB of server memory per idle connection",
                    b,
                    kib2,
                    |b| b <= 2560.0,
                ));
                // "without trade-offs": the echo64k targets in the same run.
                let echo64k = of(Scenario::Echo64k).map(|e| {
                    let runs = e.runs.as_slice();
                    let t = |peer, bound| ratio(runs, peer, thr).is_some_and(|r: f64| r >= bound);
                    t("fastwebsockets", 1.0) && t("tokio-tungstenite", 1.2)
                });
                out.push(Target {
                    scenario: s,
                    text: "… with the echo64k throughput targets met in the same run".into(),
                    shown: format!(
                        "{}; echo64k {}",
                        kib2(b),
                        match echo64k {
                            Some(true) => "met",
                            Some(false) => "missed",
                            None => "not run",
                        }
                    ),
                    pass: echo64k.zip(b).map(|(e, b)| e && b <= 2560.0),
                    cpu_shown: "—".into(),
                    cpu_pass: None,
                });
                out.push(Target::at_most(
                    s,
                    runs,
                    "tokio-tungstenite",
                    "≤ 0.1× the memory of tokio-tungstenite (an earlier round's target)",
                    0.1,
                    per_conn,
                ));
            }
            Scenario::Storm => {
                out.push(throughput_target(
                    s,
                    runs,
                    "fastwebsockets",
                    format!(
                        "connect + upgrade + Welcome per second ≥ 1.0× fastwebsockets' \
                         connect + upgrade ({} connections)",
                        group(d.p.conns as i64)
                    ),
                    1.0,
                ));
                let back = med(runs, "framework", reconnect_ms);
                out.push(Target {
                    scenario: s,
                    text: format!(
                        "reconnect of {} clients after a server restart: time to all \
                         Welcomed (no bound set; fastwebsockets: {})",
                        group(d.p.conns as i64),
                        ms0(med(runs, "fastwebsockets", reconnect_ms))
                    ),
                    shown: ms0(back),
                    pass: None,
                    cpu_shown: "—".into(),
                    cpu_pass: None,
                });
            }
            // Measured, not targeted: what the cluster costs beside one node,
            // what TLS costs beside plain.
            Scenario::Cluster | Scenario::Recovery | Scenario::EchoTls | Scenario::FanoutTls => {}
        }
    }
    out
}

/// A markdown table.
fn table(w: &mut String, head: &[String], rows: &[Vec<String>]) {
    let _ = writeln!(w, "| {} |", head.join(" | "));
    let _ = writeln!(w, "|{}", "---|".repeat(head.len()));
    for row in rows {
        let _ = writeln!(w, "| {} |", row.join(" | "));
    }
    let _ = writeln!(w);
}

/// Header cells from string slices.
fn heads(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

/// One column of a per-server table: its header, and its cell for a server kind.
type Column<'a> = (&'a str, &'a dyn Fn(&str) -> String);

/// A table with a row per server: its label (with its failures), then a cell
/// per column.
fn server_table(
    w: &mut String,
    ran: &[&ServerSpec],
    failed: &dyn Fn(&str) -> String,
    columns: &[Column<'_>],
) {
    let mut head = vec!["server".to_string()];
    head.extend(columns.iter().map(|(h, _)| h.to_string()));
    let rows: Vec<Vec<String>> = ran
        .iter()
        .map(|spec| {
            let mut row = vec![format!("{}{}", spec.label, failed(spec.kind))];
            row.extend(columns.iter().map(|(_, cell)| cell(spec.kind)));
            row
        })
        .collect();
    table(w, &head, &rows);
}

/// The median CPU other processes used in a scenario's windows, and what that
/// means for its numbers (`per`: "message", "delivery", "connection").
fn others_note(w: &mut String, runs: &[Run], per: &str) {
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
                format!(
                    " (a shared, noisy machine: absolute numbers and latencies are \
                     unreliable; compare CPU per {per})"
                )
            } else {
                String::new()
            }
        );
    }
}

/// Flags the servers whose peak is below the fixed rate of the latency phase.
fn over_rate_note(w: &mut String, specs: &[&ServerSpec], runs: &[Run], rate: f64) {
    let short: Vec<&str> = specs
        .iter()
        .filter(|s| med(runs, s.kind, thr).is_some_and(|t| t < rate))
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
}

/// A column of ratios: its header, and its cell for a server (`—` for the base).
type RatioColumn<'a> = (String, &'a dyn Fn(&ServerSpec) -> String);

/// The latency phase of the fan-out scenarios and of cluster (open loop at one
/// fixed rate for every server): rate asked and achieved, servers' CPU, CPU per
/// delivery, `ratios`, the load generator's CPU and the latencies.
fn fixed_rate_table(
    w: &mut String,
    specs: &[&ServerSpec],
    runs: &[Run],
    engine: bool,
    ratios: &[RatioColumn<'_>],
) {
    let mut head = heads(&["server", "deliveries/s asked", "achieved", "server CPU"]);
    if engine {
        head[0] = "variant".into();
        head[3] = "nodes' CPU (sum)".into();
        head.push("engine CPU".into());
    }
    head.push("CPU-s per 100k deliveries".into());
    head.extend(ratios.iter().map(|(h, _)| h.clone()));
    head.extend(heads(&[
        "loadgen CPU",
        "p50 / p99 at the kernel's receive (µs)",
        "p50 / p99 when the subscriber task ran (µs)",
    ]));
    let rows: Vec<Vec<String>> = specs
        .iter()
        .map(|spec| {
            let m = |f: &dyn Fn(&LoadResult) -> Option<f64>| med(runs, spec.kind, f);
            let mut row = vec![
                spec.label.to_string(),
                f0(m(&|r| r.lat_rate)),
                f0(m(&|r| r.lat_throughput)),
                pct(m(&|r| r.lat_server_cpu)),
            ];
            if engine {
                row.push(pct(m(&|r| r.lat_engine_cpu)));
            }
            row.push(f3(m(&lat_cpu_per_100k)));
            row.extend(ratios.iter().map(|(_, f)| f(spec)));
            row.extend([
                pct(m(&|r| r.lat_client_cpu)),
                format!("{} / {}", f1(m(&p50)), f1(m(&p99))),
                format!(
                    "{} / {}",
                    f1(m(&|r| r.p50_task_us)),
                    f1(m(&|r| r.p99_task_us))
                ),
            ]);
            row
        })
        .collect();
    table(w, &head, &rows);
}

fn ms0(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{} ms", group(v.round() as i64)))
}

fn reconnect_ms(r: &LoadResult) -> Option<f64> {
    r.reconnect_ms
}

pub(super) fn report(args: &RunArgs, pin: &Pinning, all: &[Done], took: Duration) -> String {
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
        "The targets of issue 13 (2 cores, loopback, same run, medians), and the \
         targets of earlier rounds that it did not replace, marked so. Throughput \
         targets carry a second verdict: the same bound applied to the servers' CPU \
         time per message (peer CPU-s per 100k ÷ framework CPU-s per 100k), which \
         stays meaningful when the load generator, not the server, is the \
         bottleneck.\n"
    );
    let rows: Vec<Vec<String>> = targets(all)
        .into_iter()
        .map(|t| {
            let cpu_verdict = if t.cpu_shown == "—" {
                ""
            } else {
                verdict(t.cpu_pass)
            };
            vec![
                t.scenario.name().to_string(),
                t.text,
                t.shown,
                verdict(t.pass).to_string(),
                t.cpu_shown,
                cpu_verdict.to_string(),
            ]
        })
        .collect();
    table(
        w,
        &heads(&[
            "scenario",
            "target",
            "measured",
            "verdict",
            "same bound on server CPU per message",
            "verdict",
        ]),
        &rows,
    );

    for d in all {
        scenario_section(w, d, all);
    }

    // Written by hand (what profiles showed and what changed), kept across runs.
    let _ = writeln!(w, "## Profile-driven changes\n");
    let notes = std::fs::read_to_string("bench/profile-driven-changes.md")
        .unwrap_or_else(|_| "_bench/profile-driven-changes.md is missing._\n".to_string());
    // Its links to kept runs are relative to `bench/`, where it lives.
    let notes = notes.replace("](runs/", "](bench/runs/");
    let _ = writeln!(w, "{}", notes.trim_end());
    let _ = writeln!(w);

    method(w, args);

    let _ = writeln!(w, "## Every run\n\n<details><summary>per round</summary>\n");
    let mut rows = Vec::new();
    for d in all {
        for r in &d.runs {
            let (scenario, round, kind) = (d.scenario.name().to_string(), r.round, r.kind);
            rows.push(match &r.result {
                Ok(x) => {
                    // Recovery: replayed publications/s at the median recovery
                    // time, the recovery time's median and slowest, the servers'
                    // CPU (scheduler time, not split) per 100k replayed; the
                    // load generator's CPU is not read.
                    let measured = |v: f64| (d.scenario != Scenario::Recovery).then_some(v);
                    vec![
                        scenario,
                        round.to_string(),
                        kind.to_string(),
                        f0(Some(x.throughput)),
                        f1(Some(x.p50_us)),
                        f1(Some(x.p99_us)),
                        format!(
                            "{} ({})",
                            f3(Some(x.server_cpu_per_100k)),
                            f3(measured(x.server_user_per_100k))
                        ),
                        pct(measured(x.client_cpu)),
                        pct(measured(x.other_cpu)),
                        f0(x.bytes_per_conn),
                        "ok".into(),
                    ]
                }
                Err(e) => {
                    let mut row = vec![scenario, round.to_string(), kind.to_string()];
                    row.extend(std::iter::repeat_n(String::new(), 7));
                    row.push(format!("FAILED: {}", e.replace('|', "/")));
                    row
                }
            });
        }
    }
    table(
        w,
        &heads(&[
            "scenario",
            "round",
            "server",
            "msgs/s",
            "p50 µs",
            "p99 µs",
            "server CPU-s/100k (user)",
            "loadgen CPU",
            "other processes' CPU",
            "bytes/conn",
            "result",
        ]),
        &rows,
    );
    let _ = writeln!(
        w,
        "Storm rows: msgs/s is connections per second, p50 / p99 the time from \
         `connect` to the protocol's opening done, CPU per 100k connections.\n"
    );
    let _ = writeln!(w, "</details>");
    md
}

fn method(w: &mut String, args: &RunArgs) {
    let p = |s| params(s, args.smoke, args.time_scale);
    let (echo, echo64k, fanout, fanout10k, idle, storm) = (
        p(Scenario::Echo),
        p(Scenario::Echo64k),
        p(Scenario::Fanout),
        p(Scenario::Fanout10k),
        p(Scenario::Idle),
        p(Scenario::Storm),
    );
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
         one round trip (echo, rpc), one delivery (fanout) or one connection (storm).\n\
         - **Servers**: each peer as its documentation writes it, on a default \
         multi-threaded tokio runtime (one worker when pinned), TCP_NODELAY on \
         accepted sockets (as the framework). jsonrpsee's connection limit (default \
         100) and the framework's per-IP limit (default 10,000) are raised so the \
         idle scenario can open 10,000 connections from 127.0.0.1. sockudo-ws: its \
         `simple_echo` example (its handshake helpers, `WebSocketStream::server` with \
         the default `Config`), built without compression. **Sockudo** (crate \
         `sockudo`, built by `scripts/bench.sh` with `cargo install --locked \
         --no-default-features --features local`: no OpenTelemetry, no delta \
         compression, tag filtering or recovery; the in-memory adapter, cache and app \
         manager) runs as its own process, configured through its environment: one \
         app (`SOCKUDO_DEFAULT_APP_ID/KEY/SECRET`), the app's limits of 100 \
         connections and 100 HTTP API events per second raised, the rate limiter off \
         (every client is 127.0.0.1), everything else as it comes (metrics on). Its \
         clients speak the Pusher protocol as pusher-js does (`/app/{{key}}?protocol=7`, \
         `pusher:subscribe`, `pusher:ping` answered); publishing goes through its HTTP \
         API, `POST /apps/{{id}}/events` signed as Pusher's server libraries sign it \
         (HMAC-SHA256 over method, path and query with `body_md5`), each response \
         checked; Sockudo answers every API request with `Connection: close` (its \
         router adds it against idle connections), so each publish is a connection \
         of its own.\n\
         - **echo**: {} connections, one {}-byte binary message in flight on each, \
         closed loop; {} s warm-up, {} s window. Latency is the round trip.\n\
         - **echo64k**: the same with {}-byte messages.\n\
         - **rpc**: same closed loop. Framework and floor: a protocol v1 `Message` \
         (opcode 200, transaction id, FlatBuffers payload `{{id: u64, a: i64, b: \
         i64}}`) answered with `{{id, sum}}`; the floor is the same frames verified, \
         decoded and encoded by hand on tokio-tungstenite + flatbuffers. jsonrpsee: a \
         JSON-RPC method call. socketioxide: an event answered through its ack.\n\
         - **fanout**: 1 publisher and {} subscribers of one channel (room, \
         subscription), {}-byte payload carrying a sequence number and the send \
         time. Peak: at most {} publishes not yet delivered to every subscriber, \
         deliveries/s over {} s. Then {} s open loop at one fixed rate for every \
         server, {} deliveries/s: p50/p99 of publish-to-delivery (send time, \
         `CLOCK_REALTIME`, in the payload; receive time from the kernel's \
         `SO_TIMESTAMPNS` on the subscriber's socket) and the server's CPU per \
         delivery at that rate.\n\
         - **fanout10k**: the same with {} subscribers (the load generator and each \
         server raise their open-file limit to the hard limit), the same fixed rate \
         in deliveries/s ({} publishes/s).\n\
         - **fanout floor** (`floor` in fanout and fanout10k): the cost of the writes \
         alone, with no framework and no WebSocket library. The same frames as the \
         framework's protocol service, without `Welcome`: a `Subscribe` acknowledged \
         with its transaction id, and each delivery a protocol `Message` with opcode \
         `Publish`, the channel, the payload, the publisher's session id and a trace \
         id (as many bytes as the framework's). The upgrade and the masked client \
         frames are handled by hand on tokio's `TcpStream`; on each `Publish` the \
         publisher's own task encodes the delivery once and writes it to every \
         subscriber's socket with one nonblocking `write` each (no task per \
         subscriber, no queue, no wake-up). A socket that does not take a whole \
         frame keeps the rest, and every later frame while any is left, in a backlog \
         its connection's task writes out when the socket is writable again. At the \
         fixed rate, where deliveries are written one by one, it is the floor of a \
         `write` per delivery; at the peak it is no floor for CPU: the framework's \
         writer puts the deliveries queued for one subscriber in one `writev`, the \
         floor still makes one `write` per delivery.\n\
         - **idle**: {} connections opened (and the protocol's own opening done: \
         Welcome, Socket.IO connect, Pusher's `connection_established`), held {} s; \
         the server's `VmRSS` after minus before, ÷ connections (user-space memory \
         only: kernel socket buffers are not in RSS).\n\
         - **storm**: {} clients connect, at most {} at once: TCP connect, upgrade \
         and the protocol's opening (the framework's protocol service: `Welcome`; \
         its raw service, fastwebsockets, sockudo-ws and tokio-tungstenite: the \
         101 response; socketioxide: Engine.IO open and Socket.IO connect; Sockudo: \
         `connection_established`); connections per second from the first `connect` \
         to the last opening, and the server's CPU per connection. The connections \
         are held {} s, then the runner kills the server (SIGKILL) and starts it \
         again on the same port; every client sees its connection end and \
         reconnects as the framework's client does (`ReconnectPolicy::default()`: \
         first wait 250 ms, doubling up to 10 s, each wait shortened by up to half \
         at random), with no limit on attempts in flight. Measured: the time from \
         the first connection lost to every client back (connected and past the \
         opening), and from the new server listening to every client back.",
        echo.conns,
        echo.size,
        echo.warmup,
        echo.secs,
        group(echo64k.size as i64),
        group(fanout.conns as i64),
        crate::spec::FANOUT_PAYLOAD,
        fanout.window,
        fanout.secs,
        fanout.lat_secs,
        group(fanout.rate as i64),
        group(fanout10k.conns as i64),
        f0(Some(fanout10k.rate / fanout10k.conns.max(1) as f64)),
        group(idle.conns as i64),
        idle.warmup,
        group(storm.conns as i64),
        storm.window,
        storm.warmup,
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
         the change of its `framework_cluster_received_total`.",
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
        "- **echo-tls**, **fanout-tls**: the echo and fanout loads (the same counts, \
         windows and fixed rate) against each server twice a round, plain and then \
         its TLS twin: the same server serving TLS with a certificate the runner \
         makes for the run (rcgen), the load generator's client on rustls (ring \
         provider) trusting only that certificate. The TLS scenarios time latency in \
         user space, plain and TLS alike (fanout-tls: when the subscriber task has \
         the delivery, not at the kernel's receive timestamp).\n"
    );
    let _ = writeln!(
        w,
        "Rerun: `bash scripts/bench.sh` (full, about 18 minutes after the build), \
         `bash scripts/bench.sh --smoke` (under a minute), options after the script \
         name (`--rounds N`, `--only echo,echo64k`, `--only fanout,fanout10k` or \
         `--only echo-tls,fanout-tls`, \
         `--time-scale X`). Absolute numbers on a shared machine drift between runs; \
         the ratios of one run are the result.\n"
    );
}

fn scenario_section(w: &mut String, d: &Done, all: &[Done]) {
    let (scenario, p, runs) = (d.scenario, &d.p, d.runs.as_slice());
    let _ = match scenario {
        Scenario::Echo | Scenario::Echo64k => writeln!(
            w,
            "## {} — raw service, {} connections, one {}-byte message in flight each\n",
            scenario.name(),
            p.conns,
            group(p.size as i64)
        ),
        Scenario::EchoTls => writeln!(
            w,
            "## echo-tls — the echo load plain and over TLS, {} connections, one {}-byte \
             message in flight each\n",
            p.conns,
            group(p.size as i64)
        ),
        Scenario::Rpc => writeln!(
            w,
            "## rpc — typed request/response (opcode 200), {} connections, closed loop\n",
            p.conns
        ),
        Scenario::Fanout | Scenario::Fanout10k => writeln!(
            w,
            "## {} — 1 publisher, {} subscribers, {}-byte payload\n",
            scenario.name(),
            group(p.conns as i64),
            crate::spec::FANOUT_PAYLOAD
        ),
        Scenario::FanoutTls => writeln!(
            w,
            "## fanout-tls — the fanout load plain and over TLS, 1 publisher, {} \
             subscribers, {}-byte payload\n",
            group(p.conns as i64),
            crate::spec::FANOUT_PAYLOAD
        ),
        Scenario::Idle => writeln!(
            w,
            "## idle — memory per idle connection, {} connections\n",
            group(p.conns as i64)
        ),
        Scenario::Storm => writeln!(
            w,
            "## storm — {} connections at once, then reconnected after a server restart\n",
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
    for (kind, why) in &d.skipped {
        let label = crate::spec::find(scenario, kind).map_or(*kind, |s| s.label);
        let _ = writeln!(w, "**Not run: {label}.** {why}\n");
    }
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
    // The servers that ran (not skipped); the history variant is compared with
    // the plain framework in a section of its own.
    let ran: Vec<&ServerSpec> = servers(scenario)
        .iter()
        .filter(|s| !d.skipped.iter().any(|(k, _)| k == &s.kind))
        .filter(|s| !(scenario == Scenario::Fanout && has_history(s.kind)))
        .collect();
    match scenario {
        Scenario::Cluster => cluster_section(w, p, runs, &failed),
        Scenario::Recovery => recovery_section(w, p, runs, &failed),
        Scenario::Echo | Scenario::Echo64k | Scenario::Rpc => {
            closed_loop_section(w, &ran, runs, &failed)
        }
        Scenario::Fanout | Scenario::Fanout10k => fanout_section(w, d, &ran, all, &failed),
        Scenario::Idle => idle_section(w, &ran, runs, &failed),
        Scenario::Storm => storm_section(w, p, &ran, runs, &failed),
        Scenario::EchoTls | Scenario::FanoutTls => tls_section(w, d, &ran, &failed),
    }
}

/// `framework ÷ server` of `f`, `—` on the framework's own row.
fn vs_fw(runs: &[Run], kind: &str, f: fn(&LoadResult) -> Option<f64>) -> String {
    if kind == servers_framework(runs) {
        "—".into()
    } else {
        x2(ratio(runs, kind, f))
    }
}

fn closed_loop_section(
    w: &mut String,
    ran: &[&ServerSpec],
    runs: &[Run],
    failed: &dyn Fn(&str) -> String,
) {
    let latency = |k: &str| format!("{} / {}", f1(med(runs, k, p50)), f1(med(runs, k, p99)));
    server_table(
        w,
        ran,
        failed,
        &[
            ("msgs/s", &|k| f0(med(runs, k, thr))),
            ("round trip p50 / p99 (µs)", &latency),
            ("server CPU-s per 100k messages", &|k| f3(med(runs, k, cpu))),
            ("of which user space", &|k| f3(med(runs, k, user))),
            ("loadgen CPU", &|k| pct(med(runs, k, client))),
            ("framework ÷ server, throughput", &|k| vs_fw(runs, k, thr)),
            ("framework ÷ server, CPU per message", &|k| {
                vs_fw(runs, k, cpu)
            }),
            ("framework ÷ server, user-space CPU per message", &|k| {
                vs_fw(runs, k, user)
            }),
        ],
    );
    others_note(w, runs, "message");
    client_bound_note(w, runs);
    let _ = writeln!(
        w,
        "Throughput ratios above 1 and CPU-per-message ratios below 1 favour the \
         framework.\n"
    );
}

/// Says so when the load generator was the bottleneck against the framework.
fn client_bound_note(w: &mut String, runs: &[Run]) {
    let client_cpu = med(runs, servers_framework(runs), client).unwrap_or(0.0);
    if client_cpu >= 0.9 {
        let _ = writeln!(
            w,
            "The load generator used {:.0}% of its core against the framework: the \
             client is the bottleneck, so throughput ratios understate differences; \
             the CPU-per-message column is the comparison that holds.\n",
            client_cpu * 100.0
        );
    }
}

fn fanout_section(
    w: &mut String,
    d: &Done,
    ran: &[&ServerSpec],
    all: &[Done],
    failed: &dyn Fn(&str) -> String,
) {
    let (p, runs) = (&d.p, d.runs.as_slice());
    let rate = f0(Some(p.rate));
    let _ = writeln!(
        w,
        "Peak: at most {} publishes not yet delivered to every subscriber.\n",
        p.window
    );
    server_table(
        w,
        ran,
        failed,
        &[
            ("peak deliveries/s", &|k| f0(med(runs, k, thr))),
            ("server CPU-s per 100k deliveries", &|k| {
                f3(med(runs, k, cpu))
            }),
            ("of which user space", &|k| f3(med(runs, k, user))),
            ("loadgen CPU", &|k| pct(med(runs, k, client))),
            ("framework ÷ server, peak", &|k| vs_fw(runs, k, thr)),
            ("framework ÷ server, CPU per delivery", &|k| {
                vs_fw(runs, k, cpu)
            }),
        ],
    );
    others_note(w, runs, "delivery");
    client_bound_note(w, runs);
    // The floor writes every delivery alone, at the peak too: it is the floor of
    // the fixed rate, not of the peak's CPU per delivery.
    let floor = if ran.iter().any(|s| s.kind == "floor") {
        " (the servers', not the hand-written floor's: it makes one `write` per \
         delivery at the peak too, so it is no floor for the peak's CPU per delivery)"
    } else {
        ""
    };
    let _ = writeln!(
        w,
        "At one fixed rate for every server, {rate} deliveries/s ({} publishes/s to {} \
         subscribers), open loop; CPU as a fraction of one core. At the peak, publishes \
         queue up and one write carries several deliveries{floor}; at a fixed rate below \
         it most deliveries are written alone, so this phase compares the servers' CPU \
         per delivery and latency at the same load:\n",
        f0(Some(p.rate / p.conns.max(1) as f64)),
        group(p.conns as i64),
    );
    over_rate_note(w, ran, runs, p.rate);
    let cpu_ratio = |s: &ServerSpec| vs_fw(runs, s.kind, lat_cpu_per_100k);
    let p99_ratio = |s: &ServerSpec| vs_fw(runs, s.kind, p99);
    fixed_rate_table(
        w,
        ran,
        runs,
        false,
        &[
            ("framework ÷ server, CPU per delivery".into(), &cpu_ratio),
            ("framework ÷ server, p99".into(), &p99_ratio),
        ],
    );
    let _ = writeln!(
        w,
        "Latency is measured to the kernel's receive timestamp of the delivery on the \
         subscriber's socket (`SO_TIMESTAMPNS`), so the load generator's own queueing \
         is left out; the last column includes it.\n"
    );
    if d.scenario == Scenario::Fanout {
        fanout_history_section(w, runs, failed);
    }
    let Some(k1) = all.iter().find(|x| x.scenario == Scenario::Fanout) else {
        return;
    };
    if d.scenario != Scenario::Fanout10k {
        return;
    }
    let _ = writeln!(
        w,
        "### {} subscribers ÷ {} (each server against itself, round by round)\n",
        group(p.conns as i64),
        group(k1.p.conns as i64)
    );
    let rows: Vec<Vec<String>> = ran
        .iter()
        .map(|spec| {
            let r = |f: fn(&LoadResult) -> Option<f64>| {
                x2(ratio_between(runs, spec.kind, &k1.runs, spec.kind, f))
            };
            vec![
                spec.label.to_string(),
                r(thr),
                r(cpu),
                r(lat_cpu_per_100k),
                r(p99),
            ]
        })
        .collect();
    table(
        w,
        &heads(&[
            "server",
            "peak deliveries/s",
            "CPU per delivery at the peak",
            "CPU per delivery at the fixed rate",
            "p99 at the fixed rate",
        ]),
        &rows,
    );
    let _ = writeln!(
        w,
        "Above 1, the server does more (throughput) or costs more (CPU, latency) with \
         10 times the subscribers per publish.\n"
    );
}

/// The TLS scenarios: each server beside its TLS twin, TLS ÷ plain (the median
/// of the per-round ratios), with what the TLS connections negotiated.
fn tls_section(w: &mut String, d: &Done, ran: &[&ServerSpec], failed: &dyn Fn(&str) -> String) {
    use crate::spec::tls_kind;
    let (p, runs) = (&d.p, d.runs.as_slice());
    let pairs: Vec<(&ServerSpec, String)> = ran
        .iter()
        .filter(|s| !is_tls(s.kind) && ran.iter().any(|t| t.kind == tls_kind(s.kind)))
        .map(|s| (*s, tls_kind(s.kind)))
        .collect();
    let _ = writeln!(
        w,
        "Every round runs each server twice with the same load, plain (`ws://`) and \
         over TLS (`wss://`), one right after the other. TLS is rustls with the `ring` \
         provider on every side, with rustls' default protocol versions and cipher \
         suites; the certificate is {}. Each server's TLS, and what the load \
         generator's first connection of its TLS runs negotiated (rustls' names: \
         version, cipher suite, key exchange group), with the TLS handshakes of a run \
         (the median over rounds):\n",
        crate::tls::describe(),
    );
    for (spec, tls) in &pairs {
        let session = ok_runs(runs, tls)
            .first()
            .and_then(|r| r.tls.clone())
            .map_or("— (no TLS run succeeded)".into(), |t| {
                format!("`{}`", t.session)
            });
        let count = |f: fn(&crate::tls::Negotiated) -> u64| {
            f0(med(runs, tls, |r| r.tls.as_ref().map(|t| f(t) as f64)))
        };
        let _ = writeln!(
            w,
            "- {}, {}: {session}; {} handshakes ({} resumed)",
            spec.label,
            tls_setup(spec.kind),
            count(|t| t.handshakes),
            count(|t| t.resumed)
        );
    }
    let _ = writeln!(w);
    let col = VariantCol::new;
    let rate = f0(Some(p.rate));
    let (per, cols) = if d.scenario.is_echo() {
        (
            "message",
            vec![
                col("msgs/s", thr, f0, true),
                col("round trip p99 (µs)", p99, f1, true),
                col("server CPU-s per 100k messages", cpu, f3, true),
                col("of which user space", user, f3, true),
                col("loadgen CPU", client, pct, false),
            ],
        )
    } else {
        (
            "delivery",
            vec![
                col("peak deliveries/s", thr, f0, true),
                col("server CPU-s per 100k deliveries (peak)", cpu, f3, true),
                col(
                    &format!("CPU-s per 100k deliveries at {rate}/s"),
                    lat_cpu_per_100k,
                    f3,
                    true,
                ),
                col(&format!("p99 at {rate} deliveries/s (µs)"), p99, f1, true),
                col("loadgen CPU (peak)", client, pct, false),
            ],
        )
    };
    tls_table(w, &pairs, runs, failed, &cols);
    others_note(w, runs, per);
    let bound: Vec<&str> = ran
        .iter()
        .filter(|s| med(runs, s.kind, client).is_some_and(|c| c >= 0.9))
        .map(|s| s.label)
        .collect();
    if !bound.is_empty() {
        let _ = writeln!(
            w,
            "The load generator, which encrypts and decrypts too, used 90% or more of \
             its core against {}: the client is the bottleneck there, so throughput \
             ratios understate the servers' difference; CPU per {per} is the \
             comparison that holds.\n",
            bound.join(", ")
        );
    }
    if d.scenario.is_echo() {
        let _ = writeln!(
            w,
            "The round trip is timed on the load generator, plain and TLS alike: from \
             before the message is written to when its echo has been read (and \
             decrypted) and checked.\n"
        );
        return;
    }
    over_rate_note(w, ran, runs, p.rate);
    let _ = writeln!(
        w,
        "Latency is publish-to-delivery at the fixed rate, with the receive time \
         taken in user space, plain and TLS alike: when the subscriber task has read \
         (and decrypted) and parsed the delivery (`CLOCK_REALTIME`). The fanout \
         section's primary latency uses the kernel's receive timestamp instead, which \
         over TLS would be that of encrypted bytes, not of a delivery; these p99 \
         include the load generator's own queueing and compare with that section's \
         last column, not its kernel one.{}\n",
        if pairs.iter().any(|(s, _)| is_external(s.kind)) {
            " Sockudo's publisher sends each publish as an HTTP API request on a new \
             connection (Sockudo closes each one after its response): over TLS every \
             publish costs a handshake as well (counted above; resumed ones skip the \
             certificate), and the publisher, which opens them one at a time, waits \
             for each."
        } else {
            ""
        }
    );
}

/// How server `kind` serves TLS in the TLS scenarios.
fn tls_setup(kind: &str) -> &'static str {
    match kind {
        "framework" => "its own TLS (`Config::tls`: `TlsConfig::new(cert, key)`)",
        "fastwebsockets" => {
            "behind tokio-rustls' `TlsAcceptor`, as its `tls_server` example (vectored \
             writes off, as there)"
        }
        "sockudo" => {
            "its own TLS (`SSL_ENABLED`, `SSL_CERT_PATH`, `SSL_KEY_PATH`: axum-server's rustls)"
        }
        _ => "TLS",
    }
}

/// Servers beside their TLS twins, one row a server: each column's value
/// plain, then over TLS, then (for the columns that have one) TLS ÷ plain, the
/// median of the per-round ratios.
fn tls_table(
    w: &mut String,
    pairs: &[(&ServerSpec, String)],
    runs: &[Run],
    failed: &dyn Fn(&str) -> String,
    cols: &[VariantCol],
) {
    let mut head = vec!["server".to_string()];
    for c in cols {
        head.push(format!("{}, plain", c.head));
        head.push(format!("{}, TLS", c.head));
        if c.ratio {
            head.push(format!("{}, TLS ÷ plain", c.head));
        }
    }
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(spec, twin)| {
            let twin_failed = failed(twin).replace("failed", "failed over TLS");
            let mut row = vec![format!("{}{}{twin_failed}", spec.label, failed(spec.kind))];
            for c in cols {
                row.push((c.fmt)(med(runs, spec.kind, c.f)));
                row.push((c.fmt)(med(runs, twin, c.f)));
                if c.ratio {
                    row.push(x2(ratio_of(runs, twin, spec.kind, c.f)));
                }
            }
            row
        })
        .collect();
    table(w, &head, &rows);
}

fn idle_section(
    w: &mut String,
    ran: &[&ServerSpec],
    runs: &[Run],
    failed: &dyn Fn(&str) -> String,
) {
    let mib = |v: Option<u64>| v.map(|x| x as f64 / 1048576.0);
    let rss = |k: &str| {
        format!(
            "{} → {}",
            f1(med(runs, k, |r| mib(r.rss_before))),
            f1(med(runs, k, |r| mib(r.rss_after)))
        )
    };
    server_table(
        w,
        ran,
        failed,
        &[
            ("bytes per connection", &|k| f0(med(runs, k, per_conn))),
            ("KiB per connection", &|k| {
                f1(med(runs, k, per_conn).map(|b| b / 1024.0))
            }),
            ("RSS before → after (MiB)", &rss),
            ("framework ÷ server", &|k| vs_fw(runs, k, per_conn)),
        ],
    );
    let _ = writeln!(w, "Ratios below 1 favour the framework.\n");
}

fn storm_section(
    w: &mut String,
    p: &Params,
    ran: &[&ServerSpec],
    runs: &[Run],
    failed: &dyn Fn(&str) -> String,
) {
    let _ = writeln!(
        w,
        "{} clients connect, at most {} at once; each connection counts once its \
         opening is done (the protocol service's `Welcome`; the 101 response of the \
         plain WebSocket servers; Engine.IO open + Socket.IO connect; Pusher's \
         `connection_established`). CPU per connection is the server's over the whole \
         storm. Every server the harness builds listens with the framework's default \
         backlog (`listen_backlog`, 4,096; tokio's `bind` would give 128, and a burst \
         of {} would then overflow it: the SYNs dropped are sent again a second later, \
         and that second, not the server, would set the rate); Sockudo, a program of \
         its own, listens with 128. \"slowest\" is the slowest connect, and the count \
         beside it the connects over 900 ms: those waited for a SYN retransmission.\n",
        group(p.conns as i64),
        p.window,
        p.window
    );
    let per_k = |r: &LoadResult| cpu(r).map(|c| c * 10.0);
    let user_k = |r: &LoadResult| user(r).map(|c| c * 10.0);
    let connect = |k: &str| {
        format!(
            "{} / {}",
            f1(med(runs, k, |r| Some(r.p50_us / 1000.0))),
            f1(med(runs, k, |r| Some(r.p99_us / 1000.0)))
        )
    };
    server_table(
        w,
        ran,
        failed,
        &[
            ("connections/s", &|k| f0(med(runs, k, thr))),
            ("connect → opened p50 / p99 (ms)", &connect),
            ("slowest (ms), over 900 ms", &|k| {
                format!(
                    "{}, {}",
                    f0(med(runs, k, |r| r.max_us.map(|us| us / 1000.0))),
                    f0(med(runs, k, |r| r.syn_retried.map(|n| n as f64)))
                )
            }),
            ("server CPU-ms per 1,000 connections", &|k| {
                f1(med(runs, k, per_k))
            }),
            ("of which user space", &|k| f1(med(runs, k, user_k))),
            ("loadgen CPU", &|k| pct(med(runs, k, client))),
            ("framework ÷ server, connections/s", &|k| {
                vs_fw(runs, k, thr)
            }),
            ("framework ÷ server, CPU per connection", &|k| {
                vs_fw(runs, k, cpu)
            }),
        ],
    );
    others_note(w, runs, "connection");
    let _ = writeln!(
        w,
        "After {} s the server is killed (SIGKILL) and started again on the same port; \
         every client reconnects with backoff and jitter (the framework client's \
         default policy). Times are from the first connection lost, and from the new \
         server listening, to the last client back:\n",
        p.warmup
    );
    let attempts = |k: &str| {
        format!(
            "{} ({})",
            f0(med(runs, k, |r| r.reconnect_attempts.map(|x| x as f64))),
            f0(med(runs, k, |r| r.reconnect_failed.map(|x| x as f64)))
        )
    };
    let restart_cpu = |k: &str| {
        ms0(med(runs, k, |r| {
            r.reconnect_server_cpu_s.map(|s| s * 1000.0)
        }))
    };
    server_table(
        w,
        ran,
        failed,
        &[
            ("all back after the first loss", &|k| {
                ms0(med(runs, k, reconnect_ms))
            }),
            ("of it until the new server listened", &|k| {
                ms0(med(runs, k, |r| r.restart_ms))
            }),
            ("all back after it listened", &|k| {
                ms0(med(runs, k, |r| r.reconnect_up_ms))
            }),
            ("attempts (failed)", &attempts),
            ("new server's CPU until all were back", &restart_cpu),
            ("framework ÷ server, all back", &|k| {
                vs_fw(runs, k, reconnect_ms)
            }),
        ],
    );
    let _ = writeln!(
        w,
        "The first reconnection waits 125–250 ms (the policy's 250 ms, up to half \
         off at random), so that much of every time above is the clients' own \
         backoff; an attempt that fails (the port closed, a refused or timed-out \
         connect) doubles the next wait. With every client arriving within those \
         125 ms, the listen backlog (4,096, the kernel's `somaxconn` cap; Sockudo's \
         128) can fill, and the kernel drops the SYNs that find it full; their clients' \
         kernels send them again after 1 s, then 3 s: how fast a server accepts and \
         upgrades decides how many connections wait for those retransmissions.\n"
    );
}

fn cluster_section(w: &mut String, p: &Params, runs: &[Run], failed: &dyn Fn(&str) -> String) {
    let single = servers_framework(runs);
    let specs: Vec<&ServerSpec> = servers(Scenario::Cluster).iter().collect();
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
    let vs_single = |kind: &str, f: fn(&LoadResult) -> Option<f64>| {
        if kind == single {
            "—".into()
        } else {
            x2(ratio_of(runs, kind, single, f))
        }
    };
    let rows: Vec<Vec<String>> = specs
        .iter()
        .map(|spec| {
            let k = spec.kind;
            let each = |i: usize| f3(med(runs, k, |r| nth(&node_cpu_per_100k(r), i)));
            vec![
                format!("{}{}", spec.label, failed(k)),
                f0(med(runs, k, thr)),
                format!("{} / {}", f1(med(runs, k, p50)), f1(med(runs, k, p99))),
                f3(med(runs, k, cpu)),
                if k == single {
                    "—".to_string()
                } else {
                    format!("{} / {} / {}", each(0), each(1), each(2))
                },
                f3(med(runs, k, |r| r.engine_cpu_per_100k)),
                f3(med(runs, k, total_cpu)),
                vs_single(k, total_cpu),
                vs_single(k, thr),
                pct(med(runs, k, client)),
            ]
        })
        .collect();
    table(
        w,
        &[
            "variant".to_string(),
            "peak deliveries/s".into(),
            format!("p50 / p99 at {} deliveries/s (µs)", f0(Some(p.rate))),
            "nodes' CPU-s per 100k deliveries".into(),
            "of it node A / B / C".into(),
            "engine's CPU-s per 100k deliveries".into(),
            "nodes + engine".into(),
            "÷ 1 node, CPU per delivery".into(),
            "÷ 1 node, peak".into(),
            "loadgen CPU".into(),
        ],
        &rows,
    );
    others_note(w, runs, "delivery");
    over_rate_note(w, &specs, runs, p.rate);
    let _ = writeln!(
        w,
        "The latency phase (open loop at the fixed rate); CPU as a fraction of one core. \
         At the peak, publishes queue up and one write carries several deliveries; at a \
         fixed rate below it every delivery is written alone, so this phase compares the \
         variants' CPU per delivery without that batching (the ratio is per delivery \
         achieved):\n"
    );
    let cpu_ratio = |s: &ServerSpec| vs_single(s.kind, lat_cpu_per_100k);
    fixed_rate_table(
        w,
        &specs,
        runs,
        true,
        &[("nodes + engine ÷ 1 node".into(), &cpu_ratio)],
    );
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
         the offsets it receives go up by exactly 1. Its latency phase runs at the same \
         fixed rate as every server's. The last row is history ÷ plain, the median of the per-round \
         ratios; above 1, history costs more.\n",
        crate::spec::HISTORY_SIZE,
        crate::spec::HISTORY_TTL.as_secs(),
        group(crate::spec::HISTORY_SIZE as i64),
        crate::spec::HISTORY_TTL.as_secs(),
    );
    let col = VariantCol::new;
    history_table(
        w,
        Scenario::Fanout,
        (plain, hist),
        runs,
        failed,
        &[
            col("peak deliveries/s", thr, f0, true),
            col("server CPU-s per 100k deliveries (peak)", cpu, f3, true),
            col("of which user space", user, f3, true),
            col("fixed rate: deliveries/s asked", |r| r.lat_rate, f0, false),
            col("achieved", |r| r.lat_throughput, f0, false),
            col(
                "server CPU at the fixed rate",
                |r| r.lat_server_cpu,
                pct,
                true,
            ),
            col(
                "CPU-s per 100k deliveries at the fixed rate",
                lat_cpu_per_100k,
                f3,
                true,
            ),
            col("p50 at the fixed rate (µs)", p50, f1, true),
            col("p99 at the fixed rate (µs)", p99, f1, true),
            col("loadgen CPU (peak)", client, pct, false),
        ],
    );
    let over = ok_runs(runs, hist)
        .iter()
        .filter(|r| r.lat_rate.is_some_and(|rate| rate > r.throughput))
        .count();
    if over > 0 {
        let _ = writeln!(
            w,
            "**In {over} round(s) the fixed rate was above the \
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
    let col = VariantCol::new;
    let rate = f0(Some(p.rate));
    history_table(
        w,
        Scenario::Cluster,
        (plain, hist),
        runs,
        failed,
        &[
            col("peak deliveries/s", thr, f0, true),
            col(
                "nodes + engine CPU-s per 100k deliveries (peak)",
                total_cpu,
                f3,
                true,
            ),
            col("of it the engine", |r| r.engine_cpu_per_100k, f3, true),
            col(&format!("p50 at {rate} deliveries/s (µs)"), p50, f1, true),
            col(&format!("p99 at {rate} deliveries/s (µs)"), p99, f1, true),
            col(
                "nodes + engine CPU-s per 100k deliveries at that rate",
                lat_cpu_per_100k,
                f3,
                true,
            ),
            col("engine CPU at that rate", |r| r.lat_engine_cpu, pct1, true),
        ],
    );
}

/// One column of a table of servers beside a variant of themselves (history on
/// vs off, TLS vs plain): its header, value and format, and whether the table
/// shows its variant ÷ plain ratio.
struct VariantCol {
    head: String,
    f: fn(&LoadResult) -> Option<f64>,
    fmt: fn(Option<f64>) -> String,
    ratio: bool,
}

impl VariantCol {
    fn new(
        head: &str,
        f: fn(&LoadResult) -> Option<f64>,
        fmt: fn(Option<f64>) -> String,
        ratio: bool,
    ) -> VariantCol {
        VariantCol {
            head: head.to_string(),
            f,
            fmt,
            ratio,
        }
    }
}

/// The plain and the history variant of `scenario` side by side, then a row of
/// history ÷ plain (the median of the per-round ratios).
fn history_table(
    w: &mut String,
    scenario: Scenario,
    (plain, hist): (&str, &str),
    runs: &[Run],
    failed: &dyn Fn(&str) -> String,
    cols: &[VariantCol],
) {
    let mut head = vec!["variant".to_string()];
    head.extend(cols.iter().map(|c| c.head.clone()));
    let mut rows: Vec<Vec<String>> = [plain, hist]
        .iter()
        .map(|&kind| {
            let label = crate::spec::find(scenario, kind).map_or(kind, |s| s.label);
            let mut row = vec![format!("{label}{}", failed(kind))];
            row.extend(cols.iter().map(|c| (c.fmt)(med(runs, kind, c.f))));
            row
        })
        .collect();
    let mut ratios = vec!["**history ÷ plain**".to_string()];
    ratios.extend(cols.iter().map(|c| {
        if c.ratio {
            x2(ratio_of(runs, hist, plain, c.f))
        } else {
            "—".into()
        }
    }));
    rows.push(ratios);
    table(w, &head, &rows);
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
