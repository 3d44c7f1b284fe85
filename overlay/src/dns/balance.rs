//! Which instance of a service each answer names: the schedules behind
//! [`AnswerOrder::OnePerAnswer`] for the load-balancing policies (pure).

use super::AnswerOrder;
use crate::model::LbPolicy;

/// Longest weighted schedule; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 16_384;

/// One instance as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    /// Its weight (1..=1000).
    pub weight: u32,
    /// Its established connections, when counted.
    pub connections: u32,
}

/// The answer order of a service's instances (in the order their records were added) under
/// `policy`: one instance per answer, chosen as the policy says.
pub fn order(policy: LbPolicy, instances: &[Instance]) -> AnswerOrder {
    let picks = match policy {
        LbPolicy::RoundRobin => Vec::new(),
        LbPolicy::Weighted => smooth_weighted(instances),
        LbPolicy::LeastConnections => least_connections(instances),
    };
    AnswerOrder::OnePerAnswer(picks)
}

/// Smooth weighted round robin (as nginx): every instance comes `weight` times per `sum of
/// weights` picks, spread out rather than in runs.
pub fn smooth_weighted(instances: &[Instance]) -> Vec<u16> {
    let mut weights: Vec<u64> = instances
        .iter()
        .map(|i| u64::from(i.weight.max(1)))
        .collect();
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    weights.iter_mut().for_each(|w| *w /= divisor);
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        weights
            .iter_mut()
            .for_each(|w| *w = (*w * MAX_SCHEDULE / total).max(1));
    }
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut picks = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
        else {
            break;
        };
        current[best] -= total;
        picks.push(best as u16);
    }
    picks
}

/// The instances with the fewest connections, in turn.
pub fn least_connections(instances: &[Instance]) -> Vec<u16> {
    let Some(fewest) = instances.iter().map(|i| i.connections).min() else {
        return Vec::new();
    };
    (0..instances.len())
        .filter(|&i| instances[i].connections == fewest)
        .map(|i| i as u16)
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted(ws: &[u32]) -> Vec<Instance> {
        ws.iter()
            .map(|&weight| Instance {
                weight,
                connections: 0,
            })
            .collect()
    }

    #[test]
    fn weighted_shares_follow_the_weights_over_1000_answers_and_spread_out() {
        let ws = [3, 1, 6];
        let picks = smooth_weighted(&weighted(&ws));
        assert_eq!(picks.len(), 10);
        let sum: u32 = ws.iter().sum();
        let mut counts = [0u32; 3];
        for k in 0..1000 {
            counts[usize::from(picks[k % picks.len()])] += 1;
        }
        for (i, w) in ws.iter().enumerate() {
            let want = 1000.0 * f64::from(*w) / f64::from(sum);
            let got = f64::from(counts[i]);
            assert!(
                (got - want).abs() <= 30.0,
                "instance {i}: {got} of 1000, want {want}"
            );
        }
        assert!(
            picks.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])),
            "runs of one instance: {picks:?}"
        );
    }

    #[test]
    fn large_weight_sums_are_scaled_and_common_factors_removed() {
        assert_eq!(smooth_weighted(&weighted(&[500, 500])).len(), 2);
        let many = weighted(&[1000; 1024]);
        let picks = smooth_weighted(&many);
        assert!(picks.len() as u64 <= MAX_SCHEDULE + 1024);
        let odd = weighted(&[1000, 999, 1]);
        let picks = smooth_weighted(&odd);
        assert_eq!(picks.len(), 2000);
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 1);
    }

    #[test]
    fn least_connections_picks_the_idle_ones_in_turn() {
        let is = [
            Instance {
                weight: 1,
                connections: 4,
            },
            Instance {
                weight: 1,
                connections: 0,
            },
            Instance {
                weight: 1,
                connections: 0,
            },
        ];
        assert_eq!(least_connections(&is), [1, 2]);
        assert_eq!(least_connections(&[]), Vec::<u16>::new());
        assert_eq!(
            order(LbPolicy::RoundRobin, &is),
            AnswerOrder::OnePerAnswer(vec![])
        );
    }
}
