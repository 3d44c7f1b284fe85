//! An in-memory kernel: [`simulate`] applies one op to an [`ObservedHost`] the way Linux would
//! (deleting a veth takes its peer and routes, deleting a device its FDB and neighbours), and
//! [`FakeDataplane`] wraps it behind [`Dataplane`] for unit tests of callers.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ApplyReport, Dataplane, NetlinkError, OpError, Scope};
use crate::plan::{
    DesiredHost, IpFamily, LinkKind, LinkRef, MacAddr, ObservedContainer, ObservedFdb,
    ObservedHost, ObservedLink, ObservedNeigh, ObservedPortFdb, Op, PortFlags,
};

fn new_link(name: &str, index: u32, kind: LinkKind, mtu: u32, mac: MacAddr) -> ObservedLink {
    ObservedLink {
        name: name.to_string(),
        index,
        kind,
        mtu,
        mac: Some(mac),
        up: false,
        master: None,
        port: None,
        peer_index: None,
        addresses: Vec::new(),
    }
}

fn next_index(links: &[ObservedLink]) -> u32 {
    links.iter().map(|l| l.index).max().unwrap_or(1) + 1
}

fn fake_mac(index: u32) -> MacAddr {
    let i = index.to_be_bytes();
    MacAddr([0x0e, 0xfa, i[0], i[1], i[2], i[3]])
}

fn link_mut<'a>(s: &'a mut ObservedHost, link: &LinkRef) -> Result<&'a mut ObservedLink, String> {
    let found = match link {
        LinkRef::Host(n) => s.links.iter_mut().find(|l| &l.name == n),
        LinkRef::Container { netns, name } => s
            .containers
            .iter_mut()
            .find(|c| &c.netns == netns && c.reachable)
            .and_then(|c| c.links.iter_mut().find(|l| &l.name == name)),
    };
    found.ok_or_else(|| format!("no such link: {link}"))
}

fn host_exists(s: &ObservedHost, name: &str) -> Result<(), String> {
    if s.links.iter().any(|l| l.name == name) {
        Ok(())
    } else {
        Err(format!("no such link: {name}"))
    }
}

fn create(
    s: &mut ObservedHost,
    name: &str,
    kind: LinkKind,
    mtu: u32,
    mac: Option<MacAddr>,
) -> Result<u32, String> {
    if s.links.iter().any(|l| l.name == name) {
        return Err(format!("{name}: file exists"));
    }
    let index = next_index(&s.links);
    s.links.push(new_link(
        name,
        index,
        kind,
        mtu,
        mac.unwrap_or_else(|| fake_mac(index)),
    ));
    Ok(index)
}

fn delete_link(s: &mut ObservedHost, name: &str) {
    let Some(pos) = s.links.iter().position(|l| l.name == name) else {
        return;
    };
    let gone = s.links.remove(pos);
    if gone.kind == LinkKind::Veth {
        for c in &mut s.containers {
            if let Some(p) = c
                .links
                .iter()
                .position(|l| l.peer_index == Some(gone.index) && Some(l.index) == gone.peer_index)
            {
                let inner = c.links.remove(p);
                c.default4.retain(|(_, dev)| *dev != inner.name);
                c.default6.retain(|(_, dev)| *dev != inner.name);
            }
        }
    }
    s.fdb.retain(|f| f.vxlan != name);
    s.port_fdb.retain(|f| f.port != name);
    s.neighbours.retain(|n| n.bridge != name);
    for l in &mut s.links {
        if l.master.as_deref() == Some(name) {
            l.master = None;
            l.port = None;
        }
    }
}

