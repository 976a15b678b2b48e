//! One counter of a limit policy, as it lives in the shared memory zone, and the limiter
//! algorithms over it (time is always passed in, in milliseconds since the Unix epoch).
//!
//! **Sliding windows** (requests or tokens per window): the window is cut into
//! [`BUCKETS`] buckets and the slot keeps the last `BUCKETS + 1` of them. A request is
//! admitted when the buckets that overlap the last window (the current, partial one included)
//! hold less than the limit with the request's cost added. Any interval of one window's
//! length therefore never holds more than the limit: no 2x burst at window edges. The price
//! is that capacity comes back in steps of one bucket (1/20 of the window).
//!
//! **Quotas** (per UTC day or month) are one counter for the current period.
//!
//! **Concurrency** is a count of requests in flight.
//!
//! Every field is a plain integer, so any bit pattern is a valid slot (the zone is zeroed
//! memory at first, and a slot whose settings changed is simply reset).

/// Buckets per window.
pub const BUCKETS: u64 = 20;
const RING: usize = BUCKETS as usize + 1;

/// What a slot counts; part of its identity, so a changed policy starts from zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A sliding window of this many milliseconds.
    Window { ms: u64 },
    /// A calendar period.
    Quota(Period),
    /// Requests in flight.
    Concurrency,
    /// A routing target's passive health: `counts[0]` consecutive failures, `counts[1]` the
    /// end of its cool-down (ms since the epoch).
    Health,
    /// An approximate cluster counter's view of the cluster (`core::policy::approx`).
    Sync,
}

/// A quota's period, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Shape {
    /// The shape's tag as stored in [`Slot::shape`].
    pub fn code(self) -> u64 {
        match self {
            Shape::Window { ms } => ms << 4 | 1,
            Shape::Quota(Period::Day) => 2,
            Shape::Quota(Period::Month) => 3,
            Shape::Concurrency => 4,
            Shape::Health => 5,
            Shape::Sync => 6,
        }
    }
}

/// A counter in the zone. `key == 0` marks a free slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub key: u64,
    /// [`Shape::code`] of what the slot counts.
    pub shape: u64,
    /// Windows: absolute index of the newest bucket. Quotas: the period's number.
    pub head: u64,
    /// Last time the slot was used, for eviction.
    pub touched_ms: u64,
    /// Windows: the ring of bucket counts. Quotas: `counts[0]`. Concurrency: `counts[0]`.
    pub counts: [u64; RING],
}

impl Slot {
    /// A fresh slot for `key`.
    pub fn new(key: u64, shape: Shape, now_ms: u64) -> Slot {
        let mut s = Slot {
            key,
            shape: shape.code(),
            ..Slot::default()
        };
        s.reset(shape, now_ms);
        s
    }

    fn reset(&mut self, shape: Shape, now_ms: u64) {
        self.shape = shape.code();
        self.counts = [0; RING];
        self.head = match shape {
            Shape::Window { ms } => now_ms / bucket_ms(ms),
            Shape::Quota(p) => period_number(p, now_ms),
            Shape::Concurrency | Shape::Health | Shape::Sync => 0,
        };
        self.touched_ms = now_ms;
    }

    /// Makes the slot count `shape` at `now_ms`: drops buckets and periods that have passed
    /// (and everything, if the slot counted something else before).
    pub fn advance(&mut self, shape: Shape, now_ms: u64) {
        if self.shape != shape.code() {
            self.reset(shape, now_ms);
            return;
        }
        self.touched_ms = self.touched_ms.max(now_ms);
        match shape {
            Shape::Window { ms } => {
                // workers' clocks may differ by a few ms: never step back
                let cur = now_ms / bucket_ms(ms);
                if cur <= self.head {
                    return;
                }
                let stale = (cur - self.head).min(RING as u64);
                for i in 0..stale {
                    self.counts[((cur - i) % RING as u64) as usize] = 0;
                }
                self.head = cur;
            }
            Shape::Quota(p) => {
                let cur = period_number(p, now_ms);
                if cur > self.head {
                    self.head = cur;
                    self.counts[0] = 0;
                }
            }
            Shape::Concurrency | Shape::Health | Shape::Sync => {}
        }
    }

