//! The operations against an agent that answers one canned response (or none at all): what
//! CHECK reports through the whole plugin path, from the environment to the error code.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;

use serde_json::json;
use shibafu_overlay::api::{ApiError, ErrorKind};

use super::*;
use crate::error::TRY_AGAIN;

/// A temporary directory for an agent socket, removed on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new(tag: &str) -> SocketDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("sfcni-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        SocketDir(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("agent.sock")
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves one HTTP request on `socket` with `status` and `body`; gives the request line.
fn answer_once(socket: &PathBuf, status: u16, body: String) -> JoinHandle<String> {
    let listener = UnixListener::bind(socket).expect("bind the fake agent");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(&stream);
        let mut request = String::new();
        reader.read_line(&mut request).expect("request line");
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).expect("header");
            let header = header.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
        }
        let mut req_body = vec![0; length];
        reader.read_exact(&mut req_body).expect("body");
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        (&stream).write_all(response.as_bytes()).expect("respond");
        format!(
            "{} {}",
            request.trim_end(),
            String::from_utf8_lossy(&req_body)
        )
    })
}

/// A CHECK environment for container `c1`, `eth0`.
fn check_env() -> CniEnv {
    let vars: BTreeMap<&str, &str> = [
        ("CNI_COMMAND", "CHECK"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/c1"),
        ("CNI_IFNAME", "eth0"),
    ]
    .into();
    CniEnv::read(|k| vars.get(k).map(|v| v.to_string())).expect("env")
}

fn check_with(agent: &PathBuf) -> Result<Option<Value>, CniError> {
    let conf = json!({"cniVersion": "1.1.0", "name": "sf", "type": "shibafu",
        "network": "frontend", "agent": agent});
    let stdin = serde_json::to_vec(&conf).expect("json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(dispatch(&check_env(), &stdin))
}

#[test]
fn check_of_an_attachment_the_agent_does_not_have_is_code_3() {
    let dir = SocketDir::new("check3");
    let body = ApiError::new(
        ErrorKind::NotFound,
        "no CNI attachment of container c1 interface eth0 on this node",
    );
    let server = answer_once(
        &dir.socket(),
        404,
        serde_json::to_string(&body).expect("json"),
    );
    let e = check_with(&dir.socket()).expect_err("unknown attachment");
    let asked = server.join().expect("fake agent");
    assert!(asked.starts_with("POST /v1/cni/check "), "{asked}");
    assert!(asked.contains(r#""container_id":"c1""#), "{asked}");
    assert_eq!(e.code, UNKNOWN_CONTAINER, "{e:?}");
    assert!(e.msg.contains("no CNI attachment of container c1"), "{e:?}");
}

#[test]
fn check_without_an_agent_is_code_11() {
    let dir = SocketDir::new("check11");
    let e = check_with(&dir.socket()).expect_err("no socket");
    assert_eq!(e.code, TRY_AGAIN, "{e:?}");
    // A socket file nobody listens on (an agent that died) is the same.
    drop(UnixListener::bind(dir.socket()).expect("bind"));
    let e = check_with(&dir.socket()).expect_err("stale socket");
    assert_eq!(e.code, TRY_AGAIN, "{e:?}");
}
