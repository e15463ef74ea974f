//! The framework's benchmark harness: peer servers, a load generator and a runner
//! that writes `BENCHMARKS.md`. One binary, three roles:
//!
//! ```text
//! framework-bench run [--smoke] [--rounds N] [--only echo,echo64k,echo-tls,rpc,fanout,fanout10k,fanout-tls,idle,storm,cluster,recovery]
//!                     [--out BENCHMARKS.md] [--logs DIR] [--time-scale X]
//! framework-bench server --server KIND --scenario S [--port P] [--cluster URL] [--tls DIR]
//! framework-bench load --server KIND --scenario S --port P [--server-pid PID[,PID..]]
//!                      [--conns N] [--warmup S] [--secs S] [--lat-secs S]
//!                      [--window N] [--size BYTES] [--lat-fraction F]
//!                      [--nodes PORT,PORT,..] [--metrics PORT,PORT,..]
//!                      [--engine-pid PID] [--lat-rate R] [--quiet-secs S]
//!                      [--reps N] [--missed N] [--tls DIR]
//! ```
//!
//! `--tls DIR` (a `-tls` server of the TLS scenarios, and its load generator):
//! the run's certificate and key in `DIR` (see [`tls`]), written by `run`.
//!
//! `scripts/bench.sh` builds it in release mode and calls `run`.

mod load;
mod pusher;
mod runner;
mod servers;
mod spec;
mod sys;
mod tls;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};

use spec::Scenario;

const USAGE: &str = "usage:
  framework-bench run [--smoke] [--rounds N] [--only echo,echo64k,echo-tls,rpc,fanout,fanout10k,fanout-tls,idle,storm,cluster,recovery]
                      [--out BENCHMARKS.md] [--logs DIR] [--time-scale X]
  framework-bench server --server KIND --scenario S [--port P] [--cluster URL] [--tls DIR]
  framework-bench load --server KIND --scenario S --port P [--server-pid PID[,PID..]]
                       [--conns N] [--warmup S] [--secs S] [--lat-secs S] [--window N] [--size B]
                       [--lat-fraction F] [--nodes PORT,PORT,..] [--metrics PORT,PORT,..]
                       [--engine-pid PID] [--lat-rate R] [--quiet-secs S]
                       [--reps N] [--missed N] [--tls DIR]
  framework-bench list";

struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String], flags: &[&str]) -> anyhow::Result<Opts> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                bail!("unexpected argument {a:?}\n{USAGE}");
            };
            if flags.contains(&key) {
                map.insert(key.to_string(), "true".to_string());
            } else {
                let v = it
                    .next()
                    .with_context(|| format!("--{key} needs a value"))?;
                map.insert(key.to_string(), v.clone());
            }
        }
        Ok(Opts(map))
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn need(&self, key: &str) -> anyhow::Result<&str> {
        self.str(key)
            .with_context(|| format!("--{key} is required\n{USAGE}"))
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> anyhow::Result<T> {
        match self.str(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("--{key}: cannot read {v:?}")),
        }
    }

    fn secs(&self, key: &str, default: f64) -> anyhow::Result<Duration> {
        let s: f64 = self.num(key, default)?;
        Ok(Duration::from_secs_f64(s.max(0.0)))
    }

    /// A comma-separated list (absent: empty).
    fn list<T: std::str::FromStr>(&self, key: &str) -> anyhow::Result<Vec<T>> {
        match self.str(key) {
            None => Ok(Vec::new()),
            Some(v) => v
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--{key}: cannot read {x:?}"))
                })
                .collect(),
        }
    }

    fn scenario(&self) -> anyhow::Result<Scenario> {
        let s = self.need("scenario")?;
        Scenario::parse(s).with_context(|| format!("unknown scenario {s:?}"))
    }

    /// `--tls DIR`: required by the TLS twin of a server (`-tls`), refused
    /// otherwise.
    fn tls_dir(&self, kind: &str) -> anyhow::Result<Option<&Path>> {
        match (spec::is_tls(kind), self.str("tls")) {
            (true, None) => bail!("server {kind:?} runs over TLS: --tls DIR is required"),
            (false, Some(_)) => bail!("server {kind:?} is plain: no --tls"),
            (_, dir) => Ok(dir.map(Path::new)),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((role, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    match role.as_str() {
        "run" => {
            let o = Opts::parse(rest, &["smoke"])?;
            let smoke = o.str("smoke").is_some();
            let only = match o.str("only") {
                None => Scenario::ALL.to_vec(),
                Some(list) => list
                    .split(',')
                    .map(|s| {
                        Scenario::parse(s.trim()).with_context(|| format!("unknown scenario {s:?}"))
                    })
                    .collect::<anyhow::Result<_>>()?,
            };
            runner::main(runner::RunArgs {
                smoke,
                rounds: o.num("rounds", if smoke { 1 } else { 3 })?,
                only,
                out: PathBuf::from(o.str("out").unwrap_or(if smoke {
                    "target/bench-smoke.md"
                } else {
                    "BENCHMARKS.md"
                })),
                logs: PathBuf::from(o.str("logs").unwrap_or("target/bench-logs")),
                time_scale: o.num("time-scale", 1.0)?,
            })
        }
        "server" => {
            let o = Opts::parse(rest, &[])?;
            let kind = o.need("server")?;
            servers::main(
                kind,
                o.scenario()?,
                o.num("port", 0)?,
                o.str("cluster"),
                o.tls_dir(kind)?,
            )
        }
        "load" => {
            let o = Opts::parse(rest, &[])?;
            let scenario = o.scenario()?;
            let kind = o.need("server")?;
            let spec = spec::find(scenario, kind)
                .with_context(|| format!("scenario {} has no server {kind:?}", scenario.name()))?;
            let port: u16 = o.need("port")?.parse().context("--port")?;
            let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
            load::main(load::LoadArgs {
                scenario,
                spec,
                addr: local(port),
                server_pids: o.list("server-pid")?,
                nodes: o.list("nodes")?.into_iter().map(local).collect(),
                metrics: o.list("metrics")?.into_iter().map(local).collect(),
                engine_pid: o
                    .str("engine-pid")
                    .map(str::parse)
                    .transpose()
                    .context("--engine-pid")?,
                conns: o.num("conns", 100)?,
                warmup: o.secs("warmup", 1.0)?,
                secs: o.secs("secs", 5.0)?,
                lat_secs: o.secs("lat-secs", 4.0)?,
                window: o.num("window", 16)?,
                lat_fraction: o.num("lat-fraction", 0.5)?,
                lat_rate: o
                    .str("lat-rate")
                    .map(str::parse)
                    .transpose()
                    .context("--lat-rate")?,
                quiet_secs: o.secs("quiet-secs", 0.0)?,
                size: o.num("size", 32)?,
                reps: o.num("reps", 20)?,
                missed: o.num("missed", spec::MISSED)?,
                tls: o.tls_dir(kind)?.map(tls::client_config).transpose()?,
            })
        }
        "list" => {
            for s in Scenario::ALL {
                for spec in spec::servers(s) {
                    println!("{:<10} {:<18} {}", s.name(), spec.kind, spec.label);
                }
            }
            Ok(())
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown role {other:?}\n{USAGE}"),
    }
}
