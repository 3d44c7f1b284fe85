//! The reachability matrix of the policy lab tests and its oracle: the cluster read back from
//! etcd, probes from every container to every other (TCP 80 and 5432, UDP 5353, ICMP), and a
//! wait until every observed result equals the oracle's verdict.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use shibafu_overlay::model::{decode, Endpoint, Link, Network, Policy};
use shibafu_overlay::policy::{verdict, FlowProto, PolicyView, Verdict};
use shibafu_overlay::store::keys::Key;
use shibafu_tests::probe::{check_args, mismatches, probes_from, results, FLOWS, SERVE_ARGS};
use shibafu_tests::{bin, text, wait_until, Lab};

/// How long a change may take to be enforced everywhere before the test gives up (the goal
/// is 100 ms; this only bounds a failing run).
const SETTLE: Duration = Duration::from_secs(10);

/// The cluster as etcd holds it.
#[derive(Default)]
pub struct Cluster {
    /// Networks.
    pub networks: Vec<Network>,
    /// Endpoints, on every node.
    pub endpoints: Vec<Endpoint>,
    /// Links.
    pub links: Vec<Link>,
    /// Policies.
    pub policies: Vec<Policy>,
}

/// Reads the cluster from etcd, through node1.
pub fn read_cluster(lab: &Lab) -> Cluster {
    let out = lab.exec_ok("node1", &["etcdctl", "get", "--prefix", "/shibafu/v1/"]);
    let lines: Vec<&str> = out.lines().collect();
    let mut c = Cluster::default();
    for pair in lines.chunks(2) {
        let [key, value] = pair else { continue };
        match Key::parse(key) {
            Some(Key::Network(_)) => c
                .networks
                .push(decode(key, value.as_bytes()).expect("network")),
            Some(Key::Endpoint { .. }) => c
                .endpoints
                .push(decode(key, value.as_bytes()).expect("endpoint")),
            Some(Key::Link(..)) => c.links.push(decode(key, value.as_bytes()).expect("link")),
            Some(Key::Policy(_)) => c
                .policies
                .push(decode(key, value.as_bytes()).expect("policy")),
            _ => {}
        }
    }
    c
}

/// Starts container `name` on `node`, serving the probes' ports.
pub fn start(lab: &Lab, name: &str, node: &str, network: &str, service: Option<&str>) {
    let probe = bin("shibafu-probe").display().to_string();
    let mut args = vec!["run", "-d", "--name", name, "--network", network];
    if let Some(s) = service {
        args.extend(["--service", s]);
    }
    args.push("--");
    args.push(&probe);
    args.extend(SERVE_ARGS);
    let out = lab.cli(node, &args);
    assert!(out.status.success(), "{name}: {}", text(&out.stderr));
}

/// What the oracle lets through in `c` over IPv4, as `SRC -> DST FLOW` (`f1 -> d1 tcp:5432`,
/// `d1 -> d2 icmp`): to show that a step changes the matrix, not only that it holds.
pub fn oracle_passes(c: &Cluster) -> BTreeSet<String> {
    let view = PolicyView::new(&c.networks, &c.endpoints, &c.links, &c.policies);
    let mut out = BTreeSet::new();
    for src in &c.endpoints {
        for dst in c.endpoints.iter().filter(|d| d.name != src.name) {
            for flow in FLOWS {
                let (from, to) = (IpAddr::V4(src.ipv4), IpAddr::V4(dst.ipv4));
                if verdict(&view, from, to, flow) != Verdict::Allow {
                    continue;
                }
                let flow = match flow.proto {
                    FlowProto::Tcp => format!("tcp:{}", flow.port),
                    FlowProto::Udp => format!("udp:{}", flow.port),
                    FlowProto::Icmp => "icmp".to_string(),
                };
                out.insert(format!("{} -> {} {flow}", src.name, dst.name));
            }
        }
    }
    out
}

/// Asserts that each of `flows`, as (`SRC -> DST FLOW`, passed before, passes after), moved
/// between two [`oracle_passes`] as the step meant it to.
pub fn assert_moves(
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
    flows: &[(&str, bool, bool)],
) {
    for &(flow, was, now) in flows {
        let seen = (before.contains(flow), after.contains(flow));
        assert_eq!(seen, (was, now), "{flow}: (before, after) in the oracle");
    }
}

/// Probes every pair once; the lines that differ from the oracle.
fn differences(lab: &Lab) -> Vec<String> {
    let c = read_cluster(lab);
    let view = PolicyView::new(&c.networks, &c.endpoints, &c.links, &c.policies);
    let probe = bin("shibafu-probe").display().to_string();
    let mut out = Vec::new();
    std::thread::scope(|s| {
        let runs: Vec<_> = c
            .endpoints
            .iter()
            .map(|src| {
                let node = src.node.clone();
                let probes = probes_from(src, &c.endpoints);
                let probe = probe.clone();
                let h = s.spawn(move || {
                    let mut args = vec!["exec".to_string(), src.name.clone(), probe];
                    args.extend(check_args(&probes));
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    lab.cli(&node, &args)
                });
                (src, probes_from(src, &c.endpoints), h)
            })
            .collect();
        for (src, probes, h) in runs {
            let done = h.join().expect("probe thread");
            assert!(
                done.status.success(),
                "probe from {}: {}",
                src.name,
                text(&done.stderr)
            );
            out.extend(mismatches(
                &view,
                src,
                &probes,
                &results(&text(&done.stdout)),
            ));
        }
    });
    out
}

/// Waits until every probe matches the oracle; panics with the differences otherwise.
pub fn settles(lab: &Lab, step: &str) {
    let mut last = Vec::new();
    let ok = wait_until(SETTLE, Duration::from_millis(100), || {
        last = differences(lab);
        last.is_empty()
    });
    assert!(
        ok,
        "{step}: {} probes differ from the oracle:\n{}",
        last.len(),
        last.join("\n")
    );
}

/// Writes `text` to a file under the lab's state directory; returns its path.
pub fn file(lab: &Lab, name: &str, text: &str) -> String {
    let p = lab.state_dir().join(name);
    std::fs::write(&p, text).expect("write config");
    p.display().to_string()
}
