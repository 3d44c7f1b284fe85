//! The desired state of an apply: the document's objects built by the rules of the create
//! routes and checked against each other and the cluster, every problem collected with its path
//! in the document. Pure: the cluster comes in as a [`Current`] snapshot.

use std::collections::BTreeSet;

use shibafu_overlay::api::{Document, Problem};
use shibafu_overlay::model::{
    Conflict, Link, Network, Policy, Service, ServiceError, SCHEMA_VERSION,
};

use crate::apply_plan::Current;
use crate::policy_check::{self, Names};
use crate::{links, services, validate};

/// The valid objects of a document, each with its index in the document, and the names of
/// everything the document names (valid or not: a prune keeps those).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Networks (VNI not chosen yet).
    pub networks: Vec<(usize, Network)>,
    /// Links, in canonical order.
    pub links: Vec<(usize, Link)>,
    /// Services.
    pub services: Vec<(usize, Service)>,
    /// Policies.
    pub policies: Vec<(usize, Policy)>,
    /// Names of the networks the document names.
    pub network_names: BTreeSet<String>,
    /// Links the document names, as (a, b) in canonical order.
    pub link_names: BTreeSet<(String, String)>,
    /// Services the document names, as (network, name).
    pub service_names: BTreeSet<(String, String)>,
    /// Policies the document names.
    pub policy_names: BTreeSet<String>,
}

/// What exists once the document is applied: what it names, plus the rest of the cluster unless
/// pruned. Explains a reference to anything else.
struct After<'a> {
    desired: &'a Desired,
    current: &'a Current,
    prune: bool,
}

impl Names for After<'_> {
    fn missing_network(&self, name: &str) -> Option<String> {
        if self.desired.network_names.contains(name) {
            return None;
        }
        let in_cluster = self.current.networks.iter().any(|n| n.name == name);
        match (in_cluster, self.prune) {
            (true, false) => None,
            (true, true) => Some(format!(
                "network {name:?} is not in the file, and --prune removes it: add it to the file"
            )),
            (false, _) => Some(format!(
                "no network named {name:?} in the file or the cluster"
            )),
        }
    }

    fn has_service(&self, network: Option<&str>, name: &str) -> bool {
        let matches = |n: &str, s: &str| s == name && network.is_none_or(|net| net == n);
        self.desired
            .service_names
            .iter()
            .any(|(n, s)| matches(n, s))
            || (!self.prune
                && self
                    .current
                    .services
                    .iter()
                    .any(|s| matches(&s.network, &s.name)))
    }

    fn has_container(&self, name: &str) -> bool {
        self.current.containers.contains(name)
    }

    fn looked_in(&self) -> &'static str {
        " in the file or the cluster"
    }
}

/// Builds the desired state of `doc` against the cluster `current`, with every problem found.
pub fn desired(doc: &Document, current: &Current, prune: bool) -> (Desired, Vec<Problem>) {
    let mut d = Desired {
        network_names: doc.networks.iter().map(|n| n.name.clone()).collect(),
        link_names: doc
            .links
            .iter()
            .map(|l| {
                let link = Link::new(&l.a, &l.b);
                (link.a, link.b)
            })
            .collect(),
        service_names: doc
            .services
            .iter()
            .map(|s| (s.network.clone(), s.name.clone()))
            .collect(),
        policy_names: doc.policies.iter().map(|p| p.name.clone()).collect(),
        ..Desired::default()
    };
    let mut problems = Vec::new();
    d.networks = networks(doc, current, prune, &mut problems);
    let after = After {
        desired: &d,
        current,
        prune,
    };
    let links = links(doc, &after, &mut problems);
    let services = services(doc, &after, &mut problems);
    let policies = policies(doc, &after, &mut problems);
    d.links = links;
    d.services = services;
    d.policies = policies;
    (d, problems)
}

