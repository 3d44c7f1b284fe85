//! [`Every`]: the clock of the coordinators' periodic store work (GC, compaction): a tick every
//! interval, the first at once, late ticks delayed rather than bunched, until told to stop.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

/// Ticks every interval until a stop signal turns true.
#[derive(Debug)]
pub struct Every {
    tick: Interval,
    stop: watch::Receiver<bool>,
}

impl Every {
    /// Ticks every `interval` (the first at once) until `stop` turns true.
    pub fn new(interval: Duration, stop: watch::Receiver<bool>) -> Every {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Every { tick, stop }
    }

    /// Waits for the next tick: true, or false once the stop signal has changed to true (or
    /// its sender is gone).
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.tick.tick() => {}
            _ = self.stop.changed() => return false,
        }
        !*self.stop.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_at_once_then_every_interval_until_stopped() {
        let (tx, rx) = watch::channel(false);
        let mut every = Every::new(Duration::from_secs(5), rx);
        let start = tokio::time::Instant::now();
        assert!(every.next().await);
        assert_eq!(start.elapsed(), Duration::ZERO, "the first tick at once");
        assert!(every.next().await);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        tx.send(true).expect("send");
        assert!(!every.next().await, "stopped");
    }

    #[tokio::test]
    async fn a_dropped_sender_stops_it() {
        let (tx, rx) = watch::channel(false);
        let mut every = Every::new(Duration::from_secs(3600), rx);
        assert!(every.next().await);
        drop(tx);
        assert!(!every.next().await);
    }
}
