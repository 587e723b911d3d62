//! The store behind [`TtlCache`](crate::TtlCache): entries in a slab, linked in recency order, found through a
//! hash index. Not synchronised; the cache holds it behind its lock.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use quanta::Instant;

/// No neighbour.
const NIL: usize = usize::MAX;

/// One cached entry with its expiry, its weight and its neighbours in recency order.
pub(crate) struct Node<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    /// `None`: beyond the clock's range, never expires.
    pub(crate) expires_at: Option<Instant>,
    pub(crate) bytes: u64,
    /// Less recently used neighbour.
    prev: usize,
    /// More recently used neighbour.
    next: usize,
}

impl<K, V> Node<K, V> {
    pub(crate) fn new(key: K, value: V, expires_at: Option<Instant>, bytes: u64) -> Self {
        Self { key, value, expires_at, bytes, prev: NIL, next: NIL }
    }

    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// Entries in least- to most-recently-used order, with their summed weight. Every operation is O(1) except
/// [`drain_if`](Self::drain_if).
pub(crate) struct Lru<K, V> {
    index: HashMap<K, usize>,
    slots: Vec<Option<Node<K, V>>>,
    /// Empty slots, reused before the slab grows.
    free: Vec<usize>,
    /// Least recently used.
    head: usize,
    /// Most recently used.
    tail: usize,
    bytes: u64,
}

impl<K, V> Lru<K, V> {
    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Summed weight of the entries held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub(crate) fn new() -> Self {
        Self { index: HashMap::new(), slots: Vec::new(), free: Vec::new(), head: NIL, tail: NIL, bytes: 0 }
    }

    /// The slot of `key`, if held.
    pub(crate) fn find<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index.get(key).copied()
    }

    /// The entry in slot `i`.
    pub(crate) fn node(&self, i: usize) -> Option<&Node<K, V>> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// Make slot `i` the most recently used.
    pub(crate) fn touch(&mut self, i: usize) {
        if i != self.tail {
            self.unlink(i);
            self.link_last(i);
        }
    }

    /// Insert `node` as the most recently used entry; returns the entry it replaces under the same key.
    pub(crate) fn insert(&mut self, node: Node<K, V>) -> Option<Node<K, V>> {
        let old = self.find(&node.key).and_then(|i| self.remove_at(i));
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.bytes += node.bytes;
        self.index.insert(node.key.clone(), i);
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(node);
        }
        self.link_last(i);
        old
    }

    /// Remove the entry in slot `i`.
    pub(crate) fn remove_at(&mut self, i: usize) -> Option<Node<K, V>> {
        self.node(i)?;
        self.unlink(i);
        let node = self.slots.get_mut(i).and_then(Option::take)?;
        self.index.remove(&node.key);
        self.free.push(i);
        self.bytes -= node.bytes;
        Some(node)
    }

    /// Remove the least recently used entry.
    pub(crate) fn pop_lru(&mut self) -> Option<Node<K, V>> {
        self.remove_at(self.head)
    }

    /// Remove every entry matching `pred`, in recency order.
    pub(crate) fn drain_if(&mut self, mut pred: impl FnMut(&Node<K, V>) -> bool) -> Vec<Node<K, V>> {
        let mut out = Vec::new();
        let mut i = self.head;
        while let Some(node) = self.node(i) {
            let next = node.next;
            if pred(node)
                && let Some(node) = self.remove_at(i)
            {
                out.push(node);
            }
            i = next;
        }
        out
    }

    /// Remove everything, returning the entries (in no particular order).
    pub(crate) fn take_all(&mut self) -> Vec<Node<K, V>> {
        let old = std::mem::replace(self, Self::new());
        old.slots.into_iter().flatten().collect()
    }

    fn unlink(&mut self, i: usize) {
        let Some(node) = self.node(i) else { return };
        let (prev, next) = (node.prev, node.next);
        match self.slots.get_mut(prev).and_then(Option::as_mut) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slots.get_mut(next).and_then(Option::as_mut) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn link_last(&mut self, i: usize) {
        let tail = self.tail;
        let Some(node) = self.slots.get_mut(i).and_then(Option::as_mut) else { return };
        node.prev = tail;
        node.next = NIL;
        match self.slots.get_mut(tail).and_then(Option::as_mut) {
            Some(t) => t.next = i,
            None => self.head = i,
        }
        self.tail = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lru: &Lru<u32, ()>) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = lru.head;
        while let Some(n) = lru.node(i) {
            out.push(n.key);
            i = n.next;
        }
        out
    }

    fn node(key: u32, bytes: u64) -> Node<u32, ()> {
        Node::new(key, (), None, bytes)
    }

    #[test]
    fn recency_order_follows_inserts_touches_and_removals() {
        let mut lru = Lru::new();
        for k in 0..4 {
            assert!(lru.insert(node(k, 10)).is_none());
        }
        assert_eq!(keys(&lru), [0, 1, 2, 3]);
        lru.touch(lru.find(&1).unwrap());
        lru.touch(lru.find(&1).unwrap());
        assert_eq!(keys(&lru), [0, 2, 3, 1]);
        assert_eq!(lru.insert(node(2, 5)).map(|n| n.bytes), Some(10), "replacement returns the old entry");
        assert_eq!(keys(&lru), [0, 3, 1, 2]);
        assert_eq!(lru.pop_lru().map(|n| n.key), Some(0));
        assert_eq!(lru.remove_at(lru.find(&1).unwrap()).map(|n| n.key), Some(1));
        assert_eq!((keys(&lru), lru.len(), lru.bytes()), (vec![3, 2], 2, 15));
        lru.insert(node(7, 1));
        assert_eq!(lru.slots.len(), 4, "freed slots are reused");
        let drained = lru.drain_if(|n| n.key != 2);
        assert_eq!(drained.iter().map(|n| n.key).collect::<Vec<_>>(), [3, 7]);
        assert_eq!((keys(&lru), lru.len(), lru.bytes()), (vec![2], 1, 5));
        assert_eq!(lru.take_all().len(), 1);
        assert_eq!((lru.len(), lru.bytes(), lru.pop_lru().is_none()), (0, 0, true));
    }
}
