//! Host tier, policies on one host: containers of three networks on the bridges the dataplane
//! builds (br_netfilter off host-wide as with `--no-bridge-netfilter`, and on), the main table and the
//! compiled policy table loaded with nft; after each step of a sequence that creates, changes
//! and removes policies and adds a container later, every probe (TCP, UDP, ICMP, IPv4 and IPv6)
//! from every container to every other passes exactly when the oracle says it does.

use std::process::{Child, Stdio};
use std::sync::Arc;

use shibafu_overlay::firewall::{Firewall, NftFirewall};
use shibafu_overlay::model::{Action, Direction, Endpoint, Link, Network, Policy, Rule};
use shibafu_overlay::policy::{
    compile, policed_networks, PolicyBackend, PolicyEnforcer, PolicyView,
};
use shibafu_tests::firewall::{build, build_policed, containers, net, spec};
use shibafu_tests::probe::{check_args, mismatches, probes_from, results, SERVE_ARGS};
use shibafu_tests::{bin, exec_ok, is_root, NetnsGuard};

/// Probe servers, killed on drop (the namespaces' guards would kill them too).
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn serve(ns: &NetnsGuard) -> Child {
    let mut c = ns
        .cmd(bin("shibafu-probe"))
        .args(SERVE_ARGS)
        .stdout(Stdio::piped())
        .spawn()
        .expect("probe server");
    let mut line = String::new();
    let out = c.stdout.as_mut().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).expect("ready");
    assert_eq!(line.trim(), "ready");
    c
}

/// Where the containers are: network and addresses, in the order they start.
const PLACES: [(&str, &str); 5] = [
    ("frontend", "10.71.1.2,fd71:1::2"),
    ("frontend", "10.71.1.3,fd71:1::3"),
    ("backend", "10.71.2.2"),
    ("database", "10.71.3.2"),
    ("backend", "10.71.2.9"),
];

/// The first `n` containers in their namespaces.
fn layout(nss: &[NetnsGuard], n: usize) -> Vec<(&NetnsGuard, &'static str, &'static str)> {
    nss.iter()
        .zip(PLACES)
        .take(n)
        .map(|(ns, (net, ip))| (ns, net, ip))
        .collect()
}

fn rule(action: Action, dir: Direction, text: &str) -> Rule {
    Rule::parse(action, dir, text).expect("rule")
}

struct World {
    host: NetnsGuard,
    networks: Vec<Network>,
    links: Vec<Link>,
    nss: Vec<NetnsGuard>,
    endpoints: Vec<Endpoint>,
    enforcer: PolicyEnforcer,
    _servers: Servers,
}

impl World {
    /// Probes every pair and returns what differs from the oracle.
    fn check(&self, policies: &[Policy]) -> Vec<String> {
        let view = PolicyView::new(&self.networks, &self.endpoints, &self.links, policies);
        let runs: Vec<_> = self
            .endpoints
            .iter()
            .zip(&self.nss)
            .map(|(src, ns)| {
                let probes = probes_from(src, &self.endpoints);
                let child = ns
                    .cmd(bin("shibafu-probe"))
                    .args(check_args(&probes))
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("probe");
                (src, probes, child)
            })
            .collect();
        let mut out = Vec::new();
        for (src, probes, child) in runs {
            let done = child.wait_with_output().expect("probe output");
            assert!(done.status.success(), "probe failed: {done:?}");
            let observed = results(&String::from_utf8_lossy(&done.stdout));
            out.extend(mismatches(&view, src, &probes, &observed));
        }
        out
    }

    async fn enforce(&mut self, policies: &[Policy]) {
        let nets: Vec<&Network> = self.networks.iter().collect();
        let eps: Vec<&Endpoint> = self.endpoints.iter().collect();
        let pols: Vec<&Policy> = policies.iter().collect();
        let table = compile(&nets, &eps, &pols, "h").table;
        self.enforcer.enforce(&table).await.expect("policy table");
        // Bridges of policed networks send their frames through the inet hooks: the
        // dataplane's plan sets their netfilter flags (reconciled by difference).
        let policed = policed_networks(&self.networks, policies);
        let policed: Vec<&str> = policed.iter().map(String::as_str).collect();
        let members = layout(&self.nss, self.endpoints.len());
        build_policed(&self.host, &self.networks, &members, &policed).await;
    }

