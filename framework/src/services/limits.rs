use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

/// Counts live connections per IP address; a slot is released when its guard drops.
#[derive(Debug, Default)]
pub(crate) struct IpLimiter {
    counts: DashMap<IpAddr, usize>,
    max: usize,
}

pub(crate) struct IpSlot {
    limiter: Arc<IpLimiter>,
    ip: IpAddr,
}

impl IpLimiter {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: DashMap::new(),
            max,
        })
    }

    /// A slot for `ip`, or `None` when it already has `max` connections.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut count = self.counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limiter: self.clone(),
            ip,
        })
    }
}

impl IpSlot {
    /// Another slot for the same address, counted without the limit: the session
    /// an admitted connection becomes holds its own slot (no shared allocation),
    /// while the connection's is released when hyper lets go of it.
    pub(crate) fn duplicate(&self) -> IpSlot {
        if let Some(mut n) = self.limiter.counts.get_mut(&self.ip) {
            *n += 1;
        }
        IpSlot {
            limiter: self.limiter.clone(),
            ip: self.ip,
        }
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        self.limiter.counts.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_and_released() {
        let l = IpLimiter::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = l.acquire(ip).unwrap();
        let _b = l.acquire(ip).unwrap();
        assert!(l.acquire(ip).is_none());
        assert!(l.acquire("10.0.0.2".parse().unwrap()).is_some());
        drop(a);
        let c = l.acquire(ip).unwrap();
        let d = c.duplicate();
        assert!(l.acquire(ip).is_none(), "a duplicate counts");
        drop(c);
        assert!(
            l.acquire(ip).is_none(),
            "the duplicate outlives the original"
        );
        drop(d);
        assert!(l.acquire(ip).is_some());
    }
}