/// Applies `op` to the simulated kernel state `s`, or says why the kernel would refuse it.
pub fn simulate(s: &mut ObservedHost, op: &Op) -> Result<(), String> {
    match op {
        Op::EnableForwarding(IpFamily::V4) => s.forwarding4 = true,
        Op::EnableForwarding(IpFamily::V6) => s.forwarding6 = true,
        Op::DisableBridgeNetfilter => s.bridge_netfilter = false,
        Op::DeleteLink(name) => delete_link(s, name),
        Op::CreateBridge { name, mac, mtu } => {
            let kind = LinkKind::Bridge {
                nf_call_iptables: false,
                nf_call_ip6tables: false,
                mcast_snooping: false,
            };
            create(s, name, kind, *mtu, Some(*mac))?;
        }
        Op::CreateVxlan {
            name,
            vni,
            local,
            port,
            mtu,
        } => {
            let kind = LinkKind::Vxlan {
                vni: *vni,
                local: *local,
                port: *port,
                learning: false,
            };
            create(s, name, kind, *mtu, None)?;
        }
        Op::CreateVeth {
            host,
            netns,
            peer,
            peer_mac,
            host_mac,
            mtu,
            ..
        } => {
            let c = s
                .containers
                .iter()
                .find(|c| &c.netns == netns && c.reachable)
                .ok_or_else(|| format!("network namespace {} not found", netns.display()))?;
            if c.links.iter().any(|l| &l.name == peer) {
                return Err(format!("{peer} in {}: file exists", netns.display()));
            }
            let inner_index = next_index(&c.links);
            let host_index = create(s, host, LinkKind::Veth, *mtu, Some(*host_mac))?;
            let mut inner = new_link(peer, inner_index, LinkKind::Veth, *mtu, *peer_mac);
            inner.peer_index = Some(host_index);
            if let Some(h) = s.links.iter_mut().find(|l| l.index == host_index) {
                h.peer_index = Some(inner_index);
            }
            if let Some(c) = s.containers.iter_mut().find(|c| &c.netns == netns) {
                c.links.push(inner);
            }
        }
        Op::SetBridgeNetfilter { name, on } => {
            let LinkKind::Bridge {
                nf_call_iptables,
                nf_call_ip6tables,
                ..
            } = &mut link_mut(s, &LinkRef::Host(name.clone()))?.kind
            else {
                return Err(format!("{name} is not a bridge"));
            };
            (*nf_call_iptables, *nf_call_ip6tables) = (*on, *on);
        }
        Op::DisableMulticastSnooping { name } => {
            let LinkKind::Bridge { mcast_snooping, .. } =
                &mut link_mut(s, &LinkRef::Host(name.clone()))?.kind
            else {
                return Err(format!("{name} is not a bridge"));
            };
            *mcast_snooping = false;
        }
        Op::SetMtu { link, mtu } => link_mut(s, link)?.mtu = *mtu,
        Op::SetMac { link, mac } => link_mut(s, link)?.mac = Some(*mac),
        Op::SetUp(link) => link_mut(s, link)?.up = true,
        Op::SetMaster { name, master } => {
            if !s
                .links
                .iter()
                .any(|l| &l.name == master && matches!(l.kind, LinkKind::Bridge { .. }))
            {
                return Err(format!("no such bridge: {master}"));
            }
            let l = link_mut(s, &LinkRef::Host(name.clone()))?;
            if l.master.as_deref() != Some(master) {
                l.master = Some(master.clone());
                l.port = Some(PortFlags {
                    neigh_suppress: false,
                    learning: true,
                });
            }
        }
        Op::SetPortFlags {
            name,
            neigh_suppress,
            learning,
        } => {
            let l = link_mut(s, &LinkRef::Host(name.clone()))?;
            if l.port.is_none() {
                return Err(format!("{name} is not a bridge port"));
            }
            l.port = Some(PortFlags {
                neigh_suppress: *neigh_suppress,
                learning: *learning,
            });
        }
        Op::AddAddress { link, addr } => {
            let l = link_mut(s, link)?;
            if !l.addresses.contains(addr) {
                l.addresses.push(*addr);
            }
        }
        Op::DelAddress { link, addr } => link_mut(s, link)?.addresses.retain(|a| a != addr),
        Op::SetDefaultRoute { link, gateway } => {
            let LinkRef::Container { netns, name } = link else {
                return Err("default routes are only set in containers".into());
            };
            link_mut(s, link)?;
            let c = s
                .containers
                .iter_mut()
                .find(|c| &c.netns == netns)
                .ok_or("no such container")?;
            match gateway {
                std::net::IpAddr::V4(g) => c.default4 = vec![(*g, name.clone())],
                std::net::IpAddr::V6(g) => c.default6 = vec![(*g, name.clone())],
            }
        }
        Op::AddFdb { vxlan, mac, vtep } => {
            host_exists(s, vxlan)?;
            let e = ObservedFdb {
                vxlan: vxlan.clone(),
                mac: *mac,
                vtep: *vtep,
            };
            if !s.fdb.contains(&e) {
                s.fdb.push(e);
            }
        }
        Op::DelFdb { vxlan, mac, vtep } => s
            .fdb
            .retain(|f| !(&f.vxlan == vxlan && f.mac == *mac && f.vtep == *vtep)),
        Op::AddPortFdb { port, mac } => {
            host_exists(s, port)?;
            let e = ObservedPortFdb {
                port: port.clone(),
                mac: *mac,
            };
            if !s.port_fdb.contains(&e) {
                s.port_fdb.push(e);
            }
        }
        Op::DelPortFdb { port, mac } => s.port_fdb.retain(|f| !(&f.port == port && f.mac == *mac)),
        Op::SetNeigh { bridge, ip, mac } => {
            host_exists(s, bridge)?;
            s.neighbours
                .retain(|n| !(&n.bridge == bridge && n.ip == *ip));
            s.neighbours.push(ObservedNeigh {
                bridge: bridge.clone(),
                ip: *ip,
                mac: *mac,
            });
        }
        Op::DelNeigh { bridge, ip } => s
            .neighbours
            .retain(|n| !(&n.bridge == bridge && n.ip == *ip)),
    }
    Ok(())
}

