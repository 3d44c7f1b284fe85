//! Gathers a batch's UDP answers into messages: answers of one size to one requester leave as
//! one send that the kernel cuts into datagrams (UDP generic segmentation offload), so its
//! stack is walked once for the group instead of once per answer. Each datagram arrives alone,
//! exactly as if sent alone.

use std::net::SocketAddr;

/// Largest answer sent in a group: with its headers (28 bytes, 48 over IPv6) it fits every
/// path MTU Linux accepts (552 and up; IPv6 links carry 1280). Larger answers leave alone
/// (their EMSGSIZE handled there); a device set below that refuses the group (EINVAL).
pub(crate) const SEGMENT_MAX: usize = 512;
/// Most answers in one group (the kernel's UDP_MAX_SEGMENTS was 64 before Linux 6.9).
pub(crate) const SEGMENTS_MAX: usize = 64;
/// Slots of the table that finds the open run of a requester and size (a power of two).
const TABLE: usize = 64;
/// Slots tried from a key's own before it takes that one over from another key.
const PROBES: usize = 4;

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
    /// By hash of requester and size, probed linearly: 1 + the run answers of that key join
    /// (0: none). A key finding [`PROBES`] slots held by others takes its own slot over.
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
            let found = if joins {
                self.find(peer, size)
            } else {
                Found::Alone
            };
            let run = match found {
                Found::Open(run) => run,
                Found::Slot(_) | Found::Alone => {
                    self.runs.push(Run { start: 0, count: 0 });
                    self.keys.push((peer, size));
                    if let Found::Slot(slot) = found {
                        self.table[slot] = self.runs.len() as u16;
                    }
                    self.runs.len() - 1
                }
            };
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

    /// The open run of `peer` and `size` with room, else the slot a new run of theirs takes:
    /// the first empty one probed, the key's full run's, or the key's own when all are others'.
    fn find(&self, peer: SocketAddr, size: usize) -> Found {
        let home = home(peer, size);
        for probe in 0..PROBES {
            let slot = (home + probe) & (TABLE - 1);
            let Some(run) = usize::from(self.table[slot]).checked_sub(1) else {
                return Found::Slot(slot);
            };
            if self.keys[run] == (peer, size) {
                if self.runs[run].count < SEGMENTS_MAX {
                    return Found::Open(run);
                }
                return Found::Slot(slot);
            }
        }
        Found::Slot(home)
    }
}

/// Where an answer goes in the plan.
enum Found {
    /// Joins this open run.
    Open(usize),
    /// Starts a run, found again through this table slot.
    Slot(usize),
    /// Starts a run of its own that nothing joins.
    Alone,
}

/// The table slot where the probe for a requester and an answer size starts.
fn home(peer: SocketAddr, size: usize) -> usize {
    let ip = match peer.ip() {
        std::net::IpAddr::V4(a) => u32::from(a),
        std::net::IpAddr::V6(a) => {
            let b = a.to_bits();
            (b ^ b >> 32 ^ b >> 64 ^ b >> 96) as u32
        }
    };
    let key = ip.wrapping_mul(0x85EB_CA6B) ^ (u32::from(peer.port()) << 16 | size as u32 & 0xffff);
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
    fn a_full_run_starts_another() {
        let answers = vec![(1, 40); SEGMENTS_MAX + 1];
        let p = plan(&answers, true);
        assert_eq!(p.runs[0].count, SEGMENTS_MAX);
        assert_eq!(p.runs[1].count, 1);
    }

    #[test]
    fn colliding_keys_probe_on_and_one_past_the_probes_takes_the_home_over() {
        let home1 = home(peer(1), 40);
        let same: Vec<u16> = (1..)
            .filter(|&port| home(peer(port), 40) == home1)
            .take(PROBES + 1)
            .collect();
        let mut answers: Vec<(u16, usize)> = same.iter().map(|&port| (port, 40)).collect();
        answers.extend(same.iter().map(|&port| (port, 40)));
        let p = plan(&answers, true);
        let n = PROBES + 1;
        // Keys 1..PROBES probe on to the next slots and find their runs again. The last key
        // finds all PROBES slots taken and takes the home slot over, so the first key's second
        // answer starts a run (taking the home back), and so does the last key's.
        let mut want: Vec<Vec<usize>> = vec![vec![0]];
        want.extend((1..PROBES).map(|k| vec![k, n + k]));
        want.extend([vec![PROBES], vec![n], vec![n + PROBES]]);
        assert_eq!(runs(&p), want);
    }

    #[test]
    fn one_port_and_size_from_two_addresses_are_two_runs() {
        let mut p = Plan::default();
        let a = SocketAddr::from(([10, 0, 0, 2], 5353));
        let b = SocketAddr::from(([10, 0, 0, 3], 5353));
        let v6 = SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 0, 2], 5353));
        p.make(
            [a, b, v6, a, b, v6].into_iter().map(|peer| (peer, 40)),
            true,
        );
        assert_eq!(runs(&p), vec![vec![0, 3], vec![1, 4], vec![2, 5]]);
    }

    #[test]
    fn an_empty_batch_plans_nothing_and_buffers_are_reused() {
        let mut p = plan(&[(1, 40), (1, 40)], true);
        p.make(std::iter::empty(), true);
        assert!(p.order.is_empty() && p.runs.is_empty());
    }
}
