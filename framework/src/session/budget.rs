//! The node's memory budget for what its peers make it hold: bytes of messages
//! still arriving (a frame announced but not yet read whole, the fragments of an
//! unfinished message) and bytes waiting in outgoing queues that no one else
//! shares (replies, direct sends, raw sends). Counted per IP address and in all;
//! a connection that would push either count over its limit is closed (1008 over
//! the address's share, 1013 over the node's), so a flood of connections cannot
//! pin more than the limits however many it opens.
//!
//! Fan-out deliveries (a publish to a channel, a broadcast) are one frame shared
//! by every queue: each queue counts it against its own `max_queued_bytes`, and
//! the node budget does not count it once per queue.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::close_code;

/// The node-wide count and limits.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    held: AtomicUsize,
    max: usize,
    max_per_ip: usize,
    /// Sessions closed because they would have gone over a limit.
    closes: AtomicU64,
    /// Sessions closed as slow consumers (the node's metric, which its sessions
    /// reach through their [`Charge`] rather than each holding it).
    slow_consumers: Arc<AtomicU64>,
}

/// Which limit a charge would go over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverBudget {
    /// The address's share (`max_held_bytes_per_ip`).
    Ip,
    /// The node's (`max_held_bytes`).
    Node,
}

impl OverBudget {
    /// The close code and reason a session over this limit gets.
    pub(crate) fn close(self) -> (u16, &'static str) {
        match self {
            OverBudget::Ip => (close_code::POLICY, "too much data held for this address"),
            OverBudget::Node => (close_code::TRY_AGAIN_LATER, "server busy: try again later"),
        }
    }
}

impl MemoryBudget {
    /// A budget of its own, not a node's: its sessions' slow-consumer closes
    /// are counted where no metric reads them (tests, fuzzing). A node's is
    /// made with [`counting_slow_consumers`](Self::counting_slow_consumers).
    pub(crate) fn standalone(max: usize, max_per_ip: usize) -> Arc<Self> {
        Self::counting_slow_consumers(max, max_per_ip, Arc::default())
    }

    /// A budget whose sessions count their slow-consumer closes in
    /// `slow_consumers`.
    pub(crate) fn counting_slow_consumers(
        max: usize,
        max_per_ip: usize,
        slow_consumers: Arc<AtomicU64>,
    ) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            max,
            max_per_ip,
            closes: AtomicU64::new(0),
            slow_consumers,
        })
    }

    /// Bytes held now, node-wide.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Sessions closed for going over a limit.
    pub(crate) fn closes(&self) -> u64 {
        self.closes.load(Ordering::Relaxed)
    }

    pub(crate) fn count_close(&self) {
        self.closes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a session closed as a slow consumer.
    pub(crate) fn count_slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }
}

/// One connection's account: the node's budget and its address's share.
#[derive(Debug, Clone)]
pub(crate) struct Charge {
    node: Arc<MemoryBudget>,
    ip: Arc<AtomicUsize>,
}

impl Charge {
    pub(crate) fn new(node: Arc<MemoryBudget>, ip: Arc<AtomicUsize>) -> Self {
        Self { node, ip }
    }

    /// An account with no limits (unit tests' connections).
    #[cfg(test)]
    pub(crate) fn unlimited() -> Self {
        Self::unlimited_counting(Arc::default())
    }

    /// An account with no limits whose slow-consumer closes are counted in
    /// `slow_consumers` (a [`TestNode`](crate::testing::TestNode)'s, in its
    /// node's metrics).
    pub(crate) fn unlimited_counting(slow_consumers: Arc<AtomicU64>) -> Self {
        Self::new(
            MemoryBudget::counting_slow_consumers(usize::MAX, usize::MAX, slow_consumers),
            Arc::default(),
        )
    }

    /// Counts `n` more bytes, unless that would go over a limit.
    pub(crate) fn take(&self, n: usize) -> Result<(), OverBudget> {
        let ip = self.ip.fetch_add(n, Ordering::AcqRel);
        if ip.saturating_add(n) > self.node.max_per_ip {
            self.ip.fetch_sub(n, Ordering::AcqRel);
            return Err(OverBudget::Ip);
        }
        let node = self.node.held.fetch_add(n, Ordering::AcqRel);
        if node.saturating_add(n) > self.node.max {
            self.node.held.fetch_sub(n, Ordering::AcqRel);
            self.ip.fetch_sub(n, Ordering::AcqRel);
            return Err(OverBudget::Node);
        }
        Ok(())
    }

    /// Counts `n` more bytes whatever the limits (a frame to an empty queue).
    pub(crate) fn force(&self, n: usize) {
        self.ip.fetch_add(n, Ordering::AcqRel);
        self.node.held.fetch_add(n, Ordering::AcqRel);
    }

    /// Gives `n` bytes back.
    pub(crate) fn release(&self, n: usize) {
        if n > 0 {
            self.ip.fetch_sub(n, Ordering::AcqRel);
            self.node.held.fetch_sub(n, Ordering::AcqRel);
        }
    }

    pub(crate) fn budget(&self) -> &MemoryBudget {
        &self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_limited_per_address_and_per_node() {
        let node = MemoryBudget::standalone(100, 60);
        let (ip1, ip2) = (Arc::default(), Arc::default());
        let a = Charge::new(node.clone(), ip1);
        let b = Charge::new(node.clone(), ip2);
        assert_eq!(a.take(50), Ok(()));
        assert_eq!(a.take(20), Err(OverBudget::Ip), "the address's share");
        assert_eq!(b.take(50), Ok(()));
        assert_eq!(b.take(5), Err(OverBudget::Node), "the node's budget");
        assert_eq!(node.held(), 100, "a refused charge leaves nothing behind");
        a.release(50);
        assert_eq!(b.take(5), Ok(()));
        a.force(70);
        assert_eq!(node.held(), 125, "forced past the limits");
        a.release(70);
        b.release(55);
        assert_eq!(node.held(), 0);
    }
}
