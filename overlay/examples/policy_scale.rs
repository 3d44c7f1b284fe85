//! Policy table at scale: 1,000 rules over 10,000 endpoints, loaded into a scratch network
//! namespace (the whole table through `nft -f`); then single changes, each timed from the
//! cluster change to the kernel holding it, applied as an agent's enforcer applies them
//! (compile, diff, then set elements over netlink and other changes through its long-lived
//! `nft -i`): an endpoint joining a service that rules name, an endpoint leaving, and one
//! policy's rule changing (and, apart, the later sweep of the counter the changed rule left).
//!
//! Usage (root): cargo run --release -p shibafu-overlay --example policy_scale [repeats=20]

#![allow(clippy::print_stdout)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shibafu_overlay::firewall::NftFirewall;
use shibafu_overlay::model::{Action, Direction, Endpoint, Network, Policy, Rule};
use shibafu_overlay::policy::{compile, PolicyEnforcer};

const NETWORKS: u32 = 20;
const PER_NETWORK: u32 = 500;
const POLICIES: u32 = 250;
const SERVICES: u32 = 100;

/// The scratch namespace, deleted on drop.
struct Scratch(String);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn network(i: u32) -> Network {
    Network::new(
        &format!("n{i}"),
        format!("10.{}.0.0/16", 100 + i).parse().expect("net"),
        4096 + i,
    )
}

fn endpoint(net: u32, j: u32) -> Endpoint {
    let ip = Ipv4Addr::new(10, 100 + net as u8, (j / 250) as u8, (j % 250 + 2) as u8);
    let mut e = Endpoint::new(
        &format!("n{net}"),
        &format!("e{net}x{j}"),
        &format!("node{}", j % 3 + 1),
        ip,
    );
    e.service = Some(format!("s{}", (net * PER_NETWORK + j) % SERVICES));
    e
}

fn policy(i: u32, port: u16) -> Policy {
    let r = |a, d, t: String| Rule::parse(a, d, &t).expect("rule");
    Policy::new(
        &format!("p{i}"),
        &format!("n{}", i % NETWORKS),
        vec![
            r(
                Action::Allow,
                Direction::Ingress,
                format!("n{}:{port}", (i + 1) % NETWORKS),
            ),
            r(
                Action::Allow,
                Direction::Ingress,
                format!("service:s{}:80,443", i % SERVICES),
            ),
            r(
                Action::Deny,
                Direction::Ingress,
                format!("container:e{}x{}", (i + 2) % NETWORKS, i),
            ),
            r(
                Action::Allow,
                Direction::Egress,
                format!("10.{}.0.0/16:8000-8100/udp", 100 + (i + 3) % NETWORKS),
            ),
        ],
    )
}

struct Timings(Vec<Duration>);

impl Timings {
    fn report(&mut self, what: &str) {
        self.0.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let p = |q: f64| self.0[((self.0.len() - 1) as f64 * q).round() as usize];
        println!(
            "{what:<36} n={:<3} p50 {:6.1} ms  p99 {:6.1} ms  max {:6.1} ms",
            self.0.len(),
            ms(p(0.5)),
            ms(p(0.99)),
            ms(*self.0.last().expect("runs"))
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let name = format!("sfscale{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip")
            .success(),
        "ip netns add (root?)"
    );
    let _guard = Scratch(name.clone());
    let networks: Vec<Network> = (0..NETWORKS).map(network).collect();
    let mut endpoints: Vec<Endpoint> = (0..NETWORKS)
        .flat_map(|n| (0..PER_NETWORK).map(move |j| endpoint(n, j)))
        .collect();
    let mut policies: Vec<Policy> = (0..POLICIES).map(|i| policy(i, 5432)).collect();
    let rules: usize = policies.iter().map(|p| p.rules.len()).sum();
    let mut enforcer = PolicyEnforcer::new(Arc::new(NftFirewall::in_netns(format!(
        "/run/netns/{name}"
    ))));
    let load = |networks: &[Network], endpoints: &[Endpoint], policies: &[Policy]| {
        let n: Vec<&Network> = networks.iter().collect();
        let e: Vec<&Endpoint> = endpoints.iter().collect();
        let p: Vec<&Policy> = policies.iter().collect();
        compile(&n, &e, &p, "node1").table
    };
    let t = Instant::now();
    let table = load(&networks, &endpoints, &policies);
    enforcer.enforce(&table).await.expect("first load");
    println!(
        "# {rules} rules in {} policies over {} endpoints: {} sets, {} chains; first load {:.0} ms",
        policies.len(),
        endpoints.len(),
        table.sets.len(),
        table.chains.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut compiling = Timings(vec![]);
    for _ in 0..repeats {
        let t = Instant::now();
        std::hint::black_box(load(&networks, &endpoints, &policies));
        compiling.0.push(t.elapsed());
    }
    compiling.report("compile alone (no change, no nft)");
    let (mut join, mut leave, mut change) = (Timings(vec![]), Timings(vec![]), Timings(vec![]));
    let mut sweep = Timings(vec![]);
    for k in 0..repeats {
        let mut e = endpoint(0, PER_NETWORK + k as u32);
        e.node = "node2".into();
        let t = Instant::now();
        endpoints.push(e);
        enforcer
            .enforce(&load(&networks, &endpoints, &policies))
            .await
            .expect("join");
        join.0.push(t.elapsed());
        let t = Instant::now();
        endpoints.pop();
        enforcer
            .enforce(&load(&networks, &endpoints, &policies))
            .await
            .expect("leave");
        leave.0.push(t.elapsed());
        let t = Instant::now();
        policies[k % POLICIES as usize] = policy(k as u32 % POLICIES, 6000 + k as u16);
        enforcer
            .enforce(&load(&networks, &endpoints, &policies))
            .await
            .expect("change");
        change.0.push(t.elapsed());
        // The agent deletes the old rule's counter at its next check, not in the change.
        let t = Instant::now();
        enforcer.sweep().await.expect("sweep");
        sweep.0.push(t.elapsed());
    }
    join.report("an endpoint joins (service peer)");
    leave.report("an endpoint leaves");
    change.report("one policy's rule changes");
    sweep.report("then its old counter swept (later)");
}
