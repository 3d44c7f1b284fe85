//! Host tier, the WireGuard device at the kernel edge: two namespaces joined by a veth pair
//! each bring up a device through `SystemWg` (the userspace backend, boringtun-cli, and the
//! kernel module where this kernel has it), configure each other as peers, ping across the
//! tunnel, read the handshake back as a time, and leave nothing behind when removed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use shibafu_overlay::netns::run_in;
use shibafu_overlay::wireguard::{
    public_of, Backend, BackendChoice, DesiredPeer, DeviceChange, DeviceSpec, Key, SystemWg,
    WgDevice, WgError,
};
use shibafu_tests::{root_or_skip, text, NetnsGuard};

/// Runs `f` on a current-thread runtime inside namespace `ns`.
fn in_ns<T: Send + 'static>(
    ns: &NetnsGuard,
    f: impl FnOnce(&tokio::runtime::Runtime) -> T + Send + 'static,
) -> T {
    run_in(&ns.path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        f(&rt)
    })
    .expect("in namespace")
}

struct Side {
    ns: NetnsGuard,
    ifname: String,
    key: Key,
    underlay: &'static str,
    tunnel: &'static str,
}

impl Drop for Side {
    /// The namespace guard ends the processes inside; their configuration sockets and logs
    /// stay behind unless removed.
    fn drop(&mut self) {
        let sock = PathBuf::from("/var/run/wireguard").join(format!("{}.sock", self.ifname));
        let _ = std::fs::remove_file(sock);
        let _ = std::fs::remove_file(log_of(self));
    }
}

fn peer_change(other: &Side) -> DeviceChange {
    let peer = DesiredPeer {
        node: "other".into(),
        endpoint: SocketAddr::new(other.underlay.parse().expect("ip"), 51820),
        tunnel: Some(other.tunnel.parse().expect("ip")),
    };
    DeviceChange {
        set_key: true,
        port: Some(51820),
        upsert: vec![(public_of(&other.key), peer)],
        remove: vec![],
        modified: vec![],
    }
}

/// Where `side`'s userspace daemon logs (removed with the side).
fn log_of(side: &Side) -> PathBuf {
    std::env::temp_dir().join(format!("{}.log", side.ifname))
}

fn device(side: &Side, choice: BackendChoice) -> SystemWg {
    SystemWg::new(
        &side.ifname,
        choice,
        PathBuf::from("boringtun-cli"),
        log_of(side),
    )
}

/// Brings `side`'s device up with `other` as its peer; the backend, or the error.
fn bring_up(
    side: &Side,
    other: &Side,
    choice: BackendChoice,
) -> Result<(SystemWg, Backend), WgError> {
    let dev = device(side, choice);
    let key = side.key.clone();
    let change = peer_change(other);
    let address = format!("{}/10", side.tunnel).parse().expect("net");
    in_ns(&side.ns, move |rt| {
        rt.block_on(async {
            let (backend, _) = dev.ensure(&DeviceSpec { mtu: 1440, address }).await?;
            dev.apply(&key, &change, 25).await?;
            Ok((dev, backend))
        })
    })
}

fn remove(side: &Side, dev: SystemWg) {
    in_ns(&side.ns, move |rt| rt.block_on(dev.remove())).expect("remove");
}

fn pair() -> (Side, Side) {
    // Unique per pair: the tests of this file run at once, and a side's drop removes the socket
    // and log named after its device.
    static PAIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = PAIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = ((std::process::id() << 4) | (seq & 0xf)) & 0xff_ffff;
    let a = Side {
        ns: NetnsGuard::new("wga"),
        ifname: format!("wgh{tag:06x}a"),
        key: Key::generate_private(),
        underlay: "10.77.0.1",
        tunnel: "100.64.0.1",
    };
    let b = Side {
        ns: NetnsGuard::new("wgb"),
        ifname: format!("wgh{tag:06x}b"),
        key: Key::generate_private(),
        underlay: "10.77.0.2",
        tunnel: "100.64.0.2",
    };
    // The veth pair is born inside the two namespaces: nothing touches the host's.
    let out = std::process::Command::new("ip")
        .args([
            "link",
            "add",
            "u0",
            "netns",
            a.ns.name(),
            "type",
            "veth",
            "peer",
            "u0",
        ])
        .args(["netns", b.ns.name()])
        .output()
        .expect("ip");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for s in [&a, &b] {
        s.ns.ip(&["addr", "add", &format!("{}/24", s.underlay), "dev", "u0"]);
        s.ns.ip(&["link", "set", "u0", "up"]);
    }
    (a, b)
}

