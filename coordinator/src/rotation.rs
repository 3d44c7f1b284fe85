//! `POST /v1/nodes/<node>/rotate-key`: asks a node to rotate its WireGuard key. The request is
//! a record the node's agent watches; the agent rotates without dropping traffic and deletes it.

use std::time::{SystemTime, UNIX_EPOCH};

use shibafu_overlay::api::{ApiError, ErrorKind, NodeInfo};
use shibafu_overlay::model::{encode, Node, Rotation, TunnelStatus, SCHEMA_VERSION};
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::{Store, StoreExt};
use shibafu_overlay::telemetry::Trace;

use crate::cluster::store_error;

/// Records a rotation request for `node`; the node as it stands (its current key).
pub async fn request_rotation(store: &dyn Store, node: &str) -> Result<NodeInfo, ApiError> {
    let record = store
        .get_object::<Node>(&Key::Node(node.to_string()))
        .await
        .map_err(store_error)?
        .map(|(n, _)| n)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no live node named {node:?}; see `shibafu node ls`"
            ))
        })?;
    if record.wg.is_none() {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("node {node:?} publishes no WireGuard key (its agent predates encryption); upgrade it first"),
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let rotation = Rotation {
        schema: SCHEMA_VERSION,
        node: node.to_string(),
        requested_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
        trace: Trace::NONE,
    };
    let value = encode(&rotation)
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("cannot encode value: {e}")))?;
    store
        .put(&Key::Rotation(node.to_string()).to_string(), value, None)
        .await
        .map_err(store_error)?;
    let status = store
        .get_object::<TunnelStatus>(&Key::Tunnel(node.to_string()))
        .await
        .ok()
        .flatten()
        .map(|(s, _)| s);
    Ok(NodeInfo::from_node(&record, status.as_ref(), now.as_secs()))
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::model::NodeWireGuard;
    use shibafu_overlay::store::MemoryStore;

    use super::*;

    async fn put_node(store: &MemoryStore, name: &str, wg: bool) {
        let node = Node {
            schema: SCHEMA_VERSION,
            name: name.into(),
            underlay: "10.0.0.1".parse().expect("ip"),
            version: "t".into(),
            wg: wg.then(|| NodeWireGuard {
                public_key: "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=".into(),
                port: 51820,
                tunnel: "100.64.0.5".parse().expect("ip"),
                next_key: None,
                encrypt_all: false,
            }),
            started_at: 0,
        };
        let value = serde_json::to_vec(&node).expect("json");
        store
            .put(&Key::Node(name.into()).to_string(), value, None)
            .await
            .expect("put");
    }

    #[tokio::test]
    async fn a_rotation_is_recorded_for_a_live_node_with_a_key_only() {
        let store = MemoryStore::new();
        put_node(&store, "node1", true).await;
        put_node(&store, "old", false).await;
        let info = request_rotation(&store, "node1").await.expect("requested");
        assert_eq!(info.wireguard.expect("wg").key, "QUJDREVG");
        let stored = store
            .get_object::<Rotation>(&Key::Rotation("node1".into()))
            .await
            .expect("get");
        assert!(stored.is_some());
        let missing = request_rotation(&store, "ghost")
            .await
            .expect_err("unknown");
        assert_eq!(missing.kind, ErrorKind::NotFound);
        let old = request_rotation(&store, "old").await.expect_err("no key");
        assert_eq!(old.kind, ErrorKind::Conflict);
        assert!(store
            .get_object::<Rotation>(&Key::Rotation("old".into()))
            .await
            .expect("get")
            .is_none());
    }
}
