//! Pure validation of network requests: parsing, naming, overlaps with existing networks, VNI
//! choice. Everything here runs before anything is written.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};
use shibafu_overlay::api::{ApiError, CreateNetwork, ErrorKind};
use shibafu_overlay::model::{
    self, Conflict, ModelError, Network, MIN_MTU, MIN_MTU_V6, VNI_MAX, VNI_MIN,
};

/// DNS port used for forwarders given without one.
pub const DNS_PORT: u16 = 53;

/// Builds and validates the network a request asks for; `vni` is filled in later.
pub fn network_from_request(req: &CreateNetwork) -> Result<Network, ApiError> {
    network_fields(req).map_err(|mut problems| ApiError::invalid(problems.swap_remove(0).error))
}

/// A problem with one field of a network request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field as [`CreateNetwork`] names it; `forwarders/N` for one forwarder.
    pub field: String,
    /// What is wrong, naming the network.
    pub error: String,
}

/// Builds and validates the network a request asks for (`vni` is filled in later), or says
/// what is wrong with every field that is, in field order. The checks are those of
/// [`Network::validate`], one field at a time.
pub fn network_fields(req: &CreateNetwork) -> Result<Network, Vec<FieldProblem>> {
    let name = req.name.as_str();
    let mut problems = Vec::new();
    let mut refuse = |field: String, error: String| problems.push(FieldProblem { field, error });
    if let Err(e) = model::validate_name(name) {
        refuse("name".into(), e.to_string());
    }
    let invalid = |msg: String| format!("network {name:?}: {msg}");
    let model_error = |e: ModelError| invalid(e.to_string());
    let subnet = parse_subnet_v4(&req.subnet)
        .map_err(invalid)
        .and_then(|s| {
            model::validate_subnet_v4(&s)
                .map(|()| s)
                .map_err(model_error)
        })
        .map_err(|e| refuse("subnet".into(), e))
        .ok();
    let subnet6 = match req.subnet6.as_deref() {
        Some(s) => parse_subnet_v6(s)
            .map_err(invalid)
            .and_then(|s| {
                model::validate_subnet_v6(&s)
                    .map(|()| Some(s))
                    .map_err(model_error)
            })
            .map_err(|e| refuse("subnet6".into(), e))
            .ok(),
        None => Some(None),
    };
    let mut forwarders = Vec::new();
    for (i, f) in req.forwarders.iter().enumerate() {
        match parse_forwarder(f) {
            Ok(addr) => forwarders.push(addr),
            Err(e) => refuse(format!("forwarders/{i}"), invalid(e)),
        }
    }
    let zone = match req.zone.as_deref().map(str::trim) {
        Some(z) => z.strip_suffix('.').unwrap_or(z).to_ascii_lowercase(),
        None => format!("{name}.local"),
    };
    if let Err(e) = model::validate_zone(&zone) {
        refuse("zone".into(), model_error(e));
    }
    let min_mtu = match subnet6 {
        Some(Some(_)) => MIN_MTU_V6,
        _ => MIN_MTU,
    };
    if let Some(Err(e)) = req.mtu.map(|m| model::check_mtu(m, min_mtu)) {
        refuse("mtu".into(), model_error(e));
    }
    match (subnet, subnet6) {
        (Some(subnet), Some(subnet6)) if problems.is_empty() => Ok(Network {
            subnet6,
            zone,
            mtu: req.mtu,
            internal: req.internal,
            forwarders,
            isolation: req.isolation,
            encrypted: req.encrypted,
            ..Network::new(name, subnet, VNI_MIN)
        }),
        _ => Err(problems),
    }
}

/// Parses an IPv4 subnet in CIDR notation, explaining what is wrong.
pub fn parse_subnet_v4(s: &str) -> Result<Ipv4Net, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<Ipv4Net>() {
        return Ok(net);
    }
    if s.parse::<Ipv6Net>().is_ok() {
        return Err(format!(
            "subnet {s:?} is IPv6: give it as subnet6 (--subnet6) with an IPv4 subnet"
        ));
    }
    if s.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "invalid subnet {s:?}: missing prefix length, use CIDR notation such as 172.21.0.0/24"
        ));
    }
    Err(format!(
        "invalid subnet {s:?}: use CIDR notation such as 172.21.0.0/24"
    ))
}

/// Parses an IPv6 subnet in CIDR notation, explaining what is wrong.
pub fn parse_subnet_v6(s: &str) -> Result<Ipv6Net, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<Ipv6Net>() {
        return Ok(net);
    }
    if s.parse::<Ipv4Net>().is_ok() {
        return Err(format!("subnet6 {s:?} is IPv4: give it as the subnet"));
    }
    Err(format!(
        "invalid subnet6 {s:?}: use CIDR notation such as fd00:21::/64"
    ))
}

/// Parses a DNS forwarder: `IP`, `IP:PORT` or `[IPv6]:PORT`; port 53 when omitted.
pub fn parse_forwarder(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let addr = if let Ok(ip) = s.parse::<IpAddr>() {
        SocketAddr::new(ip, DNS_PORT)
    } else if let Ok(sa) = s.parse::<SocketAddr>() {
        sa
    } else {
        return Err(format!(
            "invalid forwarder {s:?}: use IP or IP:PORT (for IPv6 with a port: [IP]:PORT)"
        ));
    };
    if addr.port() == 0 {
        return Err(format!("invalid forwarder {s:?}: port 0"));
    }
    Ok(addr)
}

/// Rejects a new network whose name or zone is taken or whose subnets overlap another's (the
/// rules of [`Network::conflict_with`]; its VNI is chosen afterwards, so VNIs are not compared).
pub fn check_conflicts(new: &Network, existing: &[Network]) -> Result<(), ApiError> {
    let named = existing.iter().filter(|o| o.name == new.name);
    let others = existing.iter().filter(|o| o.name != new.name);
    for other in named.chain(others) {
        let kind = match new.conflict_with(other) {
            None | Some(Conflict::Vni { .. }) => continue,
            Some(c @ (Conflict::Name { .. } | Conflict::Zone { .. })) => (ErrorKind::Duplicate, c),
            Some(c @ (Conflict::Subnet { .. } | Conflict::Subnet6 { .. })) => {
                (ErrorKind::Overlap, c)
            }
        };
        return Err(ApiError::new(kind.0, kind.1.to_string()));
    }
    Ok(())
}

/// The smallest VNI in `VNI_MIN..=VNI_MAX` no existing network uses.
pub fn free_vni(existing: &[Network]) -> Result<u32, ApiError> {
    let used: BTreeSet<u32> = existing.iter().map(|n| n.vni).collect();
    (VNI_MIN..=VNI_MAX)
        .find(|v| !used.contains(v))
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::Conflict,
                format!("no free VNI left ({VNI_MIN}..={VNI_MAX} are all used)"),
            )
        })
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
