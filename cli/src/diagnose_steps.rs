//! The checks of `network diagnose`, pure: each takes the facts gathered for its step and says
//! whether the step passes and, in words a user can act on, what it found.

use std::net::IpAddr;

use serde::Serialize;
use shibafu_overlay::api::{ContainerInfo, ContainerNet, ProbeResult};
use shibafu_overlay::model::{Direction, Endpoint, Policy};
use shibafu_overlay::policy::{Decision, Flow, FlowProto, Reason, Verdict, STRICT_PREFIX};

pub use crate::diagnose_fabric::{fabric, FabricSide};
use crate::topology::rule_words;

/// One checked step: where it ran and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What is checked: `containers`, `dns`, `interfaces`, `fabric`, `underlay`, `policy`,
    /// `probe`.
    pub step: &'static str,
    /// The node(s) it ran on, or `cluster` for what the cluster state decides.
    pub node: String,
    /// Did it pass?
    pub ok: bool,
    /// What it found: the evidence when it passes, the fault and what to do when it fails.
    pub detail: String,
}

impl Step {
    /// A step that passed (`Ok`) or failed (`Err`) with what it found.
    pub(crate) fn new(step: &'static str, node: &str, res: Result<String, String>) -> Step {
        let (ok, detail) = match res {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Step {
            step,
            node: node.to_string(),
            ok,
            detail,
        }
    }
}

/// A flow as the user wrote it: `tcp/5432`, `icmp`.
pub fn flow_words(flow: Flow) -> String {
    match flow.proto {
        FlowProto::Tcp => format!("tcp/{}", flow.port),
        FlowProto::Udp => format!("udp/{}", flow.port),
        FlowProto::Icmp => "icmp".into(),
    }
}

/// What the agent of a container's node answered about it.
#[derive(Debug, Clone)]
pub enum Seen {
    /// The container as the agent reports it.
    Info(ContainerInfo),
    /// The agent does not answer (the node is down or cut off).
    Unreachable(String),
    /// The agent answered with an error (no such container, ...).
    Error(String),
}

/// Where one container is and what its node says about it.
#[derive(Debug, Clone)]
pub struct Whereabouts {
    /// The container's name.
    pub name: String,
    /// Its node, from its endpoints; `None` when the cluster has none.
    pub node: Option<String>,
    /// Is that node registered (its agent holds a lease)?
    pub live: bool,
    /// What its agent said.
    pub seen: Option<Seen>,
}

/// Checks one container: known to the cluster, on a live node whose agent answers, running.
fn container(w: &Whereabouts, live_nodes: &[String]) -> Result<String, String> {
    let name = &w.name;
    let Some(node) = &w.node else {
        return Err(format!(
            "no container named {name} on any live node ({}): if it ran on a node that is down, its endpoints went with the node's lease; see `shibafu node ls`",
            live_nodes.join(", ")
        ));
    };
    if !w.live {
        return Err(format!(
            "node {node} (of {name}) is down: it holds no lease in the cluster; start shibafu-agent on {node}"
        ));
    }
    match &w.seen {
        None => Err(format!("the agent of {node} was not asked about {name}")),
        Some(Seen::Unreachable(e)) => Err(format!(
            "node {node} (of {name}) is down: its agent does not answer ({e}); start shibafu-agent on {node}"
        )),
        Some(Seen::Error(e)) => Err(format!("the agent of {node} knows no container {name}: {e}")),
        Some(Seen::Info(i)) => match i.state.as_str() {
            "running" | "attached" => Ok(format!("{name} {} on {node}", i.state)),
            "exited" => Err(format!(
                "container {name} on {node} is stopped (exited{}): start it again with `shibafu run` (see `shibafu logs {name}`)",
                i.exit_code.map(|c| format!(" {c}")).unwrap_or_default()
            )),
            other => Err(format!(
                "container {name} on {node} is {other}, not running: wait for it or see `shibafu ps`"
            )),
        },
    }
}

/// Step `containers`: both ends exist, their nodes are up and both are running.
pub fn containers(from: &Whereabouts, to: &Whereabouts, live_nodes: &[String]) -> Step {
    let nodes: Vec<&str> = [&from.node, &to.node]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let mut nodes_cell = nodes.clone();
    nodes_cell.dedup();
    let res = container(from, live_nodes)
        .and_then(|a| container(to, live_nodes).map(|b| format!("{a}; {b}")));
    Step::new("containers", &nodes_cell.join(","), res)
}

/// Step `containers` failed because a running container is on no network.
pub fn unattached(w: &Whereabouts) -> Step {
    let node = w.node.as_deref().unwrap_or("?");
    Step::new(
        "containers",
        node,
        Err(format!(
            "{} on {node} is on no network: run it with --network, or `shibafu network attach` it",
            w.name
        )),
    )
}

/// The pair of endpoints the connection uses: on a shared network when there is one, else
/// the source's first and the destination's first.
pub fn pick<'a>(
    from: &[&'a Endpoint],
    to: &[&'a Endpoint],
) -> Option<(&'a Endpoint, &'a Endpoint)> {
    for a in from {
        if let Some(b) = to.iter().find(|b| b.network == a.network) {
            return Some((a, b));
        }
    }
    Some((from.first()?, to.first()?))
}

/// Step `dns`: the destination's name resolves from the source to its address. Names of a
/// network are visible only to its own containers, so across networks the step is skipped.
pub fn dns(
    node: &str,
    e1: &Endpoint,
    e2: &Endpoint,
    fqdn: &str,
    answer: Option<&ProbeResult>,
) -> Step {
    let res = match answer {
        None => Ok(format!(
            "skipped: {} is not on network {}, whose names only its containers see; the connection goes by address",
            e1.name, e2.network
        )),
        Some(r) if !r.ok => Err(format!(
            "{} cannot resolve {fqdn}: {} (asked the network's DNS server from inside {})",
            e1.name, r.detail, e1.name
        )),
        Some(r) if !r.answers.contains(&IpAddr::V4(e2.ipv4)) => Err(format!(
            "{fqdn} resolves to {} from {}, not to {}'s address {}: a stale record; check `shibafu network dns-trace --query {fqdn} --from {}`",
            r.detail, e1.name, e2.name, e2.ipv4, e1.name
        )),
        Some(r) => Ok(format!("{fqdn} -> {} ({} us)", r.detail, r.micros)),
    };
    Step::new("dns", node, res)
}

/// Step `interfaces`: inside the source, the interface with its address is up, its host end
/// is up on a bridge, a route leads to the target, and the next hop's neighbour entry is not
/// failed.
pub fn interfaces(net: &ContainerNet, e1: &Endpoint, target: IpAddr) -> Step {
    Step::new("interfaces", &net.node, inside(net, e1, target))
}

fn inside(net: &ContainerNet, e1: &Endpoint, target: IpAddr) -> Result<String, String> {
    let name = &e1.name;
    if let Some(e) = &net.error {
        return Err(format!("cannot look inside {name}: {e}"));
    }
    let mine = IpAddr::V4(e1.ipv4);
    let Some(link) = net
        .inside
        .links
        .iter()
        .find(|l| l.addresses.iter().any(|a| a.addr() == mine))
    else {
        return Err(format!(
            "{name} has no interface with its address {mine} on {}: the agent on {} lost it; `shibafu network routes --container {name}` shows what is there",
            e1.network, net.node
        ));
    };
    if !link.up {
        return Err(format!("{name}'s interface {} is down", link.name));
    }
    let host = link
        .peer_index
        .and_then(|p| net.host_side.iter().find(|h| h.index == p));
    let Some(host) = host else {
        return Err(format!(
            "the host end of {name}'s {} is missing on {}",
            link.name, net.node
        ));
    };
    if !host.up || host.master.is_none() {
        return Err(format!(
            "the host end {} of {name}'s {} is {} on {}",
            host.name,
            link.name,
            if host.up { "on no bridge" } else { "down" },
            net.node
        ));
    }
    let route = net
        .inside
        .routes
        .iter()
        .filter(|r| r.dst.is_none_or(|d| d.contains(&target)))
        .max_by_key(|r| r.dst.map_or(0, |d| d.prefix_len()));
    let Some(route) = route else {
        return Err(format!("{name} has no route to {target}"));
    };
    if route.dev.as_deref() != Some(link.name.as_str()) {
        return Err(format!(
            "{name}'s route to {target} leaves by {}, not by its {} interface {}",
            route.dev.as_deref().unwrap_or("?"),
            e1.network,
            link.name
        ));
    }
    let hop = route.gateway.unwrap_or(target);
    let neigh = net.inside.neighbours.iter().find(|n| n.ip == hop);
    if let Some(n) = neigh.filter(|n| n.state == "failed" || n.state == "incomplete") {
        return Err(format!(
            "{name}'s neighbour entry for {hop} on {} is {}: ARP gets no answer from it",
            n.dev, n.state
        ));
    }
    Ok(format!(
        "{} {} up (host end {} on {}), route {} via {}{}",
        link.name,
        mine,
        host.name,
        host.master.as_deref().unwrap_or("?"),
        route
            .dst
            .map_or_else(|| "default".into(), |d| d.to_string()),
        route
            .gateway
            .map_or_else(|| "link".into(), |g| g.to_string()),
        neigh
            .map(|n| format!(", neighbour {hop} {}", n.state))
            .unwrap_or_default()
    ))
}

/// Step `underlay`: the source's node reaches the destination's node (skipped on one node).
pub fn underlay(from: &str, to: &str, to_underlay: IpAddr, ping: Option<&ProbeResult>) -> Step {
    let res = match ping {
        None => Ok("skipped: both containers are on the same node".into()),
        Some(r) if r.ok => Ok(format!("{from} -> {to} ({to_underlay}): {} in {} us", r.detail, r.micros)),
        Some(r) => Err(format!(
            "{from} cannot reach {to}'s underlay address {to_underlay} ({}): the nodes are partitioned; check the network between them",
            r.detail
        )),
    };
    Step::new("underlay", &format!("{from}->{to}"), res)
}

/// The rule a decision names, in words, when the policy is a stored one.
fn rule_text(policies: &[Policy], policy: &str, rule: usize) -> String {
    policies
        .iter()
        .find(|p| p.name == policy)
        .and_then(|p| p.rules.get(rule.wrapping_sub(1)))
        .map(|r| format!(" ({})", rule_words(r)))
        .unwrap_or_default()
}

/// Step `policy`: the oracle's verdict for the connection and what decided it.
pub fn policy(d: &Decision, e1: &Endpoint, e2: &Endpoint, flow: Flow, policies: &[Policy]) -> Step {
    let conn = match flow.proto {
        FlowProto::Icmp => format!("{} -> {} (icmp)", e1.name, e2.name),
        FlowProto::Tcp => format!("{} -> {}:{}/tcp", e1.name, e2.name, flow.port),
        FlowProto::Udp => format!("{} -> {}:{}/udp", e1.name, e2.name, flow.port),
    };
    let why = match &d.reason {
        Reason::DenyRule { policy, rule, direction } => format!(
            "policy {policy} rule {rule}{} denies {conn}: {}; change or remove it with `shibafu network policy`",
            rule_text(policies, policy, *rule),
            match direction {
                Direction::Ingress => format!("an ingress rule of {}", e2.network),
                Direction::Egress => format!("an egress rule of {}", e1.network),
            }
        ),
        Reason::EgressIsolated { policies: ps } => format!(
            "{conn} is denied: {} isolate{} {}'s egress and no allow-egress rule admits it; add one (e.g. --allow-egress-to {})",
            ps.join(", "),
            if ps.len() == 1 { "s" } else { "" },
            e1.name,
            e2.network
        ),
        Reason::IngressIsolated { policies: ps } => {
            let strict = ps.iter().any(|p| p.starts_with(STRICT_PREFIX));
            format!(
                "{conn} is denied: {} isolate{} {}'s ingress and no allow-ingress rule admits it; add one (e.g. --allow-ingress-from {}){}",
                ps.join(", "),
                if ps.len() == 1 { "s" } else { "" },
                e2.name,
                e1.network,
                if strict { format!(" or drop `isolation: strict` from {}", e2.network) } else { String::new() }
            )
        }
        Reason::Consent { policy, rule } => format!(
            "allowed by policy {policy} rule {rule}{}",
            rule_text(policies, policy, *rule)
        ),
        Reason::SameNetwork => format!("allowed: both on network {}, no policy denies it", e1.network),
        Reason::Linked => format!("allowed: networks {} and {} are linked", e1.network, e2.network),
        Reason::NotLinked => format!(
            "{conn} is denied: networks {} and {} are isolated from each other; link them with `shibafu network connect-networks {} {}`",
            e1.network, e2.network, e1.network, e2.network
        ),
        Reason::Outbound => format!("allowed: {} routes out of the cluster", e1.network),
        Reason::NoRouteOut => format!(
            "{conn} is denied: {} is not an endpoint and {} has no route to it",
            e2.ipv4, e1.network
        ),
        Reason::Inbound => format!("{conn} is denied: nothing outside the cluster opens a connection in"),
        Reason::Unmanaged => format!("{conn}: neither end is an endpoint; shibafu does not judge it"),
    };
    let res = if d.verdict == Verdict::Allow {
        Ok(why)
    } else {
        Err(why)
    };
    Step::new("policy", "cluster", res)
}

/// Step `probe`: the real connection from inside the source.
pub fn probe(node: &str, e1: &Endpoint, e2: &Endpoint, flow: Flow, r: &ProbeResult) -> Step {
    let what = format!(
        "{} from {} to {} {}",
        flow_words(flow),
        e1.name,
        e2.name,
        e2.ipv4
    );
    let res = if r.ok {
        Ok(format!("{what}: {} in {} us", r.detail, r.micros))
    } else {
        Err(format!("{what}: {}", r.detail))
    };
    Step::new("probe", node, res)
}

#[cfg(test)]
#[path = "diagnose_steps_tests.rs"]
mod tests;
