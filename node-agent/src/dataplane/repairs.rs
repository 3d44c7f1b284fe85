//! The damage the kernel reported, waiting for the one repair task: damage arriving while a
//! repair runs is merged into the next one, so a burst (the agent's own mass detach, say) costs
//! one repair after the current one, not one each.

use shibafu_overlay::netlink::watch::Damage;

/// Damage not yet taken, and whether a repair task runs.
#[derive(Debug, Default)]
pub struct RepairQueue {
    running: bool,
    queued: Vec<Damage>,
}

impl RepairQueue {
    /// Adds `damage` (each once); true when no task runs and the caller must start one.
    pub fn push(&mut self, damage: Vec<Damage>) -> bool {
        for d in damage {
            if !self.queued.contains(&d) {
                self.queued.push(d);
            }
        }
        let start = !self.running;
        self.running = true;
        start
    }

    /// The damage to repair next; `None`, and the task ends, when nothing is queued.
    pub fn take(&mut self) -> Option<Vec<Damage>> {
        if self.queued.is_empty() {
            self.running = false;
            return None;
        }
        Some(std::mem::take(&mut self.queued))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_during_a_repair_waits_for_the_next_one_merged() {
        let mut q = RepairQueue::default();
        let link = |n: &str| Damage::Link(n.into());
        assert!(q.push(vec![link("sfbr1000")]), "the first starts the task");
        assert_eq!(q.take(), Some(vec![link("sfbr1000")]));
        assert!(!q.push(vec![link("sfe1")]), "a task runs: no second one");
        assert!(!q.push(vec![link("sfe1"), Damage::Neighbour]));
        assert_eq!(q.take(), Some(vec![link("sfe1"), Damage::Neighbour]));
        assert_eq!(q.take(), None, "the task ends");
        assert!(
            q.push(vec![Damage::Neighbour]),
            "and the next damage starts one again"
        );
    }
}
