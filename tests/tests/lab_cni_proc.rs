//! Lab tier, `shibafu-cni` given a sandbox as `/proc/PID/ns/net` (as runtimes that do not bind
//! mount their namespaces pass it): the result names that path as the sandbox, the interface is
//! inside the process's namespace, the agent pins the namespace under its state directory
//! (`netns/cni/<containerid>...`) so the attachment outlives a reused pid, CHECK works with
//! the /proc path, and after the process is gone DEL still succeeds and removes the pin.

use std::path::PathBuf;

use serde_json::json;
use shibafu_tests::cni::{Attachment, Runtime};
use shibafu_tests::cni_lab::{cni_entries, create_net, result_ip, NET};
use shibafu_tests::cni_sandbox::ProcSandbox;
use shibafu_tests::{root_or_skip, Lab};

#[test]
fn a_proc_namespace_is_pinned_while_attached_and_unpinned_by_del() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(1);
    create_net(&lab);
    let rt = Runtime::shibafu(&lab, "node1", NET);
    let mut sandbox = ProcSandbox::start(&lab, "node1");
    let att = Attachment::at(&sandbox.netns());
    let add = rt.add(&att);
    let r = add.expect_ok("ADD with a /proc namespace").clone();
    let container = &r["interfaces"][2];
    assert!(
        container["name"] == "eth0" && container["sandbox"] == json!(sandbox.netns()),
        "the container interface's sandbox should be {}: {}",
        sandbox.netns(),
        add.show()
    );
    let addr = r["ips"][0]["address"].as_str().unwrap_or_default();
    let inside = sandbox.ip(&["-br", "addr"]);
    let eth0 = inside.lines().find(|l| l.starts_with("eth0"));
    assert!(
        eth0.is_some_and(|l| l.contains(addr)),
        "eth0 with {addr} in pid {}'s namespace: {inside}",
        sandbox.pid()
    );

    // The agent attached a pin of the namespace under its state dir, not the /proc path
    // (named after the container id; `<id>` or `<id>-<ifname>`, whichever the agent uses).
    let pins = lab.state_dir().join("nodes/node1/netns/cni");
    let entries = cni_entries(&lab, "node1");
    let entry = entries
        .iter()
        .find(|c| c["cni"] == json!(att.container_id))
        .unwrap_or_else(|| panic!("no CNI entry of {} in ps: {entries:?}", att.container_id));
    let pin = PathBuf::from(entry["netns"].as_str().unwrap_or_default());
    let named = pin
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(&att.container_id));
    assert!(
        pin.parent() == Some(pins.as_path()) && named,
        "the entry's netns should be a pin in {}: {entry}",
        pins.display()
    );
    assert!(entry["state"] == "attached", "{entry}");
    assert!(pin.exists(), "pin {} missing", pin.display());

    rt.check(&att).expect_ok("CHECK with the /proc path");

    // The process goes; the pinned namespace stays until DEL, which removes the pin.
    sandbox.kill();
    rt.del(&att).expect_ok("DEL after the process exited");
    assert!(!pin.exists(), "pin {} left after DEL", pin.display());
    let left = cni_entries(&lab, "node1");
    assert!(left.is_empty(), "after DEL ps lists {left:?}");
    rt.del(&att).expect_ok("DEL again");
    // Its address is free again: the next attachment gets it.
    let again = ProcSandbox::start(&lab, "node1");
    let att2 = Attachment::at(&again.netns());
    let add2 = rt.add(&att2);
    let ip2 = result_ip(add2.expect_ok("ADD of a second /proc namespace"), 0);
    assert_eq!(ip2, result_ip(&r, 0), "address not reused: {}", add2.show());
    rt.del(&att2).expect_ok("DEL of the second");
    drop(again);
    lab.down();
}
