//! The plan of an apply, a pure function of the cluster and the desired state: what to create,
//! change in place and (with prune) remove, or why it cannot be done.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use serde::Serialize;
use shibafu_overlay::api::{Change, ChangeAction, ObjectKind, Problem};
use shibafu_overlay::model::{HealthCheck, Link, Network, Policy, Probe, Rule, Service};

use crate::apply_desired::Desired;
use crate::validate;

/// The cluster as an apply reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    /// Every network.
    pub networks: Vec<Network>,
    /// Every link.
    pub links: Vec<Link>,
    /// Every service.
    pub services: Vec<Service>,
    /// Every policy.
    pub policies: Vec<Policy>,
    /// Endpoints attached, by network.
    pub endpoints: BTreeMap<String, usize>,
    /// Instances, by (network, service).
    pub instances: BTreeMap<(String, String), usize>,
    /// Names of the containers (endpoints) attached anywhere: what `container:NAME` peers name.
    pub containers: BTreeSet<String>,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A new network, its VNI chosen.
    CreateNetwork(Network),
    /// A network changed in its mutable fields only.
    UpdateNetwork {
        /// As stored.
        old: Network,
        /// As wanted, with the stored VNI.
        new: Network,
    },
    /// Removes a network (and its IPAM blocks, health records, problem reports and links).
    RemoveNetwork(String),
    /// Links two networks.
    CreateLink(Link),
    /// Removes a link.
    RemoveLink(Link),
    /// Writes a service, new (`old` is `None`) or replacing the stored one.
    PutService {
        /// As stored.
        old: Option<Service>,
        /// As wanted.
        new: Service,
    },
    /// Removes a service.
    RemoveService(Service),
    /// Writes a policy, new or replacing the stored one.
    PutPolicy {
        /// As stored.
        old: Option<Policy>,
        /// As wanted.
        new: Policy,
    },
    /// Removes a policy.
    RemovePolicy(Policy),
}

/// The steps that take `current` to `desired` (removing what the document does not name when
/// `prune`), and the problems that forbid it.
pub fn plan(current: &Current, desired: &Desired, prune: bool) -> (Vec<Step>, Vec<Problem>) {
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    let mut taken = current.networks.clone();
    for (i, want) in &desired.networks {
        match current.networks.iter().find(|n| n.name == want.name) {
            None => match validate::free_vni(&taken) {
                Ok(vni) => {
                    let new = Network {
                        vni,
                        ..want.clone()
                    };
                    taken.push(new.clone());
                    steps.push(Step::CreateNetwork(new));
                }
                Err(e) => problems.push(Problem::new(format!("networks/{i}"), e.error)),
            },
            Some(old) => {
                let new = Network {
                    vni: old.vni,
                    ..want.clone()
                };
                match immutable(old, &new, current) {
                    Some((field, msg)) => {
                        problems.push(Problem::new(format!("networks/{i}/{field}"), msg))
                    }
                    None if *old != new => steps.push(Step::UpdateNetwork {
                        old: old.clone(),
                        new,
                    }),
                    None => {}
                }
            }
        }
    }
    for (_, link) in &desired.links {
        if !current.links.contains(link) {
            steps.push(Step::CreateLink(link.clone()));
        }
    }
    for (_, want) in &desired.services {
        let old = current
            .services
            .iter()
            .find(|s| s.network == want.network && s.name == want.name);
        if old != Some(want) {
            steps.push(Step::PutService {
                old: old.cloned(),
                new: want.clone(),
            });
        }
    }
    for (_, want) in &desired.policies {
        let old = current.policies.iter().find(|p| p.name == want.name);
        if old != Some(want) {
            steps.push(Step::PutPolicy {
                old: old.cloned(),
                new: want.clone(),
            });
        }
    }
    if prune {
        prune_steps(current, desired, &mut steps, &mut problems);
    }
    (steps, problems)
}