    /// What the window, period or concurrency count holds now (after [`advance`]).
    pub fn used(&self, shape: Shape) -> u64 {
        match shape {
            Shape::Window { .. } => self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c)),
            Shape::Quota(_) | Shape::Concurrency | Shape::Health | Shape::Sync => self.counts[0],
        }
    }

    /// Milliseconds until `need` units are freed (after [`advance`]); `None` when they never
    /// will (concurrency: the time is unknowable; quotas free everything at the period's end).
    pub fn free_in_ms(&self, shape: Shape, now_ms: u64, need: u64) -> Option<u64> {
        match shape {
            Shape::Window { ms } => {
                let b = bucket_ms(ms);
                let oldest = self.head.saturating_sub(BUCKETS);
                let mut freed = 0u64;
                for abs in oldest..=self.head {
                    freed = freed.saturating_add(self.counts[(abs % RING as u64) as usize]);
                    if freed >= need {
                        // bucket `abs` leaves the counted span when bucket abs + BUCKETS + 1
                        // begins
                        return Some(((abs + BUCKETS + 1) * b).saturating_sub(now_ms));
                    }
                }
                None
            }
            Shape::Quota(p) => Some(period_end_ms(p, now_ms).saturating_sub(now_ms)),
            Shape::Concurrency | Shape::Health | Shape::Sync => None,
        }
    }

    /// Milliseconds until the window or period holds nothing (OpenAI's `x-ratelimit-reset-*`).
    pub fn reset_in_ms(&self, shape: Shape, now_ms: u64) -> u64 {
        match shape {
            Shape::Window { ms } => {
                let b = bucket_ms(ms);
                let oldest = self.head.saturating_sub(BUCKETS);
                (oldest..=self.head)
                    .rev()
                    .find(|abs| self.counts[(*abs % RING as u64) as usize] != 0)
                    .map_or(0, |abs| ((abs + BUCKETS + 1) * b).saturating_sub(now_ms))
            }
            Shape::Quota(p) if self.counts[0] != 0 => {
                period_end_ms(p, now_ms).saturating_sub(now_ms)
            }
            _ => 0,
        }
    }

    /// Milliseconds until what is added now stops counting (a window's current bucket
    /// leaves it; a quota's period ends).
    pub fn added_now_leaves_in_ms(&self, shape: Shape, now_ms: u64) -> u64 {
        match shape {
            Shape::Window { ms } => {
                ((self.head + BUCKETS + 1) * bucket_ms(ms)).saturating_sub(now_ms)
            }
            Shape::Quota(p) => period_end_ms(p, now_ms).saturating_sub(now_ms),
            Shape::Concurrency | Shape::Health | Shape::Sync => 0,
        }
    }

    /// Adds `amount` now; returns where it went (the bucket, for a later [`adjust`]).
    pub fn add(&mut self, shape: Shape, amount: u64) -> u64 {
        match shape {
            Shape::Window { .. } => {
                let i = (self.head % RING as u64) as usize;
                self.counts[i] = self.counts[i].saturating_add(amount);
                self.head
            }
            Shape::Quota(_) | Shape::Concurrency | Shape::Health | Shape::Sync => {
                self.counts[0] = self.counts[0].saturating_add(amount);
                self.head
            }
        }
    }

    /// Corrects an earlier [`add`] made at `at` by `delta` (settlement: actual usage minus
    /// the reservation). A refund goes back where the reservation was, if that is still
    /// counted; an extra charge goes there too, or into the current bucket or period when the
    /// reservation has aged out (the tokens were used all the same).
    pub fn adjust(&mut self, shape: Shape, at: u64, delta: i64) {
        let i = match shape {
            Shape::Window { .. } => {
                if at + BUCKETS >= self.head && at <= self.head {
                    (at % RING as u64) as usize
                } else if delta > 0 {
                    (self.head % RING as u64) as usize
                } else {
                    return;
                }
            }
            Shape::Quota(_) => {
                if at != self.head && delta < 0 {
                    return;
                }
                0
            }
            Shape::Concurrency | Shape::Health | Shape::Sync => 0,
        };
        let c = &mut self.counts[i];
        *c = if delta >= 0 {
            c.saturating_add(delta as u64)
        } else {
            c.saturating_sub(delta.unsigned_abs())
        };
    }

    /// Whether the slot holds nothing that still matters at `now_ms` (it may be reused).
    pub fn is_idle(&self, now_ms: u64) -> bool {
        if self.key == 0 {
            return true;
        }
        match self.shape & 0xF {
            1 => {
                let ms = self.shape >> 4;
                let mut copy = *self;
                copy.advance(Shape::Window { ms }, now_ms);
                copy.counts.iter().all(|c| *c == 0)
            }
            2 | 3 => {
                let p = if self.shape & 0xF == 2 {
                    Period::Day
                } else {
                    Period::Month
                };
                self.counts[0] == 0 || period_number(p, now_ms) > self.head
            }
            4 => self.counts[0] == 0,
            5 => self.counts[0] == 0 && self.counts[1] <= now_ms,
            // a view unused for two windows, with no demand to report
            6 => {
                self.counts[4] == 0
                    && self
                        .touched_ms
                        .saturating_add(self.counts[5].saturating_mul(2))
                        <= now_ms
            }
            _ => true,
        }
    }
}

