//! Host tier: the nftables change notifications the agent's firewall check listens to, from the
//! real kernel in a scratch namespace. Adding and deleting set elements (what every attach and
//! detach does to the source guard) calls for no check; deleting a rule, a chain or the table
//! (what someone damaging shibafu's tables does) does.

use std::os::fd::{AsRawFd, OwnedFd};

use shibafu_overlay::netlink::watch::nft::{next_nft_change, nft_events};
use shibafu_overlay::netns;
use shibafu_tests::firewall::nft;
use shibafu_tests::{is_root, NetnsGuard};

const TABLE: &str = "bridge sfevents";

/// Every notification that arrives within 300 ms of the last: whether each calls for a check.
fn drain(fd: &OwnedFd) -> Vec<bool> {
    let mut seen = Vec::new();
    loop {
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one descriptor we own, with a bounded timeout.
        let ready = unsafe { libc::poll(&mut poll, 1, 300) };
        if ready <= 0 {
            return seen;
        }
        seen.push(next_nft_change(fd).expect("read a notification"));
        assert!(seen.len() < 1000, "bounded");
    }
}

#[test]
fn element_changes_call_for_no_check_and_structural_ones_do() {
    if !is_root() {
        eprintln!("skipping host-tier nft events test: needs root");
        return;
    }
    let ns = NetnsGuard::new("sfnftev");
    let fd = netns::run_in(&ns.path(), nft_events)
        .expect("enter the namespace")
        .expect("subscribe to nftables notifications");
    nft(
        &ns,
        &[&format!(
            "add table {TABLE}; add set {TABLE} ports {{ type ifname; }}; add chain {TABLE} c \
             {{ type filter hook prerouting priority filter; policy accept; }}; add rule {TABLE} c \
             iifname != @ports accept comment \"x\""
        )],
    );
    let created = drain(&fd);
    assert!(created.contains(&true), "a new table: {created:?}");

    nft(
        &ns,
        &[&format!(
            "add element {TABLE} ports {{ \"veth1\", \"veth2\" }}"
        )],
    );
    let added = drain(&fd);
    assert!(!added.is_empty(), "the kernel told of the elements");
    assert!(!added.contains(&true), "elements only: {added:?}");
    nft(
        &ns,
        &[&format!("delete element {TABLE} ports {{ \"veth1\" }}")],
    );
    let deleted = drain(&fd);
    assert!(
        !deleted.is_empty() && !deleted.contains(&true),
        "{deleted:?}"
    );

    nft(&ns, &[&format!("flush chain {TABLE} c")]);
    let flushed = drain(&fd);
    assert!(flushed.contains(&true), "a rule deleted: {flushed:?}");
    nft(&ns, &[&format!("delete table {TABLE}")]);
    let gone = drain(&fd);
    assert!(gone.contains(&true), "the table deleted: {gone:?}");
}
