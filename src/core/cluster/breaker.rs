//! The circuit breaker in front of Redis (one per worker). Closed, it lets every call
//! through and counts consecutive failures; at `threshold` of them it opens: no call is made
//! (requests are decided at once, without paying a timeout) until `probe_ms` have passed.
//! Then one call goes through as a probe (half-open) while the others are still decided
//! without Redis: its success closes the breaker, its failure opens it again. Time is passed
//! in (milliseconds of a monotonic clock).

/// What a caller may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Call Redis.
    Call,
    /// Call Redis as the probe: report its outcome.
    Probe,
    /// Do not call: Redis is taken as unreachable.
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until_ms: u64,
    },
    /// A probe is out; `since_ms` bounds how long it may take before another is allowed.
    Probing {
        since_ms: u64,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct Breaker {
    state: State,
    threshold: u32,
    probe_ms: u64,
    /// Times the breaker opened (from closed).
    pub opened: u64,
}

/// What a reported outcome changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    Opened,
    Closed,
}

impl Breaker {
    pub fn new(threshold: u32, probe_ms: u64) -> Breaker {
        Breaker {
            state: State::Closed { failures: 0 },
            threshold: threshold.max(1),
            probe_ms: probe_ms.max(1),
            opened: 0,
        }
    }

    /// Whether a call may be made at `now_ms`.
    pub fn gate(&mut self, now_ms: u64) -> Gate {
        match self.state {
            State::Closed { .. } => Gate::Call,
            State::Open { until_ms } if now_ms >= until_ms => {
                self.state = State::Probing { since_ms: now_ms };
                Gate::Probe
            }
            // a probe that never reported (its request went away): allow another
            State::Probing { since_ms } if now_ms >= since_ms.saturating_add(self.probe_ms) => {
                self.state = State::Probing { since_ms: now_ms };
                Gate::Probe
            }
            State::Open { .. } | State::Probing { .. } => Gate::Skip,
        }
    }

    /// A call succeeded.
    pub fn success(&mut self) -> Change {
        let was_closed = matches!(self.state, State::Closed { .. });
        self.state = State::Closed { failures: 0 };
        if was_closed {
            Change::None
        } else {
            Change::Closed
        }
    }

    /// A call failed (error or timeout) at `now_ms`.
    pub fn failure(&mut self, now_ms: u64) -> Change {
        match self.state {
            State::Closed { failures } if failures + 1 < self.threshold => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
                Change::None
            }
            State::Closed { .. } => {
                self.state = State::Open {
                    until_ms: now_ms.saturating_add(self.probe_ms),
                };
                self.opened += 1;
                Change::Opened
            }
            State::Open { .. } | State::Probing { .. } => {
                self.state = State::Open {
                    until_ms: now_ms.saturating_add(self.probe_ms),
                };
                Change::None
            }
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// Seconds a client refused while the breaker is open should wait (at least 1).
    pub fn retry_after_s(&self, now_ms: u64) -> u64 {
        match self.state {
            State::Open { until_ms } => until_ms.saturating_sub(now_ms).div_ceil(1000).max(1),
            _ => self.probe_ms.div_ceil(1000).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes() {
        let mut b = Breaker::new(3, 1000);
        assert_eq!(b.gate(0), Gate::Call);
        assert_eq!(b.failure(0), Change::None);
        assert_eq!(b.failure(1), Change::None);
        assert_eq!(b.gate(2), Gate::Call);
        assert_eq!(b.failure(2), Change::Opened);
        assert!(b.is_open());
        assert_eq!(b.opened, 1);
        // no call while open
        assert_eq!(b.gate(500), Gate::Skip);
        assert_eq!(b.retry_after_s(500), 1);
        // one probe after probe_ms; others still skip
        assert_eq!(b.gate(1002), Gate::Probe);
        assert_eq!(b.gate(1003), Gate::Skip);
        // the probe fails: open again, for another probe_ms
        assert_eq!(b.failure(1010), Change::None);
        assert_eq!(b.gate(1500), Gate::Skip);
        assert_eq!(b.gate(2010), Gate::Probe);
        assert_eq!(b.success(), Change::Closed);
        assert_eq!(b.gate(2011), Gate::Call);
        assert_eq!(b.opened, 1);
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut b = Breaker::new(2, 1000);
        b.failure(0);
        assert_eq!(b.success(), Change::None);
        assert_eq!(b.failure(1), Change::None);
        assert_eq!(b.failure(2), Change::Opened);
    }

    #[test]
    fn a_lost_probe_allows_another() {
        let mut b = Breaker::new(1, 100);
        assert_eq!(b.failure(0), Change::Opened);
        assert_eq!(b.gate(100), Gate::Probe);
        assert_eq!(b.gate(150), Gate::Skip);
        assert_eq!(b.gate(200), Gate::Probe);
    }
}
