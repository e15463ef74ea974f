//! Quotas at run time: the configured [`QuotaRule`]s compiled into GCRA limiters
//! (governor), evaluated for every frame before its handler runs.

use std::any::Any;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::{glob_match, QuotaRule, QuotaScope, Rate};
use crate::session::Connection;

/// The result of evaluating the sender's quotas for a frame (the C++ guide's
/// `quota_evaluation_result`), as handlers see it through
/// [`Request::quota_result`](crate::Request::quota_result) or the `QuotaResult`
/// extractor. A frame over quota is answered `Error`/`RateLimited` before its
/// handler runs — unless the handler takes `QuotaResult`, which says it decides
/// itself; it then runs and sees `Exceeded`.
///
/// ```
/// let q = framework::dispatch::QuotaResult::default();
/// assert!(q.is_allowed());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QuotaResult {
    /// No quota applies to this frame.
    #[default]
    Unlimited,
    /// Within every quota that applies; `remaining` more frames (or bytes, for
    /// a byte quota) fit in the tightest one's burst right now.
    Allowed {
        /// What the tightest quota can still take at once.
        remaining: u32,
    },
    /// Over a quota; the frame would be accepted after this many milliseconds.
    Exceeded {
        /// When to retry, rounded up.
        retry_after_ms: u32,
    },
}

