//! Push timing: a client's `interval` and the rhythm of due times it sets.

/// The minimum spacing between two pushes to a client, in ms (PROTOCOL.md §3: 100..=60000,
/// default 1000). Only valid values can be constructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval(u32);

impl Interval {
    pub const MIN_MS: u32 = 100;
    pub const MAX_MS: u32 = 60_000;
    pub const DEFAULT: Interval = Interval(1000);

    /// `None` outside `MIN_MS..=MAX_MS`.
    pub fn from_ms(ms: u64) -> Option<Interval> {
        (u64::from(Self::MIN_MS)..=u64::from(Self::MAX_MS))
            .contains(&ms)
            .then_some(Interval(ms as u32))
    }

    pub fn ms(self) -> i64 {
        i64::from(self.0)
    }

    /// How early a push may come before its due time: a tenth of the interval. Changes that
    /// arrive exactly once per interval (a device writing at the subscribed rate) jitter by
    /// up to a feed tick; without this tolerance each would be held to the next slot and
    /// latency would creep up to a whole interval.
    fn slack(self) -> i64 {
        self.ms() / 10
    }
}

/// A rhythm of due times `interval` apart. Anchored to due times, not to when a push
/// happened, so on average there is at most one push per interval, and two pushes are never
/// closer than 0.9 × interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rhythm {
    pub interval: Interval,
    /// The next due time (Unix ms).
    due: i64,
}

impl Rhythm {
    /// A rhythm whose first push is due one interval after `now`.
    pub fn starting(interval: Interval, now: i64) -> Rhythm {
        Rhythm {
            interval,
            due: now + interval.ms(),
        }
    }

    /// The earliest time the next push may go out.
    pub fn opens_at(&self) -> i64 {
        self.due - self.interval.slack()
    }

    pub fn is_open(&self, now: i64) -> bool {
        now >= self.opens_at()
    }

    /// A push went out at `now`: the next is due one interval after this slot (or after `now`
    /// when the slot was missed, so a late push does not trigger a burst).
    pub fn advance(&mut self, now: i64) {
        self.due = self.due.max(now) + self.interval.ms();
    }

    /// Starts over: the next push is due one interval after `now`.
    pub fn restart(&mut self, interval: Interval, now: i64) {
        *self = Rhythm::starting(interval, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(Interval::from_ms(99), None);
        assert_eq!(Interval::from_ms(60_001), None);
        assert_eq!(Interval::from_ms(100).map(Interval::ms), Some(100));
        assert_eq!(Interval::DEFAULT.ms(), 1000);
    }

    #[test]
    fn rhythm_slack_and_catch_up() {
        let i = Interval::from_ms(1000).unwrap();
        let mut r = Rhythm::starting(i, 0);
        assert_eq!(r.opens_at(), 900);
        assert!(!r.is_open(899) && r.is_open(900));
        r.advance(950);
        assert_eq!(
            r.opens_at(),
            1900,
            "anchored to the due time, not to the push"
        );
        r.advance(5000);
        assert_eq!(r.opens_at(), 5900, "a missed slot does not cause a burst");
    }
}