/// A [`Dataplane`] over [`simulate`]: records every op, can be told to fail ops.
#[derive(Debug, Default)]
pub struct FakeDataplane {
    state: Mutex<ObservedHost>,
    fail: Mutex<Vec<String>>,
    log: Mutex<Vec<Op>>,
    observed: Mutex<Vec<Scope>>,
}

impl FakeDataplane {
    /// An empty host with forwarding off.
    pub fn new() -> FakeDataplane {
        FakeDataplane::default()
    }

    /// Makes a container namespace exist at `netns` (what a runtime would have created).
    pub fn add_container(&self, netns: impl Into<PathBuf>) {
        let netns = netns.into();
        let mut s = lock(&self.state);
        if !s.containers.iter().any(|c| c.netns == netns) {
            s.containers.push(ObservedContainer {
                netns,
                reachable: true,
                links: Vec::new(),
                default4: Vec::new(),
                default6: Vec::new(),
            });
        }
    }

    /// Removes a container namespace (its veth ends die with it, as in Linux).
    pub fn remove_container(&self, netns: &Path) {
        let mut s = lock(&self.state);
        let Some(pos) = s.containers.iter().position(|c| c.netns == netns) else {
            return;
        };
        let gone = s.containers.remove(pos);
        let hosts: Vec<String> = s
            .links
            .iter()
            .filter(|h| {
                gone.links
                    .iter()
                    .any(|l| l.peer_index == Some(h.index) && h.peer_index == Some(l.index))
            })
            .map(|h| h.name.clone())
            .collect();
        for h in hosts {
            delete_link(&mut s, &h);
        }
    }

    /// Makes every later op whose description contains `pattern` fail.
    pub fn fail_ops_matching(&self, pattern: &str) {
        lock(&self.fail).push(pattern.to_string());
    }

    /// Every op applied so far (failed ones included), in order.
    pub fn ops(&self) -> Vec<Op> {
        lock(&self.log).clone()
    }

    /// The scope of every observation so far, in order.
    pub fn observations(&self) -> Vec<Scope> {
        lock(&self.observed).clone()
    }

    /// The whole simulated state (all containers, not only desired ones).
    pub fn state(&self) -> ObservedHost {
        lock(&self.state).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Dataplane for FakeDataplane {
    async fn observe(
        &self,
        desired: &DesiredHost,
        scope: &Scope,
    ) -> Result<ObservedHost, NetlinkError> {
        lock(&self.observed).push(scope.clone());
        let mut s = lock(&self.state).clone();
        let wanted = scope.select(desired);
        let mut containers: Vec<ObservedContainer> = s
            .containers
            .drain(..)
            .filter(|c| wanted.contains(&c.netns.as_path()))
            .collect();
        for &w in &wanted {
            if !containers.iter().any(|c| c.netns == w) {
                containers.push(ObservedContainer {
                    netns: w.to_path_buf(),
                    reachable: false,
                    links: Vec::new(),
                    default4: Vec::new(),
                    default6: Vec::new(),
                });
            }
        }
        s.containers = containers;
        if let Scope::Workloads(_) = scope {
            // As the real one: only the scoped workloads' host veths, nothing else of the host.
            let veths: Vec<&str> = desired
                .endpoints
                .iter()
                .filter(|e| wanted.contains(&e.netns.as_path()))
                .map(|e| e.host_ifname.as_str())
                .collect();
            s.links.retain(|l| veths.contains(&l.name.as_str()));
            s.links.iter_mut().for_each(|l| l.addresses.clear());
            s.fdb.clear();
            s.port_fdb.clear();
            s.neighbours.clear();
        }
        Ok(s)
    }

    async fn apply(&self, ops: &[Op]) -> ApplyReport {
        let mut report = ApplyReport::default();
        for op in ops {
            lock(&self.log).push(op.clone());
            let text = op.to_string();
            let res = if lock(&self.fail).iter().any(|p| text.contains(p.as_str())) {
                Err(format!("told to fail: {text}"))
            } else {
                simulate(&mut lock(&self.state), op)
            };
            match res {
                Ok(()) => report.applied += 1,
                Err(e) => report.errors.push(OpError {
                    op: op.clone(),
                    error: NetlinkError::Simulated(e),
                }),
            }
        }
        report
    }
}

#[cfg(test)]
#[path = "fake_tests.rs"]
mod tests;