/// Why `old` cannot become `new` in place: the field and the message.
fn immutable(old: &Network, new: &Network, current: &Current) -> Option<(&'static str, String)> {
    let name = &old.name;
    let recreate = format!(
        "remove the network (shibafu network rm {name}, or leave it out of the file and apply \
         with --prune) and apply again to create it anew"
    );
    if old.subnet != new.subnet {
        return Some((
            "subnet",
            format!(
                "network {name:?}: subnet cannot change in place ({} -> {}): {recreate}",
                old.subnet, new.subnet
            ),
        ));
    }
    if old.subnet6 != new.subnet6 {
        return Some((
            "subnet6",
            format!(
                "network {name:?}: subnet6 cannot change in place ({} -> {}): {recreate}",
                opt(&old.subnet6),
                opt(&new.subnet6)
            ),
        ));
    }
    let attached = current.endpoints.get(name).copied().unwrap_or(0);
    if old.zone != new.zone && attached > 0 {
        return Some((
            "zone",
            format!(
                "network {name:?}: zone cannot change while {attached} endpoint(s) are attached \
                 (their resolv.conf and /etc/hosts name {:?}): stop them first",
                old.zone
            ),
        ));
    }
    None
}

fn prune_steps(
    current: &Current,
    desired: &Desired,
    steps: &mut Vec<Step>,
    problems: &mut Vec<Problem>,
) {
    for n in &current.networks {
        if desired.network_names.contains(&n.name) {
            continue;
        }
        match current.endpoints.get(&n.name).copied().unwrap_or(0) {
            0 => steps.push(Step::RemoveNetwork(n.name.clone())),
            attached => problems.push(Problem::new(
                "",
                format!(
                    "network {:?} has {attached} endpoint(s) attached: --prune removes only \
                     networks without endpoints; stop them, or keep the network in the file",
                    n.name
                ),
            )),
        }
    }
    for l in &current.links {
        if !desired.link_names.contains(&(l.a.clone(), l.b.clone())) {
            steps.push(Step::RemoveLink(l.clone()));
        }
    }
    for s in &current.services {
        let key = (s.network.clone(), s.name.clone());
        if desired.service_names.contains(&key) {
            continue;
        }
        match current.instances.get(&key).copied().unwrap_or(0) {
            0 => steps.push(Step::RemoveService(s.clone())),
            n => problems.push(Problem::new(
                "",
                format!(
                    "service {:?} on network {:?} has {n} instance(s): --prune removes only \
                     services without instances; remove them, or keep the service in the file",
                    s.name, s.network
                ),
            )),
        }
    }
    for p in &current.policies {
        if !desired.policy_names.contains(&p.name) {
            steps.push(Step::RemovePolicy(p.clone()));
        }
    }
}