/// Three pings from `a` to `b`'s tunnel address all come back (`when`, for the message).
fn crosses(a: &Side, b: &Side, when: &str) {
    let out =
        a.ns.cmd("ping")
            .args(["-c", "3", "-W", "1", b.tunnel])
            .output()
            .expect("ping");
    let said = text(&out.stdout);
    assert!(said.contains("3 received"), "{when}: {said}");
}

fn talk_through(choice: BackendChoice) {
    if !root_or_skip("host") {
        return;
    }
    let (a, b) = pair();
    let (da, backend) = match bring_up(&a, &b, choice) {
        Ok(up) => up,
        Err(WgError::NoBackend(why)) if choice == BackendChoice::Kernel => {
            eprintln!("skipped: no kernel WireGuard here ({why})");
            return;
        }
        Err(e) => panic!("device a: {e}"),
    };
    let (db, _) = bring_up(&b, &a, choice).expect("device b");
    match choice {
        BackendChoice::Kernel => assert_eq!(backend, Backend::Kernel),
        _ => assert!(matches!(backend, Backend::Userspace(_)), "{backend}"),
    }
    let link = a.ns.ip(&["-d", "link", "show", &a.ifname]);
    assert!(link.contains("mtu 1440"), "{link}");
    let addrs = a.ns.ip(&["addr", "show", &a.ifname]);
    assert!(addrs.contains("100.64.0.1/10"), "{addrs}");

    crosses(&a, &b, "at first");

    // The device reads back as configured, with a handshake seconds ago (not in 1970).
    let observed = in_ns(&a.ns, move |rt| {
        rt.block_on(async {
            let o = da.observe().await.expect("observe");
            (da, o)
        })
    });
    let (da, seen) = observed;
    assert_eq!(seen.public_key.as_deref(), Some(public_of(&a.key).as_str()));
    assert_eq!(seen.port, 51820);
    let peer = &seen.peers[&public_of(&b.key)];
    assert_eq!(peer.allowed, vec![(b.tunnel.parse().expect("ip"), 32)]);
    assert_eq!(peer.keepalive, Some(25));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let at = peer.last_handshake.expect("a handshake");
    assert!(now.saturating_sub(at) < 30, "handshake at {at}, now {now}");

    // A peer changed in place (boringtun takes it out and in again; the kernel changes it):
    // the device still answers and still carries traffic.
    let mut again = peer_change(&b);
    again.set_key = false;
    again.port = None;
    again.modified = vec![public_of(&b.key)];
    let key = a.key.clone();
    let da = in_ns(&a.ns, move |rt| {
        rt.block_on(async {
            da.apply(&key, &again, 25).await.expect("change a peer");
            da.observe().await.expect("observe after the change");
            da
        })
    });
    crosses(&a, &b, "after the change");

    remove(&a, da);
    remove(&b, db);
    for s in [&a, &b] {
        let links = s.ns.ip(&["-br", "link"]);
        assert!(!links.contains(&s.ifname), "{links}");
        let sock = PathBuf::from("/var/run/wireguard").join(format!("{}.sock", s.ifname));
        assert!(!sock.exists(), "{} left", sock.display());
    }
    let running = |ifname: &str| {
        let out = std::process::Command::new("pgrep")
            .args(["-f", &format!("boringtun-cli.* {ifname}$")])
            .output()
            .expect("pgrep");
        text(&out.stdout)
    };
    let gone = shibafu_tests::wait_until(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(100),
        || running(&a.ifname).is_empty() && running(&b.ifname).is_empty(),
    );
    assert!(gone, "boringtun left running: {}", running(&a.ifname));
}

#[test]
fn userspace_devices_carry_traffic_read_back_and_go_away() {
    talk_through(BackendChoice::Userspace);
}

#[test]
fn kernel_devices_do_the_same_where_the_module_exists() {
    talk_through(BackendChoice::Kernel);
}
