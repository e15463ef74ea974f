//! The items of a session's outgoing queue.

use std::collections::VecDeque;

use super::Outbound;

/// Items a deque makes room for when a second item is queued.
const QUEUE_ROOM: usize = 16;

/// The largest deque kept for the next queue that needs one.
const SPARE_AT_MOST: usize = 64;

thread_local! {
    /// An empty deque kept for the next queue on this thread that needs one
    /// (see [`Queue::recycle`]).
    static SPARE: std::cell::Cell<VecDeque<Outbound>> = const { std::cell::Cell::new(VecDeque::new()) };
}

/// A session's queued items in order: the first held inline, the others in a
/// deque allocated only once two wait. Most sessions have at most one item
/// queued at a time (a reply, a delivery): they queue it without allocating.
/// A deque allocated for every delivery was a `malloc` and a `free` per
/// delivery, 640 bytes each, thousands at a time in a large fan-out.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// The first item; `None` only when the queue is empty.
    head: Option<Outbound>,
    /// The items after it.
    rest: VecDeque<Outbound>,
}

impl Queue {
    pub(crate) fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    pub(crate) fn front(&self) -> Option<&Outbound> {
        self.head.as_ref()
    }

    pub(crate) fn push_back(&mut self, item: Outbound) {
        if self.head.is_none() {
            self.head = Some(item);
            return;
        }
        if self.rest.capacity() == 0 {
            // The thread's spare deque, else room for a burst at once, instead
            // of growing 4 → 8 → 16 by reallocating and copying each time (5%
            // of the server's CPU in fan-out at its peak).
            self.rest = SPARE.with(std::cell::Cell::take);
            if self.rest.capacity() == 0 {
                self.rest.reserve(QUEUE_ROOM);
            }
        }
        self.rest.push_back(item);
    }

    pub(crate) fn pop_front(&mut self) -> Option<Outbound> {
        let head = self.head.take()?;
        self.head = self.rest.pop_front();
        Some(head)
    }

    pub(crate) fn push_front(&mut self, item: Outbound) {
        if let Some(second) = self.head.replace(item) {
            self.rest.push_front(second);
        }
    }

    /// Puts `front`'s items ahead of these, in their order.
    pub(crate) fn prepend(&mut self, mut front: Queue) {
        if front.is_empty() {
            return;
        }
        if let Some(head) = self.head.take() {
            front.rest.push_back(head);
            front.rest.append(&mut self.rest);
        }
        *self = front;
    }

    /// Drops this queue, keeping its deque (when it has one and is empty) for
    /// the next queue on this thread that needs one. Deques allocated and
    /// freed per burst were ~2 % of a fan-out's instructions at its peak
    /// (callgrind); one spare per thread took a third of them away.
    pub(crate) fn recycle(self) {
        let rest = self.rest;
        if self.head.is_none() && (1..=SPARE_AT_MOST).contains(&rest.capacity()) {
            SPARE.with(|spare| spare.set(rest));
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Outbound> {
        self.head.iter().chain(self.rest.iter())
    }
}

impl IntoIterator for Queue {
    type Item = Outbound;
    type IntoIter = std::iter::Chain<
        std::option::IntoIter<Outbound>,
        std::collections::vec_deque::IntoIter<Outbound>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.head.into_iter().chain(self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn item(n: u8) -> Outbound {
        Outbound::Binary(Bytes::from(vec![n]))
    }

    fn order(q: &Queue) -> Vec<u8> {
        q.iter()
            .map(|i| match i {
                Outbound::Binary(b) => b[0],
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn one_item_allocates_nothing_and_order_is_kept_through_every_operation() {
        let mut q = Queue::default();
        q.push_back(item(1));
        assert_eq!(q.rest.capacity(), 0, "one item is held inline");
        q.push_back(item(2));
        q.push_back(item(3));
        assert_eq!(order(&q), [1, 2, 3]);
        assert!(matches!(q.pop_front(), Some(Outbound::Binary(b)) if b[0] == 1));
        q.push_front(item(0));
        assert_eq!(order(&q), [0, 2, 3]);
        let mut front = Queue::default();
        front.push_back(item(8));
        front.push_back(item(9));
        q.prepend(front);
        assert_eq!(order(&q), [8, 9, 0, 2, 3]);
        q.prepend(Queue::default());
        assert_eq!(q.len(), 5);
        let mut empty = Queue::default();
        empty.prepend(q);
        let drained: Vec<u8> = empty
            .into_iter()
            .map(|i| match i {
                Outbound::Binary(b) => b[0],
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(drained, [8, 9, 0, 2, 3]);
        let mut q = Queue::default();
        assert!(q.pop_front().is_none());
        assert!(q.is_empty() && q.front().is_none());
        assert_eq!(q.len(), 0);
        q.push_front(item(5));
        assert_eq!(order(&q), [5]);
        assert_eq!(q.rest.capacity(), 0);
    }

    #[test]
    fn an_emptied_queue_gives_its_deque_to_the_next_one_and_a_full_one_keeps_it() {
        let mut a = Queue::default();
        a.push_back(item(1));
        a.push_back(item(2));
        let deque = a.rest.as_slices().0.as_ptr();
        while a.pop_front().is_some() {}
        assert!(a.is_empty());
        a.recycle();
        let mut b = Queue::default();
        b.push_back(item(3));
        b.push_back(item(4));
        // The same allocation (a deque's first item moves about in it).
        let at = (b.rest.as_slices().0.as_ptr() as usize).wrapping_sub(deque as usize);
        assert!(
            at < QUEUE_ROOM * std::mem::size_of::<Outbound>(),
            "the same deque"
        );
        assert_eq!(order(&b), [3, 4]);
        // A queue with items left is not kept (its items go with it).
        b.recycle();
        let spare = SPARE.with(std::cell::Cell::take);
        assert_eq!(spare.capacity(), 0, "nothing kept");
    }
}