/// Length of one bucket of a window (at least 1 ms).
pub fn bucket_ms(window_ms: u64) -> u64 {
    (window_ms / BUCKETS).max(1)
}

const DAY_MS: u64 = 86_400_000;

/// Days since the epoch (Day) or months since year 0 (Month), in UTC.
pub fn period_number(p: Period, now_ms: u64) -> u64 {
    let days = now_ms / DAY_MS;
    match p {
        Period::Day => days,
        Period::Month => {
            let (y, m, _) = civil_from_days(days as i64);
            (y as u64) * 12 + (m as u64 - 1)
        }
    }
}

/// When the period containing `now_ms` ends, in ms since the epoch.
pub fn period_end_ms(p: Period, now_ms: u64) -> u64 {
    let days = now_ms / DAY_MS;
    match p {
        Period::Day => (days + 1) * DAY_MS,
        Period::Month => {
            let (y, m, d) = civil_from_days(days as i64);
            let len = month_days(y, m);
            (days + (len - d + 1) as u64) * DAY_MS
        }
    }
}

fn month_days(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// (year, month 1-12, day 1-31) of a day number since 1970-01-01 (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Shape = Shape::Window { ms: 60_000 };
    // a time on a bucket boundary (3 s buckets)
    const T0: u64 = 1_764_547_200_000;

    fn admit(s: &mut Slot, now: u64, limit: u64) -> bool {
        s.advance(MIN, now);
        if s.used(MIN) + 1 > limit {
            return false;
        }
        s.add(MIN, 1);
        true
    }

    #[test]
    fn window_admits_the_limit_then_refuses() {
        let mut s = Slot::new(7, MIN, T0);
        let passed = (0..100).filter(|i| admit(&mut s, T0 + i * 10, 10)).count();
        assert_eq!(passed, 10);
    }

    #[test]
    fn no_burst_at_window_edges() {
        // a fixed window would let 10 through at 59.9 s and 10 more at 60.0 s
        let mut s = Slot::new(7, MIN, T0);
        let late = (0..10).filter(|_| admit(&mut s, T0 + 59_900, 10)).count();
        let early = (0..10).filter(|_| admit(&mut s, T0 + 60_000, 10)).count();
        assert_eq!((late, early), (10, 0));
        // any 60 s interval holds at most 10: a request at t passes only when nothing of
        // [t - 60 s, t] was admitted
        let mut times = Vec::new();
        let mut s = Slot::new(7, MIN, T0);
        for i in 0..2000u64 {
            let t = T0 + i * 997;
            if admit(&mut s, t, 10) {
                times.push(t);
            }
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..].iter().take_while(|u| **u < t + 60_000).count();
            assert!(in_window <= 10, "{in_window} in the minute from {t}");
        }
        // and the limit is reached: about 10 per 63 s (one bucket of slack)
        assert!(
            times.len() >= 2000 * 997 / 63_000 * 10 - 10,
            "{}",
            times.len()
        );
    }

    #[test]
    fn capacity_returns_bucket_by_bucket() {
        let mut s = Slot::new(7, MIN, T0);
        for i in 0..4 {
            s.advance(MIN, T0 + i * 3_000);
            s.add(MIN, 1);
        }
        // at T0 + 10 s: 4 used; one more unit is free when T0's bucket leaves, at T0 + 63 s
        let now = T0 + 10_000;
        s.advance(MIN, now);
        assert_eq!(s.used(MIN), 4);
        assert_eq!(s.free_in_ms(MIN, now, 1), Some(53_000));
        assert_eq!(s.free_in_ms(MIN, now, 2), Some(56_000));
        assert_eq!(s.free_in_ms(MIN, now, 5), None);
        assert_eq!(s.reset_in_ms(MIN, now), 62_000);
        s.advance(MIN, T0 + 63_000);
        assert_eq!(s.used(MIN), 3);
        s.advance(MIN, T0 + 200_000);
        assert_eq!(s.used(MIN), 0);
        assert!(s.is_idle(T0 + 200_000));
    }

    #[test]
    fn settlement_refunds_where_the_reservation_was() {
        let mut s = Slot::new(7, MIN, T0);
        let at = s.add(MIN, 1000);
        s.advance(MIN, T0 + 30_000);
        s.add(MIN, 5);
        s.adjust(MIN, at, -900);
        assert_eq!(s.used(MIN), 105);
        // once the reservation aged out, a refund is dropped and a charge lands now
        s.advance(MIN, T0 + 70_000);
        assert_eq!(s.used(MIN), 5);
        s.adjust(MIN, at, -50);
        assert_eq!(s.used(MIN), 5);
        s.adjust(MIN, at, 40);
        assert_eq!(s.used(MIN), 45);
        // never below zero
        s.adjust(MIN, s.head, -1000);
        assert_eq!(s.used(MIN), 5);
    }

    #[test]
    fn clocks_that_step_back_do_not_lose_counts() {
        let mut s = Slot::new(7, MIN, T0 + 6_000);
        s.add(MIN, 3);
        s.advance(MIN, T0 + 2_000);
        assert_eq!(s.used(MIN), 3);
    }

    #[test]
    fn changed_shape_resets() {
        let mut s = Slot::new(7, MIN, T0);
        s.add(MIN, 3);
        let hour = Shape::Window { ms: 3_600_000 };
        s.advance(hour, T0);
        assert_eq!(s.used(hour), 0);
    }

    #[test]
    fn quotas_follow_utc_days_and_months() {
        // 2025-12-01T00:00:00Z
        assert_eq!(civil_from_days((T0 / DAY_MS) as i64), (2025, 12, 1));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let day = Shape::Quota(Period::Day);
        let mut s = Slot::new(9, day, T0 + 1000);
        s.add(day, 500);
        assert_eq!(s.free_in_ms(day, T0 + 1000, 1), Some(DAY_MS - 1000));
        s.advance(day, T0 + DAY_MS - 1);
        assert_eq!(s.used(day), 500);
        s.advance(day, T0 + DAY_MS);
        assert_eq!(s.used(day), 0);

        let month = Shape::Quota(Period::Month);
        let mut s = Slot::new(9, month, T0 + 5 * DAY_MS);
        s.add(month, 7);
        // December has 31 days
        assert_eq!(s.free_in_ms(month, T0 + 5 * DAY_MS, 1), Some(26 * DAY_MS));
        s.advance(month, T0 + 30 * DAY_MS);
        assert_eq!(s.used(month), 7);
        s.advance(month, T0 + 31 * DAY_MS);
        assert_eq!(s.used(month), 0);
        // February of a leap year
        let feb_2028 = 21_214 * DAY_MS; // 2028-01-31
        assert_eq!(civil_from_days(21_214), (2028, 1, 31));
        assert_eq!(
            period_end_ms(Period::Month, feb_2028 + DAY_MS),
            feb_2028 + 30 * DAY_MS
        );
    }

    #[test]
    fn idle_slots() {
        let c = Shape::Concurrency;
        let mut s = Slot::new(3, c, T0);
        s.add(c, 1);
        assert!(!s.is_idle(T0 + 10 * DAY_MS));
        s.adjust(c, 0, -1);
        assert!(s.is_idle(T0));
        let day = Shape::Quota(Period::Day);
        let mut q = Slot::new(4, day, T0);
        q.add(day, 1);
        assert!(!q.is_idle(T0 + 1));
        assert!(q.is_idle(T0 + DAY_MS));
    }
}
