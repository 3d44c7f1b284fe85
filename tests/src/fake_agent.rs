//! A fake agent API for the CLI's tests: a tiny HTTP/1.1 server on a unix socket that answers
//! with canned bodies of the agent API contract and records every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::{bin, describe, unique_name};

/// One request as the fake agent saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path with the query.
    pub path: String,
    /// Body text.
    pub body: String,
}

/// Answers a request: status and JSON body.
type Handler = Box<dyn FnMut(&Seen) -> (u16, String) + Send>;

/// A fake agent API on a unix socket, stopped and removed on drop.
pub struct FakeAgent {
    /// Its scratch directory (removed on drop).
    pub dir: PathBuf,
    socket: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAgent {
    /// Serves the handler's answers until dropped.
    pub fn start(mut handler: impl FnMut(&Seen) -> (u16, String) + Send + 'static) -> FakeAgent {
        let dir = std::env::temp_dir().join(unique_name("sfcli"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("agent.sock");
        let listener = UnixListener::bind(&socket).expect("bind fake agent");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let mut handler: Handler = Box::new(move |s: &Seen| handler(s));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                if let Some(req) = read_request(&stream) {
                    seen2.lock().expect("lock").push(req.clone());
                    let (status, body) = handler(&req);
                    respond(stream, status, &body);
                }
            }
        });
        FakeAgent {
            dir,
            socket,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The `shibafu` command pointed at this agent (and at no coordinator).
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("shibafu"));
        cmd.env("SHIBAFU_AGENT", &self.socket)
            .env("SHIBAFU_COORDINATOR", "http://127.0.0.1:1")
            .env_remove("SHIBAFU_LOG")
            .args(args);
        cmd
    }

    /// Runs the CLI with `args` (stdin closed); its output and a description of the run.
    pub fn run(&self, args: &[&str]) -> (Output, String) {
        let mut cmd = self.cli(args);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let text = describe(&cmd, &out);
        (out, text)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Every request so far as `METHOD PATH`.
    pub fn requests(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_request(stream: &UnixStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn respond(mut stream: UnixStream, status: u16, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}
