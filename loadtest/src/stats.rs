//! A log-linear histogram (HDR-style, < 0.8 % relative error, fixed 59 KiB) for latencies in
//! microseconds, and helpers to turn counts into rates.

use serde_json::{json, Value};

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS; // 128 sub-buckets per power of two
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Counts of `u64` values (µs here). Exact below 128, then 128 buckets per power of two.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    min: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
            min: u64::MAX,
            sum: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = ((v >> shift) as usize) & (SUB - 1);
    (shift as usize + 1) * SUB + sub
}

/// Midpoint of the values that land in bucket `i`.
fn value_of(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let sub = (i % SUB) as u64;
    let low = (SUB as u64 + sub) << shift;
    low + ((1u64 << shift) >> 1)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
        self.min = self.min.min(v);
        self.sum += u128::from(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.min = self.min.min(other.min);
        self.sum += other.sum;
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0..=1); the exact max for q = 1, 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_of(i).min(self.max).max(self.min);
            }
        }
        self.max
    }

    /// p50/p90/p99/p99.9/max/mean in milliseconds (values recorded in µs).
    pub fn summary_ms(&self) -> Value {
        let ms = |v: u64| (v as f64 / 1000.0 * 1000.0).round() / 1000.0;
        json!({
            "count": self.total,
            "p50_ms": ms(self.quantile(0.5)),
            "p90_ms": ms(self.quantile(0.9)),
            "p99_ms": ms(self.quantile(0.99)),
            "p999_ms": ms(self.quantile(0.999)),
            "max_ms": ms(self.max),
            "mean_ms": (self.mean() / 1000.0 * 1000.0).round() / 1000.0,
        })
    }

    /// `p50 1.23  p99 4.56  p99.9 7.89  max 9.99 ms (n samples)` for the table.
    pub fn line_ms(&self) -> String {
        if self.total == 0 {
            return "no samples".into();
        }
        let f = |v: u64| fmt_ms(v);
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {} ms  ({} samples)",
            f(self.quantile(0.5)),
            f(self.quantile(0.9)),
            f(self.quantile(0.99)),
            f(self.quantile(0.999)),
            f(self.max),
            self.total
        )
    }
}

/// µs → "1.234" ms with sensible precision.
pub fn fmt_ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.3}")
    } else if ms < 100.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

/// Rounds to `d` decimals (for JSON output).
pub fn round(v: f64, d: i32) -> f64 {
    let p = 10f64.powi(d);
    (v * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_monotonic_and_close() {
        let mut last = 0;
        for v in (0..2_000_000u64).step_by(7) {
            let i = index(v);
            assert!(i >= last);
            last = i;
            let back = value_of(i);
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.008, "v={v} back={back}");
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.01, "{p50}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.01, "{p99}");
        let mut g = Histogram::default();
        g.merge(&h);
        assert_eq!(g.total, 1000);
    }
}