impl QuotaResult {
    /// Whether the frame may proceed.
    pub fn is_allowed(&self) -> bool {
        !matches!(self, QuotaResult::Exceeded { .. })
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;
type ByIp =
    RateLimiter<IpAddr, DashMapStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;
type ByUser =
    RateLimiter<String, DashMapStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Whose budget a meter draws from.
enum Budget {
    /// The connection's own limiter at this index.
    Connection(usize),
    /// One limiter per address.
    Ip(Box<ByIp>),
    /// One limiter per user; anonymous connections use their own limiter at
    /// this index.
    User(Box<ByUser>, usize),
    /// One limiter for the node.
    Node(Box<Direct>),
}

/// One counted quantity of a rule: frames, or payload bytes.
struct Meter {
    bytes: bool,
    period: Duration,
    budget: Budget,
}

struct Rule {
    opcode: Option<u16>,
    channel: Option<String>,
    meters: Vec<Meter>,
}

/// The node's quotas.
pub(crate) struct Quotas {
    rules: Vec<Rule>,
    /// The quotas of the per-connection meters, in the order of their indices.
    per_connection: Vec<Quota>,
    clock: DefaultClock,
}

fn quota_of(rate: Rate) -> Quota {
    let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let interval = (rate.per / rate.count.max(1)).max(Duration::from_nanos(1));
    Quota::with_period(interval)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Quotas {
    pub(crate) fn new(rules: &[QuotaRule]) -> Quotas {
        let clock = DefaultClock::default();
        let mut per_connection = Vec::new();
        let rules = rules
            .iter()
            .map(|r| {
                let meters = [(false, r.frames), (true, r.bytes)]
                    .into_iter()
                    .filter_map(|(bytes, rate)| {
                        let rate = rate?;
                        let quota = quota_of(rate);
                        let budget = match r.per {
                            QuotaScope::Connection => {
                                per_connection.push(quota);
                                Budget::Connection(per_connection.len() - 1)
                            }
                            QuotaScope::Ip => Budget::Ip(Box::new(
                                RateLimiter::dashmap_with_clock(quota, clock.clone())
                                    .with_middleware::<StateInformationMiddleware>(),
                            )),
                            QuotaScope::User => {
                                per_connection.push(quota);
                                Budget::User(
                                    Box::new(
                                        RateLimiter::dashmap_with_clock(quota, clock.clone())
                                            .with_middleware::<StateInformationMiddleware>(),
                                    ),
                                    per_connection.len() - 1,
                                )
                            }
                            QuotaScope::Node => Budget::Node(Box::new(
                                RateLimiter::direct_with_clock(quota, clock.clone())
                                    .with_middleware::<StateInformationMiddleware>(),
                            )),
                        };
                        Some(Meter {
                            bytes,
                            period: rate.per,
                            budget,
                        })
                    })
                    .collect();
                Rule {
                    opcode: r.opcode.map(|o| o.0),
                    channel: r.channel.clone(),
                    meters,
                }
            })
            .collect();
        Quotas {
            rules,
            per_connection,
            clock,
        }
    }

    /// Whether no quota is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The connection's own limiters, made on its first frame that needs one.
    fn connection_limiters<'c>(&self, conn: &'c Connection) -> &'c [Direct] {
        let state = conn.node_state().get_or_init(|| {
            let limiters: Box<[Direct]> = self
                .per_connection
                .iter()
                .map(|q| {
                    RateLimiter::direct_with_clock(*q, self.clock.clone())
                        .with_middleware::<StateInformationMiddleware>()
                })
                .collect();
            Box::new(limiters) as Box<dyn Any + Send + Sync>
        });
        state
            .downcast_ref::<Box<[Direct]>>()
            .map(|b| &b[..])
            .unwrap_or(&[])
    }

    /// Counts a frame of `bytes` payload bytes with `opcode` (and `channel`),
    /// sent by `user` (`None`: anonymous; only looked up when a per-user quota
    /// applies), against every quota it matches. A refused frame stops at the
    /// first quota it is over.
    pub(crate) fn check(
        &self,
        conn: &Connection,
        opcode: u16,
        channel: Option<&str>,
        bytes: usize,
        user: impl Fn() -> Option<String>,
    ) -> QuotaResult {
        let mut user_id: Option<Option<String>> = None;
        let mut remaining: Option<u32> = None;
        for rule in &self.rules {
            if rule.opcode.is_some_and(|o| o != opcode) {
                continue;
            }
            if let Some(pattern) = &rule.channel {
                if !channel.is_some_and(|c| glob_match(pattern, c)) {
                    continue;
                }
            }
            for meter in &rule.meters {
                let n = if meter.bytes {
                    match u32::try_from(bytes).ok().and_then(NonZeroU32::new) {
                        Some(n) => n,
                        None if bytes == 0 => continue,
                        None => NonZeroU32::MAX,
                    }
                } else {
                    NonZeroU32::MIN
                };
                let outcome = match &meter.budget {
                    Budget::Connection(i) => match self.connection_limiters(conn).get(*i) {
                        Some(l) => l.check_n(n),
                        None => continue,
                    },
                    Budget::Ip(l) => l.check_key_n(&conn.ip(), n),
                    Budget::User(l, i) => match user_id.get_or_insert_with(&user) {
                        Some(id) => l.check_key_n(id, n),
                        None => match self.connection_limiters(conn).get(*i) {
                            Some(l) => l.check_n(n),
                            None => continue,
                        },
                    },
                    Budget::Node(l) => l.check_n(n),
                };
                let wait = match outcome {
                    Ok(Ok(snapshot)) => {
                        let left = snapshot.remaining_burst_capacity();
                        remaining = Some(remaining.map_or(left, |r| r.min(left)));
                        continue;
                    }
                    Ok(Err(not_until)) => not_until.wait_time_from(self.clock.now()),
                    // Larger than the burst: it can never pass; say when the
                    // budget is full again, the best a client can do.
                    Err(_) => meter.period,
                };
                let ms = wait.as_nanos().div_ceil(1_000_000).max(1);
                return QuotaResult::Exceeded {
                    retry_after_ms: u32::try_from(ms).unwrap_or(u32::MAX),
                };
            }
        }
        match remaining {
            Some(remaining) => QuotaResult::Allowed { remaining },
            None => QuotaResult::Unlimited,
        }
    }

    /// Forgets per-address budgets that are full again (bounds their memory).
    pub(crate) fn retain_recent(&self) {
        for rule in &self.rules {
            for meter in &rule.meters {
                match &meter.budget {
                    Budget::Ip(l) => l.retain_recent(),
                    Budget::User(l, _) => l.retain_recent(),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;
    use crate::protocol::Opcode;

    fn conn(ip: &str) -> Connection {
        Connection::new(
            uuid::Uuid::nil(),
            format!("{ip}:1").parse().unwrap(),
            1 << 20,
            crate::session::budget::Charge::unlimited(),
        )
    }

    #[test]
    fn frames_over_the_burst_are_refused_with_a_retry_hint() {
        let q = Quotas::new(&[QuotaRule::opcode(Opcode::Publish).frames(Rate {
            count: 2,
            per: Duration::from_secs(10),
            burst: 2,
        })]);
        let c = conn("10.0.0.1");
        assert_eq!(
            q.check(&c, Opcode::Publish.0, None, 1, || None),
            QuotaResult::Allowed { remaining: 1 }
        );
        assert_eq!(
            q.check(&c, Opcode::Publish.0, None, 1, || None),
            QuotaResult::Allowed { remaining: 0 }
        );
        match q.check(&c, Opcode::Publish.0, None, 1, || None) {
            QuotaResult::Exceeded { retry_after_ms } => {
                assert!(
                    (4_000..=5_000).contains(&retry_after_ms),
                    "{retry_after_ms}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Other opcodes, and other connections, are not affected.
        assert_eq!(
            q.check(&c, Opcode::Ping.0, None, 1, || None),
            QuotaResult::Unlimited
        );
        assert!(q
            .check(&conn("10.0.0.1"), Opcode::Publish.0, None, 1, || None)
            .is_allowed());
    }

    #[test]
    fn bytes_ip_node_and_channel_patterns() {
        let q = Quotas::new(&[
            QuotaRule::opcode(Opcode::Publish)
                .channel("chat:*")
                .per(QuotaScope::Ip)
                .bytes(Rate::per_second(100)),
            QuotaRule {
                opcode: None,
                channel: None,
                per: QuotaScope::Node,
                frames: Some(Rate::per_second(1000)),
                bytes: None,
            },
        ]);
        let (a, b) = (conn("10.0.0.1"), conn("10.0.0.1"));
        assert!(q
            .check(&a, Opcode::Publish.0, Some("chat:x"), 60, || None)
            .is_allowed());
        // Same address, shared byte budget: 60 + 60 > 100.
        assert!(!q
            .check(&b, Opcode::Publish.0, Some("chat:y"), 60, || None)
            .is_allowed());
        // Another channel is not under the byte quota (only the node's frames).
        assert!(q
            .check(&b, Opcode::Publish.0, Some("news"), 60, || None)
            .is_allowed());
        // A payload larger than the burst can never pass.
        assert!(!q
            .check(
                &conn("10.0.0.9"),
                Opcode::Publish.0,
                Some("chat:z"),
                101,
                || None
            )
            .is_allowed());
        q.retain_recent();
    }

    #[test]
    fn a_user_budget_is_shared_by_the_users_connections() {
        let q = Quotas::new(&[QuotaRule::opcode(Opcode::Publish)
            .per(QuotaScope::User)
            .frames(Rate::per_second(2))]);
        let (a, b) = (conn("10.0.0.1"), conn("10.0.0.2"));
        let ada = || Some("ada".to_string());
        assert!(q.check(&a, Opcode::Publish.0, None, 1, ada).is_allowed());
        assert!(q.check(&b, Opcode::Publish.0, None, 1, ada).is_allowed());
        assert!(!q.check(&a, Opcode::Publish.0, None, 1, ada).is_allowed());
        // Anonymous connections each have their own budget.
        for c in [&a, &b] {
            assert!(q.check(c, Opcode::Publish.0, None, 1, || None).is_allowed());
        }
    }
}
