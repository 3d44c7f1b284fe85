//! CNI routes (`/v1/cni/...`), called by `shibafu-cni` for a container runtime. An attachment
//! is a workload entry marked with the runtime's container id, its interface named by the
//! runtime; add, del, check and gc find it by (container id, interface name).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix::Recipient;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use ipnet::IpNet;
use shibafu_overlay::api::{
    ApiError, CniAdd, CniAttachment, CniCheck, CniGc, CniRef, CniRemoved, CniTarget, ErrorKind,
};
use shibafu_overlay::container::netns_file::is_pinned;
use shibafu_overlay::model::Network;
use shibafu_overlay::plan::{gateway_mac, veth_host_name};
use shibafu_overlay::telemetry::Trace;

use super::cni_pins as pins;
use super::{ApiFailure, SharedState};
use crate::dataplane::actor::CheckLocal;
use crate::firewall_actor::CheckNetwork;
use crate::messages::GetNetworks;
use crate::network_actor::{AttachRequest, AttachWorkload, DetachWorkload};
use crate::registry::actor::GetWorkloads;
use crate::registry::book::{Entry, Iface};

/// What the CNI routes reach besides attach and detach.
#[derive(Clone)]
pub struct CniLinks {
    /// Where namespaces given as `/proc/PID/ns/net` are pinned (`<state-dir>/netns/cni`).
    pub pins: PathBuf,
    /// One CNI change at a time (pins are shared by a container's attachments).
    pub serial: Arc<tokio::sync::Mutex<()>>,
    /// Registry: every committed workload.
    pub workloads: Recipient<GetWorkloads>,
    /// Dataplane: what a namespace lacks.
    pub check: Recipient<CheckLocal>,
    /// Firewall: are a network's rules loaded.
    pub firewall: Recipient<CheckNetwork>,
}

/// Routes of this module.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/cni/add", post(add))
        .route("/v1/cni/del", post(del))
        .route("/v1/cni/check", post(check))
        .route("/v1/cni/gc", post(gc))
}

type Answer<T> = Result<Json<T>, ApiFailure>;

fn fail(kind: ErrorKind, msg: String) -> ApiFailure {
    ApiFailure(ApiError::new(kind, msg))
}

async fn add(State(s): State<SharedState>, Json(req): Json<CniAdd>) -> Answer<CniAttachment> {
    pins::check_id(&req.container_id)?;
    let given = PathBuf::from(&req.netns);
    pins::check_netns(&given)?;
    let _turn = s.cni.serial.lock().await;
    let taken = s.cni.workloads.send(GetWorkloads).await?;
    if let Some((entry, _)) = find(&taken, &req.container_id, &req.ifname) {
        return Err(fail(
            ErrorKind::Attached,
            format!(
                "container {} already has {} attached (as {}); DEL it first",
                req.container_id, req.ifname, entry.name
            ),
        ));
    }
    let (netns, pinned) = pins::pin(&s.cni.pins, &given, &req.container_id)?;
    let id = req.container_id.clone();
    let r = AttachRequest {
        name: req.name,
        netns: netns.clone(),
        container: false,
        networks: vec![req.network],
        aliases: req.aliases,
        service: req.service,
        port: req.port,
        weight: req.weight,
        trace: Trace::current(),
        ifname: Some(req.ifname.clone()),
        cni: Some(req.container_id),
        ..AttachRequest::default()
    };
    let attached = match s.network.attach.send(AttachWorkload(r)).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(ApiFailure(e.to_api())),
        Err(e) => Err(e.into()),
    };
    let (entry, nets) = match attached {
        Ok(done) => done,
        Err(e) => {
            if pinned {
                let all = s.cni.workloads.send(GetWorkloads).await?;
                pins::release(&s.cni.pins, &id, &all);
            }
            return Err(e);
        }
    };
    let iface = entry
        .interfaces
        .iter()
        .find(|i| i.ifname == req.ifname)
        .ok_or_else(|| fail(ErrorKind::Internal, "attached without the interface".into()))?;
    let net = nets
        .iter()
        .find(|n| n.name == iface.endpoint.network)
        .ok_or_else(|| fail(ErrorKind::Internal, "attached to a vanished network".into()))?;
    Ok(Json(attachment(&entry, iface, net)))
}

async fn del(State(s): State<SharedState>, Json(req): Json<CniTarget>) -> Answer<CniRemoved> {
    pins::check_id(&req.container_id)?;
    let _turn = s.cni.serial.lock().await;
    let all = s.cni.workloads.send(GetWorkloads).await?;
    let found = find(&all, &req.container_id, &req.ifname)
        .filter(|(_, i)| i.endpoint.network == req.network);
    let Some((entry, iface)) = found else {
        return Ok(Json(CniRemoved::default()));
    };
    let (name, network) = (entry.name.clone(), iface.endpoint.network.clone());
    let detached = detach(&s, name, network).await;
    // Whatever the detach answered, the registry entry is gone or kept as it now stands.
    let after = s.cni.workloads.send(GetWorkloads).await?;
    pins::release(&s.cni.pins, &req.container_id, &after);
    detached?;
    Ok(Json(CniRemoved {
        removed: vec![CniRef {
            container_id: req.container_id,
            ifname: req.ifname,
        }],
    }))
}

