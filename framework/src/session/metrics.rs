use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use crate::protocol::Opcode;

/// Counters of one session (the C++ guide's `session_metrics`). All methods are
/// cheap atomic loads; the session updates them as frames flow.
///
/// ```
/// use framework::session::SessionMetrics;
/// let m = SessionMetrics::new();
/// assert_eq!(m.messages_in(), 0);
/// assert!(m.since_last_activity() < std::time::Duration::from_secs(5));
/// ```
#[derive(Debug)]
// `repr(C)`: what every message updates first, on as few cache lines as can be
// (see `ConnectionInner`).
#[repr(C)]
pub struct SessionMetrics {
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    /// [`coarse_ms`] when the session started.
    started_ms: u64,
    // Milliseconds since `started_ms`, so "last activity" is one relaxed store per frame.
    last_activity_ms: AtomicU64,
    dropped: AtomicU64,
    connected_at: SystemTime,
}

/// Milliseconds of a monotonic clock read at a few milliseconds' resolution
/// (Linux: `CLOCK_MONOTONIC_COARSE`, the kernel's last tick, read without the
/// time stamp counter). Stamping every message with the precise clock cost
/// more than a percent of the server's CPU in echo; activity and timeouts need
/// no better than a tick.
fn coarse_ms() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
        ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
    }
    #[cfg(not(target_os = "linux"))]
    {
        static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        BASE.get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
    }
}

/// Adds `n` to a counter that has one writer (readers may load it at any time).
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Default for SessionMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionMetrics {
    /// Fresh counters; "connected since" is now.
    pub fn new() -> Self {
        Self {
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            connected_at: SystemTime::now(),
            started_ms: coarse_ms(),
            last_activity_ms: AtomicU64::new(0),
        }
    }

    /// Counts a message from the peer. Only the session's task calls it (its
    /// reader), so a plain load and store count exactly, without the locked
    /// read-modify-write of a `fetch_add` (four of them per echoed message).
    pub(crate) fn record_in(&self, bytes: usize) {
        bump(&self.messages_in, 1);
        bump(&self.bytes_in, bytes as u64);
        self.touch();
    }

    /// Counts messages written to the peer. Only the session's task writes to
    /// its socket (see `writer::Outlet`), so it is the only caller.
    pub(crate) fn record_out(&self, messages: u64, bytes: u64) {
        bump(&self.messages_out, messages);
        bump(&self.bytes_out, bytes);
    }

    pub(crate) fn record_dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }

    pub(crate) fn touch(&self) {
        self.last_activity_ms.store(self.elapsed_ms(), Relaxed);
    }

    /// Milliseconds since the session started (to the clock's tick).
    pub(crate) fn elapsed_ms(&self) -> u64 {
        coarse_ms().saturating_sub(self.started_ms)
    }

    /// Messages received from the peer.
    pub fn messages_in(&self) -> u64 {
        self.messages_in.load(Relaxed)
    }
    /// Bytes received from the peer (message payloads).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Relaxed)
    }
    /// Messages written to the peer.
    pub fn messages_out(&self) -> u64 {
        self.messages_out.load(Relaxed)
    }
    /// Bytes written to the peer (message payloads).
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Relaxed)
    }
    /// Messages that could not be queued (the session was closing or over its limit).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
    /// When the session was established.
    pub fn connected_since(&self) -> SystemTime {
        self.connected_at
    }
    /// When the peer last sent anything.
    pub fn last_activity(&self) -> SystemTime {
        self.connected_at + Duration::from_millis(self.last_activity_ms.load(Relaxed))
    }
    /// Time since the peer last sent anything.
    pub fn since_last_activity(&self) -> Duration {
        let last = self.last_activity_ms.load(Relaxed);
        Duration::from_millis(self.elapsed_ms().saturating_sub(last))
    }
}

/// Slots of [`OpcodeCounters`]: one per opcode named in the schema, then one for
/// the unnamed reserved values (below 200) and one for application opcodes.
pub const OPCODE_SLOTS: usize = Opcode::ENUM_MAX as usize + 3;

/// The slot of `opcode` in [`OpcodeCounters`].
///
/// ```
/// use framework::session::{opcode_slot, opcode_slot_label, OPCODE_SLOTS};
/// assert_eq!(opcode_slot_label(opcode_slot(2)), "Ping");
/// assert_eq!(opcode_slot_label(opcode_slot(150)), "reserved");
/// assert_eq!(opcode_slot_label(opcode_slot(200)), "application");
/// assert_eq!(opcode_slot(60_000), OPCODE_SLOTS - 1);
/// ```
pub fn opcode_slot(opcode: u16) -> usize {
    if opcode <= Opcode::ENUM_MAX {
        opcode as usize
    } else if opcode < crate::protocol::FIRST_APPLICATION_OPCODE {
        OPCODE_SLOTS - 2
    } else {
        OPCODE_SLOTS - 1
    }
}

/// The metrics label of a slot of [`opcode_slot`]: the opcode's schema name,
/// `reserved` or `application`.
pub fn opcode_slot_label(slot: usize) -> &'static str {
    if slot == OPCODE_SLOTS - 1 {
        "application"
    } else {
        u16::try_from(slot)
            .ok()
            .and_then(|s| Opcode(s).variant_name())
            .unwrap_or("reserved")
    }
}

/// Frames and bytes counted by opcode, lock-free.
///
/// ```
/// use framework::session::OpcodeCounters;
/// let c = OpcodeCounters::default();
/// c.count(6, 3, 300);
/// assert_eq!(c.frames(6), 3);
/// assert_eq!(c.bytes(6), 300);
/// ```
#[derive(Debug, Default)]
pub struct OpcodeCounters {
    frames: [AtomicU64; OPCODE_SLOTS],
    bytes: [AtomicU64; OPCODE_SLOTS],
}

impl OpcodeCounters {
    /// Counts `frames` frames of `bytes` bytes in all with `opcode`.
    pub fn count(&self, opcode: u16, frames: u64, bytes: u64) {
        let slot = opcode_slot(opcode);
        self.frames[slot].fetch_add(frames, Relaxed);
        self.bytes[slot].fetch_add(bytes, Relaxed);
    }

    /// Frames counted in `opcode`'s slot.
    pub fn frames(&self, opcode: u16) -> u64 {
        self.frames[opcode_slot(opcode)].load(Relaxed)
    }

    /// Bytes counted in `opcode`'s slot.
    pub fn bytes(&self, opcode: u16) -> u64 {
        self.bytes[opcode_slot(opcode)].load(Relaxed)
    }

    /// Every slot: its label, frames and bytes.
    pub fn slots(&self) -> impl Iterator<Item = (&'static str, u64, u64)> + '_ {
        (0..OPCODE_SLOTS).map(|s| {
            (
                opcode_slot_label(s),
                self.frames[s].load(Relaxed),
                self.bytes[s].load(Relaxed),
            )
        })
    }
}
