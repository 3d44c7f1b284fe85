//! Bad input at every route of the agent's socket API: each answer is a 4xx with the shared JSON error body, bodies are read only up to the limit, and nothing is attached.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;
use shibafu_overlay::container::ShimContainerHost;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::tests::{FakeStore, NoHost};
use super::*;
use crate::runtime::RuntimeActor;

/// A scratch directory removed on drop, also when a test fails.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The API served on a socket in a scratch directory, over the fakes of the API tests.
fn with_api<F: Future<Output = ()>>(tag: &str, test: impl FnOnce(PathBuf, Arc<AtomicUsize>) -> F) {
    let dir = std::env::temp_dir().join(format!("sf-agent-bad-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let _scratch = Scratch(dir.clone());
    let sock = dir.join("agent.sock");
    actix::System::new().block_on(async {
        let host = NoHost::default();
        let attaches = host.attaches.clone();
        let host = host.start();
        let fake = FakeStore.start();
        let net = NetworkRecipients {
            attach: host.clone().recipient(),
            detach: host.recipient(),
        };
        let containers = ShimContainerHost::new(dir.clone(), "/bin/false".into());
        let runtime = RuntimeActor::new(Arc::new(containers), net.clone()).start();
        let router = router(ApiState {
            status: fake.clone().recipient(),
            networks: fake.clone().recipient(),
            dns_trace: fake.clone().recipient(),
            tunnel: fake.clone().recipient(),
            cni: CniLinks {
                serial: std::sync::Arc::default(),
                pins: dir.join("pins"),
                workloads: fake.clone().recipient(),
                check: fake.clone().recipient(),
                firewall: fake.recipient(),
            },
            certificate: None,
            network: net,
            runtime: RuntimeRecipients::of(&runtime),
        });
        let listener = bind(&sock).expect("bind");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = actix_rt::spawn(serve(listener, router, async {
            let _ = rx.await;
        }));
        test(sock.clone(), attaches).await;
        let _ = tx.send(());
        server.await.expect("join").expect("serve");
    });
}

/// One answer: status, whether it says it is JSON, the body as JSON (null if it is not).
struct Answer {
    status: u16,
    json: bool,
    body: Value,
}

/// Reads one HTTP/1.1 answer to the end of the connection.
async fn answer(mut s: impl tokio::io::AsyncRead + Unpin, what: &str) -> Answer {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in 10 s (is the body read whole?)"))
        .expect("read");
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{what}: not HTTP: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let json = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("content-type: application/json")
    });
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    Answer { status, json, body }
}

/// Sends `target` (raw bytes: they may be anything) with `body`.
async fn send(sock: &Path, method: &str, target: &[u8], body: &[u8]) -> Answer {
    let mut s = UnixStream::connect(sock).await.expect("connect");
    let mut req = format!("{method} ").into_bytes();
    req.extend_from_slice(target);
    req.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    req.extend_from_slice(body);
    // The server may answer and close before reading a large body to the end.
    let _ = s.write_all(&req).await;
    answer(s, &format!("{method} {}", String::from_utf8_lossy(target))).await
}

fn refused(a: &Answer, what: &str) {
    assert!(
        (400..500).contains(&a.status),
        "{what}: status {} {}",
        a.status,
        a.body
    );
    assert!(a.json, "{what}: error body is not JSON: {}", a.body);
    assert!(
        a.body["error"].as_str().is_some_and(|e| !e.is_empty()) && a.body["kind"].is_string(),
        "{what}: not the shared error body: {}",
        a.body
    );
}

const BODY_ROUTES: [&str; 9] = [
    "/v1/containers",
    "/v1/attachments",
    "/v1/cni/add",
    "/v1/cni/del",
    "/v1/cni/check",
    "/v1/cni/gc",
    "/v1/diag/probe",
    "/v1/diag/dns-trace",
    "/v1/containers/c1/probe",
];

async fn nothing_left(sock: &Path, attaches: &AtomicUsize) {
    let a = send(sock, "GET", b"/v1/containers", b"").await;
    assert_eq!((a.status, &a.body), (200, &serde_json::json!([])));
    assert_eq!(
        attaches.load(Ordering::SeqCst),
        0,
        "bad input reached the network actor"
    );
}

