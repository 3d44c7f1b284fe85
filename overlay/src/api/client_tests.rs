use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use super::*;
use crate::api::types::ErrorKind;

/// Reads one HTTP/1.1 request (head and Content-Length body) and returns it as text.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "client closed before sending a request");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().expect("len"))
                })
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + len {
                return text;
            }
        }
    }
}

/// Serves one connection with a canned answer; yields the request it got.
async fn answer_once<S>(mut s: S, status: &str, body: &str) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let req = read_request(&mut s).await;
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await.expect("write");
    s.shutdown().await.expect("shutdown");
    req
}

fn temp_socket(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("shibafu-client-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn client(target: Target) -> Client {
    Client::new(target, "coordinator", "is it running?")
}

#[test]
fn targets_parse() {
    let t = |s: &str| s.parse::<Target>();
    assert_eq!(
        t("http://10.0.0.1:7480").expect("ok"),
        Target::Http("10.0.0.1:7480".into())
    );
    assert_eq!(
        t("http://localhost:7480/").expect("ok"),
        Target::Http("localhost:7480".into())
    );
    assert_eq!(
        t("http://example").expect("ok"),
        Target::Http("example:80".into())
    );
    assert_eq!(
        t("http://[::1]:7480").expect("ok"),
        Target::Http("[::1]:7480".into())
    );
    assert_eq!(
        t("http://[::1]").expect("ok"),
        Target::Http("[::1]:80".into())
    );
    assert_eq!(
        t("unix:/run/a.sock").expect("ok"),
        Target::Unix("/run/a.sock".into())
    );
    assert_eq!(
        t("unix:///run/a.sock").expect("ok"),
        Target::Unix("/run/a.sock".into())
    );
    assert_eq!(
        t("/run/a.sock").expect("ok"),
        Target::Unix("/run/a.sock".into())
    );
    for bad in [
        "",
        "10.0.0.1:7480",
        "http://",
        "http://h:1/v1",
        "https://",
        "https://h:1/v1",
        "unix:rel",
        "http://:80",
    ] {
        let e = t(bad).expect_err(bad);
        assert!(e.to_string().starts_with("invalid address"), "{bad}: {e}");
    }
    assert_eq!(Target::Unix("/a".into()).to_string(), "unix:/a");
    assert_eq!(Target::Http("h:1".into()).to_string(), "http://h:1");
    assert_eq!(t("https://h").expect("ok"), Target::Https("h:443".into()));
    assert_eq!(
        t("https://[fd00::1]:7480").expect("ok").host(),
        Some("fd00::1")
    );
    assert_eq!(Target::Https("h:1".into()).to_string(), "https://h:1");
}

#[tokio::test]
async fn get_over_unix_socket_decodes_json() {
    let path = temp_socket("get");
    let listener = UnixListener::bind(&path).expect("bind");
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        answer_once(s, "200 OK", r#"{"status":"ok","version":"9"}"#).await
    });
    let c = Client::new(Target::Unix(path.clone()), "agent", "hint");
    let h: crate::api::Health = c.get("/v1/health").await.expect("get");
    assert_eq!(h.version, "9");
    let req = server.await.expect("server");
    assert!(req.starts_with("GET /v1/health HTTP/1.1\r\n"), "{req}");
    assert!(
        req.to_ascii_lowercase().contains("host: localhost"),
        "{req}"
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn post_sends_json_and_error_body_becomes_api_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        answer_once(
            s,
            "409 Conflict",
            r#"{"error":"network \"a\" already exists","kind":"duplicate"}"#,
        )
        .await
    });
    let c = client(Target::Http(addr.to_string()));
    let err = c
        .post::<_, serde_json::Value>("/v1/networks", &serde_json::json!({"name": "a"}))
        .await
        .expect_err("409");
    match &err {
        ClientError::Api(e) => assert_eq!(e.kind, ErrorKind::Duplicate),
        other => panic!("not an api error: {other:?}"),
    }
    assert_eq!(err.to_string(), "network \"a\" already exists");
    let req = server.await.expect("server");
    assert!(req.starts_with("POST /v1/networks HTTP/1.1\r\n"), "{req}");
    assert!(
        req.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{req}"
    );
    assert!(req.ends_with(r#"{"name":"a"}"#), "{req}");
}

#[tokio::test]
async fn non_json_error_is_a_protocol_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        answer_once(s, "502 Bad Gateway", "upstream down").await
    });
    let err = client(Target::Http(addr.to_string()))
        .get::<serde_json::Value>("/v1/networks")
        .await
        .expect_err("502");
    let msg = err.to_string();
    assert!(matches!(err, ClientError::Protocol { .. }), "{err:?}");
    assert!(
        msg.contains("502") && msg.contains("upstream down"),
        "{msg}"
    );
    assert!(msg.contains("is that a shibafu coordinator?"), "{msg}");
}

