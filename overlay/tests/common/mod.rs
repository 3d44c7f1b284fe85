//! A real etcd server for integration tests: free loopback ports, a temp data dir, killed on drop.
//! Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shibafu_overlay::store::EtcdStore;
use shibafu_overlay::tls::TlsFiles;

const ETCD_BIN: &str = "etcd";

/// One etcd process; stop/start keep its data dir and ports, so clients can reconnect.
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// The server's certificate when it serves TLS and requires client certificates.
    tls: Option<TlsFiles>,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Etcd {
    /// Starts a fresh single-member etcd and waits until it accepts clients.
    pub fn start() -> Etcd {
        Etcd::start_with(None)
    }

    /// Starts a fresh etcd that serves TLS with `server` and takes only clients with a
    /// certificate of `server.ca` (`--client-cert-auth`).
    pub fn start_tls(server: TlsFiles) -> Etcd {
        Etcd::start_with(Some(server))
    }

    fn start_with(tls: Option<TlsFiles>) -> Etcd {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shibafu-etcd-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create etcd temp dir");
        let mut etcd = Etcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            tls,
        };
        etcd.resume();
        etcd
    }

    /// The client URL, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The client URL as the one-element list `EtcdStore::connect` takes.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    /// Connects a new store client. etcd takes its client port before it serves requests (a
    /// connection may be reset while it elects itself), so this retries for up to 10 s.
    pub async fn store(&self) -> EtcdStore {
        self.store_with(None).await
    }

    /// [`Etcd::store`] with a client certificate.
    pub async fn store_with(&self, tls: Option<&TlsFiles>) -> EtcdStore {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match EtcdStore::connect(&self.endpoints(), tls).await {
                Ok(store) => return store,
                Err(e) if Instant::now() >= deadline => panic!("connect to the test etcd: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Kills the server (SIGKILL), keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and data, and waits until it accepts clients.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd is already running");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("etcd log file");
        let mut cmd = Command::new(ETCD_BIN);
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert)
                .arg("--key-file")
                .arg(&t.key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", "test"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &self.endpoint()])
            .args(["--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{ETCD_BIN}` ({e}): these tests need an etcd 3.4+ server binary \
                     on PATH; install it with deploy/install-deps.sh (Debian package etcd-server)"
                )
            });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "etcd exited at start ({status}); see {}",
                        self.dir.join("etcd.log").display()
                    );
                }
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.client_port)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "etcd did not start within 15 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