fn networks(
    doc: &Document,
    current: &Current,
    prune: bool,
    problems: &mut Vec<Problem>,
) -> Vec<(usize, Network)> {
    let named: BTreeSet<&str> = doc.networks.iter().map(|n| n.name.as_str()).collect();
    // Networks that stay as they are: a new one must not clash with them.
    let staying: Vec<&Network> = current
        .networks
        .iter()
        .filter(|n| !prune && !named.contains(n.name.as_str()))
        .collect();
    let mut seen = BTreeSet::new();
    let mut out: Vec<(usize, Network)> = Vec::new();
    for (i, req) in doc.networks.iter().enumerate() {
        if !seen.insert(req.name.as_str()) {
            let msg = format!("network {:?} is given twice", req.name);
            problems.push(Problem::new(format!("networks/{i}/name"), msg));
            continue;
        }
        let net = match validate::network_fields(req) {
            Ok(net) => net,
            Err(fields) => {
                problems.extend(
                    fields
                        .into_iter()
                        .map(|f| Problem::new(format!("networks/{i}/{}", f.field), f.error)),
                );
                continue;
            }
        };
        let others = out.iter().map(|(_, n)| n).chain(staying.iter().copied());
        let clash = others.filter_map(|o| net.conflict_with(o)).find_map(|c| {
            let field = match &c {
                Conflict::Subnet { .. } => "subnet",
                Conflict::Subnet6 { .. } => "subnet6",
                Conflict::Zone { .. } => "zone",
                Conflict::Name { .. } | Conflict::Vni { .. } => return None,
            };
            Some(Problem::new(format!("networks/{i}/{field}"), c.to_string()))
        });
        match clash {
            Some(p) => problems.push(p),
            None => out.push((i, net)),
        }
    }
    out
}

fn links(doc: &Document, after: &After<'_>, problems: &mut Vec<Problem>) -> Vec<(usize, Link)> {
    let mut out: Vec<(usize, Link)> = Vec::new();
    for (i, l) in doc.links.iter().enumerate() {
        let link = match links::check_pair(&l.a, &l.b) {
            Ok(link) => link,
            Err(e) => {
                problems.push(Problem::new(format!("links/{i}"), e.error));
                continue;
            }
        };
        if out.iter().any(|(_, o)| *o == link) {
            let msg = format!("the link {} {} is given twice", link.a, link.b);
            problems.push(Problem::new(format!("links/{i}"), msg));
            continue;
        }
        let mut ok = true;
        for (field, name) in [("a", &l.a), ("b", &l.b)] {
            if let Some(msg) = after.missing_network(name) {
                problems.push(Problem::new(format!("links/{i}/{field}"), msg));
                ok = false;
            }
        }
        if ok {
            out.push((i, link));
        }
    }
    out
}

fn services(
    doc: &Document,
    after: &After<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<(usize, Service)> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<(usize, Service)> = Vec::new();
    for (i, spec) in doc.services.iter().enumerate() {
        let at = |field: &str| format!("services/{i}/{field}");
        if !seen.insert((&spec.network, &spec.name)) {
            let msg = format!(
                "service {:?} is given twice on network {:?}",
                spec.name, spec.network
            );
            problems.push(Problem::new(at("name"), msg));
            continue;
        }
        let missing = after.missing_network(&spec.network);
        if let Some(msg) = &missing {
            problems.push(Problem::new(at("network"), msg.clone()));
        }
        match services::service_from_spec(spec) {
            Ok(s) if missing.is_none() => out.push((i, s)),
            Ok(_) => {}
            Err(e) => {
                let field = match &e {
                    ServiceError::Name(_) => "name",
                    ServiceError::Port(_) if spec.port == Some(0) => "port",
                    ServiceError::PortName(_) | ServiceError::PortNameWithoutPort => "port_name",
                    ServiceError::Interval(_) => "health/interval_ms",
                    ServiceError::Timeout { .. } => "health/timeout_ms",
                    _ => "health",
                };
                let msg = format!("service {:?}: {e}", spec.name);
                problems.push(Problem::new(at(field), msg));
            }
        }
    }
    out
}

/// The policies of an apply: a name given twice, and [`policy_check::check`] (as `network
/// policy create` runs it) against what exists once the document is applied.
fn policies(
    doc: &Document,
    after: &After<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<(usize, Policy)> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<(usize, Policy)> = Vec::new();
    for (i, p) in doc.policies.iter().enumerate() {
        if !seen.insert(&p.name) {
            let msg = format!("policy {:?} is given twice", p.name);
            problems.push(Problem::new(format!("policies/{i}/name"), msg));
            continue;
        }
        let refusals = policy_check::check(p, after);
        if refusals.is_empty() {
            let policy = Policy {
                schema: SCHEMA_VERSION,
                ..p.clone()
            };
            out.push((i, policy));
        }
        problems.extend(
            refusals
                .into_iter()
                .map(|r| Problem::new(format!("policies/{i}/{}", r.field), r.error)),
        );
    }
    out
}

#[cfg(test)]
#[path = "apply_desired_tests.rs"]
mod tests;
