use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

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
pub struct SessionMetrics {
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    dropped: AtomicU64,
    connected_at: SystemTime,
    started: Instant,
    // Milliseconds since `started`, so "last activity" is one relaxed store per frame.
    last_activity_ms: AtomicU64,
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
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn record_in(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
        self.touch();
    }

    pub(crate) fn record_out(&self, messages: u64, bytes: u64) {
        self.messages_out.fetch_add(messages, Relaxed);
        self.bytes_out.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn record_dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }

    pub(crate) fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Relaxed);
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
        let last = Duration::from_millis(self.last_activity_ms.load(Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}
