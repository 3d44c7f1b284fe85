//! The rules that come and go with what a node has: the guards of encrypted networks (VXLAN
//! only through the tunnel) and the control-plane guard. Not in [`super::rule_comments`]: the
//! table's intactness check takes them from the spec ([`comments`]).

use super::FirewallSpec;
use crate::plan::VXLAN_PORT;

/// The rule dropping VXLAN packets of encrypted networks that did not come through the
/// WireGuard device (the VNI is the 24 bits at byte 12 of the UDP header's start); none when
/// no network is sealed. Not in [`rule_comments`]: it comes and goes with encrypted networks.
pub(super) fn sealed_rule(spec: &FirewallSpec) -> Option<(String, &'static str)> {
    if spec.sealed_vnis.is_empty() {
        return None;
    }
    let vnis: Vec<String> = spec.sealed_vnis.iter().map(u32::to_string).collect();
    let from = spec
        .tunnel_if
        .as_ref()
        .map(|t| format!(" iifname != \"{t}\""))
        .unwrap_or_default();
    Some((
        format!(
            "udp dport {VXLAN_PORT} @th,96,24 {{ {} }}{from} drop",
            vnis.join(", ")
        ),
        "encrypted networks: VXLAN only through the tunnel",
    ))
}

/// The rule keeping VXLAN packets for tunnel addresses off every interface but the WireGuard
/// device; none when no VXLAN runs inside the tunnels. Not in [`rule_comments`] either.
pub(super) fn tunnel_guard(spec: &FirewallSpec) -> Option<(String, &'static str)> {
    let range = spec.tunnel_range?;
    let via = spec
        .tunnel_if
        .as_ref()
        .map(|t| format!(" oifname != \"{t}\""))
        .unwrap_or_default();
    Some((
        format!("ip daddr {range} udp dport {VXLAN_PORT}{via} drop"),
        "encrypted networks: VXLAN to tunnel addresses only into the tunnel",
    ))
}

/// Forwarded traffic never goes to or comes from a tunnel address: only the host's own VXLAN
/// belongs in the tunnels, else a container could send VXLAN of an encrypted network to a
/// peer's tunnel address and the peer would take it as coming through its tunnel. None when no
/// VXLAN runs inside the tunnels here.
pub(super) fn tunnel_forward(spec: &FirewallSpec) -> Vec<(String, &'static str)> {
    let Some(range) = spec.tunnel_range else {
        return Vec::new();
    };
    vec![
        (
            format!("ip daddr {range} drop"),
            "encrypted networks: nothing forwarded into the tunnels",
        ),
        (
            format!("ip saddr {range} drop"),
            "encrypted networks: nothing forwarded out of the tunnels",
        ),
    ]
}

/// The rules keeping containers off the control plane (none when no port is known): forwarded
/// to a control host's control port, and to a control port of this host itself. Not in
/// [`rule_comments`]: they come and go with what the node knows. Before every accept but the
/// consent mark's, which only an endpoint's ingress policy sets (so never towards a control
/// host).
pub(super) fn control_rules(spec: &FirewallSpec) -> [Vec<(String, &'static str)>; 2] {
    if spec.control.is_empty() {
        return [Vec::new(), Vec::new()];
    }
    let forward = vec![
        (
            "iifname @bridges ct state new ip daddr @control4 tcp dport @control_ports drop"
                .to_string(),
            "containers never reach the control plane",
        ),
        (
            "iifname @bridges ct state new ip6 daddr @control6 tcp dport @control_ports drop"
                .to_string(),
            "containers never reach the control plane (v6)",
        ),
    ];
    let input = vec![(
        "iifname @bridges ct state new tcp dport @control_ports drop".to_string(),
        "containers never reach this node's control plane",
    )];
    [forward, input]
}

/// Comments of the conditional rules `spec` renders (what the intactness check looks for
/// besides the fixed rules).
pub fn comments(spec: &FirewallSpec) -> Vec<String> {
    let [forward, input] = control_rules(spec);
    sealed_rule(spec)
        .into_iter()
        .chain(tunnel_guard(spec))
        .chain(tunnel_forward(spec))
        .chain(forward)
        .chain(input)
        .map(|(_, c)| format!("sf: {c}"))
        .collect()
}
