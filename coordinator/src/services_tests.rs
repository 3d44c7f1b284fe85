//! Service operations against the in-memory store.

use shibafu_overlay::api::CreateNetwork;
use shibafu_overlay::model::{HealthSpec, HealthState, LbPolicy, Object, Probe, SCHEMA_VERSION};
use shibafu_overlay::store::MemoryStore;

use super::*;
use crate::cluster::create_network;

async fn cluster() -> MemoryStore {
    let store = MemoryStore::new();
    let req = CreateNetwork {
        name: "frontend".into(),
        subnet: "172.21.0.0/24".into(),
        ..CreateNetwork::default()
    };
    create_network(&store, &req).await.expect("network");
    store
}

fn spec(name: &str) -> ServiceSpec {
    ServiceSpec {
        network: "frontend".into(),
        name: name.into(),
        ..ServiceSpec::default()
    }
}

async fn keys(store: &MemoryStore) -> Vec<String> {
    let (kvs, _) = store.list(&Prefix::All.to_string()).await.expect("list");
    kvs.into_iter().map(|kv| kv.key).collect()
}

#[tokio::test]
async fn create_fills_the_defaults_and_refuses_bad_specs_leaving_nothing() {
    let store = cluster().await;
    let before = keys(&store).await;
    for (bad, says) in [
        (
            ServiceSpec {
                port: Some(0),
                ..spec("web")
            },
            "1-65535",
        ),
        (spec("Web"), "invalid service name"),
        (
            ServiceSpec {
                health: HealthSpec {
                    probe: Some(Probe::Http {
                        port: 80,
                        path: "healthz".into(),
                    }),
                    ..HealthSpec::default()
                },
                ..spec("web")
            },
            "must start with '/'",
        ),
        (
            ServiceSpec {
                health: HealthSpec {
                    interval_ms: Some(50),
                    ..HealthSpec::default()
                },
                ..spec("web")
            },
            "give --health-tcp",
        ),
        (
            ServiceSpec {
                network: "nope".into(),
                ..spec("web")
            },
            "no network",
        ),
    ] {
        let e = create_service(&store, &bad).await.expect_err("refused");
        assert!(e.error.contains(says), "{bad:?}: {}", e.error);
    }
    assert_eq!(
        keys(&store).await,
        before,
        "a refused create left something"
    );
    let web = create_service(
        &store,
        &ServiceSpec {
            port: Some(80),
            ..spec("web")
        },
    )
    .await
    .expect("create");
    assert_eq!(web.lb, LbPolicy::RoundRobin);
    assert_eq!(web.port_name.as_deref(), Some("http"), "from /etc/services");
    let dup = create_service(&store, &spec("web")).await.expect_err("dup");
    assert_eq!(dup.kind, ErrorKind::Duplicate);
}

#[tokio::test]
async fn update_changes_only_what_it_names() {
    let store = cluster().await;
    create_service(
        &store,
        &ServiceSpec {
            port: Some(8080),
            health: HealthSpec {
                probe: Some(Probe::Tcp { port: 8080 }),
                ..HealthSpec::default()
            },
            ..spec("web")
        },
    )
    .await
    .expect("create");
    let changed = update_service(
        &store,
        &ServiceSpec {
            lb: Some(LbPolicy::Weighted),
            health: HealthSpec {
                fall: Some(4),
                ..HealthSpec::default()
            },
            ..spec("web")
        },
    )
    .await
    .expect("update");
    assert_eq!(changed.lb, LbPolicy::Weighted);
    assert_eq!(changed.port, Some(8080));
    let check = changed.health.expect("check kept");
    assert_eq!((check.probe, check.fall), (Probe::Tcp { port: 8080 }, 4));
    let missing = update_service(&store, &spec("nope"))
        .await
        .expect_err("unknown");
    assert_eq!(missing.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn inspect_lists_instances_with_health_and_rm_waits_for_them_to_go() {
    let store = cluster().await;
    create_service(
        &store,
        &ServiceSpec {
            health: HealthSpec {
                probe: Some(Probe::Tcp { port: 80 }),
                ..HealthSpec::default()
            },
            ..spec("web")
        },
    )
    .await
    .expect("create");
    for (name, n) in [("web1", 2), ("web2", 3)] {
        let ep = Endpoint {
            service: Some("web".into()),
            ..Endpoint::new(
                "frontend",
                name,
                "node1",
                format!("172.21.0.{n}").parse().expect("ip"),
            )
        };
        store.put_object(&ep, None).await.expect("endpoint");
    }
    let h = Health {
        schema: SCHEMA_VERSION,
        network: "frontend".into(),
        endpoint: "web1".into(),
        node: "node1".into(),
        state: HealthState::Healthy,
        since_ms: 1,
        checked_ms: 2,
        output: String::new(),
        connections: Some(4),
    };
    store.put_object(&h, None).await.expect("health");
    let info = get_service(&store, "frontend", "web")
        .await
        .expect("inspect");
    let seen: Vec<(&str, bool, Option<u32>)> = info
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.answered, i.connections))
        .collect();
    assert_eq!(seen, [("web1", true, Some(4)), ("web2", false, None)]);
    assert_eq!(list_services(&store).await.expect("ls").len(), 1);
    let busy = remove_service(&store, "frontend", "web")
        .await
        .expect_err("busy");
    assert!(busy.error.contains("web1 on node1"), "{}", busy.error);
    for name in ["web1", "web2"] {
        let key = Endpoint::new("frontend", name, "node1", "172.21.0.9".parse().expect("ip")).key();
        store.delete(&key.to_string()).await.expect("delete");
    }
    remove_service(&store, "frontend", "web").await.expect("rm");
    assert!(list_services(&store).await.expect("ls").is_empty());
}
