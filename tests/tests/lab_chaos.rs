//! Lab tier, chaos: for a bounded time (`SHIBAFU_CHAOS_SECS`, 60 s by default; `make chaos`
//! runs 300) a seeded random sequence (`SHIBAFU_CHAOS_SEED` replays one; a failure prints it)
//! starts and removes containers on every node, kills agents with SIGKILL and restarts them,
//! cuts nodes off the underlay and heals them, stops and starts etcd members of a 3-member
//! cluster, and creates and removes networks. Then everything is healed and the invariants are
//! checked: every acknowledged container is in the cluster and nothing else is, no address is
//! handed out twice, every running container's name answers on every node, and once everything
//! is removed nothing is left: no shibafu link on any node, no endpoint, IPAM block or health key
//! in etcd, no element in the firewall's bridge set.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shibafu_tests::{is_root, text, wait_until, Lab, Rng};

const NODES: [&str; 3] = ["node1", "node2", "node3"];
const BASE: &str = "blue";

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok()?.parse().ok()
}

/// What the test believes: containers by name (node, network), transient networks.
#[derive(Default)]
struct Model {
    containers: BTreeMap<String, (String, String)>,
    networks: BTreeSet<String>,
    next: usize,
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// One random step; returns what it did (for the log of a failing run).
fn step(lab: &Lab, rng: &mut Rng, m: &mut Model) -> String {
    let roll = rng.below(100);
    if roll < 40 || m.containers.is_empty() {
        let node = *rng.pick(&NODES);
        let mut nets: Vec<String> = m.networks.iter().cloned().collect();
        nets.push(BASE.into());
        let net = rng.pick(&nets).clone();
        let name = format!("x{}", m.next);
        m.next += 1;
        let run = [
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &net,
            "--",
            "sleep",
            "3600",
        ];
        let ok = lab.cli(node, &run).status.success();
        if ok {
            m.containers
                .insert(name.clone(), (node.into(), net.clone()));
        }
        format!("run {name} on {node}/{net}: {ok}")
    } else if roll < 65 {
        let names: Vec<String> = m.containers.keys().cloned().collect();
        let name = rng.pick(&names).clone();
        let node = m.containers[&name].0.clone();
        let ok = lab.cli(&node, &["rm", "-f", &name]).status.success();
        if ok {
            m.containers.remove(&name);
        }
        format!("rm {name} on {node}: {ok}")
    } else if roll < 75 {
        let node = *rng.pick(&NODES);
        let pid = lab.component(node)["pid"].as_u64().unwrap_or(0);
        if pid > 0 {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        sleep_ms(300 + rng.below(1000) as u64);
        lab.lab_ok(&["start", node]);
        format!("kill -9 the agent of {node} ({pid}), restarted")
    } else if roll < 85 {
        let node = *rng.pick(&NODES);
        lab.lab_ok(&["partition", node]);
        sleep_ms(1000 + rng.below(2000) as u64);
        lab.lab_ok(&["heal", node]);
        format!("partition and heal {node}")
    } else if roll < 95 {
        let member = format!("etcd{}", 1 + rng.below(3));
        lab.lab_ok(&["stop", &member]);
        sleep_ms(500 + rng.below(1500) as u64);
        lab.lab_ok(&["start", &member]);
        format!("stop and start {member}")
    } else {
        let used: BTreeSet<&String> = m.containers.values().map(|(_, n)| n).collect();
        let empty = m.networks.iter().find(|n| !used.contains(n)).cloned();
        match empty {
            Some(net) if m.networks.len() >= 2 || rng.below(2) == 0 => {
                let ok = lab.cli("node1", &["network", "rm", &net]).status.success();
                if ok {
                    m.networks.remove(&net);
                }
                format!("network rm {net}: {ok}")
            }
            _ => {
                let i = m.next;
                m.next += 1;
                let (net, subnet) = (format!("t{i}"), format!("172.30.{}.0/24", i % 250));
                let ok = lab
                    .cli("node1", &["network", "create", &net, &subnet])
                    .status
                    .success();
                if ok {
                    m.networks.insert(net.clone());
                }
                format!("network create {net}: {ok}")
            }
        }
    }
}

fn leftovers(lab: &Lab) -> Vec<String> {
    let mut left = Vec::new();
    for node in NODES {
        let links = text(&lab.exec(node, &["ip", "-o", "link", "show"]).stdout);
        left.extend(
            links
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .filter(|n| n.starts_with("sfbr") || n.starts_with("sfvx") || n.starts_with("sfe"))
                .map(|n| format!("{node}: link {n}")),
        );
        let set = text(
            &lab.exec(node, &["nft", "list", "set", "inet", "shibafu", "bridges"])
                .stdout,
        );
        if set.contains("elements") {
            left.push(format!("{node}: bridges set {set}"));
        }
    }
    for prefix in [
        "/shibafu/v1/endpoints/",
        "/shibafu/v1/ipam/",
        "/shibafu/v1/health/",
    ] {
        let keys = text(
            &lab.exec(
                "ctl",
                &["etcdctl", "get", "--prefix", "--keys-only", prefix],
            )
            .stdout,
        );
        left.extend(
            keys.lines()
                .filter(|k| !k.is_empty())
                .map(|k| format!("etcd key {k}")),
        );
    }
    left
}

#[test]
fn chaos_keeps_the_invariants() {
    if !is_root() {
        eprintln!("skipping lab-tier chaos test: needs root");
        return;
    }
    let seed = env_u64("SHIBAFU_CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    let secs = env_u64("SHIBAFU_CHAOS_SECS").unwrap_or(60);
    eprintln!("chaos: seed {seed}, {secs} s (replay with SHIBAFU_CHAOS_SEED={seed})");
    let lab = Lab::up_with_etcd_members(3, 3);
    lab.cli_ok("node1", &["network", "create", BASE, "172.29.0.0/24"]);
    for node in NODES {
        lab.run_idle(node, &format!("ask{}", &node[4..]), BASE);
    }
    let (mut rng, mut m) = (Rng(seed), Model::default());
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline && log.len() < 2000 {
        log.push(step(&lab, &mut rng, &mut m));
    }
    let fail = |what: String| -> ! {
        panic!(
            "chaos seed {seed} ({} steps):\n{}\n{what}",
            log.len(),
            log.join("\n")
        )
    };

    // Converged: the cluster holds exactly the acknowledged containers, each address once.
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    want.entry(BASE.into())
        .or_default()
        .extend(NODES.map(|n| format!("ask{}", &n[4..])));
    for n in &m.networks {
        want.entry(n.clone()).or_default();
    }
    for (name, (_, net)) in &m.containers {
        want.entry(net.clone()).or_default().insert(name.clone());
    }
    let mut seen = BTreeMap::new();
    let converged = wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
        seen = want
            .keys()
            .map(|n| (n.clone(), lab.endpoint_addresses(n)))
            .collect();
        want.iter()
            .all(|(n, names)| seen[n].keys().cloned().collect::<BTreeSet<_>>() == *names)
    });
    if !converged {
        fail(format!("want {want:?}\nseen {seen:?}"));
    }
    for (net, eps) in &seen {
        let addrs: BTreeSet<&String> = eps.values().collect();
        if addrs.len() != eps.len() {
            fail(format!("{net}: an address handed out twice: {eps:?}"));
        }
    }
    // Every container of the base network answers by name on every node.
    for node in NODES {
        let asker = format!("ask{}", &node[4..]);
        for name in &want[BASE] {
            let q = format!("{name}.{BASE}.local");
            let ip = &seen[BASE][name];
            let ok = wait_until(Duration::from_secs(5), Duration::from_millis(200), || {
                let dig = ["exec", &asker, "dig", "+short", "+tries=1", "+time=1", &q];
                text(&lab.cli(node, &dig).stdout).trim() == ip
            });
            if !ok {
                fail(format!("{q} does not answer {ip} on {node}"));
            }
        }
    }

    // Everything removed: nothing left anywhere.
    for (name, (node, _)) in &m.containers {
        lab.cli_ok(node, &["rm", "-f", name]);
    }
    for node in NODES {
        lab.cli_ok(node, &["rm", "-f", &format!("ask{}", &node[4..])]);
    }
    // A removal is acknowledged before its endpoint record is deleted (the agent publishes
    // after answering): a network refuses removal until its records are gone.
    for net in m.networks.iter().chain([&BASE.to_string()]) {
        let removed = wait_until(Duration::from_secs(15), Duration::from_millis(300), || {
            lab.cli("node1", &["network", "rm", net]).status.success()
        });
        if !removed {
            fail(format!(
                "network {net} cannot be removed: {:?}",
                lab.endpoint_addresses(net)
            ));
        }
    }
    let mut left = Vec::new();
    let clean = wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
        left = leftovers(&lab);
        left.is_empty()
    });
    if !clean {
        fail(format!("left after removing everything: {left:#?}"));
    }
    eprintln!("chaos: seed {seed}: {} steps, invariants held", log.len());
    lab.down();
}
