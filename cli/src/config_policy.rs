//! Policies in the file of `shibafu apply`: a name, the network (and service) whose endpoints a
//! policy is about, and rules written as the phase plan writes them
//! (`deny: {from: frontend, to: database}`) or as the command line's flags
//! (`allow-ingress-from: "backend:5432"`), both read by the flags' parser, [`Rule::parse`].

use shibafu_overlay::model::{Action, Direction, Policy, PolicyError, Proto, Rule};

use crate::config_reader::{At, Reader};
use crate::health_args::parse_port;
use crate::yaml::{Loc, Node};

const POLICY_KEYS: &[&str] = &["name", "network", "service", "rules"];
const PLAN_KEYS: &[&str] = &["from", "to", "ports", "protocol"];
/// Rule keys: the plan's two, then the command line's flags.
const RULE_KEYS: &[&str] = &[
    "allow",
    "deny",
    "allow-ingress-from",
    "deny-ingress-from",
    "allow-egress-to",
    "deny-egress-to",
];

/// A name as written in a rule, and where.
#[derive(Debug, Clone)]
struct End {
    text: String,
    loc: Loc,
}

/// A rule as written, before the policy's network is known.
enum Written {
    /// `allow|deny: {from, to, ports, protocol}`; `suffix` is `:PORTS/PROTO` as far as given.
    Plan {
        action: Action,
        from: End,
        to: End,
        suffix: String,
        at: Loc,
    },
    /// A flag-form rule, read already; `peer` is where its value is.
    Flag { rule: Rule, peer: Loc },
}

/// The policies of the file. A rule with an error is left out of the document (the error says
/// why), and so is a policy without a name, a network or any good rule; the coordinator checks
/// the rest.
pub fn policies(r: &mut Reader, at: &At<'_>) -> Vec<Policy> {
    let mut out = Vec::new();
    for item in r.list(at) {
        if let Some((policy, origins)) = policy(r, &item) {
            let n = out.len();
            for (part, loc) in origins {
                let path = match part.as_str() {
                    "" => format!("policies/{n}"),
                    part => format!("policies/{n}/{part}"),
                };
                r.origin(path, &loc);
            }
            out.push(policy);
        }
    }
    out
}

/// A text field of a mapping, with where its value is.
fn end(r: &mut Reader, at: Option<&At<'_>>) -> Option<End> {
    let at = at?;
    let text = r.text(at)?;
    Some(End {
        text,
        loc: at.loc.clone(),
    })
}

/// One policy and where its parts are (paths relative to the policy).
fn policy(r: &mut Reader, item: &At<'_>) -> Option<(Policy, Vec<(String, Loc)>)> {
    let mut origins = vec![(String::new(), item.loc.clone())];
    let f = r.fields(item, POLICY_KEYS);
    let name = end(r, f.get("name"));
    let network = end(r, f.get("network"));
    let service = end(r, f.get("service"));
    for (part, found) in [("name", &name), ("service", &service)] {
        if let Some(e) = found {
            origins.push((part.to_string(), e.loc.clone()));
        }
    }
    if f.get("name").is_none() {
        r.error(&item.loc, "policy: missing name");
    }
    let mut written = Vec::new();
    let mut failed = false;
    match f.get("rules") {
        Some(rules) => {
            origins.push(("rules".into(), rules.loc.clone()));
            for at in r.list(rules) {
                match rule(r, &at) {
                    Some(w) => written.push((at.loc, w)),
                    None => failed = true,
                }
            }
        }
        None => {
            r.error(&item.loc, "policy: missing rules");
            failed = true;
        }
    }
    let network = match network {
        Some(n) => Some(n),
        None => infer(r, &written, &item.loc),
    };
    let network = network?;
    origins.push(("network".into(), network.loc.clone()));
    let mut rules = Vec::new();
    for (at, w) in written {
        match resolve(w, &network.text) {
            Ok((rule, peer)) => {
                let k = rules.len();
                origins.push((format!("rules/{k}"), at));
                origins.push((format!("rules/{k}/peer"), peer));
                rules.push(rule);
            }
            Err((loc, msg)) => {
                r.error(&loc, msg);
                failed = true;
            }
        }
    }
    if failed && rules.is_empty() {
        return None;
    }
    let policy = Policy {
        service: service.map(|s| s.text),
        ..Policy::new(&name?.text, &network.text, rules)
    };
    Some((policy, origins))
}

