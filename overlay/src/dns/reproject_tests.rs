//! A network re-projected in place, by a walk of its endpoints or by the ids of those that
//! changed, must equal the network projected whole, and the names it reports changed must be
//! exactly those that differ.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::*;
use crate::dns::audience::Audience;
use crate::dns::projection::{owners_changed, project_network};
use crate::dns::tests::Rng;
use crate::model::{Object, Service};
use crate::store::{ClusterChange, KeyValue, WatchEvent};

/// An endpoint with id `id`, a name, aliases and addresses drawn from small pools so they
/// collide (shared names and aliases, one address twice, names in other cases, bad names).
fn endpoint(rng: &mut Rng, id: usize) -> Endpoint {
    const NAMES: [&str; 7] = ["a", "b", "c", "A", "d", "bad..name", "e"];
    let ip = Ipv4Addr::new(10, 9, 0, rng.below(12) as u8 + 1);
    let mut e = Endpoint::new("n", NAMES[rng.below(NAMES.len())], "node1", ip);
    e.id = format!("id{id}");
    e.aliases = (0..rng.below(3))
        .map(|_| NAMES[rng.below(NAMES.len())].to_string())
        .collect();
    e.ipv6 =
        (rng.below(3) == 0).then(|| format!("fd00::{}", rng.below(5) + 1).parse().expect("v6"));
    e.node = format!("node{}", rng.below(2));
    e
}

#[test]
fn a_network_re_projected_in_place_equals_one_projected_whole() {
    let mut net = Network::new("n", "10.9.0.0/24".parse().expect("net"), 4100);
    net.subnet6 = Some("fd00::/64".parse().expect("net6"));
    let state = ClusterState::new();
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut eps: Vec<Endpoint> = (0..rng.below(8)).map(|i| endpoint(&mut rng, i)).collect();
        let refs: Vec<&Endpoint> = eps.iter().collect();
        let mut part = project_network(&net, &refs, &state);
        let mut basis = Basis::of(&net, &refs, &state).expect("no services");
        let mut audience = Audience::of([&part]);
        for step in 0..10 {
            let before = part.clone();
            // The ids a change names: those removed, replaced or added, and one left alone.
            let mut ids: BTreeSet<String> = BTreeSet::from([format!("id{}", rng.below(8))]);
            for _ in 0..=rng.below(2) {
                match rng.below(3) {
                    0 if !eps.is_empty() => {
                        ids.insert(eps.remove(rng.below(eps.len())).id);
                    }
                    1 if !eps.is_empty() => {
                        let i = rng.below(eps.len());
                        let id = eps[i].id.clone();
                        eps[i] = endpoint(&mut rng, 0);
                        eps[i].id = id.clone();
                        ids.insert(id);
                    }
                    _ => {
                        let id = 100 + step * 10 + rng.below(10);
                        let e = endpoint(&mut rng, id);
                        if eps.iter().all(|x| x.id != e.id) {
                            ids.insert(e.id.clone());
                            eps.insert(rng.below(eps.len() + 1), e);
                        }
                    }
                }
            }
            let refs: Vec<&Endpoint> = eps.iter().collect();
            let done = if step % 2 == 0 {
                reproject(&mut part, &mut basis, &net, &refs, &state).expect("in place")
            } else {
                let with_id = |id: &str| refs.iter().copied().filter(|e| e.id == id).collect();
                reproject_ids(&mut part, &mut basis, &net, &ids, &with_id, &state).expect("by id")
            };
            let whole = project_network(&net, &refs, &state);
            assert_eq!(part, whole, "seed {seed}, step {step}");
            done.left.iter().for_each(|m| audience.remove("n", m));
            done.joined.iter().for_each(|m| audience.add("n", m));
            assert_eq!(
                audience.seen_by_all(),
                Audience::of([&whole]).seen_by_all(),
                "seed {seed}, step {step}: the members that left and joined"
            );
            let names = done.names;
            let mut differ = BTreeSet::new();
            owners_changed(&before, &whole, &mut differ);
            assert_eq!(
                names, differ,
                "seed {seed}, step {step}: names reported changed"
            );
        }
    }
}

/// A cluster state holding only service `web` of network `net`.
fn with_service(net: &str) -> ClusterState {
    let service = Service::new(net, "web");
    let put = WatchEvent::Put(KeyValue {
        key: service.key().to_string(),
        value: serde_json::to_vec(&service).expect("json"),
        create_revision: 2,
        mod_revision: 2,
        lease: 0,
    });
    let mut state = ClusterState::new();
    state.apply(&ClusterChange::Events(vec![put]));
    state
}

#[test]
fn what_in_place_cannot_follow_is_projected_whole() {
    let net = Network::new("n", "10.9.0.0/24".parse().expect("net"), 4100);
    let state = ClusterState::new();
    let a = Endpoint::new("n", "a", "node1", Ipv4Addr::new(10, 9, 0, 2));
    let refs = vec![&a];
    let mut part = project_network(&net, &refs, &state);
    let mut basis = Basis::of(&net, &refs, &state).expect("no services");
    let twice = vec![&a, &a];
    assert!(Basis::of(&net, &twice, &state).is_none(), "one id twice");
    assert!(reproject(&mut part, &mut basis, &net, &twice, &state).is_none());
    let mut other = net.clone();
    other.zone = "elsewhere.local".into();
    assert!(
        reproject(&mut part, &mut basis, &other, &refs, &state).is_none(),
        "another definition"
    );
    let mut served = a.clone();
    served.service = Some("web".into());
    let served = vec![&served];
    assert!(Basis::of(&net, &served, &state).is_none(), "a service");
    assert!(reproject(&mut part, &mut basis, &net, &served, &state).is_none());
    let ids = BTreeSet::from([a.id.clone()]);
    let twice = |_: &str| vec![&a, &a];
    let found = reproject_ids(&mut part, &mut basis, &net, &ids, &twice, &state);
    assert!(found.is_none(), "by id: one id twice");
    let named = |_: &str| served.clone();
    let found = reproject_ids(&mut part, &mut basis, &net, &ids, &named, &state);
    assert!(found.is_none(), "by id: an endpoint naming a service");
    let once = |_: &str| vec![&a];
    let found = reproject_ids(&mut part, &mut basis, &net, &ids, &once, &with_service("n"));
    assert!(found.is_none(), "by id: a service defined on the network");
    assert_eq!(part, project_network(&net, &refs, &state), "left as it was");
}