#[test]
fn malformed_bodies_are_4xx_json_and_attach_nothing() {
    with_api("bodies", |sock, attaches| async move {
        let bodies: [&[u8]; 12] = [
            b"",
            b"{",
            b"null",
            b"[]",
            b"\"c1\"",
            b"{\"name\":1,\"networks\":\"frontend\"}",
            b"{\"name\":\"c1\",\"networks\":[],\"command\":[\"true\"],\"bogus\":1}",
            b"{\"container_id\":\"c1\",\"ifname\":\"eth0\",\"network\":\"n\",\"extra\":[]}",
            b"{\"kind\":\"tcp\",\"target\":\"not-an-ip\",\"port\":70000,\"timeout_ms\":-5}",
            b"\xff\xfe\x00{",
            b"{\"name\":\"\xc3\x28\"}",
            &[b'['; 10_000],
        ];
        for path in BODY_ROUTES {
            for body in bodies {
                let a = send(&sock, "POST", path.as_bytes(), body).await;
                refused(
                    &a,
                    &format!(
                        "{path} {:?}",
                        String::from_utf8_lossy(&body[..body.len().min(40)])
                    ),
                );
            }
        }
        nothing_left(&sock, &attaches).await;
    });
}

#[test]
fn bodies_over_the_limit_are_refused_without_reading_them_whole() {
    with_api("huge", |sock, attaches| async move {
        let mut big = br#"{"name":"c1","networks":["frontend"],"command":[""#.to_vec();
        big.resize(3 << 20, b'a');
        big.extend_from_slice(br#""]}"#);
        for path in BODY_ROUTES {
            let a = send(&sock, "POST", path.as_bytes(), &big).await;
            refused(&a, &format!("{path} 3 MB"));
            // A chunked body that never ends: the answer must come anyway.
            let s = UnixStream::connect(&sock).await.expect("connect");
            let (rd, mut wr) = s.into_split();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            let feeder = actix_rt::spawn(async move {
                let chunk = [b"10000\r\n".as_slice(), &[b' '; 0x10000], b"\r\n"].concat();
                let _ = wr.write_all(head.as_bytes()).await;
                while wr.write_all(&chunk).await.is_ok() {}
            });
            refused(&answer(rd, path).await, &format!("{path} endless"));
            feeder.abort();
        }
        nothing_left(&sock, &attaches).await;
    });
}

#[test]
fn weird_names_in_paths_are_4xx_json() {
    with_api("paths", |sock, attaches| async move {
        let long = "a".repeat(10_000);
        let weird: Vec<&[u8]> = vec![
            b"..",
            b"%2e%2e",
            b"%2E%2E%2F%2E%2E%2Fetc",
            b"a%2Fb",
            b"%00",
            b"%ff",
            b"%c3%28",
            b"%",
            b"%zz",
            long.as_bytes(),
        ];
        for w in weird {
            let w = String::from_utf8_lossy(w);
            for (method, path) in [
                ("GET", format!("/v1/containers/{w}")),
                ("DELETE", format!("/v1/containers/{w}")),
                ("DELETE", format!("/v1/containers/{w}?force=true")),
                ("GET", format!("/v1/containers/{w}/logs")),
                ("POST", format!("/v1/containers/{w}/stop")),
                ("GET", format!("/v1/containers/{w}/net")),
                ("DELETE", format!("/v1/attachments/{w}/c1")),
                ("DELETE", format!("/v1/attachments/frontend/{w}")),
            ] {
                let what = format!("{method} {}", &path[..path.len().min(60)]);
                refused(&send(&sock, method, path.as_bytes(), b"").await, &what);
            }
        }
        for (method, path) in [
            ("GET", "/v1/containers/c1/logs?offset=-1"),
            ("GET", "/v1/containers/c1/logs?offset=%ff"),
            ("POST", "/v1/containers/c1/stop?grace=soon"),
            ("DELETE", "/v1/containers/c1?force=maybe"),
            ("PUT", "/v1/containers"),
            ("GET", "/v1/cni/add"),
            ("GET", "/v1/../../etc/passwd"),
        ] {
            refused(&send(&sock, method, path.as_bytes(), b"").await, path);
        }
        // A netns path that is no namespace: refused before any attach.
        for netns in ["/etc/passwd", "../../proc/1/ns/net", "/nonexistent", ""] {
            let body = serde_json::json!({"name": "c1", "network": "frontend", "netns": netns});
            let a = send(
                &sock,
                "POST",
                b"/v1/attachments",
                body.to_string().as_bytes(),
            )
            .await;
            refused(&a, netns);
        }
        nothing_left(&sock, &attaches).await;
    });
}
