//! Connections per authenticated user: a session that carries an identity holds a
//! [`UserSlot`] for its user; `max_connections_per_user` bounds how many.

use std::sync::Arc;

use dashmap::DashMap;

/// Live authenticated sessions per user id.
#[derive(Debug)]
pub(crate) struct UserCounts {
    counts: DashMap<Arc<str>, usize>,
    max: usize,
}

/// One session's place in its user's count, released when the last clone is
/// dropped (it lives in the connection's extensions).
#[derive(Debug, Clone)]
pub(crate) struct UserSlot(Arc<SlotInner>);

#[derive(Debug)]
struct SlotInner {
    counts: Arc<UserCounts>,
    user: Arc<str>,
}

/// Why [`Node::set_identity`](super::Node::set_identity) refused an identity:
/// its user has `max_connections_per_user` sessions already.
///
/// ```
/// let e = framework::node::TooManyForUser;
/// assert_eq!(e.to_string(), "too many connections for this user");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many connections for this user")]
pub struct TooManyForUser;

impl UserCounts {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: DashMap::new(),
            max,
        })
    }

    /// A slot for one more session of `user`.
    pub(crate) fn acquire(self: &Arc<Self>, user: &str) -> Result<UserSlot, TooManyForUser> {
        let user: Arc<str> = Arc::from(user);
        let mut n = self.counts.entry(user.clone()).or_insert(0);
        if *n >= self.max {
            return Err(TooManyForUser);
        }
        *n += 1;
        Ok(UserSlot(Arc::new(SlotInner {
            counts: self.clone(),
            user,
        })))
    }
}

impl UserSlot {
    /// Whose slot it is.
    pub(crate) fn user(&self) -> &str {
        &self.0.user
    }
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        self.counts.counts.remove_if_mut(&self.user, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_user_and_released_by_the_last_clone() {
        let counts = UserCounts::new(2);
        let a = counts.acquire("ada").unwrap();
        let b = counts.acquire("ada").unwrap();
        assert_eq!(counts.acquire("ada").err(), Some(TooManyForUser));
        assert!(
            counts.acquire("bob").is_ok(),
            "other users are not affected"
        );
        let a2 = a.clone();
        drop(a);
        assert!(counts.acquire("ada").is_err(), "a clone still holds it");
        drop(a2);
        let _c = counts.acquire("ada").unwrap();
        drop(b);
        drop(_c);
        assert!(counts.counts.is_empty(), "no entry outlives its slots");
    }
}
