//! The `intra4` / `intra6` sets of the raw chains: every network's range paired with itself,
//! without its gateway (pure).

/// Elements of an `addr . addr` interval set holding, for every network given as
/// `(first, last, gateway)` (addresses as numbers), its range paired with itself, without the
/// gateway on either side. A network whose range overlaps another's (the coordinator refuses
/// that, but the render must not fail on it: the kernel rejects overlapping concatenated
/// elements) is left out, so its traffic stays tracked.
pub(super) fn intra(
    networks: impl Iterator<Item = (u128, u128, Option<u128>)>,
    fmt: impl Fn(u128) -> String,
) -> Vec<String> {
    let mut nets: Vec<(u128, u128, Option<u128>)> = networks.collect();
    nets.sort_unstable();
    // Sweep in order of first address: a range overlaps an earlier one iff it starts before the
    // furthest end seen so far, and then it overlaps the range that reached that far.
    let mut keep = vec![true; nets.len()];
    let mut reach: Option<(u128, usize)> = None;
    for (i, &(first, last, _)) in nets.iter().enumerate() {
        if let Some((end, j)) = reach {
            if first <= end {
                keep[i] = false;
                keep[j] = false;
            }
        }
        if reach.is_none_or(|(end, _)| last > end) {
            reach = Some((last, i));
        }
    }
    let range = |(a, b): (u128, u128)| {
        if a == b {
            fmt(a)
        } else {
            format!("{}-{}", fmt(a), fmt(b))
        }
    };
    let mut out = Vec::new();
    for (&(first, last, gw), _) in nets.iter().zip(&keep).filter(|(_, k)| **k) {
        let parts = without(first, last, gw);
        for &src in &parts {
            for &dst in &parts {
                out.push(format!("{} . {}", range(src), range(dst)));
            }
        }
    }
    out
}

/// `[first, last]` without `gw`: up to two ranges.
fn without(first: u128, last: u128, gw: Option<u128>) -> Vec<(u128, u128)> {
    match gw {
        Some(g) if (first..=last).contains(&g) => {
            let mut parts = Vec::with_capacity(2);
            if g > first {
                parts.push((first, g - 1));
            }
            if g < last {
                parts.push((g + 1, last));
            }
            parts
        }
        _ => vec![(first, last)],
    }
}
