//! Persistent network namespaces as files (what `ip netns add` does): a namespace bind-mounted on
//! a file outlives the processes in it, so networks can be attached before the container starts.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::ContainerError;

fn cstr(p: &Path) -> Result<std::ffi::CString, ContainerError> {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| ContainerError::InvalidCommand(format!("path {} has a NUL byte", p.display())))
}

/// Creates a new network namespace and pins it on `path` (created, parent must exist).
/// Fails if `path` already holds a namespace.
pub fn create(path: &Path) -> Result<(), ContainerError> {
    if is_pinned(path) {
        return Err(ContainerError::Sys {
            what: format!("create netns {}", path.display()),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    File::create(path).map_err(|e| ContainerError::Sys {
        what: format!("create {}", path.display()),
        source: e,
    })?;
    let target = cstr(path)?;
    // unshare(CLONE_NEWNET) changes the calling thread only: do it on a throwaway thread so the
    // caller (an async runtime worker) keeps its namespace.
    let res = std::thread::spawn(move || -> Result<(), ContainerError> {
        // SAFETY: plain syscalls on this thread; the strings outlive the calls.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(ContainerError::last_os("unshare(CLONE_NEWNET)"));
            }
            loopback_up()?;
            let src = std::ffi::CString::new(format!("/proc/self/task/{}/ns/net", libc::gettid()))
                .map_err(|_| ContainerError::InvalidCommand("ns path".into()))?;
            if libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(ContainerError::last_os("bind-mount netns"));
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| ContainerError::InvalidCommand("netns thread panicked".into()))?;
    if res.is_err() {
        let _ = fs::remove_file(path);
    }
    res
}

/// Sets `lo` up in the calling thread's network namespace (a new namespace has it down).
///
/// # Safety
/// Plain socket and ioctl calls; call on the thread whose namespace is meant.
unsafe fn loopback_up() -> Result<(), ContainerError> {
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(ContainerError::last_os("socket for lo"));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let ok = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0 && {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) == 0
        };
        let err = ContainerError::last_os("set lo up");
        libc::close(fd);
        if ok {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// Pins the namespace `from` refers to (a `/proc/PID/ns/net` file, say) on `path` (created;
/// its parent must exist), so it stays reachable by that path after the process exits and a
/// reused PID can never point it at another namespace. Fails if `path` holds a namespace.
pub fn pin(from: &Path, path: &Path) -> Result<(), ContainerError> {
    if is_pinned(path) {
        return Err(ContainerError::Sys {
            what: format!("pin netns on {}", path.display()),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    File::create(path).map_err(|e| ContainerError::Sys {
        what: format!("create {}", path.display()),
        source: e,
    })?;
    let (src, target) = (cstr(from)?, cstr(path)?);
    // SAFETY: mount(2) with valid C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = ContainerError::last_os(format!("bind-mount {}", from.display()));
        let _ = fs::remove_file(path);
        return Err(err);
    }
    Ok(())
}

/// True if the namespace files `a` and `b` refer to the same namespace (same nsfs inode).
pub fn same(a: &Path, b: &Path) -> Result<bool, ContainerError> {
    use std::os::unix::fs::MetadataExt;
    let stat = |p: &Path| {
        fs::metadata(p).map_err(|e| ContainerError::Sys {
            what: format!("stat {}", p.display()),
            source: e,
        })
    };
    let (a, b) = (stat(a)?, stat(b)?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

/// True if `path` refers to a network namespace (an nsfs file of type CLONE_NEWNET: not a PID or
/// mount namespace's file, which [`is_pinned`] would also take).
pub fn is_net_ns(path: &Path) -> bool {
    /// `_IO(0xb7, 0x3)`: the namespace type of an nsfs file.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    let Ok(f) = File::open(path) else {
        return false;
    };
    // SAFETY: an ioctl without argument on a descriptor we own.
    unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) == libc::CLONE_NEWNET }
}

/// True if `path` is a pinned network namespace (a bind mount of an nsfs inode).
pub fn is_pinned(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    // SAFETY: fstatfs on an open fd into a zeroed struct.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::fstatfs(f.as_raw_fd(), &mut st) == 0 && st.f_type as i64 == libc::NSFS_MAGIC
    }
}

/// Unpins and removes a namespace file; the namespace itself goes when its last user exits.
/// Missing files are fine (removal is idempotent).
pub fn remove(path: &Path) -> Result<(), ContainerError> {
    if !path.exists() {
        return Ok(());
    }
    let p = cstr(path)?;
    // SAFETY: umount2 with a valid C string; EINVAL means it was not mounted, which is fine.
    let rc = unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(ContainerError::Sys {
                what: format!("umount {}", path.display()),
                source: err,
            });
        }
    }
    fs::remove_file(path).map_err(|e| ContainerError::Sys {
        what: format!("remove {}", path.display()),
        source: e,
    })
}
