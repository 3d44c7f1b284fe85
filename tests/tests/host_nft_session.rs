//! Host tier: the policy table's changes through the long-lived `nft -i` of [`NftFirewall`], in a
//! scratch namespace: a change is applied whole, a refused one changes nothing and says why, the
//! session survives both, a killed nft is replaced (the change still goes in, by `nft -f`), so is
//! one worn by many changes, nft is told of no history file, and dropping the firewall leaves no
//! nft running.

use std::time::Duration;

use shibafu_overlay::firewall::{FirewallError, NftFirewall};
use shibafu_overlay::policy::PolicyBackend;
use shibafu_tests::firewall::nft;
use shibafu_tests::{is_root, wait_until, NetnsGuard};

const TABLE: &str = "inet shibafu-policy";

fn root() -> bool {
    if !is_root() {
        eprintln!("skipping host-tier nft session test: needs root");
    }
    is_root()
}

/// The nft processes running in `ns`.
fn nfts(ns: &NetnsGuard) -> Vec<u32> {
    ns.pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "nft")
        })
        .collect()
}

fn counters(ns: &NetnsGuard) -> String {
    nft(ns, &["list", "counters", "table", "inet", "shibafu-policy"])
}

#[tokio::test]
async fn changes_go_through_one_nft_that_survives_refusals_and_is_replaced_when_killed() {
    if !root() {
        return;
    }
    let ns = NetnsGuard::new("sfsess");
    let fw = NftFirewall::in_netns(ns.path());
    fw.run(format!(
        "add table {TABLE}\nadd counter {TABLE} c1\nadd chain {TABLE} p\n\
         add rule {TABLE} p counter name \"c1\" drop\n"
    ))
    .await
    .expect("first change");
    assert!(counters(&ns).contains("counter c1"), "{}", counters(&ns));
    let first = nfts(&ns);
    assert_eq!(first.len(), 1, "one nft -i holds the session: {first:?}");
    let environ = std::fs::read(format!("/proc/{}/environ", first[0])).expect("environ");
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"HOME=/nonexistent"),
        "nft must not write a history file into a real home"
    );

    // A refused change names the problem and leaves nothing of itself behind.
    let err = fw
        .run(format!(
            "add counter {TABLE} c2\nadd rule {TABLE} nochain counter name \"c2\" drop\n"
        ))
        .await
        .expect_err("a rule in a missing chain");
    match &err {
        FirewallError::Nft { stderr, .. } => {
            assert!(stderr.contains("No such file or directory"), "{stderr}");
            assert!(stderr.contains("nochain"), "{stderr}");
        }
        other => panic!("expected nft's refusal, got {other:?}"),
    }
    assert!(!counters(&ns).contains("c2"), "all or nothing");
    fw.run(format!("add counter {TABLE} c3\n"))
        .await
        .expect("the session goes on after a refusal");
    assert_eq!(nfts(&ns), first, "the same nft");

    // A dead session: this change still goes in (by nft -f), the next starts a new nft.
    std::process::Command::new("kill")
        .args(["-9", &first[0].to_string()])
        .status()
        .expect("kill");
    assert!(wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || nfts(&ns).is_empty()
    ));
    fw.run(format!("add counter {TABLE} c4\n"))
        .await
        .expect("a change right after the kill");
    fw.run(format!("add counter {TABLE} c5\n"))
        .await
        .expect("a change in a new session");
    let listed = counters(&ns);
    assert!(
        listed.contains("counter c4") && listed.contains("counter c5"),
        "{listed}"
    );
    let second = nfts(&ns);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first);

    // A worn session (its history walked for every line) is replaced by a new nft, the old one
    // gone; every change still goes in.
    for i in 0..300 {
        fw.run(format!("add counter {TABLE} w{i}\n"))
            .await
            .expect("a change");
    }
    assert!(counters(&ns).contains("counter w299"));
    let third = nfts(&ns);
    assert_eq!(third.len(), 1, "{third:?}");
    assert_ne!(third, second, "replaced after many scripts");

    drop(fw);
    assert!(nfts(&ns).is_empty(), "no nft left behind");
}
