//! Namespaces of CNI attachments given as `/proc/PID/ns/net`, pinned per container id under
//! `<state-dir>/netns/cni/<id>` (a PID can be reused; a pin cannot), and the checks every
//! namespace and container id a runtime gives go through. A pin lives while some workload entry
//! carries its container id: it is released after the container's last DEL (whatever the detach
//! answered) and swept by GC when nothing refers to it.

use std::path::{Path, PathBuf};

use shibafu_overlay::api::{ApiError, ErrorKind};
use shibafu_overlay::container::netns_file::{self, is_pinned};
use tracing::warn;

use super::ApiFailure;
use crate::registry::LocalWorkloads;

fn fail(kind: ErrorKind, msg: String) -> ApiFailure {
    ApiFailure(ApiError::new(kind, msg))
}

/// A container id as the CNI spec allows it (letters, digits, `_`, `.`, `-`, starting with a
/// letter or digit, at most 255 long): it names a pin file, so nothing else may pass.
pub fn check_id(id: &str) -> Result<(), ApiFailure> {
    if shibafu_overlay::api::valid_container_id(id) {
        Ok(())
    } else {
        Err(fail(
            ErrorKind::Invalid,
            format!("container id {id:?}: only letters, digits, '_', '.' and '-'"),
        ))
    }
}

/// Refuses what is not a network namespace other than the agent's own (`/proc/self/ns/net`
/// names the node's namespace: an interface and default route there would hijack the host).
pub fn check_netns(given: &Path) -> Result<(), ApiFailure> {
    let what = given.display();
    if !netns_file::is_net_ns(given) {
        return Err(fail(
            ErrorKind::NotFound,
            format!("CNI_NETNS {what}: not a network namespace"),
        ));
    }
    match netns_file::same(given, Path::new("/proc/self/ns/net")) {
        Ok(false) => Ok(()),
        Ok(true) => Err(fail(
            ErrorKind::NotFound,
            format!("CNI_NETNS {what} is the node's own namespace, not a container's"),
        )),
        Err(e) => Err(fail(ErrorKind::NotFound, format!("CNI_NETNS {what}: {e}"))),
    }
}

/// The namespace to attach, and whether this call pinned it: a `/proc/PID/ns/net` is pinned as
/// `<pins>/<id>` first, or the pin a previous ADD of the container made is used when it holds
/// the same namespace; anything else (a bind mount under /var/run/netns) is used as given.
pub fn pin(pins: &Path, given: &Path, id: &str) -> Result<(PathBuf, bool), ApiFailure> {
    if !given.starts_with("/proc") {
        return Ok((given.to_path_buf(), false));
    }
    let path = pins.join(id);
    let failed = |e: String| {
        fail(
            ErrorKind::Internal,
            format!("pinning {}: {e}", given.display()),
        )
    };
    if is_pinned(&path) {
        return match netns_file::same(given, &path) {
            Ok(true) => Ok((path, false)),
            Ok(false) => Err(fail(
                ErrorKind::Duplicate,
                format!(
                    "container {id} is attached already in another namespace than {}",
                    given.display()
                ),
            )),
            Err(e) => Err(failed(e.to_string())),
        };
    }
    std::fs::create_dir_all(pins)
        .map_err(|e| e.to_string())
        .and_then(|()| netns_file::pin(given, &path).map_err(|e| e.to_string()))
        .map_err(failed)?;
    Ok((path, true))
}

/// Removes the pin of container `id` unless a workload of `all` still carries that id.
pub fn release(pins: &Path, id: &str, all: &LocalWorkloads) {
    if all.values().any(|e| e.cni.as_deref() == Some(id)) {
        return;
    }
    remove(&pins.join(id));
}

/// Removes every pin no workload of `all` carries the id of (left by a handler that was cut
/// off, say); a pin being made right now is safe: callers hold the CNI lock.
pub fn sweep(pins: &Path, all: &LocalWorkloads) {
    let Ok(dir) = std::fs::read_dir(pins) else {
        return;
    };
    for f in dir.flatten() {
        let id = f.file_name().to_string_lossy().into_owned();
        release(pins, &id, all);
    }
}

fn remove(path: &Path) {
    if !path.exists() {
        return;
    }
    if let Err(e) = netns_file::remove(path) {
        warn!(netns = %path.display(), error = %e, "cannot remove a namespace pin");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_cannot_name_other_files() {
        for ok in ["abc", "0123456789abcdef", "pod_1.x-y"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in ["", "..", ".", "a/b", "-x", "a b", long.as_str()] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_nodes_own_namespace_is_refused() {
        let e = check_netns(Path::new("/proc/self/ns/net")).expect_err("own netns");
        assert!(e.0.error.contains("node's own namespace"), "{}", e.0.error);
        for other in ["/etc/hostname", "/proc/self/ns/pid", "/proc/self/ns/mnt"] {
            let e = check_netns(Path::new(other)).expect_err("not a network namespace");
            assert!(
                e.0.error.contains("not a network namespace"),
                "{other}: {}",
                e.0.error
            );
        }
    }
}
