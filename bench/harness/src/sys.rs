//! What the harness reads from the operating system: CPU time and resident memory
//! of a process from `/proc`, and the open-file limit.

use std::time::Duration;

/// Clock ticks per second of `/proc/PID/stat` times (`sysconf(_SC_CLK_TCK)`).
pub fn clk_tck() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// User + system CPU time of process `pid` (every thread), from `/proc/PID/stat`
/// fields 14 and 15.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_times(pid).map(|(u, s)| u + s)
}

/// User and system CPU time of process `pid` (every thread), from `/proc/PID/stat`
/// fields 14 and 15.
pub fn cpu_times(pid: u32) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is at index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    let hz = clk_tck();
    let d = |ticks: u64| Duration::from_nanos(ticks * 1_000_000_000 / hz);
    Some((d(utime), d(stime)))
}

/// CPU time every process of the machine spent in user and system mode (all CPUs,
/// `/proc/stat` user + nice + system), without interrupt and softirq time.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.first()? + f.get(1)? + f.get(2)?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / clk_tck()))
}

/// Resident set size of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 0,
    }
}

/// Time on a CPU of every thread of process `pid`, from the scheduler
/// (`/proc/PID/task/*/schedstat`, first field, in nanoseconds): far finer than
/// the clock ticks of [`cpu_times`], for windows of a few milliseconds. Threads
/// that exit between two readings take their time with them. `None` when the
/// kernel exposes no schedstat.
pub fn sched_cpu(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    let mut any = false;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = stat
            .split_whitespace()
            .next()
            .and_then(|x| x.parse::<u64>().ok())
        {
            total += ns;
            any = true;
        }
    }
    any.then(|| Duration::from_nanos(total))
}