#[tokio::test]
async fn empty_success_body_decodes_as_unit() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        answer_once(s, "200 OK", "").await
    });
    let c = client(Target::Http(addr.to_string()));
    c.delete::<()>("/v1/x").await.expect("empty body is ()");
}

#[tokio::test]
async fn refused_connection_says_what_to_do() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let c = Client::new(
        Target::Http(addr.to_string()),
        "coordinator",
        "is shibafu-coordinator running? set --coordinator or SHIBAFU_COORDINATOR",
    );
    let err = c
        .get::<serde_json::Value>("/v1/health")
        .await
        .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot reach coordinator at http://{addr}: ")),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
    assert!(
        msg.ends_with("(is shibafu-coordinator running? set --coordinator or SHIBAFU_COORDINATOR)"),
        "{msg}"
    );
}

#[tokio::test]
async fn missing_unix_socket_is_unreachable() {
    let path = temp_socket("missing");
    let err = Client::new(
        Target::Unix(path.clone()),
        "agent",
        "is shibafu-agent running?",
    )
    .get::<serde_json::Value>("/v1/containers")
    .await
    .expect_err("missing");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot reach agent at unix:{}", path.display())),
        "{msg}"
    );
    assert!(msg.ends_with("(is shibafu-agent running?)"), "{msg}");
}

#[tokio::test]
async fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let c = client(Target::Http(addr.to_string())).with_request_timeout(Duration::from_millis(200));
    let err = c
        .get::<serde_json::Value>("/v1/health")
        .await
        .expect_err("timeout");
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("did not answer within"), "{err}");
    held.abort();
}

#[tokio::test]
async fn upgrade_gives_a_byte_stream() {
    let path = temp_socket("upgrade");
    let listener = UnixListener::bind(&path).expect("bind");
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let req = read_request(&mut s).await;
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: shibafu-stream\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.expect("read");
        s.write_all(&buf).await.expect("echo");
        req
    });
    let c = Client::new(Target::Unix(path.clone()), "agent", "hint");
    let mut stream = c
        .upgrade(
            Method::POST,
            "/v1/containers/api/exec",
            &serde_json::json!({"cmd": ["sh"]}),
            "shibafu-stream",
        )
        .await
        .expect("upgrade");
    stream.write_all(b"ping").await.expect("write");
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.expect("read");
    assert_eq!(&back, b"ping");
    let req = server.await.expect("server").to_ascii_lowercase();
    assert!(
        req.contains("upgrade: shibafu-stream") && req.contains("connection: upgrade"),
        "{req}"
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn refused_upgrade_returns_the_error_body() {
    let path = temp_socket("upgrade-refused");
    let listener = UnixListener::bind(&path).expect("bind");
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        answer_once(
            s,
            "404 Not Found",
            r#"{"error":"no container named \"x\"","kind":"not_found"}"#,
        )
        .await
    });
    let err = Client::new(Target::Unix(path.clone()), "agent", "hint")
        .upgrade(Method::POST, "/v1/containers/x/exec", &(), "shibafu-stream")
        .await
        .expect_err("404");
    assert_eq!(err.to_string(), "no container named \"x\"");
    let _ = std::fs::remove_file(&path);
}
