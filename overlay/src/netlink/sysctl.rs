//! The few host sysctls the dataplane needs (IP forwarding, br_netfilter's switches, IPv6 off
//! on the host ends of container veths), read and written in the host namespace (paths under
//! /proc/sys/net resolve in the namespace of the thread that opens them).

use std::path::{Path, PathBuf};

use super::NetlinkError;
use crate::netns;

/// IPv4 forwarding switch.
pub(crate) const FORWARD_V4: &str = "/proc/sys/net/ipv4/ip_forward";
/// IPv6 forwarding switch (all interfaces).
pub(crate) const FORWARD_V6: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// br_netfilter's switches: do bridged IPv4, IPv6 and ARP frames go through the netfilter hooks?
/// (Per namespace; absent while the module is not loaded.)
pub(crate) const BRIDGE_NETFILTER: [&str; 3] = [
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
    "/proc/sys/net/bridge/bridge-nf-call-arptables",
];

/// Runs `f` in `netns` (`None` = the caller's namespace, on the caller's thread).
async fn in_netns<T, F>(netns: Option<&Path>, f: F) -> Result<T, NetlinkError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Ok(match netns {
        None => f(),
        Some(p) => netns::run_in_async(p, f).await?,
    })
}

fn read_now(key: &str) -> Result<bool, std::io::Error> {
    match std::fs::read_to_string(key) {
        Ok(s) => Ok(s.trim() == "1"),
        // IPv6 disabled on this kernel: forwarding is simply off.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads 0/1 sysctls in `netns` (`None` = the caller's namespace), entering it once.
pub(crate) async fn read_flags<const N: usize>(
    netns: Option<&Path>,
    keys: [&'static str; N],
) -> Result<[bool; N], NetlinkError> {
    let read_all = move || -> Result<[bool; N], (&'static str, std::io::Error)> {
        let mut out = [false; N];
        for (slot, key) in out.iter_mut().zip(keys) {
            *slot = read_now(key).map_err(|e| (key, e))?;
        }
        Ok(out)
    };
    in_netns(netns, read_all)
        .await?
        .map_err(|(key, source)| NetlinkError::Sysctl {
            key: PathBuf::from(key),
            source,
        })
}

/// Sets a 0/1 sysctl to 1 in `netns` (`None` = the caller's namespace).
pub(crate) async fn enable_flag(
    netns: Option<&Path>,
    key: &'static str,
) -> Result<(), NetlinkError> {
    let write = move || std::fs::write(key, b"1");
    in_netns(netns, write)
        .await?
        .map_err(|source| NetlinkError::Sysctl {
            key: PathBuf::from(key),
            source,
        })
}

/// Sets 0/1 sysctls to 0 in `netns` (`None` = the caller's namespace); absent keys are skipped.
pub(crate) async fn disable_flags(
    netns: Option<&Path>,
    keys: &[&'static str],
) -> Result<(), NetlinkError> {
    let keys = keys.to_vec();
    let write_all = move || -> Result<(), (&'static str, std::io::Error)> {
        for key in keys {
            match std::fs::write(key, b"0") {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err((key, e)),
                _ => {}
            }
        }
        Ok(())
    };
    in_netns(netns, write_all)
        .await?
        .map_err(|(key, source)| NetlinkError::Sysctl {
            key: PathBuf::from(key),
            source,
        })
}

/// Turns IPv6 off on host link `name` in `netns` (`None` = the caller's namespace) before it is
/// up: false where that cannot be done (a kernel without IPv6, a read-only /proc/sys, no
/// permission).
pub(crate) async fn disable_ipv6(netns: Option<&Path>, name: &str) -> Result<bool, NetlinkError> {
    let key = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"));
    let path = key.clone();
    match in_netns(netns, move || std::fs::write(&path, b"1")).await? {
        Ok(()) => Ok(true),
        Err(e) if cannot_write(&e) => Ok(false),
        Err(source) => Err(NetlinkError::Sysctl { key, source }),
    }
}

/// A sysctl write that fails for what the host allows, not for what was asked.
fn cannot_write(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{NotFound, PermissionDenied, ReadOnlyFilesystem};
    matches!(e.kind(), NotFound | PermissionDenied | ReadOnlyFilesystem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn only_what_the_host_forbids_falls_back() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::PermissionDenied,
            ErrorKind::ReadOnlyFilesystem,
        ] {
            assert!(cannot_write(&Error::from(kind)), "{kind:?}");
        }
        for kind in [
            ErrorKind::InvalidInput,
            ErrorKind::Interrupted,
            ErrorKind::Other,
        ] {
            assert!(!cannot_write(&Error::from(kind)), "{kind:?}");
        }
        assert!(cannot_write(&Error::from_raw_os_error(libc::EROFS)));
        assert!(!cannot_write(&Error::from_raw_os_error(libc::EINVAL)));
    }

    #[tokio::test]
    async fn a_link_that_is_not_there_is_not_an_error() {
        let name = "sft-no-such-link";
        assert!(!disable_ipv6(None, name).await.expect("no error"));
    }
}
