//! Bad input at every route of the coordinator: each answer is a 4xx with the shared JSON error body, and the store is left as it was.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::Request;
use futures::StreamExt;
use serde_json::{json, Value};
use shibafu_overlay::store::keys::ROOT;
use shibafu_overlay::store::{MemoryStore, Store};
use tower::ServiceExt;

use super::router;

/// One answer: status, content type, body.
struct Answer {
    status: u16,
    json: bool,
    body: Value,
}

async fn send(store: &MemoryStore, req: Request<Body>) -> Answer {
    let what = format!("{} {}", req.method(), req.uri());
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        router(Arc::new(store.clone())).oneshot(req),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: no answer in 10 s (is the body read whole?)"))
    .expect("infallible");
    let status = resp.status().as_u16();
    let json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, json, body }
}

async fn call(store: &MemoryStore, method: &str, uri: &str, body: impl Into<Body>) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request");
    send(store, req).await
}

/// Asserts a 4xx answer carrying the shared error body.
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

/// Every key and value under the root, to compare before and after.
async fn contents(store: &MemoryStore) -> Vec<(String, Vec<u8>)> {
    let (kvs, _) = store.list(ROOT).await.expect("list");
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

/// Two networks, a service and a policy, made through the API.
async fn populated() -> MemoryStore {
    let store = MemoryStore::new();
    for (path, body) in [
        (
            "/v1/networks",
            json!({"name": "frontend", "subnet": "172.21.0.0/24"}),
        ),
        (
            "/v1/networks",
            json!({"name": "backend", "subnet": "172.22.0.0/24"}),
        ),
        ("/v1/links", json!({"a": "frontend", "b": "backend"})),
        (
            "/v1/services",
            json!({"network": "frontend", "name": "web"}),
        ),
        (
            "/v1/policies",
            json!({"name": "db", "network": "backend", "rules": [{"action": "deny",
                "direction": "egress", "peer": {"kind": "any"}, "proto": "any"}]}),
        ),
    ] {
        let a = call(&store, "POST", path, body.to_string()).await;
        assert!(a.status < 300, "{path}: {} {}", a.status, a.body);
    }
    store
}

const WRITE_ROUTES: [(&str, &str); 6] = [
    ("POST", "/v1/networks"),
    ("POST", "/v1/links"),
    ("POST", "/v1/services"),
    ("PUT", "/v1/services/frontend/web"),
    ("POST", "/v1/policies"),
    ("POST", "/v1/apply"),
];

#[tokio::test]
async fn malformed_bodies_are_400_and_change_nothing() {
    let store = populated().await;
    let before = contents(&store).await;
    let bodies: [&[u8]; 14] = [
        b"",
        b"{",
        b"{\"name\":\"a\"",
        b"null",
        b"[]",
        b"\"frontend\"",
        b"42",
        b"{\"name\":1,\"subnet\":[]}",
        b"{\"name\":\"x\",\"network\":\"frontend\",\"document\":{},\"bogus\":true}",
        b"{\"name\":\"x\",\"subnet\":\"10.9.0.0/24\",\"mtu\":-1}",
        b"{\"name\":\"x\",\"subnet\":\"10.9.0.0/24\",\"mtu\":1e400}",
        b"\xff\xfe{\"name\":\"x\"}",
        b"{\"name\":\"\xc3\x28\",\"subnet\":\"10.9.0.0/24\"}",
        b"{\"name\":\"x\",\"name\":\"y\",\"subnet\":\"10.9.0.0/24\"}",
    ];
    for (method, path) in WRITE_ROUTES {
        for body in bodies {
            let a = call(&store, method, path, body.to_vec()).await;
            let what = format!("{method} {path} {:?}", String::from_utf8_lossy(body));
            refused(&a, &what);
            assert_eq!(a.status, 400, "{what}: {}", a.body);
            assert_eq!(a.body["kind"], "invalid", "{what}: {}", a.body);
        }
        // A body sent as something else than JSON.
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "text/plain")
            .body(Body::from(r#"{"name":"x","subnet":"10.9.0.0/24"}"#))
            .expect("request");
        refused(
            &send(&store, req).await,
            &format!("{method} {path} text/plain"),
        );
    }
    // Deeply nested JSON is refused by the parser's depth limit, not by a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    refused(
        &call(&store, "POST", "/v1/apply", deep).await,
        "deep nesting",
    );
    assert_eq!(
        contents(&store).await,
        before,
        "a refused body changed the store"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_without_reading_them_whole() {
    let store = MemoryStore::new();
    let mut big = br#"{"name":"x","subnet":"10.9.0.0/24","zone":""#.to_vec();
    big.resize(3 << 20, b'a');
    big.extend_from_slice(br#""}"#);
    for (method, path) in WRITE_ROUTES {
        let a = call(&store, method, path, big.clone()).await;
        refused(&a, &format!("{method} {path} 3 MB"));
        // An endless body without a length: the server must stop reading at its limit.
        let endless =
            futures::stream::repeat(Bytes::from(vec![b' '; 64 << 10])).map(Ok::<_, std::io::Error>);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from_stream(endless))
            .expect("request");
        refused(
            &send(&store, req).await,
            &format!("{method} {path} endless"),
        );
    }
    assert!(contents(&store).await.is_empty());
}

/// Names no object can have: traversal, separators, control and non-UTF-8 bytes, huge.
fn weird_segments() -> Vec<String> {
    let mut v: Vec<String> = [
        "..",
        "%2e%2e",
        "%2E%2E%2F%2E%2E%2Fetc",
        "..%2Fetc",
        "frontend%2F..",
        "a%2Fb",
        "%00",
        "a%00b",
        "%ff",
        "%c3%28",
        "%",
        "%zz",
        "%20",
        "Frontend",
        "frontend%0a",
        "%E2%80%AE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("a".repeat(10_000));
    v
}

#[tokio::test]
async fn weird_names_in_paths_are_4xx_json_and_change_nothing() {
    let store = populated().await;
    let before = contents(&store).await;
    for w in weird_segments() {
        for (method, path) in [
            ("GET", format!("/v1/networks/{w}")),
            ("GET", format!("/v1/networks/{w}/problems")),
            ("DELETE", format!("/v1/networks/{w}")),
            ("DELETE", format!("/v1/networks/{w}?force=true")),
            ("DELETE", format!("/v1/links/{w}/backend")),
            ("DELETE", format!("/v1/links/frontend/{w}")),
            ("POST", format!("/v1/nodes/{w}/rotate-key")),
            ("GET", format!("/v1/services/frontend/{w}")),
            ("GET", format!("/v1/services/{w}/web")),
            ("DELETE", format!("/v1/services/{w}/web")),
            ("DELETE", format!("/v1/services/frontend/{w}")),
            ("GET", format!("/v1/policies/{w}")),
            ("DELETE", format!("/v1/policies/{w}")),
        ] {
            let what = format!("{method} {}", &path[..path.len().min(80)]);
            refused(&call(&store, method, &path, Body::empty()).await, &what);
        }
    }
    for q in ["force=yes", "force=%ff", "force=1&force=0", "force"] {
        let a = call(&store, "DELETE", &format!("/v1/networks/frontend?{q}"), "").await;
        refused(&a, q);
    }
    for (path, says) in [
        ("/v1/networks/%ff", "Invalid URL"),
        ("/v1/services/frontend/%c3%28", "Invalid URL"),
    ] {
        let a = call(&store, "GET", path, "").await;
        assert_eq!(a.status, 400, "{path}: {}", a.body);
        assert_eq!(a.body["kind"], "invalid", "{path}: {}", a.body);
        let error = a.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{path}: {error}");
    }
    assert_eq!(
        contents(&store).await,
        before,
        "a refused request changed the store"
    );
}

#[tokio::test]
async fn weird_names_in_bodies_are_400_and_create_nothing() {
    let store = populated().await;
    let before = contents(&store).await;
    let long = "a".repeat(10_000);
    for name in [
        "",
        "..",
        "../etc",
        "a/b",
        "a+b",
        "a b",
        "a\u{0}b",
        "a\nb",
        "é",
        "-a",
        "UPPER",
        long.as_str(),
    ] {
        for (path, body) in [
            (
                "/v1/networks",
                json!({"name": name, "subnet": "10.9.0.0/24"}),
            ),
            ("/v1/links", json!({"a": "frontend", "b": name})),
            ("/v1/services", json!({"network": "frontend", "name": name})),
            ("/v1/services", json!({"network": name, "name": "web2"})),
            (
                "/v1/policies",
                json!({"name": name, "network": "frontend", "rules": [{"action": "deny",
                    "direction": "egress", "peer": {"kind": "any"}, "proto": "any"}]}),
            ),
            (
                "/v1/apply",
                json!({"document": {"networks": [{"name": name, "subnet": "10.9.0.0/24"}]}}),
            ),
        ] {
            let a = call(&store, "POST", path, body.to_string()).await;
            let what = format!("{path} {:?}", &name[..name.len().min(20)]);
            refused(&a, &what);
        }
    }
    assert_eq!(
        contents(&store).await,
        before,
        "a refused name changed the store"
    );
}

/// Runs `n` copies of one request at once; their statuses, sorted.
async fn race(store: &MemoryStore, n: usize, method: &str, path: &str, body: Value) -> Vec<u16> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (store, method, path, body) = (
                store.clone(),
                method.to_string(),
                path.to_string(),
                body.to_string(),
            );
            tokio::spawn(async move { call(&store, &method, &path, body).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let a = t.await.expect("join");
        assert!(
            a.status < 300 || a.status == 409,
            "{path}: {} {}",
            a.status,
            a.body
        );
        if a.status == 409 {
            refused(&a, path);
        }
        statuses.push(a.status);
    }
    statuses.sort_unstable();
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_creates_leave_exactly_one() {
    let store = MemoryStore::new();
    let net = json!({"name": "frontend", "subnet": "172.21.0.0/24"});
    let s = race(&store, 8, "POST", "/v1/networks", net).await;
    assert_eq!(s, [201, 409, 409, 409, 409, 409, 409, 409]);
    // Different names, one subnet: the overlap check sees the winner.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let body = json!({"name": format!("twin{i}"), "subnet": "172.30.0.0/24"}).to_string();
            tokio::spawn(async move { call(&store, "POST", "/v1/networks", body).await.status })
        })
        .collect();
    let mut s = Vec::new();
    for t in tasks {
        s.push(t.await.expect("join"));
    }
    s.sort_unstable();
    assert_eq!(s, [201, 409, 409, 409, 409, 409, 409, 409]);
    let listed = call(&store, "GET", "/v1/networks", "").await.body;
    let listed = listed.as_array().expect("list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let vnis: std::collections::BTreeSet<_> = listed.iter().map(|n| n["vni"].as_u64()).collect();
    assert_eq!(vnis.len(), 2, "two networks, one VNI: {listed:?}");

    let svc = json!({"network": "frontend", "name": "web"});
    assert_eq!(
        race(&store, 6, "POST", "/v1/services", svc).await,
        [201, 409, 409, 409, 409, 409]
    );
    let policy = json!({"name": "db", "network": "frontend", "rules": [{"action": "deny",
        "direction": "egress", "peer": {"kind": "any"}, "proto": "any"}]});
    assert_eq!(
        race(&store, 6, "POST", "/v1/policies", policy).await,
        [201, 409, 409, 409, 409, 409]
    );
    let services = call(&store, "GET", "/v1/services", "").await.body;
    let policies = call(&store, "GET", "/v1/policies", "").await.body;
    assert_eq!(services.as_array().map(Vec::len), Some(1), "{services}");
    assert_eq!(policies.as_array().map(Vec::len), Some(1), "{policies}");
}
