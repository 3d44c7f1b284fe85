//! A sealed in-memory copy of the running binary, to run from when entering a container whose
//! files are its own (`--rootfs`): a command there that is a script naming `/proc/self/exe` as
//! its interpreter makes the entering binary run inside the container, where another of its
//! processes could reopen that binary for writing once nothing runs it (CVE-2019-5736). A
//! sealed copy cannot be written, and the file on disk is never exposed.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A memfd holding a copy of `/proc/self/exe`, sealed against writes, growth and shrinking.
/// Close-on-exec: exec it through `/proc/self/fd/N` (the path is resolved before the exec
/// closes it).
pub fn copy_of_self() -> io::Result<OwnedFd> {
    copy_of(std::path::Path::new("/proc/self/exe"))
}

/// A sealed memfd copy of the binary at `path` (see [`copy_of_self`]).
pub fn copy_of(path: &std::path::Path) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a static name; the descriptor is owned at once.
    let fd = unsafe {
        libc::memfd_create(
            c"shibafu-enter".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut src = File::open(path)?;
    let mut dst = File::from(fd.try_clone()?);
    io::copy(&mut src, &mut dst)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Does the process `pid` see the same root directory as this one (a container without a root
/// filesystem of its own)?
pub fn shares_root(pid: i32) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata("/proc/self/root")?,
        std::fs::metadata(format!("/proc/{pid}/root"))?,
    );
    Ok((a.dev(), a.ino()) == (b.dev(), b.ino()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_copy_is_the_binary_and_cannot_be_written() {
        let fd = copy_of_self().expect("copy");
        let size = std::fs::metadata("/proc/self/exe").expect("exe").len();
        let mut f = File::from(fd);
        assert_eq!(f.metadata().expect("memfd").len(), size);
        // SAFETY: fcntl on a descriptor we own.
        let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
        assert!(seals & libc::F_SEAL_WRITE != 0, "seals {seals:#x}");
        assert!(f.write_all(b"x").is_err(), "a sealed copy takes no write");
        assert!(shares_root(std::process::id() as i32).expect("own root"));
    }
}
