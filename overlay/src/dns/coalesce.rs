//! Gathers a batch's UDP answers into messages: answers of one size to one requester leave as
//! one send that the kernel cuts into datagrams (UDP generic segmentation offload), so its
//! stack is walked once for the group instead of once per answer. Each datagram arrives alone,
//! exactly as if sent alone.

use std::net::SocketAddr;

/// Largest answer sent in a group. Every IPv4 link carries 576-byte datagrams, so a group
/// never fails for the link's MTU; larger answers leave alone (their EMSGSIZE handled there).
pub(crate) const SEGMENT_MAX: usize = 512;
/// Most answers in one group (the kernel's UDP_MAX_SEGMENTS was 64 before Linux 6.9).
pub(crate) const SEGMENTS_MAX: usize = 64;
/// Slots of the table that finds the open run of a requester and size (a power of two).
const TABLE: usize = 64;

/// A run of answers, consecutive in send order, that leaves as one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    /// Position of the run's first answer in [`Plan::order`].
    pub(crate) start: usize,
    /// How many answers; all of one size and requester when more than one.
    pub(crate) count: usize,
}

/// The send order of a batch's answers and the runs it is cut into; buffers reused per batch.
pub(crate) struct Plan {
    /// Answer slots in send order: each run's answers together, runs in order of first answer.
    pub(crate) order: Vec<usize>,
    /// The messages to send, in order.
    pub(crate) runs: Vec<Run>,
    /// Requester and size of each run.
    keys: Vec<(SocketAddr, usize)>,
    run_of: Vec<usize>,
    /// By hash of requester port and size: 1 + the run answers of that key join (0: none).
    /// A colliding key takes the slot over (its answers then start another run).
    table: [u16; TABLE],
    cursor: Vec<usize>,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            order: Vec::new(),
            runs: Vec::new(),
            keys: Vec::new(),
            run_of: Vec::new(),
            table: [0; TABLE],
            cursor: Vec::new(),
        }
    }
}

impl Plan {
    /// Plans the answers given as (requester, size) by slot. With `coalesce` false, or for an
    /// answer larger than [`SEGMENT_MAX`], an answer is a run of its own.
    pub(crate) fn make(
        &mut self,
        answers: impl Iterator<Item = (SocketAddr, usize)>,
        coalesce: bool,
    ) {
        self.runs.clear();
        self.keys.clear();
        self.run_of.clear();
        self.table = [0; TABLE];
        for (peer, size) in answers {
            let joins = coalesce && size <= SEGMENT_MAX;
            let slot = slot(peer, size);
            let open = joins.then(|| self.open(slot, peer, size)).flatten();
            let run = open.unwrap_or_else(|| {
                self.runs.push(Run { start: 0, count: 0 });
                self.keys.push((peer, size));
                if joins {
                    self.table[slot] = self.runs.len() as u16;
                }
                self.runs.len() - 1
            });
            self.runs[run].count += 1;
            self.run_of.push(run);
        }
        self.cursor.clear();
        let mut at = 0;
        for r in &mut self.runs {
            r.start = at;
            self.cursor.push(at);
            at += r.count;
        }
        self.order.clear();
        self.order.resize(self.run_of.len(), 0);
        for (slot, &run) in self.run_of.iter().enumerate() {
            self.order[self.cursor[run]] = slot;
            self.cursor[run] += 1;
        }
    }

    /// The open run in table `slot` if it is of `peer` and `size` and has room.
    fn open(&self, slot: usize, peer: SocketAddr, size: usize) -> Option<usize> {
        let run = usize::from(self.table[slot]).checked_sub(1)?;
        (self.keys[run] == (peer, size) && self.runs[run].count < SEGMENTS_MAX).then_some(run)
    }
}

/// The table slot of a requester's port and an answer size (Fibonacci hashing).
fn slot(peer: SocketAddr, size: usize) -> usize {
    let key = u32::from(peer.port()) << 16 | (size as u32 & 0xffff);
    (key.wrapping_mul(0x9E37_79B9) >> (32 - TABLE.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn plan(answers: &[(u16, usize)], coalesce: bool) -> Plan {
        let mut p = Plan::default();
        p.make(answers.iter().map(|&(port, n)| (peer(port), n)), coalesce);
        p
    }

    /// The slots of each run, in send order.
    fn runs(p: &Plan) -> Vec<Vec<usize>> {
        p.runs
            .iter()
            .map(|r| p.order[r.start..r.start + r.count].to_vec())
            .collect()
    }

    #[test]
    fn answers_of_one_size_to_one_requester_share_a_run_in_arrival_order() {
        let p = plan(
            &[(1, 40), (2, 40), (1, 40), (1, 41), (2, 40), (1, 40)],
            true,
        );
        assert_eq!(runs(&p), vec![vec![0, 2, 5], vec![1, 4], vec![3]]);
        assert_eq!(
            p.runs,
            vec![
                Run { start: 0, count: 3 },
                Run { start: 3, count: 2 },
                Run { start: 5, count: 1 },
            ]
        );
    }

    #[test]
    fn every_slot_is_sent_exactly_once() {
        let answers: Vec<(u16, usize)> = (0..64).map(|i| (i % 5, 30 + (i as usize % 3))).collect();
        let p = plan(&answers, true);
        let mut seen = p.order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..64).collect::<Vec<_>>());
        for run in runs(&p) {
            let (port, size) = answers[run[0]];
            assert!(run.iter().all(|&s| answers[s] == (port, size)));
        }
        assert_eq!(p.runs.len(), 15);
    }

    #[test]
    fn large_answers_and_no_coalescing_leave_alone() {
        let big = SEGMENT_MAX + 1;
        let p = plan(&[(1, big), (1, big), (1, 40), (1, 40)], true);
        assert_eq!(runs(&p), vec![vec![0], vec![1], vec![2, 3]]);
        let p = plan(&[(1, 40), (1, 40)], false);
        assert_eq!(runs(&p), vec![vec![0], vec![1]]);
    }

    #[test]
    fn a_full_run_or_a_slot_taken_by_another_key_starts_another_run() {
        let answers = vec![(1, 40); SEGMENTS_MAX + 1];
        let p = plan(&answers, true);
        assert_eq!(p.runs[0].count, SEGMENTS_MAX);
        assert_eq!(p.runs[1].count, 1);
        let other = (1..)
            .find(|&port| port != 1 && slot(peer(port), 40) == slot(peer(1), 40))
            .expect("a port sharing the slot");
        let p = plan(&[(1, 40), (other, 40), (1, 40), (1, 40)], true);
        assert_eq!(
            runs(&p),
            vec![vec![0], vec![1], vec![2, 3]],
            "a collision took the slot"
        );
    }

    #[test]
    fn an_empty_batch_plans_nothing_and_buffers_are_reused() {
        let mut p = plan(&[(1, 40), (1, 40)], true);
        p.make(std::iter::empty(), true);
        assert!(p.order.is_empty() && p.runs.is_empty());
    }
}
