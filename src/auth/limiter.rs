//! Failed logins per key (a source address, a user name): after `max` failures within a
//! window, attempts under that key are refused until the window that started with the first
//! failure has passed. Bounded: the map is pruned when it grows, and capped.

use std::collections::HashMap;

/// More keys than this and new failures are still counted only after a prune makes room.
const MAX_KEYS: usize = 100_000;

pub struct Failures {
    max: u32,
    window_ms: i64,
    /// key → (first failure of the window, failures in it).
    by_key: HashMap<String, (i64, u32)>,
}

impl Failures {
    pub fn new(max: u32, window_ms: i64) -> Failures {
        Failures {
            max: max.max(1),
            window_ms: window_ms.max(1),
            by_key: HashMap::new(),
        }
    }

    /// How long (ms) until any of `keys` may try again, when one is blocked.
    pub fn blocked(&self, keys: &[String], now: i64) -> Option<i64> {
        keys.iter()
            .filter_map(|k| self.by_key.get(k))
            .filter(|(start, n)| *n >= self.max && now < start + self.window_ms)
            .map(|(start, _)| start + self.window_ms - now)
            .max()
    }

    pub fn record(&mut self, keys: &[String], now: i64) {
        if self.by_key.len() >= MAX_KEYS {
            let window = self.window_ms;
            self.by_key.retain(|_, (start, _)| now < *start + window);
        }
        for k in keys {
            if self.by_key.len() >= MAX_KEYS && !self.by_key.contains_key(k) {
                continue;
            }
            let e = self.by_key.entry(k.clone()).or_insert((now, 0));
            if now >= e.0 + self.window_ms {
                *e = (now, 0);
            }
            e.1 += 1;
        }
    }

    pub fn clear(&mut self, key: &str) {
        self.by_key.remove(key);
    }
}
