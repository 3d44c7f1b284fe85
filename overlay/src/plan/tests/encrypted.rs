//! Building the desired state of encrypted networks: VXLAN between tunnel addresses, the MTU
//! inside the tunnel, nothing in clear while a tunnel is missing, and `--encrypt-all`.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::model::NodeWireGuard;

fn tunnel(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, 0, n)
}

fn with_key(mut n: Node, t: u8, all: bool) -> Node {
    n.wg = Some(NodeWireGuard {
        public_key: format!("key{t}"),
        port: 51820,
        tunnel: tunnel(t),
        next_key: None,
        encrypt_all: all,
    });
    n
}

/// The test cluster with `fe` encrypted and every node holding a key.
fn encrypted() -> Cluster {
    let mut c = Cluster::new();
    c.networks[0].encrypted = true;
    c.nodes = c
        .nodes
        .into_iter()
        .enumerate()
        .map(|(i, n)| with_key(n, i as u8 + 1, false))
        .collect();
    c
}

#[test]
fn an_encrypted_network_runs_vxlan_between_tunnel_addresses_inside_the_tunnel_mtu() {
    let c = encrypted();
    let d = DesiredHost::build(&HostInputs {
        tunnel: Some(tunnel(1)),
        ..c.inputs()
    })
    .expect("desired");
    let fe = d.network("fe").expect("fe");
    assert_eq!(fe.mtu, 1500 - 60 - 50);
    let vx = fe.vxlan.as_ref().expect("vxlan");
    assert_eq!(vx.local, None, "the source is chosen by route");
    let web = vx.remotes.first().expect("node2's endpoint");
    assert_eq!(web.vtep, IpAddr::V4(tunnel(2)));
    // The unencrypted network is as before: underlay VTEPs, the underlay's MTU.
    let be = d.network("be").expect("be");
    assert_eq!(be.mtu, 1450);
    let bvx = be.vxlan.as_ref().expect("vxlan");
    assert_eq!(bvx.local, Some("10.0.0.1".parse::<IpAddr>().expect("ip")));
    assert_eq!(
        bvx.remotes[0].vtep,
        "10.0.0.3".parse::<IpAddr>().expect("ip")
    );
    // An explicit MTU above what the tunnel carries is lowered to it.
    let mut c = encrypted();
    c.networks[0].mtu = Some(1450);
    let d = DesiredHost::build(&HostInputs {
        tunnel: Some(tunnel(1)),
        ..c.inputs()
    })
    .expect("desired");
    assert_eq!(d.network("fe").expect("fe").mtu, 1390);
}

#[test]
fn nothing_goes_in_clear_while_a_tunnel_is_missing() {
    // This node's device is not up yet: remote endpoints of the encrypted network wait.
    let c = encrypted();
    let d = c.desired();
    let fe = d.network("fe").expect("fe");
    assert!(fe.vxlan.as_ref().expect("vxlan").remotes.is_empty());
    assert_eq!(
        fe.mtu, 1390,
        "the MTU does not depend on the device being up"
    );
    // A peer without a key: its endpoints wait too.
    let mut c = encrypted();
    c.nodes[1].wg = None;
    let d = DesiredHost::build(&HostInputs {
        tunnel: Some(tunnel(1)),
        ..c.inputs()
    })
    .expect("desired");
    assert!(d
        .network("fe")
        .expect("fe")
        .vxlan
        .as_ref()
        .expect("vxlan")
        .remotes
        .is_empty());
}

#[test]
fn encrypt_all_on_either_side_takes_every_network_into_the_tunnel() {
    // node3 encrypts everything: be's endpoint there is reached through the tunnel, and be's
    // VXLAN device has no fixed source; fe stays clear toward node2.
    let mut c = Cluster::new();
    c.nodes = vec![
        with_key(node("node1", "10.0.0.1"), 1, false),
        with_key(node("node2", "10.0.0.2"), 2, false),
        with_key(node("node3", "10.0.0.3"), 3, true),
    ];
    let d = DesiredHost::build(&HostInputs {
        tunnel: Some(tunnel(1)),
        ..c.inputs()
    })
    .expect("desired");
    let be = d.network("be").expect("be");
    let bvx = be.vxlan.as_ref().expect("vxlan");
    assert_eq!(bvx.local, None);
    assert_eq!(bvx.remotes[0].vtep, IpAddr::V4(tunnel(3)));
    assert_eq!(be.mtu, 1390);
    let fe = d.network("fe").expect("fe");
    let fvx = fe.vxlan.as_ref().expect("vxlan");
    assert_eq!(
        fvx.remotes[0].vtep,
        "10.0.0.2".parse::<IpAddr>().expect("ip")
    );
    // This node encrypting everything: every remote through the tunnel.
    let c = encrypted();
    let d = DesiredHost::build(&HostInputs {
        tunnel: Some(tunnel(1)),
        encrypt_all: true,
        ..c.inputs()
    })
    .expect("desired");
    let be = d.network("be").expect("be");
    assert_eq!(
        be.vxlan.as_ref().expect("vxlan").remotes[0].vtep,
        IpAddr::V4(tunnel(3))
    );
}
