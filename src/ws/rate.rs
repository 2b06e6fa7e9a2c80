//! A connection's message budget: a token bucket refilled at `per_sec`, holding at most
//! `burst`. Pure: it is told the time.

/// Token amounts are kept in thousandths so refills of a fraction of a message add up.
const MILLI: u64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    per_sec: u64,
    burst: u64,
    /// Thousandths of a message available.
    tokens: u64,
    last: i64,
}

impl RateLimit {
    /// A full bucket at `now`.
    pub fn new(per_sec: u32, burst: u32, now: i64) -> RateLimit {
        RateLimit {
            per_sec: u64::from(per_sec),
            burst: u64::from(burst),
            tokens: u64::from(burst) * MILLI,
            last: now,
        }
    }

    fn refill(&mut self, now: i64) {
        let elapsed = u64::try_from(now.saturating_sub(self.last)).unwrap_or(0);
        // per_sec messages per 1000 ms = per_sec thousandths per ms.
        let refill = elapsed.saturating_mul(self.per_sec);
        self.tokens = self.tokens.saturating_add(refill).min(self.burst * MILLI);
        self.last = self.last.max(now);
    }

    /// Whether `cost` messages' worth is available at `now` (nothing taken).
    pub fn available(&mut self, cost: u32, now: i64) -> bool {
        self.refill(now);
        self.tokens >= u64::from(cost) * MILLI
    }

    /// Back to a full burst by `now`: as good as a new bucket.
    pub fn is_full(&mut self, now: i64) -> bool {
        self.refill(now);
        self.tokens >= self.burst * MILLI
    }

    /// When it was last refilled (or taken from).
    pub fn last(&self) -> i64 {
        self.last
    }

    /// Takes `cost` messages' worth if available.
    pub fn take(&mut self, cost: u32, now: i64) -> bool {
        self.refill(now);
        let cost = u64::from(cost) * MILLI;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut r = RateLimit::new(100, 10, 0);
        assert!((0..10).all(|_| r.take(1, 0)), "the burst");
        assert!(!r.take(1, 0));
        assert!(!r.take(1, 5), "half a message refilled");
        assert!(r.take(1, 10), "one per 10 ms");
        assert!(!r.take(1, 10));
        assert!(
            (0..10).all(|_| r.take(1, 10_000)),
            "refills to the burst, no more"
        );
        assert!(!r.take(1, 10_000));
        assert!(!r.take(20, 100_000), "a cost above the burst never fits");
        assert!(r.take(10, 100_000));
        assert!(!r.take(1, 5_000), "time going backwards refills nothing");
    }
}
