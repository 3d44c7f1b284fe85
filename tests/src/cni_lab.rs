//! CNI attachments as a lab test sees them: containers to attach, the addresses of a CNI result,
//! what `shibafu ps` and `network inspect` list, and the standard ADD/CHECK/DEL lifecycle with
//! hand-made damage in between ([`lifecycle_after`]).

use serde_json::Value;

use crate::cni::{Attachment, Runtime};
use crate::cni_call::CniCall;
use crate::cni_conf::SHIBAFU_TYPES;
use crate::{Lab, NetnsGuard};

/// The shibafu network the CNI lab tests attach to.
pub const NET: &str = "cninet";

/// Creates [`NET`] (172.24.0.0/24) in `lab`.
pub fn create_net(lab: &Lab) {
    lab.cli_ok("node1", &["network", "create", NET, "172.24.0.0/24"]);
}

/// A lab of `nodes` nodes with [`NET`], or `None` (after saying so) without root.
pub fn lab_with_net(nodes: usize) -> Option<Lab> {
    if !crate::root_or_skip("lab") {
        return None;
    }
    let lab = Lab::up(nodes);
    create_net(&lab);
    Some(lab)
}

/// A fresh container namespace (named after `tag`) and its attachment (eth0, a 64-hex id).
pub fn container(tag: &str) -> (NetnsGuard, Attachment) {
    let ns = NetnsGuard::new(tag);
    let att = Attachment::of(&ns);
    (ns, att)
}

/// The address (without prefix length) of the `i`th IP of a CNI result.
pub fn result_ip(result: &Value, i: usize) -> String {
    let addr = result["ips"][i]["address"].as_str().unwrap_or_default();
    addr.split('/').next().unwrap_or_default().to_string()
}

/// The gateway of the first IP of a CNI result.
pub fn result_gateway(result: &Value) -> String {
    result["ips"][0]["gateway"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `shibafu ps --all --format json` on NODE: the entries made by CNI (with a `cni` id).
pub fn cni_entries(lab: &Lab, node: &str) -> Vec<Value> {
    let out = lab.cli_ok(node, &["ps", "--all", "--format", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("ps: {e}: {out}"));
    let all = v.as_array().cloned().unwrap_or_default();
    all.into_iter().filter(|c| c["cni"].is_string()).collect()
}

/// The container ids of the CNI entries of `ps` on NODE, sorted.
pub fn cni_ids(lab: &Lab, node: &str) -> Vec<String> {
    let entries = cni_entries(lab, node);
    let mut ids: Vec<String> = entries
        .iter()
        .filter_map(|c| c["cni"].as_str())
        .map(String::from)
        .collect();
    ids.sort();
    ids
}

/// The `endpoints` of `shibafu network inspect NETWORK`.
pub fn endpoints(lab: &Lab, network: &str) -> Vec<Value> {
    let out = lab.cli_ok("node1", &["network", "inspect", network]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect: {e}: {out}"));
    v["endpoints"].as_array().cloned().unwrap_or_default()
}

/// What the standard lifecycle did under one runtime.
#[derive(Debug)]
pub struct Lifecycle {
    /// The first ADD.
    pub add: CniCall,
    /// CHECK right after.
    pub check: CniCall,
    /// CHECK after `ip route add 198.51.100.0/24 via GATEWAY` in the container.
    pub check_extra_route: CniCall,
    /// A second ADD of the same (container id, ifname) without DEL.
    pub add_again: CniCall,
    /// CHECK right after `ip link del IFNAME` in the container.
    pub check_link_gone: AfterDamage,
    /// DEL.
    pub del: CniCall,
    /// DEL again.
    pub del_again: CniCall,
}

/// The standard lifecycle of `att` (namespace `ns`) under `rt`, after its ADD `add`: CHECK,
/// CHECK with a route added by hand, a second ADD, CHECK after the container interface was
/// deleted by hand, DEL, DEL again.
pub fn lifecycle_after(rt: &Runtime, att: &Attachment, ns: &NetnsGuard, add: CniCall) -> Lifecycle {
    add.expect_ok("ADD");
    let gw = result_gateway(&add.json);
    let first_check = rt.check(att);
    ns.ip(&["route", "add", "198.51.100.0/24", "via", &gw]);
    let check_extra_route = rt.check(att);
    let add_again = rt.add(att);
    let before = link_index(ns, &att.ifname);
    ns.ip(&["link", "del", &att.ifname]);
    let check = rt.check(att);
    let after = link_index(ns, &att.ifname);
    let check_link_gone = AfterDamage {
        repaired: after.is_some() && after != before,
        state: format!(
            "{} index before {before:?}, after CHECK {after:?}",
            att.ifname
        ),
        check,
    };
    let del = rt.del(att);
    let del_again = rt.del(att);
    Lifecycle {
        add,
        check: first_check,
        check_extra_route,
        add_again,
        check_link_gone,
        del,
        del_again,
    }
}

/// The interface index of IFNAME in `ns`, `None` when it has no such interface.
pub fn link_index(ns: &NetnsGuard, ifname: &str) -> Option<u32> {
    let out = ns
        .cmd("ip")
        .args(["-o", "link", "show", "dev", ifname])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(':').next()?.trim().parse().ok()
}

/// CHECK right after damage made by hand, and whether the agent had repaired the damage by
/// the time CHECK returned.
#[derive(Debug)]
pub struct AfterDamage {
    /// CHECK (of the whole list), called at once after the damage.
    pub check: CniCall,
    /// The damaged object was back, made anew (another interface index, another nftables
    /// handle), when CHECK returned.
    pub repaired: bool,
    /// What was looked at before and after, for messages.
    pub state: String,
}

impl AfterDamage {
    /// Asserts what the spec asks of CHECK while the agent's self-repair races it (the agent
    /// repairs ~100 ms after the kernel reports the damage, so on a loaded machine it can
    /// come first): shibafu's CHECK reports the damage it sees (code 102, details saying
    /// `says`); when it passed instead (a later plugin of a chain may still fail, e.g.
    /// bandwidth, whose qdisc went with the old veth), the damage must provably have been
    /// repaired before it looked: a repaired attachment is legitimately fine. Asserting 102
    /// alone fails whenever the repair wins; waiting for the repair first would never show
    /// CHECK seeing damage. CHECK passing on an unrepaired attachment still fails here.
    pub fn expect_seen_or_repaired(&self, what: &str, says: &str) {
        let c = &self.check;
        let name = c.plugin.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !c.ok() && SHIBAFU_TYPES.contains(&name) {
            c.expect_error(102, what);
            let details = c.json["details"].as_str().unwrap_or_default();
            assert!(
                details.contains(says),
                "{what}: details should say {says:?}: {}",
                c.show()
            );
        } else {
            c.expect_no_panic(what);
            assert!(
                self.repaired,
                "{what}: shibafu's CHECK passed but the damage was not repaired ({}): {}",
                self.state,
                c.show()
            );
        }
    }
}