/// One rule item: a mapping of one key.
fn rule(r: &mut Reader, at: &At<'_>) -> Option<Written> {
    let f = r.fields(at, RULE_KEYS);
    let given: Vec<&str> = RULE_KEYS
        .iter()
        .copied()
        .filter(|k| f.get(k).is_some())
        .collect();
    let [key] = given.as_slice() else {
        let msg = "a rule is one of allow: {from, to, ports, protocol}, deny: {...}, or \
                   allow-ingress-from, deny-ingress-from, allow-egress-to, deny-egress-to: \
                   PEER[:PORTS][/PROTO]";
        r.error(&at.loc, msg);
        return None;
    };
    let value = f.get(key)?;
    let action = if key.starts_with("allow") {
        Action::Allow
    } else {
        Action::Deny
    };
    let direction = match *key {
        "allow" | "deny" => return plan_rule(r, action, value),
        k if k.ends_with("ingress-from") => Direction::Ingress,
        _ => Direction::Egress,
    };
    let text = r.text(value)?;
    match Rule::parse(action, direction, &text) {
        Ok(rule) => Some(Written::Flag {
            rule,
            peer: value.loc.clone(),
        }),
        Err(e) => {
            r.error(&value.loc, e.to_string());
            None
        }
    }
}

/// `{from, to, ports, protocol}`; ports are numbers or `"8000-8100"` ranges.
fn plan_rule(r: &mut Reader, action: Action, at: &At<'_>) -> Option<Written> {
    let f = r.fields(at, PLAN_KEYS);
    for key in ["from", "to"] {
        if f.get(key).is_none() {
            r.error(&at.loc, format!("rule: missing {key}"));
        }
    }
    let from = end(r, f.get("from"));
    let to = end(r, f.get("to"));
    let mut ports = Vec::new();
    let mut ok = true;
    if let Some(list) = f.get("ports") {
        let items = match list.node {
            Node::Seq(_) => r.list(list),
            _ => vec![list.clone()],
        };
        for item in items {
            match port_range(r, &item) {
                Some(p) => ports.push(p),
                None => ok = false,
            }
        }
    }
    let mut suffix = String::new();
    if !ports.is_empty() {
        suffix = format!(":{}", ports.join(","));
    }
    if let Some(p) = f.get("protocol") {
        let text = r.text(p)?;
        match text.parse::<Proto>() {
            Ok(_) => suffix.push_str(&format!("/{text}")),
            Err(e) => {
                r.error(&p.loc, e);
                ok = false;
            }
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return None;
    };
    ok.then_some(Written::Plan {
        action,
        from,
        to,
        suffix,
        at: at.loc.clone(),
    })
}

/// `5432` or `"8000-8100"`, checked here so that a bad port is shown where it is written.
fn port_range(r: &mut Reader, at: &At<'_>) -> Option<String> {
    let text = r.text(at)?;
    let (first, last) = text.split_once('-').unwrap_or((&text, &text));
    let checked = parse_port(first).and_then(|from| {
        let to = parse_port(last)?;
        if to < from {
            Err(PolicyError::UpsideDown { from, to }.to_string())
        } else {
            Ok(())
        }
    });
    match checked {
        Ok(()) => Some(text),
        Err(e) => {
            r.error(&at.loc, e);
            None
        }
    }
}

/// The network of a policy without `network:`: the one every plan-form rule names (its `to`
/// when a rule names it on both sides or all rules name the same two).
fn infer(r: &mut Reader, written: &[(Loc, Written)], policy: &Loc) -> Option<End> {
    let mut common: Option<Vec<End>> = None;
    for (_, w) in written {
        let Written::Plan { from, to, at, .. } = w else {
            continue;
        };
        let named = |e: &End| e.text == from.text || e.text == to.text;
        let next: Vec<End> = match &common {
            None => vec![to.clone(), from.clone()],
            Some(c) => c.iter().filter(|e| named(e)).cloned().collect(),
        };
        if next.is_empty() {
            let before: Vec<String> = common
                .iter()
                .flatten()
                .map(|e| format!("{:?}", e.text))
                .collect();
            let msg = format!(
                "this rule does not name the policy's network ({}, as the rules before it do): \
                 give the policy its network with network:",
                before.join(" or ")
            );
            r.error(at, msg);
            return None;
        }
        common = Some(next);
    }
    match common {
        Some(mut c) => Some(c.swap_remove(0)),
        None => {
            r.error(
                policy,
                "policy: missing network (its rules do not name one)",
            );
            None
        }
    }
}

/// The rule on the policy's `network`, and where its peer is written.
fn resolve(w: Written, network: &str) -> Result<(Rule, Loc), (Loc, String)> {
    let (action, from, to, suffix, at) = match w {
        Written::Flag { rule, peer } => return Ok((rule, peer)),
        Written::Plan {
            action,
            from,
            to,
            suffix,
            at,
        } => (action, from, to, suffix, at),
    };
    let (direction, peer) = if to.text == network {
        (Direction::Ingress, from)
    } else if from.text == network {
        (Direction::Egress, to)
    } else {
        let msg = format!(
            "neither from ({:?}) nor to ({:?}) is the policy's network {network:?}",
            from.text, to.text
        );
        return Err((at, msg));
    };
    match Rule::parse(action, direction, &format!("{}{suffix}", peer.text)) {
        Ok(rule) => Ok((rule, peer.loc)),
        Err(e) => Err((peer.loc, e.to_string())),
    }
}
