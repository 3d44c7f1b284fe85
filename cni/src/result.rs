//! CNI results: the ADD result built from the agent's answer (appended to a previous plugin's
//! result when shibafu is not first), and CHECK's comparison of the cached result with it.

use serde_json::{json, Value};
use shibafu_overlay::api::CniAttachment;

/// The ADD result: the interfaces (bridge and host veth without a sandbox, then the container's
/// interface), its addresses with gateways, default routes and DNS, after those of `prev`.
pub fn add_result(version: &str, att: &CniAttachment, prev: Option<&Value>) -> Value {
    let list = |key: &str| -> Vec<Value> {
        prev.and_then(|p| p.get(key)?.as_array().cloned())
            .unwrap_or_default()
    };
    let mut interfaces = list("interfaces");
    interfaces.push(json!({"name": att.bridge, "mac": att.bridge_mac.to_string()}));
    interfaces.push(json!({"name": att.host_ifname}));
    interfaces.push(json!({
        "name": att.ifname,
        "mac": att.mac.to_string(),
        "sandbox": att.netns,
    }));
    let index = interfaces.len() - 1;
    let mut ips = list("ips");
    let mut routes = list("routes");
    for (addr, gw) in att.addresses.iter().zip(&att.gateways) {
        ips.push(
            json!({"address": addr.to_string(), "gateway": gw.to_string(), "interface": index}),
        );
        let dst = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        routes.push(json!({"dst": dst, "gw": gw.to_string()}));
    }
    let dns = prev
        .and_then(|p| p.get("dns"))
        .filter(|d| {
            d.get("nameservers")
                .is_some_and(|n| n.as_array().is_some_and(|a| !a.is_empty()))
        })
        .cloned()
        .unwrap_or_else(|| {
            json!({
                "nameservers": [att.nameserver.to_string()],
                "domain": att.zone,
                "search": [att.zone],
            })
        });
    json!({
        "cniVersion": version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": dns,
    })
}

/// CHECK against the cached result: the container interface (in its sandbox, with its MAC) and
/// every address the agent has must be in it. Entries other plugins added are fine.
///
/// The MAC is compared although the spec hands CHECK the chain's final result, where a later
/// plugin (tuning's `mac`) may have changed it: shibafu owns the container's MAC (other nodes'
/// neighbour and FDB entries carry it, and the agent sets it back), so a result naming another
/// MAC describes an interface that is not, or soon no longer, there.
pub fn check_prev(prev: &Value, att: &CniAttachment) -> Result<(), String> {
    let interfaces = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let index = interfaces
        .iter()
        .position(|i| i["name"] == att.ifname.as_str() && i["sandbox"] == att.netns.as_str())
        .ok_or_else(|| {
            format!(
                "prevResult has no interface {} in sandbox {}",
                att.ifname, att.netns
            )
        })?;
    let mac = interfaces[index]["mac"].as_str().unwrap_or_default();
    if !mac.eq_ignore_ascii_case(&att.mac.to_string()) {
        return Err(format!(
            "prevResult gives {} MAC {mac:?}, the attachment has {} (shibafu sets the MAC; \
             a chained plugin changing it, such as tuning's \"mac\", is not supported)",
            att.ifname, att.mac
        ));
    }
    let ips = prev.get("ips").and_then(Value::as_array);
    for addr in &att.addresses {
        let listed = ips.is_some_and(|ips| {
            ips.iter().any(|ip| {
                ip["address"] == addr.to_string().as_str() && ip["interface"] == json!(index)
            })
        });
        if !listed {
            return Err(format!("prevResult lacks address {addr} on {}", att.ifname));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(v6: bool) -> CniAttachment {
        let mut addresses = vec!["10.9.0.5/24".parse().expect("v4")];
        let mut gateways = vec!["10.9.0.1".parse().expect("gw")];
        if v6 {
            addresses.push("fd09::5/64".parse().expect("v6"));
            gateways.push("fd09::1".parse().expect("gw6"));
        }
        CniAttachment {
            name: "web".into(),
            network: "frontend".into(),
            netns: "/var/run/netns/cni-1".into(),
            ifname: "eth0".into(),
            mac: "02:42:0a:09:00:05".parse().expect("mac"),
            bridge: "sfb-frontend".into(),
            bridge_mac: "02:00:00:00:10:00".parse().expect("mac"),
            host_ifname: "sfv1234".into(),
            addresses,
            gateways,
            nameserver: "10.9.0.1".parse().expect("ns"),
            zone: "frontend.local".into(),
        }
    }

    #[test]
    fn add_result_is_a_full_cni_result() {
        let r = add_result("1.0.0", &att(true), None);
        assert_eq!(r["cniVersion"], "1.0.0");
        assert_eq!(r["interfaces"].as_array().expect("list").len(), 3);
        assert_eq!(r["interfaces"][2]["sandbox"], "/var/run/netns/cni-1");
        assert!(r["interfaces"][1].get("sandbox").is_none(), "host side");
        assert_eq!(
            r["ips"][0],
            json!({"address": "10.9.0.5/24", "gateway": "10.9.0.1", "interface": 2})
        );
        assert_eq!(r["ips"][1]["address"], "fd09::5/64");
        assert_eq!(
            r["routes"][0],
            json!({"dst": "0.0.0.0/0", "gw": "10.9.0.1"})
        );
        assert_eq!(r["routes"][1], json!({"dst": "::/0", "gw": "fd09::1"}));
        assert_eq!(r["dns"]["nameservers"], json!(["10.9.0.1"]));
        assert_eq!(r["dns"]["search"], json!(["frontend.local"]));
        check_prev(&r, &att(true)).expect("its own result checks");
    }

    #[test]
    fn appends_to_a_previous_result() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo0"}],
            "ips": [{"address": "192.0.2.9/32", "interface": 0}],
            "dns": {"nameservers": ["192.0.2.53"]},
        });
        let r = add_result("1.0.0", &att(false), Some(&prev));
        assert_eq!(r["interfaces"].as_array().expect("list").len(), 4);
        assert_eq!(r["ips"][1]["interface"], 3);
        assert_eq!(r["dns"]["nameservers"], json!(["192.0.2.53"]));
    }

    #[test]
    fn check_tolerates_others_and_finds_what_is_missing() {
        let mut r = add_result("1.0.0", &att(false), None);
        r["routes"]
            .as_array_mut()
            .expect("routes")
            .push(json!({"dst": "198.51.100.0/24", "gw": "10.9.0.1"}));
        check_prev(&r, &att(false)).expect("a later plugin's route is fine");
        let mut other = att(false);
        other.addresses = vec!["10.9.0.6/24".parse().expect("v4")];
        let e = check_prev(&r, &other).expect_err("address differs");
        assert!(e.contains("10.9.0.6/24"), "{e}");
        other = att(false);
        other.ifname = "net1".into();
        assert!(check_prev(&r, &other)
            .expect_err("no such interface")
            .contains("net1"));
        other = att(false);
        other.mac = "02:42:0a:09:00:07".parse().expect("mac");
        assert!(check_prev(&r, &other).expect_err("mac").contains("MAC"));
        // The final result of a chain whose tuning set another MAC: not as attached.
        let mut tuned = add_result("1.1.0", &att(false), None);
        tuned["interfaces"][2]["mac"] = json!("00:11:22:33:44:66");
        let e = check_prev(&tuned, &att(false)).expect_err("MAC changed by a later plugin");
        assert!(
            e.contains("\"00:11:22:33:44:66\"") && e.contains("tuning"),
            "{e}"
        );
    }
}
