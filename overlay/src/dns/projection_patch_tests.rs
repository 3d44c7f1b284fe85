//! Snapshots patched change after change must answer and show zones exactly as a snapshot
//! built whole: randomized endpoints joining, leaving, moving and renaming on three networks
//! (one with a service, projected whole), workloads on several networks, scope changes; the
//! changes told by network or by the ids of the endpoints they touch.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use super::tests::{network, state_of};
use super::*;
use crate::dns::authority::Authority;
use crate::dns::tests::Rng;
use crate::dns::Snapshot;

const NETS: [(&str, &str); 3] = [
    ("a", "10.1.0.0/24"),
    ("b", "10.2.0.0/24"),
    ("c", "10.3.0.0/24"),
];
const NAMES: [&str; 5] = ["api", "db", "web", "cache", "bad..name"];

/// An endpoint of network `net` (index into [`NETS`]), its address and identity drawn from
/// small pools so workloads share names across networks and nodes.
fn endpoint(rng: &mut Rng, net: usize, id: usize) -> Endpoint {
    let ip = Ipv4Addr::new(10, net as u8 + 1, 0, rng.below(20) as u8 + 2);
    let node = format!("node{}", rng.below(2) + 1);
    let mut e = Endpoint::new(NETS[net].0, NAMES[rng.below(NAMES.len())], &node, ip);
    e.id = format!("e{id}");
    if net == 2 && rng.below(2) == 0 {
        e.service = Some("svc".into());
        e.port = Some(80);
    }
    e
}

/// Whether `a` and `b` let every client in `clients` see the same zones, by name.
fn same_views(a: &Snapshot, b: &Snapshot, clients: &BTreeSet<IpAddr>) -> Result<(), String> {
    let names: Vec<&str> = b.zones().collect();
    if a.zones().collect::<BTreeSet<_>>() != names.iter().copied().collect() {
        return Err("other zones".into());
    }
    let index = |s: &Snapshot, z: &str| s.zones().position(|n| n == z).expect("zone") as u16;
    for client in clients {
        for z in &names {
            let (x, y) = (
                a.visible(*client, index(a, z)),
                b.visible(*client, index(b, z)),
            );
            if x != y {
                return Err(format!("{client} sees {z}: patched {x}, whole {y}"));
            }
        }
    }
    Ok(())
}

#[test]
fn patched_snapshots_show_every_client_what_a_whole_build_does() {
    let nets: Vec<Network> = NETS.iter().map(|(n, s)| network(n, s)).collect();
    let none = Authority::default();
    let mut patched = 0;
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut eps: Vec<Endpoint> = Vec::new();
        let mut p = Projection::new();
        let mut previous = Snapshot::default();
        let mut clients: BTreeSet<IpAddr> = BTreeSet::from(["10.9.9.9".parse().expect("ip")]);
        for step in 0..40 {
            let mut touched: BTreeMap<String, Touched> = BTreeMap::new();
            let mut touch = |e: &Endpoint, whole: bool| {
                let t = match whole {
                    true => Touched::Network,
                    false => Touched::Endpoints(BTreeSet::from([e.id.clone()])),
                };
                Touched::note(&mut touched, &e.network, t);
            };
            for _ in 0..=rng.below(2) {
                let whole = rng.below(4) == 0;
                let next = 100 * step + rng.below(100);
                match rng.below(5) {
                    0 | 1 => {
                        let net = rng.below(3);
                        let e = endpoint(&mut rng, net, next);
                        touch(&e, whole);
                        eps.push(e);
                    }
                    2 if !eps.is_empty() => {
                        let e = eps.remove(rng.below(eps.len()));
                        touch(&e, whole);
                    }
                    _ if !eps.is_empty() => {
                        let i = rng.below(eps.len());
                        let net = NETS.iter().position(|(n, _)| *n == eps[i].network);
                        let mut e = endpoint(&mut rng, net.expect("net"), 0);
                        e.id = eps[i].id.clone();
                        touch(&e, whole);
                        eps[i] = e;
                    }
                    _ => {}
                }
            }
            clients.extend(eps.iter().map(|e| IpAddr::V4(e.ipv4)));
            let state = state_of(&nets, &eps);
            if rng.below(8) == 0 {
                let scope = NETS.iter().filter(|_| rng.below(3) > 0);
                p.set_scope(Some(scope.map(|(n, _)| n.to_string()).collect()));
            }
            let all = rng.below(10) == 0;
            let touched = (!all).then_some(&touched);
            let with_id = |n: &Network, id: &str| state.endpoint(&n.name, id).into_iter().collect();
            let endpoints_of = |n: &Network| state.endpoints_of(&n.name).collect();
            p.update_by_id(&state, touched, &endpoints_of, &with_id);
            let snap = p
                .next_snapshot(&previous, View::Members, &none)
                .expect("next");
            if snap.names_encoded() < snap.name_count() {
                patched += 1;
            }
            let mut fresh = Projection::new();
            fresh.set_scope(p.scope().cloned());
            fresh.update(&state, None, &endpoints_of);
            let whole = fresh.snapshot(View::Members).expect("whole");
            assert_eq!(
                snap.name_count(),
                whole.name_count(),
                "seed {seed} step {step}"
            );
            if let Err(e) = same_views(&snap, &whole, &clients) {
                panic!("seed {seed} step {step}: {e}");
            }
            previous = snap;
        }
    }
    assert!(patched > 1_000, "only {patched} of 2,400 snapshots patched");
}
