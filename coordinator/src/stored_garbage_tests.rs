//! Unusable values in the store (garbage, a future schema, a value under another object's key, overlapping subnets) never stop the coordinator: lists skip them, and a network stored unusable can still be removed.

use serde_json::{json, Value};
use shibafu_overlay::model::Network;
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::{MemoryStore, Store};

use super::tests::call;

async fn put(store: &MemoryStore, key: Key, value: &[u8]) {
    store
        .put(&key.to_string(), value.to_vec(), None)
        .await
        .expect("put");
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|o| o["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Values no reader can use, in the shapes etcd could hold after a bug or a hand edit.
fn garbage() -> Vec<Vec<u8>> {
    vec![
        b"\xff\xfe garbage".to_vec(),
        b"".to_vec(),
        b"{\"schema\":1}".to_vec(),
        b"{\"schema\":99,\"name\":\"x\"}".to_vec(),
        b"[1,2,3]".to_vec(),
        json!({"schema": 1, "name": "someone-else", "subnet": "10.5.0.0/24", "vni": 9000})
            .to_string()
            .into_bytes(),
    ]
}

#[tokio::test]
async fn lists_skip_unusable_values_and_the_rest_still_works() {
    let store = MemoryStore::new();
    let net = r#"{"name":"frontend","subnet":"172.21.0.0/24"}"#;
    assert_eq!(call(&store, "POST", "/v1/networks", Some(net)).await.0, 201);
    let svc = r#"{"network":"frontend","name":"web"}"#;
    assert_eq!(call(&store, "POST", "/v1/services", Some(svc)).await.0, 201);
    for (i, value) in garbage().iter().enumerate() {
        let n = format!("bad{i}");
        for key in [
            Key::Network(n.clone()),
            Key::Node(n.clone()),
            Key::Tunnel(n.clone()),
            Key::Policy(n.clone()),
            Key::Link("frontend".into(), n.clone()),
            Key::Endpoint {
                network: "frontend".into(),
                id: n.clone(),
            },
            Key::Service {
                network: "frontend".into(),
                name: n.clone(),
            },
            Key::Health {
                network: "frontend".into(),
                id: n.clone(),
            },
        ] {
            put(&store, key, value).await;
        }
    }
    let (s, v) = call(&store, "GET", "/v1/networks", None).await;
    assert_eq!((s, names(&v)), (200, vec!["frontend".to_string()]), "{v}");
    for path in [
        "/v1/nodes",
        "/v1/links",
        "/v1/policies",
        "/v1/endpoints",
        "/v1/health",
    ] {
        let (s, v) = call(&store, "GET", path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        if path != "/v1/health" {
            assert_eq!(v, json!([]), "{path}");
        }
    }
    let (s, v) = call(&store, "GET", "/v1/services", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let (s, v) = call(&store, "GET", "/v1/services/frontend/web", None).await;
    assert_eq!(s, 200, "{v}");
    // Writes still work next to the garbage.
    let other = r#"{"name":"backend","subnet":"172.22.0.0/24"}"#;
    let (s, v) = call(&store, "POST", "/v1/networks", Some(other)).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &store,
        "POST",
        "/v1/links",
        Some(r#"{"a":"frontend","b":"backend"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
}

#[tokio::test]
async fn a_network_stored_unusable_says_so_and_goes_with_force() {
    let store = MemoryStore::new();
    put(&store, Key::Network("bad".into()), b"\xff garbage").await;
    let (s, v) = call(&store, "GET", "/v1/networks/bad", None).await;
    assert_eq!((s, &v["kind"]), (500, &json!("internal")), "{v}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(error.contains("remove it with --force"), "{error}");
    let (s, v) = call(&store, "DELETE", "/v1/networks/bad", None).await;
    assert_eq!(s, 500, "without --force the value is read: {v}");
    // What the message advises must work.
    let (s, v) = call(&store, "DELETE", "/v1/networks/bad?force=true", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "bad");
    assert_eq!(call(&store, "GET", "/v1/networks/bad", None).await.0, 404);
    let (s, v) = call(&store, "DELETE", "/v1/networks/bad?force=true", None).await;
    assert_eq!((s, &v["kind"]), (404, &json!("not_found")), "{v}");
    let (s, v) = call(&store, "GET", "/v1/export", None).await;
    assert_eq!(s, 200, "export works again once the value is gone: {v}");
}

#[tokio::test]
async fn networks_stored_overlapping_are_listed_and_checked_against() {
    let store = MemoryStore::new();
    for (name, subnet, vni) in [
        ("wide", "10.8.0.0/16", 4096),
        ("narrow", "10.8.1.0/24", 4097),
    ] {
        let net = Network::new(name, subnet.parse().expect("subnet"), vni);
        let value = serde_json::to_vec(&net).expect("json");
        put(&store, Key::Network(name.into()), &value).await;
    }
    let (s, v) = call(&store, "GET", "/v1/networks", None).await;
    assert_eq!((s, names(&v)), (200, vec!["narrow".into(), "wide".into()]));
    for subnet in ["10.8.0.0/24", "10.8.1.128/25", "10.0.0.0/8"] {
        let body = json!({"name": "third", "subnet": subnet}).to_string();
        let (s, v) = call(&store, "POST", "/v1/networks", Some(&body)).await;
        assert_eq!((s, &v["kind"]), (409, &json!("overlap")), "{subnet}: {v}");
    }
    let body = r#"{"name":"third","subnet":"10.9.0.0/24"}"#;
    let (s, v) = call(&store, "POST", "/v1/networks", Some(body)).await;
    assert_eq!((s, &v["vni"]), (201, &json!(4098)), "{v}");
    let (s, v) = call(&store, "DELETE", "/v1/networks/narrow", None).await;
    assert_eq!(s, 200, "{v}");
}
