//! The health state of one instance, moved by check results: starting -> healthy <-> unhealthy
//! after `rise` passes or `fall` failures in a row; failures while starting within the start
//! period do not count. Time is given by the caller (unix milliseconds), so it is tested without
//! waiting.

use crate::model::{HealthCheck, HealthState};

/// Where an instance stands and the streak of results that may move it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    state: HealthState,
    since_ms: u64,
    started_ms: u64,
    passes: u32,
    failures: u32,
}

impl Tracker {
    /// A new instance: starting since `now_ms`, its start period counted from then.
    pub fn new(now_ms: u64) -> Tracker {
        Tracker::resume(HealthState::Starting, now_ms, now_ms)
    }

    /// An instance whose state was already known (the record of an earlier agent run): `state`
    /// since `since_ms`, its start period (if still starting) counted from `now_ms`.
    pub fn resume(state: HealthState, since_ms: u64, now_ms: u64) -> Tracker {
        Tracker {
            state,
            since_ms,
            started_ms: now_ms,
            passes: 0,
            failures: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// When the state last changed (unix ms).
    pub fn since_ms(&self) -> u64 {
        self.since_ms
    }

    /// Starts the streaks over (the check itself changed); the state stays.
    pub fn restart_streaks(&mut self) {
        self.passes = 0;
        self.failures = 0;
    }

    /// Takes one result of `check` at `now_ms`; true when the state changed.
    pub fn observe(&mut self, check: &HealthCheck, passed: bool, now_ms: u64) -> bool {
        let next = if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            (self.passes >= check.rise).then_some(HealthState::Healthy)
        } else {
            self.passes = 0;
            let grace = self.state == HealthState::Starting
                && now_ms.saturating_sub(self.started_ms) < check.start_period_ms;
            if grace {
                return false;
            }
            self.failures = self.failures.saturating_add(1);
            (self.failures >= check.fall).then_some(HealthState::Unhealthy)
        };
        match next {
            Some(state) if state != self.state => {
                self.state = state;
                self.since_ms = now_ms;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Probe;

    fn check(rise: u32, fall: u32, start_period_ms: u64) -> HealthCheck {
        HealthCheck {
            rise,
            fall,
            start_period_ms,
            ..HealthCheck::new(Probe::Tcp { port: 80 })
        }
    }

    /// Feeds `results` one second apart from t = 1000; the states after each.
    fn run(t: &mut Tracker, c: &HealthCheck, results: &str) -> Vec<HealthState> {
        results
            .chars()
            .enumerate()
            .map(|(i, r)| {
                t.observe(c, r == '+', 1000 * (i as u64 + 1));
                t.state()
            })
            .collect()
    }

    #[test]
    fn rise_makes_healthy_and_fall_unhealthy_in_a_row_only() {
        use HealthState::{Healthy as H, Starting as S, Unhealthy as U};
        let c = check(2, 3, 0);
        let mut t = Tracker::new(0);
        assert_eq!(
            run(&mut t, &c, "+-+++--+---++"),
            [S, S, S, H, H, H, H, H, H, H, U, U, H]
        );
        assert_eq!(t.since_ms(), 13_000, "the last transition");
    }

    #[test]
    fn a_starting_instance_that_keeps_failing_becomes_unhealthy() {
        let c = check(2, 2, 0);
        let mut t = Tracker::new(0);
        assert!(!t.observe(&c, false, 1000));
        assert!(t.observe(&c, false, 2000));
        assert_eq!((t.state(), t.since_ms()), (HealthState::Unhealthy, 2000));
    }

    #[test]
    fn failures_within_the_start_period_do_not_count_while_starting() {
        let c = check(1, 1, 5000);
        let mut t = Tracker::new(0);
        for now in [1000, 2000, 4999] {
            assert!(!t.observe(&c, false, now), "at {now}");
        }
        assert_eq!(t.state(), HealthState::Starting);
        assert!(t.observe(&c, false, 5000), "the period is over");
        assert_eq!(t.state(), HealthState::Unhealthy);
        // Once healthy, a failure counts even within the period.
        let mut t = Tracker::new(0);
        assert!(t.observe(&c, true, 1000));
        assert!(t.observe(&c, false, 2000));
        assert_eq!(t.state(), HealthState::Unhealthy);
    }

    #[test]
    fn a_resumed_instance_keeps_its_state_and_streaks_restart() {
        let c = check(2, 2, 0);
        let mut t = Tracker::resume(HealthState::Healthy, 500, 9000);
        assert!(!t.observe(&c, false, 10_000));
        t.restart_streaks();
        assert!(!t.observe(&c, false, 11_000), "the streak started over");
        assert!(t.observe(&c, false, 12_000));
        assert_eq!((t.state(), t.since_ms()), (HealthState::Unhealthy, 12_000));
    }
}
