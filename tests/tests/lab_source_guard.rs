//! Lab tier: a container sends only from what it was given. From container `a` (Docker's
//! default capabilities, so `CAP_NET_RAW`), UDP datagrams with forged IPv4 sources go to a
//! neighbour on the same node, one on another node and the lab's control host (routed out by
//! NAT); only the genuine ones arrive: no neighbour's address, no other network's, no address
//! from nowhere, on any path.

use std::collections::BTreeMap;
use std::time::Duration;

use shibafu_tests::{bin, root_or_skip, text, Lab};

const PORT: &str = "9999";

/// Sources `shibafu-probe sink` printed.
fn sources(out: &std::process::Output) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("from "))
        .map(str::to_string)
        .collect()
}

#[test]
fn forged_sources_never_leave_a_containers_veth() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(2);
    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    lab.cli_ok("node1", &["network", "create", "backend", "172.22.0.0/24"]);
    for (node, name, net) in [
        ("node1", "a", "frontend"),
        ("node1", "b", "frontend"),
        ("node2", "c", "frontend"),
        ("node1", "d", "backend"),
    ] {
        lab.run_idle(node, name, net);
    }
    let mut ip: BTreeMap<String, String> = lab.endpoint_addresses("frontend");
    ip.extend(lab.endpoint_addresses("backend"));
    let ctl = lab.ctl_addr().to_string();
    let node1 = lab.component("node1")["addr"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let probe = bin("shibafu-probe").display().to_string();
    let nowhere = "10.250.0.9".to_string();

    let (b_saw, c_saw, ctl_saw) = std::thread::scope(|s| {
        let sink = |host: &'static str, container: Option<&'static str>| {
            let probe = probe.clone();
            let lab = &lab;
            s.spawn(move || {
                let mut args: Vec<&str> = match container {
                    Some(c) => vec!["shibafu", "exec", c],
                    None => vec![],
                };
                args.extend([probe.as_str(), "sink", "--udp", PORT, "--secs", "5"]);
                sources(&lab.exec(host, &args))
            })
        };
        let (b, c, out) = (
            sink("node1", Some("b")),
            sink("node2", Some("c")),
            sink("ctl", None),
        );
        std::thread::sleep(Duration::from_millis(1500));
        let send = |src: &str, to: &str| {
            let to = format!("{to}:{PORT}");
            let args = [
                "shibafu", "exec", "a", &probe, "spoof", "--src", src, "--to", &to,
            ];
            let out = lab.exec("node1", &args);
            assert!(out.status.success(), "spoof: {}", text(&out.stderr));
        };
        for target in [&ip["b"], &ip["c"], &ctl] {
            send(&ip["a"], target);
            send(&nowhere, target);
        }
        send(&ip["c"], &ip["b"]);
        send(&ip["b"], &ip["c"]);
        send(&ip["d"], &ip["b"]);
        send(&ip["b"], &ctl);
        let join = |h: std::thread::ScopedJoinHandle<'_, Vec<String>>| h.join().expect("sink");
        (join(b), join(c), join(out))
    });
    assert_eq!(b_saw, [ip["a"].clone()], "b, same node");
    assert_eq!(c_saw, [ip["a"].clone()], "c, over VXLAN");
    assert_eq!(ctl_saw, [node1], "the control host, by NAT");
}