    fn assert_matches(&self, step: &str, policies: &[Policy]) {
        let bad = self.check(policies);
        assert!(
            bad.is_empty(),
            "{step}: {} probes differ from the oracle:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
}

#[tokio::test]
async fn every_probe_matches_the_oracle_with_bridge_netfilter_off() {
    sequence(false).await;
}

/// The same with br_netfilter on for every bridge (a host without `--no-bridge-netfilter`):
/// unpoliced networks' bridged frames reach the inet hooks too, and nothing changes.
#[tokio::test]
async fn every_probe_matches_the_oracle_with_bridge_netfilter_on() {
    sequence(true).await;
}

/// Probes after each step of a sequence of policies; `bridge_nf`: the host-wide br_netfilter
/// switches.
async fn sequence(bridge_nf: bool) {
    if !is_root() {
        eprintln!("skipping host-tier policy test: needs root");
        return;
    }
    let host = NetnsGuard::new("polh");
    let on = u8::from(bridge_nf);
    exec_ok(host.cmd("sysctl").args([
        "-qw",
        &format!("net.bridge.bridge-nf-call-iptables={on}"),
        &format!("net.bridge.bridge-nf-call-ip6tables={on}"),
    ]));
    let mut frontend = net("frontend", "10.71.1.0/24", 4201, false);
    frontend.subnet6 = Some("fd71:1::/64".parse().expect("v6"));
    let networks = vec![
        frontend,
        net("backend", "10.71.2.0/24", 4202, false),
        net("database", "10.71.3.0/24", 4203, false),
    ];
    let links = vec![Link::new("frontend", "database")];
    let nss: Vec<NetnsGuard> = (0..5)
        .map(|i| NetnsGuard::new(&format!("polc{i}")))
        .collect();
    let layout = layout(&nss, 4);
    build(&host, &networks, &layout).await;
    let (mut endpoints, _) = containers(&layout);
    endpoints[2].service = Some("api".into());
    let fw = NftFirewall::in_netns(host.path());
    fw.apply(&spec(&networks, &links, None, &layout))
        .await
        .expect("main table");
    let servers = Servers(nss[..4].iter().map(serve).collect());
    let backend: Arc<dyn PolicyBackend> = Arc::new(NftFirewall::in_netns(host.path()));
    let mut w = World {
        host,
        networks,
        links,
        nss,
        endpoints,
        enforcer: PolicyEnforcer::new(backend.clone()),
        _servers: servers,
    };

    w.enforce(&[]).await;
    w.assert_matches("no policies", &[]);

    let seed = Policy::new(
        "database-isolation",
        "database",
        vec![
            rule(Action::Deny, Direction::Ingress, "frontend"),
            rule(Action::Allow, Direction::Ingress, "backend:5432"),
        ],
    );
    let mut policies = vec![seed];
    w.enforce(&policies).await;
    w.assert_matches("database-isolation", &policies);
    let counts = backend.counters().await.expect("counters").expect("table");
    assert!(
        counts
            .iter()
            .any(|(n, c)| n.starts_with("cp_database_isolation_r0_") && *c > 0),
        "the deny rule counted: {counts:?}"
    );

    policies.push(Policy::new(
        "frontend-out",
        "frontend",
        vec![
            rule(Action::Allow, Direction::Egress, "database:5432"),
            rule(Action::Allow, Direction::Egress, "fd71:1::/64/icmp"),
            rule(Action::Deny, Direction::Egress, "container:c1"),
        ],
    ));
    policies.push(Policy {
        service: Some("api".into()),
        ..Policy::new(
            "api-open",
            "backend",
            vec![rule(Action::Allow, Direction::Ingress, "frontend:80")],
        )
    });
    w.enforce(&policies).await;
    w.assert_matches(
        "egress isolation, a service's consent across unlinked networks",
        &policies,
    );

    // A container that arrives later joins the sets it belongs to (one element each).
    let layout = self::layout(&w.nss, 5);
    fw.apply(&spec(&w.networks, &w.links, None, &layout))
        .await
        .expect("its port in the guard");
    build(&w.host, &w.networks, &layout).await;
    let (mut all, _) = containers(&layout);
    let mut late = all.remove(4);
    late.service = Some("api".into());
    w.endpoints.push(late);
    w._servers.0.push(serve(&w.nss[4]));
    w.enforce(&policies).await;
    w.assert_matches("a later instance of the service", &policies);

    policies[0]
        .rules
        .push(rule(Action::Deny, Direction::Ingress, "service:api/icmp"));
    w.enforce(&policies).await;
    w.assert_matches("a rule added to a policy", &policies);

    w.enforce(&[]).await;
    w.assert_matches("every policy removed", &[]);
    let gone = exec_ok(w.host.cmd("nft").args(["list", "tables"]));
    assert!(
        !gone.contains("shibafu-policy"),
        "no policy table without policies: {gone}"
    );
}
