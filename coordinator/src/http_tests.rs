use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use shibafu_overlay::api::{ClientError, Coordinator, Target};
use shibafu_overlay::model::Endpoint;
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::MemoryStore;
use tower::ServiceExt;

use super::*;

/// A coordinator served on a loopback port, and a client of it.
struct Served {
    client: Coordinator,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn start(store: MemoryStore) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve_plain(listener, Arc::new(store), async {
            let _ = stopped.await;
        }));
        Served {
            client: Coordinator::new(Target::Http(addr.to_string()), "hint"),
            stop,
            server,
        }
    }

    /// Stops the server and checks it shut down cleanly.
    async fn stop(self) {
        self.stop.send(()).expect("stop");
        self.server.await.expect("join").expect("clean shutdown");
    }
}

/// Sends one request through the router; returns status and JSON body.
pub(super) async fn call(
    store: &MemoryStore,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let resp = router(Arc::new(store.clone()))
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{method} {uri}: body is not JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

fn is_error(v: &Value, kind: &str) -> bool {
    v["kind"] == kind && v["error"].as_str().is_some_and(|s| !s.is_empty())
}

#[tokio::test]
async fn network_lifecycle() {
    let store = MemoryStore::new();
    let (s, v) = call(
        &store,
        "POST",
        "/v1/networks",
        Some(r#"{"name":"frontend","subnet":"172.21.0.0/24"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["name"], "frontend");
    assert_eq!(v["zone"], "frontend.local");
    assert_eq!(v["vni"], 4096);
    let (s, v) = call(&store, "GET", "/v1/networks", None).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    let (s, v) = call(&store, "GET", "/v1/networks/frontend", None).await;
    assert_eq!((s, &v["subnet"]), (200, &json!("172.21.0.0/24")));
    let (s, v) = call(&store, "DELETE", "/v1/networks/frontend", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"name": "frontend", "endpoints": 0, "ipam_blocks": 0, "links": 0, "policies": 0})
    );
    let (s, v) = call(&store, "GET", "/v1/networks/frontend", None).await;
    assert_eq!(s, 404);
    assert_eq!(
        v,
        json!({"error": "no network named \"frontend\"", "kind": "not_found"})
    );
}

#[tokio::test]
async fn bad_bodies_are_400() {
    let store = MemoryStore::new();
    for body in [
        r#"{"name":"a""#,
        r#"{"name":"a"}"#,
        r#"{"name":"a","subnet":"10.0.0.0/24","bogus":1}"#,
        r#"{"name":"a","subnet":"10.0.0.0/24","mtu":"big"}"#,
    ] {
        let (s, v) = call(&store, "POST", "/v1/networks", Some(body)).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(is_error(&v, "invalid"), "{v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("invalid request body")),
            "{v}"
        );
    }
    let (s, v) = call(
        &store,
        "POST",
        "/v1/networks",
        Some(r#"{"name":"a","subnet":"10.0.0.0/33"}"#),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        v["error"],
        r#"network "a": invalid subnet "10.0.0.0/33": use CIDR notation such as 172.21.0.0/24"#
    );
    assert!(call(&store, "GET", "/v1/networks", None)
        .await
        .1
        .as_array()
        .is_some_and(Vec::is_empty));
}

#[tokio::test]
async fn conflicts_are_409() {
    let store = MemoryStore::new();
    let legacy = r#"{"name":"legacy","subnet":"172.22.0.0/16"}"#;
    assert_eq!(
        call(&store, "POST", "/v1/networks", Some(legacy)).await.0,
        201
    );
    let (s, v) = call(&store, "POST", "/v1/networks", Some(legacy)).await;
    assert_eq!(s, 409);
    assert!(is_error(&v, "duplicate"), "{v}");
    let (s, v) = call(
        &store,
        "POST",
        "/v1/networks",
        Some(r#"{"name":"backend","subnet":"172.22.0.0/24"}"#),
    )
    .await;
    assert_eq!(s, 409);
    assert_eq!(
        v,
        json!({"error": "network \"backend\": subnet 172.22.0.0/24 overlaps network \"legacy\" (172.22.0.0/16)", "kind": "overlap"})
    );
}

#[tokio::test]
async fn remove_with_endpoints_needs_force() {
    let store = MemoryStore::new();
    call(
        &store,
        "POST",
        "/v1/networks",
        Some(r#"{"name":"backend","subnet":"172.22.0.0/24"}"#),
    )
    .await;
    let ep: Endpoint = serde_json::from_value(json!({
        "schema": 1, "id": "node1-api", "network": "backend", "name": "api", "node": "node1",
        "ipv4": "172.22.0.5", "mac": "02:00:00:00:00:05"
    }))
    .expect("endpoint");
    let key = Key::Endpoint {
        network: "backend".into(),
        id: ep.id.clone(),
    }
    .to_string();
    store
        .put(&key, serde_json::to_vec(&ep).expect("json"), None)
        .await
        .expect("put");
    let (s, v) = call(&store, "GET", "/v1/endpoints", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["name"], "api");
    assert_eq!(v[0]["node"], "node1");
    let (s, v) = call(&store, "DELETE", "/v1/networks/backend", None).await;
    assert_eq!(s, 409);
    assert!(is_error(&v, "has_endpoints"), "{v}");
    let (s, v) = call(&store, "DELETE", "/v1/networks/backend?force=maybe", None).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = call(&store, "DELETE", "/v1/networks/backend?force=true", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["endpoints"], 1);
    assert!(store.get(&key).await.expect("get").is_none());
}

#[tokio::test]
async fn routes_methods_and_health() {
    let store = MemoryStore::new();
    let (s, v) = call(&store, "GET", "/v2/nothing", None).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"], "no such route: GET /v2/nothing");
    let (s, v) = call(&store, "PUT", "/v1/networks", None).await;
    assert_eq!(s, 405);
    assert!(is_error(&v, "invalid"), "{v}");
    let (s, v) = call(&store, "GET", "/v1/health", None).await;
    assert_eq!((s, &v["status"]), (200, &json!("ok")));
    let (s, v) = call(&store, "GET", "/v1/nodes", None).await;
    assert_eq!((s, v), (200, json!([])));
    store.set_available(false);
    let (s, v) = call(&store, "GET", "/v1/health", None).await;
    assert_eq!(s, 503);
    assert!(is_error(&v, "unavailable"), "{v}");
}

#[tokio::test]
async fn real_server_with_the_client() {
    let store = MemoryStore::new();
    let served = Served::start(store).await;
    let c = &served.client;
    assert_eq!(c.health().await.expect("health").status, "ok");
    let req = CreateNetwork {
        name: "frontend".into(),
        subnet: "172.21.0.0/24".into(),
        subnet6: Some("fd00:21::/64".into()),
        ..CreateNetwork::default()
    };
    let net = c.create_network(&req).await.expect("create");
    assert_eq!(
        net.gateway6().map(|g| g.to_string()),
        Some("fd00:21::1".into())
    );
    assert_eq!(c.list_networks().await.expect("ls"), vec![net.clone()]);
    assert_eq!(c.get_network("frontend").await.expect("inspect"), net);
    match c.create_network(&req).await {
        Err(ClientError::Api(e)) => assert_eq!(e.kind, ErrorKind::Duplicate),
        other => panic!("expected a duplicate error, got {other:?}"),
    }
    assert_eq!(
        c.remove_network("frontend", true).await.expect("rm").name,
        "frontend"
    );
    let e = c.get_network("a b").await.expect_err("404");
    assert_eq!(e.to_string(), r#"no network named "a b""#);
    served.stop().await;
}

async fn with_networks(names: &[(&str, &str)]) -> MemoryStore {
    let store = MemoryStore::new();
    for (name, subnet) in names {
        let body = json!({"name": name, "subnet": subnet}).to_string();
        let (s, v) = call(&store, "POST", "/v1/networks", Some(&body)).await;
        assert_eq!(s, 201, "{v}");
    }
    store
}

#[tokio::test]
async fn link_routes() {
    let store = with_networks(&[("frontend", "172.21.0.0/24"), ("backend", "172.22.0.0/24")]).await;
    let body = r#"{"a":"frontend","b":"backend"}"#;
    let (s, v) = call(&store, "POST", "/v1/links", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v, json!({"schema": 1, "a": "backend", "b": "frontend"}));
    let (s, v2) = call(&store, "POST", "/v1/links", Some(body)).await;
    assert_eq!((s, &v2), (200, &v), "linking twice is fine");
    let (s, list) = call(&store, "GET", "/v1/links", None).await;
    assert_eq!((s, list), (200, json!([v.clone()])));
    let (s, gone) = call(&store, "DELETE", "/v1/links/frontend/backend", None).await;
    assert_eq!((s, gone), (200, v));
    let (s, v) = call(&store, "DELETE", "/v1/links/frontend/backend", None).await;
    assert_eq!(s, 404);
    assert_eq!(
        v,
        json!({"error": "networks \"backend\" and \"frontend\" are not linked", "kind": "not_found"})
    );
    let (s, list) = call(&store, "GET", "/v1/links", None).await;
    assert_eq!((s, list), (200, json!([])));
}

#[tokio::test]
async fn bad_link_requests() {
    let store = with_networks(&[("frontend", "172.21.0.0/24")]).await;
    for (body, status, kind) in [
        (r#"{"a":"frontend"}"#, 400, "invalid"),
        (r#"{"a":"frontend","b":"x","c":1}"#, 400, "invalid"),
        (r#"{"a":"frontend","b":"frontend"}"#, 400, "invalid"),
        (r#"{"a":"frontend","b":"Nope"}"#, 400, "invalid"),
        (r#"{"a":"frontend","b":"nope"}"#, 404, "not_found"),
    ] {
        let (s, v) = call(&store, "POST", "/v1/links", Some(body)).await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(is_error(&v, kind), "{body}: {v}");
    }
    let (s, v) = call(&store, "GET", "/v1/links", None).await;
    assert_eq!((s, v), (200, json!([])));
    let (s, v) = call(&store, "PUT", "/v1/links/a/b", None).await;
    assert_eq!(s, 405, "{v}");
}

#[tokio::test]
async fn links_through_the_client() {
    let store = with_networks(&[("frontend", "172.21.0.0/24"), ("backend", "172.22.0.0/24")]).await;
    let served = Served::start(store).await;
    let c = &served.client;
    let link = c.link_networks("frontend", "backend").await.expect("link");
    assert_eq!((link.a.as_str(), link.b.as_str()), ("backend", "frontend"));
    assert_eq!(
        c.link_networks("backend", "frontend").await.expect("again"),
        link
    );
    assert_eq!(c.list_links().await.expect("ls"), vec![link.clone()]);
    let removed = c.remove_network("frontend", false).await.expect("rm");
    assert_eq!(removed.links, 1);
    assert!(c.list_links().await.expect("ls").is_empty());
    let e = c
        .unlink_networks("backend", "frontend")
        .await
        .expect_err("404");
    assert_eq!(
        e.to_string(),
        r#"networks "backend" and "frontend" are not linked"#
    );
    served.stop().await;
}

#[tokio::test]
async fn policy_routes() {
    let store = with_networks(&[("database", "172.23.0.0/24"), ("backend", "172.22.0.0/24")]).await;
    let body = json!({
        "name": "db", "network": "database",
        "rules": [{"action": "allow", "direction": "ingress",
                   "peer": {"kind": "network", "value": "backend"},
                   "ports": [{"from": 5432, "to": 5432}], "proto": "tcp"}]
    })
    .to_string();
    let (s, v) = call(&store, "POST", "/v1/policies", Some(&body)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["schema"], 1);
    let (s, _) = call(&store, "POST", "/v1/policies", Some(&body)).await;
    assert_eq!(s, 409);
    for (bad, status, kind) in [
        (r#"{"name":"x","network":"database"}"#, 400, "invalid"),
        (
            r#"{"name":"x","network":"database","rules":[],"extra":1}"#,
            400,
            "invalid",
        ),
        (
            r#"{"name":"x","network":"database","rules":[]}"#,
            400,
            "invalid",
        ),
        (
            r#"{"name":"x","network":"nope","rules":[{"action":"deny","direction":"egress","peer":{"kind":"any"},"proto":"any"}]}"#,
            404,
            "not_found",
        ),
    ] {
        let (s, v) = call(&store, "POST", "/v1/policies", Some(bad)).await;
        assert_eq!(s, status, "{bad}: {v}");
        assert!(is_error(&v, kind), "{bad}: {v}");
    }
    let (s, v) = call(&store, "GET", "/v1/policies", None).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(1)));
    let (s, v) = call(&store, "GET", "/v1/policies/db", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["rules"],
        json!([{"rule": "--allow-ingress-from backend:5432/tcp", "allowed": 0, "dropped": 0}])
    );
    assert_eq!(
        (&v["isolation_dropped"], &v["nodes"]),
        (&json!(0), &json!([]))
    );
    let (s, v) = call(&store, "DELETE", "/v1/policies/db", None).await;
    assert_eq!((s, &v["name"]), (200, &json!("db")));
    let (s, v) = call(&store, "GET", "/v1/policies/db", None).await;
    assert_eq!(s, 404);
    assert!(is_error(&v, "not_found"), "{v}");
    let (s, v) = call(&store, "PUT", "/v1/policies/db", Some(&body)).await;
    assert_eq!(s, 405, "{v}");
}

#[tokio::test]
async fn policies_through_the_client() {
    let store = with_networks(&[("database", "172.23.0.0/24")]).await;
    let served = Served::start(store).await;
    let c = &served.client;
    let rule = shibafu_overlay::model::Rule::parse(
        shibafu_overlay::model::Action::Deny,
        shibafu_overlay::model::Direction::Ingress,
        "10.0.0.0/8",
    )
    .expect("rule");
    let spec = shibafu_overlay::api::PolicySpec {
        name: "db".into(),
        network: "database".into(),
        service: None,
        rules: vec![rule],
    };
    let made = c.create_policy(&spec).await.expect("create");
    assert_eq!(c.list_policies().await.expect("ls"), vec![made.clone()]);
    assert_eq!(c.get_policy("db").await.expect("inspect").policy, made);
    assert_eq!(c.remove_policy("db").await.expect("rm"), made);
    let e = c.get_policy("db").await.expect_err("404");
    assert_eq!(
        e.to_string(),
        r#"no policy named "db"; see `shibafu network policy list`"#
    );
    served.stop().await;
}

#[tokio::test]
async fn apply_and_export_routes() {
    let store = MemoryStore::new();
    let doc = json!({"networks": [{"name": "frontend", "subnet": "172.21.0.0/24"}]});
    let body = json!({"document": doc, "dry_run": true}).to_string();
    let (s, v) = call(&store, "POST", "/v1/apply", Some(&body)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"changes": [{"action": "create", "kind": "network", "name": "frontend"}], "applied": false})
    );
    let bad = json!({"document": {"networks": [{"name": "f", "subnet": "10.0.0.0/33"}]}});
    let (s, v) = call(&store, "POST", "/v1/apply", Some(&bad.to_string())).await;
    assert_eq!(s, 400, "{v}");
    assert!(is_error(&v, "invalid"));
    assert_eq!(v["problems"][0]["path"], "networks/0/subnet");
    let (s, v) = call(&store, "GET", "/v1/export", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"networks": [], "links": [], "services": [], "policies": []})
    );
}
