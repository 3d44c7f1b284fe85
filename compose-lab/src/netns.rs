//! Network namespaces of the lab: create and delete them, run `ip` inside them, run code or
//! processes inside them, and find every process living in them.
//!
//! Nothing here touches the caller's own namespace: links are created with `ip -n` directly in
//! lab namespaces (a veth pair is born with each end already in its lab namespace).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// Where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Path of a named namespace.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Creates a named namespace with `lo` up.
pub fn add(name: &str) -> anyhow::Result<()> {
    crate::procs::run_ok(Command::new("ip").args(["netns", "add", name]))?;
    ip(name, &["link", "set", "lo", "up"])
}

/// Deletes a named namespace if it exists.
pub fn del(name: &str) -> anyhow::Result<()> {
    if path(name).exists() {
        crate::procs::run_ok(Command::new("ip").args(["netns", "del", name]))?;
    }
    Ok(())
}

/// Names of existing namespaces starting with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(dir) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Runs `ip -n NS ARGS...` and fails with its stderr.
pub fn ip(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    crate::procs::run_ok(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// Runs `f` on a fresh thread that has entered namespace `ns` (only that thread moves).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let file = File::open(path(ns)).with_context(|| format!("opening namespace {ns}"))?;
    let ns_name = ns.to_string();
    std::thread::spawn(move || -> anyhow::Result<T> {
        // SAFETY: setns on this thread with a descriptor that stays open for the call.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("entering namespace {ns_name}"));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in namespace {ns} panicked"))?
}

/// Sets a `net.*` sysctl inside a namespace (`key` like `net/ipv4/ip_forward`).
pub fn sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let file = Path::new("/proc/sys").join(key);
    let value = value.to_string();
    let shown = file.clone();
    in_netns(ns, move || fs::write(&file, value))?
        .with_context(|| format!("setting {} in namespace {ns}", shown.display()))
}

/// Identity of a network namespace: (device, inode) of its nsfs file.
pub type NsId = (u64, u64);

/// The identity of the namespace pinned at `path`, if it is one.
pub fn ns_id(path: &Path) -> Option<NsId> {
    let m = fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

/// Mount points of namespaces (nsfs) at or under `dir`, deepest first.
pub fn nsfs_mounts_under(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|info| nsfs_mounts_in(&info, dir))
        .unwrap_or_default()
}

/// [`nsfs_mounts_under`] on the text of a mountinfo file.
fn nsfs_mounts_in(info: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep + 1)?;
            let mount_point = PathBuf::from(unescape(fields.get(4)?));
            (*fstype == "nsfs" && mount_point.starts_with(dir)).then_some(mount_point)
        })
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Lazily unmounts a mount point (a pinned namespace) and removes the file.
pub fn unmount(path: &Path) -> anyhow::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .with_context(|| format!("path {} has a NUL byte", path.display()))?;
    // SAFETY: umount2 with a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e).with_context(|| format!("unmounting {}", path.display()));
        }
    }
    let _ = fs::remove_file(path);
    Ok(())
}

/// Pids of every process whose network namespace is one of `ids`.
pub fn pids_in(ids: &BTreeSet<NsId>) -> Vec<u32> {
    if ids.is_empty() {
        return Vec::new();
    }
    all_pids()
        .into_iter()
        .filter(|pid| {
            ns_id(&PathBuf::from(format!("/proc/{pid}/ns/net"))).is_some_and(|id| ids.contains(&id))
        })
        .collect()
}

/// Every pid in /proc.
pub fn all_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pinned_namespaces_under_a_directory_deepest_first() {
        let info = "\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
610 25 0:4 net:[4026532301] /run/shibafu-lab/x/nodes/node1/netns rw shared:5 - nsfs nsfs rw
611 25 0:4 net:[4026532302] /run/shibafu-lab/x/nodes/node1/c/web\\040a/netns rw - nsfs nsfs rw
612 25 0:4 net:[4026532303] /run/netns/sf-x-node1 rw shared:5 - nsfs nsfs rw
613 25 0:4 net:[4026532304] /run/shibafu-lab/xy/netns rw shared:5 - nsfs nsfs rw
614 25 0:40 / /run/shibafu-lab/x/tmp rw - tmpfs tmpfs rw
";
        let found = nsfs_mounts_in(info, Path::new("/run/shibafu-lab/x"));
        assert_eq!(
            found,
            [
                PathBuf::from("/run/shibafu-lab/x/nodes/node1/c/web a/netns"),
                PathBuf::from("/run/shibafu-lab/x/nodes/node1/netns"),
            ]
        );
    }
}
