//! WireGuard's configuration protocol over a userspace device's socket
//! (<https://www.wireguard.com/xplatform/#configuration-protocol>), spoken directly rather than
//! through wireguard-control's userspace backend, for what boringtun 0.7.1 does differently:
//! it answers `own_public_key=` where the protocol has `private_key=`; it reports the time
//! since the last handshake where the protocol has its time; and it cannot change a peer in
//! place (it panics and stops serving), so a changed peer is removed and added again; and a
//! peer section of a `set` inherits `remove=true` (and the other flags) from the section before
//! it, so removals go in a request of their own, before the additions. Every read and write
//! has a timeout: a stuck daemon fails a pass, not the agent.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wireguard_control::Key;

use super::plan::{DeviceChange, ObservedDevice, ObservedPeer};
use super::userspace::socket_path;

/// Longest wait for the daemon to take or answer a request.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Handshake times above this are Unix times (as the protocol says); below, time since it.
const EPOCH_FLOOR: u64 = 1_000_000_000;

fn hex(k: &Key) -> String {
    k.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_of_hex(h: &str) -> io::Result<Key> {
    Key::from_hex(h).map_err(|_| io::Error::other(format!("bad key {h:?} in the device's answer")))
}

fn connect(ifname: &str) -> io::Result<UnixStream> {
    let s = UnixStream::connect(socket_path(ifname))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    Ok(s)
}

/// Sends `request` and reads the answer's lines up to the empty one; an `errno` other than 0
/// is the error.
fn exchange(ifname: &str, request: &str) -> io::Result<Vec<String>> {
    let mut sock = connect(ifname)?;
    sock.write_all(request.as_bytes())?;
    let mut lines = Vec::new();
    for line in BufReader::new(sock).lines() {
        let line = line?;
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    match lines.iter().find_map(|l| l.strip_prefix("errno=")) {
        Some("0") | None => Ok(lines),
        Some(e) => Err(io::Error::other(format!(
            "the device refused the request (errno {e})"
        ))),
    }
}

/// Reads the device.
pub fn get(ifname: &str) -> io::Result<ObservedDevice> {
    parse(&exchange(ifname, "get=1\n\n")?, now_secs())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The device in the lines of a `get` answer, read at unix time `now`.
fn parse(lines: &[String], now: u64) -> io::Result<ObservedDevice> {
    let mut dev = ObservedDevice::default();
    let mut peer: Option<(String, ObservedPeer)> = None;
    for line in lines {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "own_public_key" => dev.public_key = Some(base64_of_hex(v)?.to_base64()),
            "private_key" => dev.public_key = Some(base64_of_hex(v)?.get_public().to_base64()),
            "listen_port" => dev.port = v.parse().unwrap_or(0),
            "public_key" => {
                if let Some((key, p)) = peer.take() {
                    dev.peers.insert(key, p);
                }
                peer = Some((base64_of_hex(v)?.to_base64(), ObservedPeer::default()));
            }
            _ => {
                let Some((_, p)) = peer.as_mut() else {
                    continue;
                };
                match k {
                    "endpoint" => p.endpoint = v.parse().ok(),
                    "allowed_ip" => {
                        if let Some((a, len)) = v.split_once('/') {
                            if let (Ok(a), Ok(len)) = (a.parse(), len.parse()) {
                                p.allowed.push((a, len));
                            }
                        }
                    }
                    "persistent_keepalive_interval" => {
                        p.keepalive = v.parse().ok().filter(|k| *k > 0);
                    }
                    "last_handshake_time_sec" => {
                        let t: u64 = v.parse().unwrap_or(0);
                        p.last_handshake = Some(if t > EPOCH_FLOOR {
                            t
                        } else {
                            now.saturating_sub(t)
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some((key, p)) = peer {
        dev.peers.insert(key, p);
    }
    Ok(dev)
}

/// Applies `change` (with `key` as the private key when it sets one).
pub fn set(ifname: &str, key: &Key, change: &DeviceChange, keepalive: u16) -> io::Result<()> {
    for r in requests(key, change, keepalive)? {
        exchange(ifname, &r)?;
    }
    Ok(())
}

/// The `set` requests of `change`: the key, the port and the removals (peers gone, and changed
/// peers taken out), then the additions (new and changed peers) in a second request.
fn requests(key: &Key, change: &DeviceChange, keepalive: u16) -> io::Result<Vec<String>> {
    let mut r = String::from("set=1\n");
    if change.set_key {
        r.push_str(&format!("private_key={}\n", hex(key)));
    }
    if let Some(port) = change.port {
        r.push_str(&format!("listen_port={port}\n"));
    }
    let peer_hex = |k: &str| {
        Key::from_base64(k)
            .map(|k| hex(&k))
            .map_err(|_| io::Error::other(format!("peer key {k:?} is not a WireGuard key")))
    };
    let modified: BTreeSet<&str> = change.modified.iter().map(String::as_str).collect();
    for k in change
        .remove
        .iter()
        .map(String::as_str)
        .chain(modified.iter().copied())
    {
        r.push_str(&format!("public_key={}\nremove=true\n", peer_hex(k)?));
    }
    r.push('\n');
    let mut out = Vec::new();
    if r != "set=1\n\n" {
        out.push(r);
    }
    if change.upsert.is_empty() {
        return Ok(out);
    }
    let mut r = String::from("set=1\n");
    for (k, p) in &change.upsert {
        r.push_str(&format!("public_key={}\n", peer_hex(k)?));
        r.push_str(&format!("endpoint={}\n", p.endpoint));
        r.push_str(&format!("persistent_keepalive_interval={keepalive}\n"));
        r.push_str("replace_allowed_ips=true\n");
        if let Some(t) = p.tunnel {
            r.push_str(&format!("allowed_ip={t}/32\n"));
        }
    }
    r.push('\n');
    out.push(r);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::DesiredPeer;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn boringtuns_answer_reads_as_meant() {
        let own = Key::generate_private().get_public();
        let peer = Key::generate_private().get_public();
        let answer = format!(
            "own_public_key={}\nlisten_port=51820\npublic_key={}\npersistent_keepalive_interval=25\nendpoint=10.0.0.2:51820\nallowed_ip=100.64.0.2/32\nlast_handshake_time_sec=12\nlast_handshake_time_nsec=5\nrx_bytes=1\nerrno=0",
            hex(&own),
            hex(&peer)
        );
        let dev = parse(&lines(&answer), 1_800_000_000).expect("parse");
        assert_eq!(dev.public_key, Some(own.to_base64()));
        assert_eq!(dev.port, 51820);
        let p = &dev.peers[&peer.to_base64()];
        assert_eq!(p.endpoint, Some("10.0.0.2:51820".parse().expect("addr")));
        assert_eq!(p.allowed, vec![("100.64.0.2".parse().expect("ip"), 32)]);
        assert_eq!(p.keepalive, Some(25));
        assert_eq!(
            p.last_handshake,
            Some(1_800_000_000 - 12),
            "time since, from boringtun"
        );
        // The protocol's own forms: a private key, and a handshake as a Unix time.
        let private = Key::generate_private();
        let answer = format!(
            "private_key={}\npublic_key={}\nlast_handshake_time_sec=1799999990\nlast_handshake_time_sec=0",
            hex(&private),
            hex(&peer)
        );
        let dev = parse(&lines(&answer), 1_800_000_000).expect("parse");
        assert_eq!(dev.public_key, Some(private.get_public().to_base64()));
        assert_eq!(
            dev.peers[&peer.to_base64()].last_handshake,
            Some(1_800_000_000)
        );
        assert!(parse(&lines("own_public_key=zz"), 0).is_err());
    }

    #[test]
    fn a_changed_peer_is_removed_and_added_again_in_one_request() {
        let key = Key::generate_private();
        let (a, b) = (
            Key::generate_private().get_public().to_base64(),
            Key::generate_private().get_public().to_base64(),
        );
        let peer = DesiredPeer {
            node: "n".into(),
            endpoint: "10.0.0.2:51820".parse().expect("addr"),
            tunnel: Some("100.64.0.2".parse().expect("ip")),
        };
        let change = DeviceChange {
            set_key: true,
            port: Some(51820),
            upsert: vec![(a.clone(), peer)],
            remove: vec![b.clone()],
            modified: vec![a.clone()],
        };
        let rs = requests(&key, &change, 25).expect("requests");
        assert_eq!(rs.len(), 2, "removals and additions apart: {rs:?}");
        let ha = hex(&Key::from_base64(&a).expect("key"));
        let hb = hex(&Key::from_base64(&b).expect("key"));
        let head = format!("set=1\nprivate_key={}\nlisten_port=51820\n", hex(&key));
        assert!(rs[0].starts_with(&head), "{}", rs[0]);
        assert!(
            rs[0].contains(&format!("public_key={hb}\nremove=true\n")),
            "{}",
            rs[0]
        );
        assert!(
            rs[0].contains(&format!("public_key={ha}\nremove=true\n")),
            "{}",
            rs[0]
        );
        assert!(!rs[1].contains("remove"), "{}", rs[1]);
        let add = format!("public_key={ha}\nendpoint=10.0.0.2:51820\n");
        assert!(rs[1].contains(&add), "{}", rs[1]);
        let allowed = "replace_allowed_ips=true\nallowed_ip=100.64.0.2/32\n";
        assert!(rs[1].contains(allowed), "{}", rs[1]);
        assert!(rs.iter().all(|r| r.ends_with("\n\n")));
        let add_only = DeviceChange {
            modified: vec![],
            remove: vec![],
            set_key: false,
            port: None,
            ..change
        };
        assert_eq!(requests(&key, &add_only, 25).expect("requests").len(), 1);
        let bad = DeviceChange {
            remove: vec!["nope".into()],
            ..DeviceChange::default()
        };
        assert!(requests(&key, &bad, 25).is_err());
    }
}
