//! The checks a policy passes before it is stored, one set for `shibafu network policy create`
//! and `shibafu apply -f`: names are DNS labels, at least one rule, valid ports and protocols,
//! no host bits in a CIDR peer, and the network, the selected service and every network,
//! service and container peer present where the caller looks. Pure: the caller answers the
//! lookups through [`Names`] (the cluster now, or the cluster as an apply leaves it).

use std::fmt::Display;

use shibafu_overlay::api::ErrorKind;
use shibafu_overlay::model::{validate_name, Peer, Policy, PolicyError};

/// Where a policy's names are looked up.
pub trait Names {
    /// Why network `name` is not there (a whole sentence), or `None` when it is.
    fn missing_network(&self, name: &str) -> Option<String>;
    /// Whether a service `name` is there on `network`, or on any network when `None`.
    fn has_service(&self, network: Option<&str>, name: &str) -> bool;
    /// Whether a container (endpoint) `name` is attached to some network.
    fn has_container(&self, name: &str) -> bool;
    /// Where services were looked for, to end "no service ...": empty for the cluster now,
    /// " in the file or the cluster" for an apply.
    fn looked_in(&self) -> &'static str;
}

/// One reason to refuse a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The part of the policy at fault: `name`, `network`, `service`, `rules`, `rules/J`
    /// (the rule itself) or `rules/J/peer`.
    pub field: String,
    /// [`ErrorKind::Invalid`] for bad input, [`ErrorKind::NotFound`] for a name not there.
    pub kind: ErrorKind,
    /// What is wrong, starting with the policy's name.
    pub error: String,
}

/// Every reason to refuse `policy`, part by part; empty when it may be stored. A name that is
/// not a label is not looked up, nor a service on a network that is not there.
pub fn check(policy: &Policy, names: &dyn Names) -> Vec<Refusal> {
    let mut out = Vec::new();
    let named = |msg: &dyn Display| format!("policy {:?}: {msg}", policy.name);
    let mut refuse = |field: &str, kind: ErrorKind, error: String| {
        let field = field.to_string();
        out.push(Refusal { field, kind, error });
    };
    let bad_name = |what: &'static str, name: &str| {
        validate_name(name).err().map(|_| PolicyError::Name {
            what,
            name: name.to_string(),
        })
    };
    if let Some(e) = bad_name("policy", &policy.name) {
        refuse("name", ErrorKind::Invalid, named(&e));
    }
    let network_there = match bad_name("network", &policy.network) {
        Some(e) => {
            refuse("network", ErrorKind::Invalid, named(&e));
            false
        }
        None => match names.missing_network(&policy.network) {
            Some(why) => {
                refuse("network", ErrorKind::NotFound, named(&why));
                false
            }
            None => true,
        },
    };
    if let Some(s) = &policy.service {
        if let Some(e) = bad_name("service", s) {
            refuse("service", ErrorKind::Invalid, named(&e));
        } else if network_there && !names.has_service(Some(&policy.network), s) {
            let why = format!(
                "no service {s:?} on network {:?}{}; see `shibafu service ls`",
                policy.network,
                names.looked_in()
            );
            refuse("service", ErrorKind::NotFound, named(&why));
        }
    }
    if policy.rules.is_empty() {
        let e = PolicyError::NoRules(policy.name.clone());
        refuse("rules", ErrorKind::Invalid, e.to_string());
    }
    for (j, rule) in policy.rules.iter().enumerate() {
        let mut refuse_rule = |field: &str, kind: ErrorKind, why: &dyn Display| {
            refuse(field, kind, named(&format!("rule `{rule}`: {why}")));
        };
        if let Err(e) = rule.validate() {
            refuse_rule(&format!("rules/{j}"), ErrorKind::Invalid, &e);
            continue;
        }
        let (kind, why) = match &rule.peer {
            // The command line refuses these too; other clients may not.
            Peer::Cidr(c) if c.trunc() != *c => (
                ErrorKind::Invalid,
                format!("peer {c} has host bits set: did you mean {}?", c.trunc()),
            ),
            Peer::Network(n) => match names.missing_network(n) {
                Some(why) => (ErrorKind::NotFound, why),
                None => continue,
            },
            Peer::Service(s) if !names.has_service(None, s) => (
                ErrorKind::NotFound,
                format!(
                    "unknown service {s:?}: no network has one{}; see `shibafu service ls`",
                    names.looked_in()
                ),
            ),
            Peer::Container(c) if !names.has_container(c) => (
                ErrorKind::NotFound,
                format!("unknown container {c:?}: nothing of that name is attached to any network; see `shibafu ps`"),
            ),
            _ => continue,
        };
        refuse_rule(&format!("rules/{j}/peer"), kind, &why);
    }
    out
}

#[cfg(test)]
#[path = "policy_check_tests.rs"]
mod tests;
