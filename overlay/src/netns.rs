//! Running code inside another network namespace, on a dedicated thread that enters it.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so the thread is a throwaway: the
//! caller's threads (async runtime workers) never move. Sockets created there stay bound to that
//! namespace after the thread ends, and children spawned there start in it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Errors of entering a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file cannot be opened (no such namespace, or no permission).
    #[error("network namespace {}: {source}; is the path a live namespace?", path.display())]
    Open {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// setns(2) refused (not a network namespace, or missing CAP_SYS_ADMIN).
    #[error("cannot enter network namespace {}: {source}", path.display())]
    Enter {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The helper thread could not start or panicked.
    #[error("network namespace {}: helper thread failed", path.display())]
    Thread {
        /// The path.
        path: PathBuf,
    },
}

fn enter(path: &Path) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: setns on a valid open fd; it changes only this (dedicated) thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(NetnsError::Enter {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn spawn<T, F>(
    path: &Path,
    f: F,
    done: impl FnOnce(Result<T, NetnsError>) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, NetnsError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("sf-netns".into())
        .spawn(move || done(enter(&owned).map(|()| f())))
        .map_err(|_| NetnsError::Thread {
            path: path.to_path_buf(),
        })
}

/// Runs `f` inside the network namespace at `path` and waits for it (blocking).
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = spawn(path, f, move |r| {
        let _ = tx.send(r);
    })?;
    let out = rx.recv().map_err(|_| NetnsError::Thread {
        path: path.to_path_buf(),
    });
    let _ = handle.join();
    out?
}

/// Runs `f` inside the network namespace at `path` without blocking the async caller.
pub async fn run_in_async<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    spawn(path, f, move |r| {
        let _ = tx.send(r);
    })?;
    rx.await.map_err(|_| NetnsError::Thread {
        path: path.to_path_buf(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_namespace_is_a_clear_error() {
        let err = run_in(Path::new("/nonexistent/shibafu-netns"), || 1).expect_err("must fail");
        assert!(matches!(err, NetnsError::Open { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/shibafu-netns"));
    }

    #[test]
    fn a_regular_file_is_refused() {
        let f = std::env::temp_dir().join(format!("sf-netns-test-{}", std::process::id()));
        std::fs::write(&f, b"x").expect("write");
        let err = run_in(&f, || 1).expect_err("must fail");
        let _ = std::fs::remove_file(&f);
        assert!(matches!(err, NetnsError::Enter { .. }), "{err}");
    }
}
