//! Request and response bodies of the coordinator's network policy API.

use serde::{Deserialize, Serialize};

use crate::model::{Policy, Rule, SCHEMA_VERSION};

/// Body of `POST /v1/policies`: a policy to create. The coordinator checks it (names, ports,
/// that the network, the selected service and every named peer exist) and stores it whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Policy name, a DNS label.
    pub name: String,
    /// The network whose endpoints it selects.
    pub network: String,
    /// Only the instances of this service on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Its rules in order; counters refer to them by index.
    pub rules: Vec<Rule>,
}

impl PolicySpec {
    /// The policy this spec describes, of the current schema (not yet validated).
    pub fn to_policy(&self) -> Policy {
        Policy {
            schema: SCHEMA_VERSION,
            name: self.name.clone(),
            network: self.network.clone(),
            service: self.service.clone(),
            rules: self.rules.clone(),
            trace: crate::telemetry::Trace::NONE,
        }
    }
}

/// What one rule matched, summed over the nodes that reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounters {
    /// The rule as the command line writes it: `--allow-ingress-from backend:5432/tcp`.
    pub rule: String,
    /// Packets an allow rule let through (0 for a deny rule).
    pub allowed: u64,
    /// Packets a deny rule dropped (0 for an allow rule).
    pub dropped: u64,
}

/// A policy with its counters summed over nodes (`GET /v1/policies/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The policy as stored.
    pub policy: Policy,
    /// One entry per rule, in the policy's order.
    pub rules: Vec<RuleCounters>,
    /// Packets dropped because the policy isolates its endpoints and no allow rule matched.
    pub isolation_dropped: u64,
    /// The nodes whose counters are summed, sorted (counters of an older version of the
    /// policy, with another number of rules, are left out).
    pub nodes: Vec<String>,
}
