//! Pacing of work driven by a stream of changes (dataplane change passes, DNS snapshot
//! rebuilds): after a pass, the next waits a multiple of how long it took (three times by
//! default, nine for DNS), so passes over a large cluster under a stream of changes take at most
//! a quarter (a tenth) of a core, each folding in every change that came meanwhile, while on a
//! small cluster, where a pass takes a millisecond, changes still go through at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The next pass waits this many times the last one's length, unless told otherwise.
const PACE: u32 = 3;
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_millis(200);

/// When the last pass ended and how long it took (shared by the passes' tasks), and how many
/// times that length the next pass waits.
#[derive(Debug, Clone)]
pub struct Pace {
    last: Arc<Mutex<Option<(Instant, Duration)>>>,
    factor: u32,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace::with_factor(PACE)
    }
}

impl Pace {
    /// A pace whose next pass waits `factor` times the last one's length (at most
    /// `1 / (factor + 1)` of a core under a steady stream of changes).
    pub fn with_factor(factor: u32) -> Pace {
        Pace {
            last: Arc::default(),
            factor,
        }
    }

    /// Records a pass that took `took` and ended now.
    pub fn record(&self, took: Duration) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), took));
    }

    /// How long the next pass should still wait.
    pub fn wait(&self) -> Duration {
        self.wait_at(Instant::now())
    }

    /// How long the next pass should still wait at `now`.
    fn wait_at(&self, now: Instant) -> Duration {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.map_or(Duration::ZERO, |(ended, took)| {
            (took * self.factor)
                .min(MAX_WAIT)
                .saturating_sub(now.saturating_duration_since(ended))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(at: Instant, took: Duration) -> Pace {
        let pace = Pace::default();
        *pace.last.lock().expect("lock") = Some((at, took));
        pace
    }

    #[test]
    fn the_wait_follows_the_last_pass_and_is_bounded() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(
            Pace::default().wait_at(now),
            Duration::ZERO,
            "nothing before a pass"
        );
        let p = ended(now, ms(10));
        assert_eq!(p.wait_at(now), ms(30));
        assert_eq!(p.wait_at(now + ms(25)), ms(5));
        assert_eq!(p.wait_at(now + ms(40)), Duration::ZERO);
        assert_eq!(ended(now, ms(2000)).wait_at(now), MAX_WAIT);
        assert_eq!(
            ended(now, Duration::from_micros(300)).wait_at(now),
            Duration::from_micros(900)
        );
    }
}
