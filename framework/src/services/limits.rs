//! Connection limits: per IP address and per node. A connection holds a
//! [`ConnSlot`] for as long as it lives; dropping it releases both counts. The
//! slot also carries the address's share of the node's memory budget.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::session::budget::{Charge, MemoryBudget};

/// One address's live connections and the bytes its connections hold.
#[derive(Debug, Default)]
struct PerIp {
    connections: usize,
    held: Arc<AtomicUsize>,
}

/// Counts live connections per IP address and in all.
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    counts: DashMap<IpAddr, PerIp>,
    budget: Arc<MemoryBudget>,
    max_per_ip: usize,
    total: AtomicUsize,
    max_total: usize,
}

/// Why a connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverLimit {
    /// Its address has `max_connections_per_ip` connections already.
    PerIp,
    /// The node has `max_connections` connections already.
    Total,
}

/// One connection's place in the counts.
pub(crate) struct ConnSlot {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
    held: Arc<AtomicUsize>,
}

impl ConnLimiter {
    pub(crate) fn new(max_per_ip: usize, max_total: usize, budget: Arc<MemoryBudget>) -> Arc<Self> {
        Arc::new(Self {
            counts: DashMap::new(),
            budget,
            max_per_ip,
            total: AtomicUsize::new(0),
            max_total,
        })
    }

    /// A slot for a connection from `ip`, or why there is none.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, OverLimit> {
        let admitted = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err(OverLimit::Total);
        }
        let mut entry = self.counts.entry(ip).or_default();
        if entry.connections >= self.max_per_ip {
            drop(entry);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(OverLimit::PerIp);
        }
        entry.connections += 1;
        let held = entry.held.clone();
        Ok(ConnSlot {
            limiter: self.clone(),
            ip,
            held,
        })
    }
}

impl ConnSlot {
    /// Another slot for the same address, counted without the limits: the session
    /// an admitted connection becomes holds its own slot (no shared allocation),
    /// while the connection's is released when hyper lets go of it.
    pub(crate) fn duplicate(&self) -> ConnSlot {
        if let Some(mut n) = self.limiter.counts.get_mut(&self.ip) {
            n.connections += 1;
        }
        self.limiter.total.fetch_add(1, Ordering::AcqRel);
        ConnSlot {
            limiter: self.limiter.clone(),
            ip: self.ip,
            held: self.held.clone(),
        }
    }

    /// The connection's account in the memory budget: the node's, and its
    /// address's share.
    pub(crate) fn charge(&self) -> Charge {
        Charge::new(self.limiter.budget.clone(), self.held.clone())
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.limiter.counts.remove_if_mut(&self.ip, |_, n| {
            n.connections -= 1;
            n.connections == 0
        });
        self.limiter.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_per_ip_and_released() {
        let l = ConnLimiter::new(2, 100, MemoryBudget::standalone(1, 1));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = l.acquire(ip).unwrap();
        let _b = l.acquire(ip).unwrap();
        assert_eq!(l.acquire(ip).err(), Some(OverLimit::PerIp));
        assert!(l.acquire("10.0.0.2".parse().unwrap()).is_ok());
        drop(a);
        let c = l.acquire(ip).unwrap();
        let d = c.duplicate();
        assert!(l.acquire(ip).is_err(), "a duplicate counts");
        drop(c);
        assert!(
            l.acquire(ip).is_err(),
            "the duplicate outlives the original"
        );
        drop(d);
        assert!(l.acquire(ip).is_ok());
    }

    #[test]
    fn the_node_total_is_limited() {
        let l = ConnLimiter::new(100, 2, MemoryBudget::standalone(1, 1));
        let a = l.acquire("10.0.0.1".parse().unwrap()).unwrap();
        let _b = l.acquire("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(
            l.acquire("10.0.0.3".parse().unwrap()).err(),
            Some(OverLimit::Total)
        );
        assert_eq!(l.total.load(Ordering::Acquire), 2);
        drop(a);
        assert!(l.acquire("10.0.0.3".parse().unwrap()).is_ok());
    }
}