impl Step {
    /// The change as the user sees it.
    pub fn change(&self) -> Change {
        let (action, kind, name, details) = match self {
            Step::CreateNetwork(n) => (
                ChangeAction::Create,
                ObjectKind::Network,
                n.name.clone(),
                vec![],
            ),
            Step::UpdateNetwork { old, new } => {
                let mut d = Vec::new();
                diff(&mut d, "zone", &old.zone, &new.zone);
                diff(&mut d, "mtu", &word(&old.mtu), &word(&new.mtu));
                diff(&mut d, "internal", &old.internal, &new.internal);
                diff(
                    &mut d,
                    "forwarders",
                    &word(&old.forwarders),
                    &word(&new.forwarders),
                );
                diff(&mut d, "isolation", &old.isolation, &new.isolation);
                diff(&mut d, "encrypted", &old.encrypted, &new.encrypted);
                (
                    ChangeAction::Update,
                    ObjectKind::Network,
                    new.name.clone(),
                    d,
                )
            }
            Step::RemoveNetwork(n) => {
                (ChangeAction::Remove, ObjectKind::Network, n.clone(), vec![])
            }
            Step::CreateLink(l) => (ChangeAction::Create, ObjectKind::Link, pair(l), vec![]),
            Step::RemoveLink(l) => (ChangeAction::Remove, ObjectKind::Link, pair(l), vec![]),
            Step::PutService { old, new } => {
                let name = format!("{}/{}", new.network, new.name);
                match old {
                    None => (ChangeAction::Create, ObjectKind::Service, name, vec![]),
                    Some(old) => (
                        ChangeAction::Update,
                        ObjectKind::Service,
                        name,
                        service_diff(old, new),
                    ),
                }
            }
            Step::RemoveService(s) => {
                let name = format!("{}/{}", s.network, s.name);
                (ChangeAction::Remove, ObjectKind::Service, name, vec![])
            }
            Step::PutPolicy { old, new } => match old {
                None => (
                    ChangeAction::Create,
                    ObjectKind::Policy,
                    new.name.clone(),
                    vec![],
                ),
                Some(old) => {
                    let mut d = Vec::new();
                    diff(&mut d, "network", &old.network, &new.network);
                    diff(&mut d, "service", &word(&old.service), &word(&new.service));
                    diff(&mut d, "rules", &rules(&old.rules), &rules(&new.rules));
                    (
                        ChangeAction::Update,
                        ObjectKind::Policy,
                        new.name.clone(),
                        d,
                    )
                }
            },
            Step::RemovePolicy(p) => (
                ChangeAction::Remove,
                ObjectKind::Policy,
                p.name.clone(),
                vec![],
            ),
        };
        Change {
            action,
            kind,
            name,
            details,
        }
    }
}

fn service_diff(old: &Service, new: &Service) -> Vec<String> {
    let mut d = Vec::new();
    diff(&mut d, "lb", &word(&old.lb), &word(&new.lb));
    diff(&mut d, "port", &word(&old.port), &word(&new.port));
    diff(
        &mut d,
        "port-name",
        &word(&old.port_name),
        &word(&new.port_name),
    );
    diff(
        &mut d,
        "protocol",
        &word(&old.protocol),
        &word(&new.protocol),
    );
    let (a, b) = (word(&old.all_unhealthy), word(&new.all_unhealthy));
    diff(&mut d, "all-unhealthy", &a, &b);
    let (a, b) = (check(old.health.as_ref()), check(new.health.as_ref()));
    diff(&mut d, "health", &a, &b);
    d
}

/// Adds `field OLD -> NEW` when the two differ.
fn diff<T: Display + PartialEq + ?Sized>(details: &mut Vec<String>, field: &str, old: &T, new: &T) {
    if old != new {
        details.push(format!("{field} {old} -> {new}"));
    }
}

/// A value as the file writes it: `round-robin`, `1400`, `-` for none, `[a, b]` for a list.
fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) => "-".into(),
        Ok(serde_json::Value::Array(items)) => {
            let items: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect();
            format!("[{}]", items.join(", "))
        }
        Ok(other) => other.to_string(),
        Err(e) => format!("({e})"),
    }
}

fn opt<T: Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), ToString::to_string)
}

fn pair(l: &Link) -> String {
    format!("{} {}", l.a, l.b)
}

fn rules(rules: &[Rule]) -> String {
    let rules: Vec<String> = rules.iter().map(Rule::to_string).collect();
    format!("[{}]", rules.join(", "))
}

fn check(c: Option<&HealthCheck>) -> String {
    let Some(c) = c else {
        return "none".into();
    };
    let probe = match &c.probe {
        Probe::Tcp { port } => format!("tcp {port}"),
        Probe::Http { port, path } => format!("http {port}{path}"),
        Probe::Cmd { argv } => format!("cmd {:?}", argv.join(" ")),
    };
    format!(
        "({probe}, interval {}ms, timeout {}ms, rise {}, fall {}, start-period {}ms)",
        c.interval_ms, c.timeout_ms, c.rise, c.fall, c.start_period_ms
    )
}

#[cfg(test)]
#[path = "apply_plan_tests.rs"]
mod tests;
