//! Host tier: a container port its bridge has let go (the bridge deleted or the port released by
//! hand, until the repair). The host end carries the gateway's MAC, so the kernel takes the
//! container's frames to its gateway as the host's own on that port: the firewall drops what
//! reaches the IP layer there, so the container reaches nothing of the host through it.

use std::net::UdpSocket;
use std::time::Duration;

use shibafu_overlay::firewall::{Firewall, NftFirewall};
use shibafu_overlay::netns;
use shibafu_overlay::plan::veth_host_name;
use shibafu_tests::firewall::{build, net, spec};
use shibafu_tests::{exec_ok, root_or_skip, NetnsGuard};

#[tokio::test]
async fn a_port_outside_its_bridge_reaches_nothing_of_the_host() {
    if !root_or_skip("host") {
        return;
    }
    let (h, c) = (NetnsGuard::new("ubh"), NetnsGuard::new("ubc"));
    let nets = [net("n", "172.44.0.0/24", 0x4401, false)];
    let members = [(&c, "n", "172.44.0.2")];
    build(&h, &nets, &members).await;
    let port = veth_host_name("n", "c0");
    // A host address the container reaches through its gateway. The reverse-path filter is off,
    // as on many hosts, so only the firewall stands between the port and the host.
    h.ip(&["link", "set", "lo", "up"]);
    h.ip(&["addr", "add", "10.44.9.9/32", "dev", "lo"]);
    for key in ["all", "default", port.as_str()] {
        let setting = format!("net.ipv4.conf.{key}.rp_filter=0");
        exec_ok(h.cmd("sysctl").args(["-qw", &setting]));
    }
    let fw = NftFirewall::in_netns(h.path());
    fw.apply(&spec(&nets, &[], None, &members))
        .await
        .expect("apply");
    let listener = netns::run_in(&h.path(), || UdpSocket::bind(("10.44.9.9", 5544)))
        .expect("enter host namespace")
        .expect("bind");
    listener
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let send = || {
        exec_ok(
            c.cmd("bash")
                .args(["-c", "echo hi > /dev/udp/10.44.9.9/5544"]),
        )
    };
    let mut buf = [0u8; 16];

    send();
    assert!(
        listener.recv_from(&mut buf).is_ok(),
        "through its bridge the container reaches the host"
    );

    h.ip(&["link", "set", "dev", &port, "nomaster"]);
    send();
    assert!(
        listener.recv_from(&mut buf).is_err(),
        "a port outside its bridge must reach nothing of the host"
    );
}