async fn check(State(s): State<SharedState>, Json(req): Json<CniTarget>) -> Answer<CniCheck> {
    pins::check_id(&req.container_id)?;
    let all = s.cni.workloads.send(GetWorkloads).await?;
    let Some((entry, iface)) = find(&all, &req.container_id, &req.ifname) else {
        return Err(fail(
            ErrorKind::NotFound,
            format!(
                "no CNI attachment of container {} interface {} on this node",
                req.container_id, req.ifname
            ),
        ));
    };
    if iface.endpoint.network != req.network {
        return Err(fail(
            ErrorKind::Invalid,
            format!(
                "{} of container {} is on network {}, not {}",
                req.ifname, req.container_id, iface.endpoint.network, req.network
            ),
        ));
    }
    let nets = s.networks.send(GetNetworks).await?;
    let net = nets.iter().find(|n| n.name == req.network).ok_or_else(|| {
        fail(
            ErrorKind::NotFound,
            format!("network {} is gone", req.network),
        )
    })?;
    let mut problems = Vec::new();
    if is_pinned(&entry.netns) {
        match s.cni.check.send(CheckLocal(entry.netns.clone())).await? {
            Ok(ops) => problems.extend(ops.into_iter().map(|op| format!("missing: {op}"))),
            Err(e) => problems.push(format!("cannot read the namespace: {e}")),
        }
    } else {
        problems.push(format!("namespace {} is gone", entry.netns.display()));
    }
    if let Err(e) = s
        .cni
        .firewall
        .send(CheckNetwork(req.network.clone()))
        .await?
    {
        problems.push(e);
    }
    Ok(Json(CniCheck {
        attachment: attachment(entry, iface, net),
        problems,
    }))
}

async fn gc(State(s): State<SharedState>, Json(req): Json<CniGc>) -> Answer<CniRemoved> {
    let _turn = s.cni.serial.lock().await;
    let all = s.cni.workloads.send(GetWorkloads).await?;
    let stale: Vec<(&Entry, CniRef)> = all
        .values()
        .filter_map(|e| Some((e, e.cni.as_ref()?)))
        .flat_map(|(e, id)| {
            e.interfaces
                .iter()
                .filter(|i| i.endpoint.network == req.network)
                .map(move |i| {
                    let r = CniRef {
                        container_id: id.clone(),
                        ifname: i.ifname.clone(),
                    };
                    (e, r)
                })
        })
        .filter(|(_, r)| !req.valid.contains(r))
        .collect();
    let mut removed = Vec::new();
    let mut failed = Ok(());
    for (entry, r) in stale {
        match detach(&s, entry.name.clone(), req.network.clone()).await {
            Ok(()) => removed.push(r),
            Err(e) => failed = failed.and(Err(e)),
        }
    }
    let after = s.cni.workloads.send(GetWorkloads).await?;
    pins::sweep(&s.cni.pins, &after);
    failed?;
    Ok(Json(CniRemoved { removed }))
}

async fn detach(s: &SharedState, name: String, network: String) -> Result<(), ApiFailure> {
    s.network
        .detach
        .send(DetachWorkload {
            name,
            network: Some(network),
        })
        .await?
        .map(|_| ())
        .map_err(|e| ApiFailure(e.to_api()))
}

/// The entry and interface of a CNI attachment.
fn find<'a>(
    all: &'a crate::registry::LocalWorkloads,
    container_id: &str,
    ifname: &str,
) -> Option<(&'a Entry, &'a Iface)> {
    all.values()
        .filter(|e| e.cni.as_deref() == Some(container_id))
        .find_map(|e| Some((e, e.interfaces.iter().find(|i| i.ifname == ifname)?)))
}

/// What a CNI result reports about one interface.
pub fn attachment(entry: &Entry, iface: &Iface, net: &Network) -> CniAttachment {
    let ep = &iface.endpoint;
    let with_prefix = |ip: IpAddr, len: u8| IpNet::new(ip, len).unwrap_or_else(|_| ip.into());
    let mut addresses = vec![with_prefix(ep.ipv4.into(), net.subnet.prefix_len())];
    let mut gateways = vec![net.gateway().into()];
    if let (Some(v6), Some(subnet6), Some(gw6)) = (ep.ipv6, net.subnet6, net.gateway6()) {
        addresses.push(with_prefix(v6.into(), subnet6.prefix_len()));
        gateways.push(gw6.into());
    }
    CniAttachment {
        name: entry.name.clone(),
        network: net.name.clone(),
        netns: entry.netns.display().to_string(),
        ifname: iface.ifname.clone(),
        mac: ep.mac,
        bridge: net.bridge_name(),
        bridge_mac: gateway_mac(net.vni),
        host_ifname: veth_host_name(&net.name, &ep.id),
        addresses,
        gateways,
        nameserver: net.gateway().into(),
        zone: net.zone.clone(),
    }
}
