//! What an attach leaves in the cluster besides its endpoints: the services its instances name,
//! created with the defaults when the cluster lacks them; and, after an agent start, the
//! addresses of the local workloads told to IPAM again.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use shibafu_overlay::ipam::IpamError;
use shibafu_overlay::model::{port_name_in, Object, Service};
use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::{Compare, Store, TxnOp};
use tracing::{debug, info, warn};

use super::attach::Links;
use super::AttachError;
use crate::registry::actor::GetWorkloads;
use crate::registry::book::Entry;

/// Creates, with the defaults (and the port `run --port` gave, named as in /etc/services), each
/// service `entry` is an instance of that the cluster does not have yet. A failure is only
/// logged: DNS answers the instances under the defaults anyway, and the next instance retries.
pub async fn ensure_services(store: Arc<dyn Store>, state: &ClusterState, entry: &Entry) {
    for ep in entry.endpoints() {
        let Some(name) = &ep.service else { continue };
        if state
            .services()
            .contains_key(&(ep.network.clone(), name.clone()))
        {
            continue;
        }
        let mut service = Service {
            port: ep.port,
            ..Service::new(&ep.network, name)
        };
        if let Some(port) = ep.port {
            let text = tokio::fs::read_to_string("/etc/services")
                .await
                .unwrap_or_default();
            service.port_name = port_name_in(&text, port, service.protocol);
        }
        let created = match TxnOp::put_object(&service, None) {
            Ok(put) => {
                store
                    .txn(vec![Compare::absent(&service.key())], vec![put])
                    .await
            }
            Err(e) => Err(e),
        };
        match created {
            Ok(true) => {
                info!(network = %ep.network, service = %name, "service created with the defaults")
            }
            Ok(false) => debug!(network = %ep.network, service = %name, "service exists already"),
            Err(e) => {
                warn!(network = %ep.network, service = %name, error = %e, "cannot create the service yet")
            }
        }
    }
}

/// After a start: tells IPAM which addresses this node's workloads use, so a restart changes
/// nothing for running workloads. An address whose block another node owns now is logged and
/// left; a store that does not answer fails the whole (after the other networks are tried):
/// until it succeeds IPAM must not hand out addresses, or it would hand out those in use.
pub async fn restore(links: &Links, state: &ClusterState) -> Result<(), AttachError> {
    let workloads = links.get_all.send(GetWorkloads).await?;
    let mut used: BTreeMap<&str, Vec<Ipv4Addr>> = BTreeMap::new();
    for ep in workloads.values().flat_map(Entry::endpoints) {
        used.entry(ep.network.as_str()).or_default().push(ep.ipv4);
    }
    let mut failed = None;
    for (net, ips) in used {
        match state.networks().get(net) {
            Some(n) => match links.ipam.recover(n, &ips).await {
                Ok(()) => {}
                Err(e @ IpamError::Store(_)) => {
                    warn!(network = %net, error = %e, "IPAM recovery failed; retried before the next attach");
                    failed.get_or_insert(AttachError::Ipam {
                        network: net.to_string(),
                        source: e,
                    });
                }
                Err(e) => warn!(network = %net, error = %e, "IPAM recovery kept what it could"),
            },
            None => warn!(network = %net, "local endpoints on a network that no longer exists"),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    info!(
        workloads = workloads.len(),
        "addresses of local workloads recovered"
    );
    Ok(())
}
