//! The cost of one DNS update on a node whose containers fill one network: `N` endpoints
//! (2 x N names with their PTRs), then one container attached at a time, each time re-projecting
//! the network and making the next snapshot as an agent does — the new endpoint looked up by id,
//! the snapshot patched from the previous one — and, for comparison, the network re-projected by
//! a walk of its endpoints (as for a change that names none) and the snapshot built whole.
//! Prints the spread (min, median, max).
//!
//! Usage: cargo run --release -p shibafu-overlay --example dns_update [N=1000] [repeats=50]

#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use shibafu_overlay::dns::authority::Authority;
use shibafu_overlay::dns::projection::{Projection, Touched, View};
use shibafu_overlay::dns::Snapshot;
use shibafu_overlay::model::{Endpoint, Network};
use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::{ClusterChange, KeyValue};

fn endpoint(i: u32) -> Endpoint {
    let ip = format!("10.40.{}.{}", i / 250, i % 250 + 2);
    Endpoint::new("big", &format!("c{i}"), "node1", ip.parse().expect("ip"))
}

fn state_of(net: &Network, n: u32) -> ClusterState {
    let mut kvs = Vec::new();
    let mut push = |key: Key, value: Vec<u8>| {
        let rev = kvs.len() as i64 + 2;
        kvs.push(KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        });
    };
    push(
        Key::Network(net.name.clone()),
        serde_json::to_vec(net).expect("json"),
    );
    for i in 0..n {
        let e = endpoint(i);
        let key = Key::Endpoint {
            network: e.network.clone(),
            id: e.id.clone(),
        };
        push(key, serde_json::to_vec(&e).expect("json"));
    }
    let mut state = ClusterState::new();
    let revision = kvs.len() as i64 + 1;
    state.apply(&ClusterChange::Snapshot { kvs, revision });
    state
}

fn spread(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "min {:.3} ms, median {:.3} ms, max {:.3} ms",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    )
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u32>().expect("a number"));
    let n = args.next().unwrap_or(1000);
    let repeats = args.next().unwrap_or(50).max(1);
    let net = Network::new("big", "10.40.0.0/16".parse().expect("net"), 4096);
    let none = Authority::default();
    let touched = BTreeSet::from(["big".to_string()]);
    let mut projection = Projection::new();
    let first = state_of(&net, n);
    projection.update(&first, None, &|n| first.endpoints_of(&n.name).collect());
    let mut walked = projection.clone();
    let mut previous = projection
        .next_snapshot(&Snapshot::default(), View::Members, &none)
        .expect("snapshot");
    let (mut by_id, mut walk, mut patch, mut whole) = (vec![], vec![], vec![], vec![]);
    let mut encoded = 0;
    for k in 1..=repeats {
        let state = state_of(&net, n + k);
        let endpoints_of = |n: &Network| state.endpoints_of(&n.name).collect();
        let with_id = |n: &Network, id: &str| state.endpoint(&n.name, id).into_iter().collect();
        let ids = BTreeSet::from([endpoint(n + k - 1).id]);
        let changed = BTreeMap::from([("big".to_string(), Touched::Endpoints(ids))]);
        let started = Instant::now();
        projection.update_by_id(&state, Some(&changed), &endpoints_of, &with_id);
        by_id.push(started.elapsed());
        let started = Instant::now();
        walked.update(&state, Some(&touched), &endpoints_of);
        walk.push(started.elapsed());
        let started = Instant::now();
        let next = projection
            .next_snapshot(&previous, View::Members, &none)
            .expect("patch");
        patch.push(started.elapsed());
        encoded = encoded.max(next.names_encoded());
        let started = Instant::now();
        let built = projection.snapshot(View::Members).expect("whole");
        whole.push(started.elapsed());
        assert_eq!(built.name_count(), next.name_count());
        let walked_whole = walked.snapshot(View::Members).expect("whole");
        assert_eq!(walked_whole.name_count(), next.name_count());
        previous = next;
    }
    println!(
        "{} names, {repeats} attaches, at most {encoded} names encoded per patch",
        previous.name_count()
    );
    println!("re-project by id:       {}", spread(by_id));
    println!("re-project by a walk:   {}", spread(walk));
    println!("next snapshot (patch):  {}", spread(patch));
    println!("snapshot built whole:   {}", spread(whole));
}
