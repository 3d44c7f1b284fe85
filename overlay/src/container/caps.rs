//! Linux capabilities of container processes: names, Docker's default set, `--cap-add` /
//! `--cap-drop` resolution (pure), and dropping to a set in the calling process (bounding set,
//! then permitted, effective and inheritable, with no_new_privs) right before an exec.

use serde::{Deserialize, Serialize};

/// Capability names by number (`capability.h`, up to CAP_CHECKPOINT_RESTORE = 40).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// A set of capabilities, as a bit mask by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CapSet(pub u64);

impl Default for CapSet {
    /// Docker's default set.
    fn default() -> CapSet {
        let mut set = CapSet(0);
        for n in DEFAULT {
            set.0 |= 1 << number(n).unwrap_or(0);
        }
        set
    }
}

/// A capability name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?}: use names such as NET_ADMIN or CAP_NET_ADMIN, or ALL")]
pub struct UnknownCap(pub String);

fn number(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

impl CapSet {
    /// Every capability this table knows.
    pub const ALL: CapSet = CapSet((1 << NAMES.len()) - 1);

    /// The default set with `add` added, then `drop` removed (`ALL` stands for every one, so
    /// `--cap-drop ALL --cap-add NET_BIND_SERVICE` leaves only that one, as in Docker).
    pub fn resolve(add: &[String], drop: &[String]) -> Result<CapSet, UnknownCap> {
        let parse = |names: &[String]| -> Result<u64, UnknownCap> {
            names.iter().try_fold(0u64, |acc, n| {
                if n.trim().eq_ignore_ascii_case("ALL") {
                    return Ok(CapSet::ALL.0);
                }
                number(n)
                    .map(|i| acc | 1 << i)
                    .ok_or_else(|| UnknownCap(n.clone()))
            })
        };
        let (add, drop) = (parse(add)?, parse(drop)?);
        if drop == CapSet::ALL.0 {
            return Ok(CapSet(add));
        }
        Ok(CapSet((CapSet::default().0 | add) & !drop))
    }

    /// Does the set hold capability number `cap`?
    pub fn has(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    /// The names in the set, by number.
    pub fn names(self) -> Vec<&'static str> {
        (0..NAMES.len() as u32)
            .filter(|&i| self.has(i))
            .map(|i| NAMES[i as usize])
            .collect()
    }
}

/// Drops the calling thread (and what it execs) to `set`: sets no_new_privs, removes every other
/// capability up to `last_cap` from the bounding set, then sets permitted, effective and
/// inheritable to `set`. A root process exec'd afterwards gets exactly `set`. Only plain syscalls:
/// safe to call in a forked child before exec. Returns the failing step.
///
/// # Safety
/// Changes the calling thread's credentials; call it in the process that is about to exec.
pub unsafe fn drop_to(set: CapSet, last_cap: u32) -> Result<(), &'static str> {
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err("prctl(PR_SET_NO_NEW_PRIVS)");
        }
        narrow_bounding(set, last_cap)?;
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let word = |w: u64| Data {
            effective: w as u32,
            permitted: w as u32,
            inheritable: w as u32,
        };
        let data = [word(set.0), word(set.0 >> 32)];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err("capset");
        }
    }
    Ok(())
}

/// Removes every capability not in `set` (up to `last_cap`) from the calling thread's bounding
/// set: nothing it execs can hold more. The container's PID 1 does this too, so its bounding set
/// tells later entries (`exec`, command checks) the container's set.
///
/// # Safety
/// Changes the calling thread's credentials.
pub unsafe fn narrow_bounding(set: CapSet, last_cap: u32) -> Result<(), &'static str> {
    for cap in 0..=last_cap {
        // SAFETY: prctl with plain integer arguments.
        if !set.has(cap) && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            return Err("prctl(PR_CAPBSET_DROP)");
        }
    }
    Ok(())
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`), or the
/// table's when it cannot be read. Read it before forking.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NAMES.len() as u32 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_is_dockers() {
        let d = CapSet::default();
        assert_eq!(d.names().len(), 14);
        assert!(d.has(13), "NET_RAW (ping)");
        assert!(d.has(10), "NET_BIND_SERVICE (port 80)");
        for gone in [12, 16, 19, 21] {
            assert!(
                !d.has(gone),
                "no NET_ADMIN, SYS_MODULE, SYS_PTRACE, SYS_ADMIN"
            );
        }
    }

    #[test]
    fn add_and_drop_like_docker() {
        let s = CapSet::resolve(
            &names(&["net_admin", "CAP_SYS_PTRACE"]),
            &names(&["NET_RAW"]),
        )
        .expect("valid");
        assert!(s.has(12) && s.has(19) && !s.has(13));
        let only = CapSet::resolve(&names(&["NET_BIND_SERVICE"]), &names(&["ALL"])).expect("ok");
        assert_eq!(only.names(), ["NET_BIND_SERVICE"]);
        assert_eq!(
            CapSet::resolve(&names(&["ALL"]), &[]).expect("all"),
            CapSet::ALL
        );
        assert_eq!(CapSet::resolve(&[], &[]).expect("none"), CapSet::default());
        let e = CapSet::resolve(&names(&["NET_ADMINN"]), &[]).expect_err("typo");
        assert!(e.to_string().contains("NET_ADMINN"), "{e}");
    }
}
