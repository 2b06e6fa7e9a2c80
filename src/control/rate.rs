//! How many control commands a user and a client address may send, over both doors (the
//! WebSocket `control` and `POST /api/control`) together: one token bucket per user and one
//! per address, a command taking from both (anonymous clients: the address's only, so one
//! anonymous flooder cannot lock every anonymous operator out). Bounded: at most `max_keys`
//! buckets; full ones (as good as new) are dropped first. Pure: `now` (Unix ms) comes in.

use crate::error::{ApiError, ErrorCode};
use crate::ws::rate::RateLimit;
use std::collections::HashMap;
use std::net::IpAddr;

/// What a bucket is kept for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

pub struct ControlRate {
    per_sec: u32,
    burst: u32,
    max_keys: usize,
    buckets: HashMap<Key, RateLimit>,
}

/// Most buckets kept; a flood of distinct addresses prunes rather than grows.
pub const MAX_KEYS: usize = 10_000;

impl ControlRate {
    pub fn new(per_sec: u32, burst: u32) -> ControlRate {
        ControlRate {
            per_sec,
            burst,
            max_keys: MAX_KEYS,
            buckets: HashMap::new(),
        }
    }

    /// Takes one command's worth for `user` (`None`: anonymous) from `ip` at `now`, or the
    /// `RATE_LIMITED` refusal (nothing taken from either bucket).
    pub fn take(&mut self, user: Option<&str>, ip: IpAddr, now: i64) -> Result<(), ApiError> {
        let keys: Vec<Key> = user
            .map(|u| Key::User(u.to_string()))
            .into_iter()
            .chain(std::iter::once(Key::Address(ip)))
            .collect();
        if self.buckets.len() + keys.len() > self.max_keys {
            self.prune(now);
        }
        let (per_sec, burst) = (self.per_sec, self.burst);
        let short = keys.iter().find(|k| {
            !self
                .buckets
                .entry((*k).clone())
                .or_insert_with(|| RateLimit::new(per_sec, burst, now))
                .available(1, now)
        });
        if let Some(k) = short {
            let who = match k {
                Key::User(u) => format!("user '{u}'"),
                Key::Address(a) => format!("address {a}"),
            };
            return Err(ErrorCode::RateLimited.context(format!(
                    "{who} may send at most {per_sec} control commands a second (bursts of {burst}); nothing was queued, retry in a second"
                )));
        }
        for k in &keys {
            if let Some(b) = self.buckets.get_mut(k) {
                b.take(1, now);
            }
        }
        Ok(())
    }

    /// Drops full buckets; if that is not enough, the longest idle ones.
    fn prune(&mut self, now: i64) {
        self.buckets.retain(|_, b| !b.is_full(now));
        while self.buckets.len() + 2 > self.max_keys {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last())
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.buckets.remove(&k),
                None => break,
            };
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_user_is_limited_over_every_address_and_an_address_over_every_user() {
        let mut r = ControlRate::new(10, 20);
        // One user from two addresses: 20 at once, then 10 a second.
        for i in 0..20 {
            r.take(Some("olga"), ip(1 + (i % 2) as u8), 0).unwrap();
        }
        let e = r.take(Some("olga"), ip(3), 0).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.details.contains("user 'olga'"), "{}", e.details);
        assert!(r.take(Some("olga"), ip(3), 100).is_ok(), "one per 100 ms");
        // Address 1 took 10 of olga's (and refilled one): 11 more from another user, then
        // it is empty.
        for _ in 0..11 {
            r.take(Some("ivan"), ip(1), 100).unwrap();
        }
        let e = r.take(Some("ivan"), ip(1), 100).unwrap_err();
        assert!(e.details.contains("address 10.0.0.1"), "{}", e.details);
        // A refusal takes nothing: ivan still has the rest of his own 20.
        for _ in 0..9 {
            r.take(Some("ivan"), ip(9), 100).unwrap();
        }
    }

    #[test]
    fn anonymous_clients_are_limited_by_address_only() {
        let mut r = ControlRate::new(1, 2);
        for n in 1..=50 {
            r.take(None, ip(n), 0).unwrap();
            r.take(None, ip(n), 0).unwrap();
            assert!(r.take(None, ip(n), 0).is_err());
        }
    }

    #[test]
    fn many_addresses_keep_the_table_bounded() {
        let mut r = ControlRate::new(10, 20);
        for n in 0..(MAX_KEYS as u32 * 3) {
            let a = IpAddr::from(n.to_be_bytes());
            r.take(None, a, i64::from(n)).unwrap();
        }
        assert!(r.len() <= MAX_KEYS, "{}", r.len());
    }
}
