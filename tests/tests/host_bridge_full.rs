//! Host tier: a network's bridge with no port left. The Linux bridge numbers its ports 1-1,023;
//! attaching one more container fails with an error that says the bridge is full (not the
//! kernel's bare "Exchange full"), and taking the container out of the plan leaves nothing of
//! it behind while the containers already attached keep working.

use std::process::Command;

use shibafu_overlay::netlink::{reconcile, NetlinkDataplane, Scope};
use shibafu_overlay::plan::DesiredHost;
use shibafu_tests::plan::{attach, desired, ep, net};
use shibafu_tests::{exec_ok, root_or_skip, NetnsGuard};

/// Applies `d`; returns the errors of the ops that failed, as text.
async fn apply(dp: &NetlinkDataplane, d: &DesiredHost) -> Vec<String> {
    let (_, report) = reconcile(dp, d, &Scope::All).await.expect("observe");
    report.errors.iter().map(|e| e.error.to_string()).collect()
}

#[tokio::test]
async fn an_attach_to_a_full_bridge_says_so_and_leaves_nothing_behind() {
    if !root_or_skip("host") {
        return;
    }
    let (h, c1, c2) = (
        NetnsGuard::new("bfh"),
        NetnsGuard::new("bfc"),
        NetnsGuard::new("bfc"),
    );
    let networks = [net("full", "172.30.0.0/24", None, 0x2101)];
    let endpoints = [
        ep("c1", "full", "h", "172.30.0.2", None, "02:00:00:30:00:02"),
        ep("c2", "full", "h", "172.30.0.3", None, "02:00:00:30:00:03"),
    ];
    let first = [attach(&c1, &[("full", "c1")])];
    let dp = NetlinkDataplane::in_netns(h.path());
    let one = desired("h", None, &networks, &[], &endpoints, &first);
    assert_eq!(apply(&dp, &one).await, Vec::<String>::new());

    // 1,022 more ports (plain veths the agent does not own) fill the bridge's 1,023.
    let batch = std::env::temp_dir().join(format!("sf-bridge-full-{}", h.name()));
    let lines: String = (0..1022)
        .map(|i| {
            format!("link add fil{i} type veth peer name fip{i}\nlink set fil{i} master sfbr2101\n")
        })
        .collect();
    std::fs::write(&batch, lines).expect("write batch");
    let filled = Command::new("ip")
        .args(["-n", h.name(), "-batch"])
        .arg(&batch)
        .output();
    let _ = std::fs::remove_file(&batch);
    assert!(
        filled.expect("ip -batch").status.success(),
        "filling the bridge"
    );

    let both = [
        attach(&c1, &[("full", "c1")]),
        attach(&c2, &[("full", "c2")]),
    ];
    let errors = apply(&dp, &desired("h", None, &networks, &[], &endpoints, &both)).await;
    assert!(
        errors
            .iter()
            .any(|e| e.contains("bridge sfbr2101 is full") && e.contains("1,023 ports")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().all(|e| !e.contains("Exchange full")),
        "{errors:#?}"
    );

    // The attach gives up: the container leaves the plan, its interface goes.
    assert_eq!(apply(&dp, &one).await, Vec::<String>::new());
    assert!(
        !c2.ip(&["-o", "link"]).contains("eth0"),
        "interface left behind: {}",
        c2.ip(&["-o", "link"])
    );
    let ports = h.ip(&["-o", "link", "show", "master", "sfbr2101"]);
    assert_eq!(
        ports.lines().count(),
        1023,
        "c1's port and the 1,022 fillers"
    );
    let ping = exec_ok(c1.cmd("ping").args(["-c", "1", "-W", "2", "172.30.0.1"]));
    assert!(ping.contains("1 received"), "{ping}");
}
