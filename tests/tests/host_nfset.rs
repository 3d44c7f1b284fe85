//! Host tier: address-set elements changed over netlink by `change_elements`, against the real
//! kernel in a scratch namespace, read back with nft: additions and deletions show, a batch with
//! one bad change changes nothing, `add` of a present element is no error (as with nft), errors
//! name the change, a set changed this way steers packets, and one change costs well under a
//! millisecond on a table of 2,000 sets where `nft add element` needs tens.

use std::io::ErrorKind;
use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::time::Instant;

use shibafu_overlay::firewall::{change_elements, ElementChange, ElementOp, FirewallError};
use shibafu_overlay::netns;
use shibafu_tests::firewall::nft;
use shibafu_tests::{exec_ok, is_root, unique_name, NetnsGuard};

const TABLE: &str = "shibafu-policy";

fn root() -> bool {
    if !is_root() {
        eprintln!("skipping host-tier nfset test: needs root");
    }
    is_root()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Runs the nft script `script` in `ns` (from a file: long scripts exceed argv).
fn nft_script(ns: &NetnsGuard, script: &str) {
    let path = std::env::temp_dir().join(unique_name("sft-nfset-") + ".nft");
    std::fs::write(&path, script).expect("write script");
    let path_arg = path.to_string_lossy().into_owned();
    let out = std::panic::catch_unwind(|| exec_ok(ns.cmd("nft").args(["-f", &path_arg])));
    let _ = std::fs::remove_file(&path);
    if let Err(panic) = out {
        std::panic::resume_unwind(panic);
    }
}

fn policy_table(ns: &NetnsGuard) {
    nft_script(
        ns,
        &format!(
            "table inet {TABLE} {{\n\
             set a4 {{ type ipv4_addr; }}\n\
             set a6 {{ type ipv6_addr; }}\n\
             }}\n"
        ),
    );
}

/// The elements of `set` as nft lists them.
fn elements(ns: &NetnsGuard, set: &str) -> Vec<IpAddr> {
    let out = nft(ns, &["list", "set", "inet", TABLE, set]);
    let Some(start) = out.find("elements = {") else {
        return Vec::new();
    };
    let rest = &out[start + "elements = {".len()..];
    let body = &rest[..rest.find('}').expect("closing brace")];
    let mut v: Vec<IpAddr> = body
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(ip)
        .collect();
    v.sort();
    v
}

fn sorted(addrs: &[&str]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = addrs.iter().map(|a| ip(a)).collect();
    v.sort();
    v
}

/// The error's change index, change and error kind; panics on other errors.
fn refusal(err: FirewallError) -> (usize, ElementChange, ErrorKind) {
    match err {
        FirewallError::SetElement {
            index,
            change,
            source,
            ..
        } => (index, change, source.kind()),
        other => panic!("expected a refused element change, got {other}"),
    }
}

#[tokio::test]
async fn element_changes_apply_whole_or_not_at_all() {
    if !root() {
        return;
    }
    let ns = NetnsGuard::new("nfs");
    let at = Some(ns.path());
    let at = at.as_deref();
    policy_table(&ns);

    // Three IPv4 and one IPv6 in one call.
    let adds = [
        ElementChange::add("a4", ip("10.0.0.1")),
        ElementChange::add("a4", ip("10.0.0.2")),
        ElementChange::add("a6", ip("fd00::1")),
        ElementChange::add("a4", ip("10.0.0.3")),
    ];
    change_elements(at, TABLE, &adds).await.expect("add");
    assert_eq!(
        elements(&ns, "a4"),
        sorted(&["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    );
    assert_eq!(elements(&ns, "a6"), sorted(&["fd00::1"]));

    // Delete one.
    let del = [ElementChange::delete("a4", ip("10.0.0.2"))];
    change_elements(at, TABLE, &del).await.expect("delete");
    assert_eq!(elements(&ns, "a4"), sorted(&["10.0.0.1", "10.0.0.3"]));

    // `add` of a present element is no error and keeps one copy (nft `add element` semantics).
    let again = [ElementChange::add("a4", ip("10.0.0.1"))];
    change_elements(at, TABLE, &again).await.expect("add again");
    assert_eq!(elements(&ns, "a4"), sorted(&["10.0.0.1", "10.0.0.3"]));

    // One change names a missing set: the batch fails and nothing of it applies.
    let bad_set = [
        ElementChange::add("a4", ip("10.0.0.9")),
        ElementChange::add("missing", ip("10.0.0.10")),
        ElementChange::add("a6", ip("fd00::9")),
        ElementChange::delete("a4", ip("10.0.0.1")),
    ];
    let err = change_elements(at, TABLE, &bad_set)
        .await
        .expect_err("no such set");
    let text = err.to_string();
    let (index, change, errno) = refusal(err);
    assert_eq!((index, errno), (1, ErrorKind::NotFound), "{text}");
    assert_eq!(change, bad_set[1]);
    assert!(
        text.contains("missing") && text.contains("10.0.0.10"),
        "{text}"
    );
    assert_eq!(elements(&ns, "a4"), sorted(&["10.0.0.1", "10.0.0.3"]));
    assert_eq!(elements(&ns, "a6"), sorted(&["fd00::1"]));

    // An element that fails inside a message of several is named exactly (extended ack).
    let bad_elem = [
        ElementChange::add("a4", ip("10.0.0.20")),
        ElementChange::delete("a4", ip("10.0.0.3")),
        ElementChange::delete("a4", ip("10.0.0.77")),
        ElementChange::delete("a4", ip("10.0.0.1")),
    ];
    let err = change_elements(at, TABLE, &bad_elem)
        .await
        .expect_err("absent");
    let (index, change, errno) = refusal(err);
    assert_eq!((index, errno), (2, ErrorKind::NotFound));
    assert_eq!(change.op, ElementOp::Delete);
    assert_eq!(elements(&ns, "a4"), sorted(&["10.0.0.1", "10.0.0.3"]));

    // An IPv6 address for an IPv4 set: EINVAL, with the hint.
    let wrong = [ElementChange::add("a4", ip("fd00::5"))];
    let err = change_elements(at, TABLE, &wrong)
        .await
        .expect_err("family");
    assert!(err.to_string().contains("ipv4_addr"), "{err}");
    assert_eq!(refusal(err).2, ErrorKind::InvalidInput);

    // A missing table: ENOENT pointing at the first change.
    let err = change_elements(at, "nope", &again)
        .await
        .expect_err("no table");
    assert_eq!(refusal(err).0, 0);

    // Names nftables cannot hold never reach the kernel.
    let err = change_elements(at, TABLE, &[ElementChange::add("a\0b", ip("10.0.0.1"))])
        .await
        .expect_err("NUL");
    assert!(matches!(err, FirewallError::InvalidName { .. }), "{err}");
    change_elements(at, TABLE, &[])
        .await
        .expect("nothing to do");

    // A batch larger than one message and than the default socket buffer: 5,000 IPv6 adds,
    // then as many deletes.
    let many: Vec<ElementChange> = (0..5000u16)
        .map(|i| ElementChange::add("a6", ip(&format!("fd00:1::{i:x}"))))
        .collect();
    change_elements(at, TABLE, &many).await.expect("5000 adds");
    assert_eq!(elements(&ns, "a6").len(), 5001);
    let gone: Vec<ElementChange> = many
        .iter()
        .map(|c| ElementChange::delete("a6", c.addr))
        .collect();
    change_elements(at, TABLE, &gone)
        .await
        .expect("5000 deletes");
    assert_eq!(elements(&ns, "a6"), sorted(&["fd00::1"]));

    // `None` works on the caller's namespace: here a thread inside the scratch namespace.
    let path = ns.path();
    netns::run_in(&path, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(change_elements(
            None,
            TABLE,
            &[ElementChange::add("a6", ip("fd00::2"))],
        ))
    })
    .expect("enter namespace")
    .expect("add in the current namespace");
    assert_eq!(elements(&ns, "a6"), sorted(&["fd00::1", "fd00::2"]));
}

/// Sends one UDP datagram to 10.9.0.5 from inside `ns`; Err(PermissionDenied) when dropped.
fn send_from(ns: &NetnsGuard) -> std::io::Result<()> {
    netns::run_in(&ns.path(), || {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.send_to(b"x", "10.9.0.5:9").map(|_| ())
    })
    .expect("enter namespace")
}

#[tokio::test]
async fn a_rule_sees_elements_changed_over_netlink() {
    if !root() {
        return;
    }
    let ns = NetnsGuard::new("nfr");
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.ip(&["addr", "add", "10.9.0.1/24", "dev", "v0"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["link", "set", "v1", "up"]);
    policy_table(&ns);
    nft_script(
        &ns,
        &format!(
            "table inet {TABLE} {{\n\
             chain out {{ type filter hook output priority 0; policy accept;\n\
             ip daddr @a4 counter drop\n\
             }}\n\
             }}\n"
        ),
    );
    send_from(&ns).expect("nothing in the set yet: sent");
    let path = ns.path();
    let set = [ElementChange::add("a4", ip("10.9.0.5"))];
    change_elements(Some(&path), TABLE, &set)
        .await
        .expect("add");
    let err = send_from(&ns).expect_err("in the set: dropped");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let unset = [ElementChange::delete("a4", ip("10.9.0.5"))];
    change_elements(Some(&path), TABLE, &unset)
        .await
        .expect("delete");
    send_from(&ns).expect("out of the set again: sent");
    let chain = nft(&ns, &["list", "chain", "inet", TABLE, "out"]);
    assert!(chain.contains("counter packets 1 "), "{chain}");
}

#[tokio::test]
async fn single_changes_on_a_large_table_leave_it_as_it_was_and_print_their_cost() {
    if !root() {
        return;
    }
    let ns = NetnsGuard::new("nft");
    let mut script = format!("table inet {TABLE} {{\n");
    for s in 0..2000u32 {
        let (hi, lo) = (s / 256, s % 256);
        script.push_str(&format!(
            "set s{s} {{ type ipv4_addr; elements = {{ 10.{hi}.{lo}.1, 10.{hi}.{lo}.2, \
             10.{hi}.{lo}.3, 10.{hi}.{lo}.4, 10.{hi}.{lo}.5 }} }}\n"
        ));
    }
    script.push_str("}\n");
    nft_script(&ns, &script);
    let path = ns.path();
    let at = Some(path.as_path());

    const PAIRS: u32 = 200;
    let started = Instant::now();
    for i in 0..PAIRS {
        let addr = ip(&format!("10.200.{}.{}", i / 200, i % 200 + 1));
        let set = format!("s{}", i * 7 % 2000);
        change_elements(at, TABLE, &[ElementChange::add(set.clone(), addr)])
            .await
            .expect("add");
        change_elements(at, TABLE, &[ElementChange::delete(set, addr)])
            .await
            .expect("delete");
    }
    let per_change = started.elapsed() / (2 * PAIRS);

    let nft_runs = 5;
    let started = Instant::now();
    for _ in 0..nft_runs {
        exec_ok(Command::new("ip").args([
            "netns",
            "exec",
            ns.name(),
            "nft",
            "add element inet shibafu-policy s1 { 10.250.0.1 }",
        ]));
    }
    let per_nft = started.elapsed() / nft_runs;
    eprintln!(
        "nfset: 2,000 sets x 5 elements: {per_change:?} per change over netlink \
         (average of {PAIRS} add+delete pairs), {per_nft:?} per `nft add element`"
    );
    assert_eq!(
        elements(&ns, "s7").len(),
        5,
        "pairs must leave the sets as they were"
    );
}
