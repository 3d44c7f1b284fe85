//! A few threads that run short jobs inside other network namespaces: each enters the job's
//! namespace, runs it, and goes back to its own, so a job costs two `setns(2)` calls rather
//! than a thread. The queue is bounded: when it is full a job is refused, not delayed.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tracing::error;

use crate::netns::NetnsError;

/// A job: runs with the thread's home namespace at hand; false when it could not go back.
type Job = Box<dyn FnOnce(&File) -> bool + Send>;

/// Why a job did not run.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A worker thread could not be started.
    #[error("cannot start a namespace worker thread: {0}")]
    Start(std::io::Error),
    /// Every worker is busy and the queue is full; the job was not run.
    #[error("namespace workers busy ({0} jobs queued); skipped")]
    Busy(usize),
    /// The workers are gone (the pool is shutting down, or none could return home).
    #[error("namespace workers stopped")]
    Stopped,
    /// The job's namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// The pool's handle; dropping every clone stops the workers once the queue is empty.
#[derive(Clone)]
pub struct NetnsPool {
    tx: SyncSender<Job>,
    queue: usize,
}

impl NetnsPool {
    /// Starts `threads` workers (at least one) with room for `queue` waiting jobs.
    pub fn start(threads: usize, queue: usize) -> Result<NetnsPool, PoolError> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("sf-netns-{i}"))
                .spawn(move || worker(&rx))
                .map_err(PoolError::Start)?;
        }
        Ok(NetnsPool { tx, queue })
    }

    /// Runs `f` inside the network namespace at `netns` on a worker and waits for it.
    pub async fn run<T, F>(&self, netns: &Path, f: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        let path = netns.to_path_buf();
        let job: Job = Box::new(move |home| {
            let (out, home_again) = inside(home, path, f);
            let _ = done.send(out);
            home_again
        });
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => PoolError::Busy(self.queue),
            TrySendError::Disconnected(_) => PoolError::Stopped,
        })?;
        answer.await.map_err(|_| PoolError::Stopped)?
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    let home = match File::open("/proc/thread-self/ns/net") {
        Ok(f) => f,
        Err(e) => {
            error!(error = %e, "namespace worker cannot hold its own namespace; it stops");
            return;
        }
    };
    loop {
        let job = match rx.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if !job(&home) {
            error!("namespace worker could not return to its own namespace; it stops");
            return;
        }
    }
}

fn setns(file: &File) -> std::io::Result<()> {
    // SAFETY: setns on a valid open fd; it changes only the calling (worker) thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs `f` in `path`'s namespace; the result, and whether the thread is home again.
fn inside<T>(home: &File, path: PathBuf, f: impl FnOnce() -> T) -> (Result<T, PoolError>, bool) {
    let target = match File::open(&path) {
        Ok(t) => t,
        Err(source) => return (Err(NetnsError::Open { path, source }.into()), true),
    };
    if let Err(source) = setns(&target) {
        return (Err(NetnsError::Enter { path, source }.into()), true);
    }
    let out = f();
    (Ok(out), setns(home).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_reported_and_the_worker_stays() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let pool = NetnsPool::start(1, 4).expect("pool");
        rt.block_on(async {
            for _ in 0..2 {
                let err = pool
                    .run(Path::new("/nonexistent/sf-pool"), || 1)
                    .await
                    .expect_err("no such namespace");
                assert!(
                    matches!(err, PoolError::Netns(NetnsError::Open { .. })),
                    "{err}"
                );
            }
        });
    }
}
