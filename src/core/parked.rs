//! The bookkeeping of requests waiting for the async bridge: a token per parked request,
//! and the rule that a result is delivered only to a request that is still parked. A request
//! is unparked exactly once, by whichever comes first: its result, its timer, or its end
//! (the client went away and nginx freed it). What comes later finds nothing and is dropped
//! (its value released), so a late result never touches freed memory.

use std::collections::HashMap;

#[derive(Debug)]
pub struct Parked<T> {
    next: u64,
    waiting: HashMap<u64, T>,
}

impl<T> Default for Parked<T> {
    fn default() -> Self {
        Parked {
            next: 1,
            waiting: HashMap::new(),
        }
    }
}

impl<T> Parked<T> {
    /// Parks `entry`; returns its token (never reused by this registry).
    pub fn park(&mut self, entry: T) -> u64 {
        let token = self.next;
        self.next += 1;
        self.waiting.insert(token, entry);
        token
    }

    /// Unparks `token` (its result arrived, its timer fired, or its request ended): the
    /// entry the first time, `None` after.
    pub fn unpark(&mut self, token: u64) -> Option<T> {
        self.waiting.remove(&token)
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic shuffle (no rand crate).
    fn shuffled(n: u64, seed: u64) -> Vec<u64> {
        let mut v: Vec<u64> = (0..n).collect();
        let mut x = seed;
        for i in (1..v.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.swap(i, (x % (i as u64 + 1)) as usize);
        }
        v
    }

    #[test]
    fn ten_thousand_parked_complete_out_of_order_each_once() {
        let mut p = Parked::default();
        let tokens: Vec<u64> = (0..10_000u64).map(|i| p.park(i)).collect();
        assert_eq!(p.len(), 10_000);
        let order = shuffled(10_000, 0x9e37_79b9_7f4a_7c15);
        let mut seen = vec![false; 10_000];
        for (n, i) in order.iter().enumerate() {
            let t = tokens[*i as usize];
            // every fifth request ended (client gone) before its result came
            if n % 5 == 0 {
                assert_eq!(p.unpark(t), Some(*i), "the end unparks it");
                assert_eq!(p.unpark(t), None, "its result then finds nothing");
                continue;
            }
            let got = p.unpark(t).expect("a parked request gets its result");
            assert_eq!(got, *i, "the result goes to the request that asked");
            assert!(!seen[got as usize]);
            seen[got as usize] = true;
            assert_eq!(p.unpark(t), None, "a timer firing later finds nothing");
        }
        assert!(p.is_empty());
        assert_eq!(seen.iter().filter(|s| **s).count(), 8_000);
    }

    #[test]
    fn tokens_are_never_reused() {
        let mut p = Parked::default();
        let a = p.park("a");
        assert_eq!(p.unpark(a), Some("a"));
        let b = p.park("b");
        assert_ne!(a, b);
        assert_eq!(
            p.unpark(a),
            None,
            "a stale token does not reach the new request"
        );
        assert_eq!(p.unpark(b), Some("b"));
    }
}
