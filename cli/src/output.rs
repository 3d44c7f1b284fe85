//! Rendering of command output: aligned tables, JSON, ages. Pure: every function returns text.

use serde::Serialize;
use shibafu_overlay::api::NodeInfo;
use shibafu_overlay::model::Network;

/// Spaces between table columns.
const GAP: usize = 3;

/// Renders rows under headers in left-aligned columns separated by three spaces; the last
/// column is not padded. Every line ends with a newline.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count() + GAP;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// `network ls`: NAME SUBNET GATEWAY DNS, sorted by name.
pub fn networks_table(networks: &[Network]) -> String {
    let mut nets: Vec<&Network> = networks.iter().collect();
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| {
            let gw = n.gateway().to_string();
            vec![n.name.clone(), n.subnet.to_string(), gw.clone(), gw]
        })
        .collect();
    table(&["NAME", "SUBNET", "GATEWAY", "DNS"], &rows)
}

/// `node ls`: NAME UNDERLAY VERSION AGE, sorted by name.
pub fn nodes_table(nodes: &[NodeInfo]) -> String {
    let mut sorted: Vec<&NodeInfo> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.underlay.to_string(),
                n.version.clone(),
                age(n.age_secs),
            ]
        })
        .collect();
    table(&["NAME", "UNDERLAY", "VERSION", "AGE"], &rows)
}

/// A duration as its largest whole unit: `42s`, `5m`, `3h`, `2d`.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Pretty JSON followed by a newline.
pub fn json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::model::SCHEMA_VERSION;

    use super::*;

    fn net(name: &str, subnet: &str) -> Network {
        Network {
            schema: SCHEMA_VERSION,
            name: name.into(),
            subnet: subnet.parse().expect("subnet"),
            subnet6: None,
            vni: 4096,
            zone: format!("{name}.local"),
            mtu: None,
            internal: false,
            forwarders: vec![],
        }
    }

    #[test]
    fn network_table_is_the_plans() {
        let nets = [
            net("frontend", "172.21.0.0/24"),
            net("database", "172.23.0.0/24"),
            net("backend", "172.22.0.0/24"),
        ];
        let expected = "\
NAME       SUBNET          GATEWAY      DNS
backend    172.22.0.0/24   172.22.0.1   172.22.0.1
database   172.23.0.0/24   172.23.0.1   172.23.0.1
frontend   172.21.0.0/24   172.21.0.1   172.21.0.1
";
        assert_eq!(networks_table(&nets), expected);
    }

    #[test]
    fn columns_grow_with_content() {
        let nets = [
            net("a", "10.0.0.0/8"),
            net("a-much-longer-name", "192.168.100.0/24"),
        ];
        let expected = "\
NAME                 SUBNET             GATEWAY         DNS
a                    10.0.0.0/8         10.0.0.1        10.0.0.1
a-much-longer-name   192.168.100.0/24   192.168.100.1   192.168.100.1
";
        assert_eq!(networks_table(&nets), expected);
    }

    #[test]
    fn empty_table_is_just_the_header() {
        assert_eq!(networks_table(&[]), "NAME   SUBNET   GATEWAY   DNS\n");
    }

    #[test]
    fn nodes_table_with_ages() {
        let node = |name: &str, ip: &str, age_secs| NodeInfo {
            name: name.into(),
            underlay: ip.parse().expect("ip"),
            version: "0.1.0".into(),
            started_at: 0,
            age_secs,
        };
        let nodes = [
            node("node2", "10.99.0.12", 7200),
            node("node1", "10.99.0.11", 42),
        ];
        let expected = "\
NAME    UNDERLAY     VERSION   AGE
node1   10.99.0.11   0.1.0     42s
node2   10.99.0.12   0.1.0     2h
";
        assert_eq!(nodes_table(&nodes), expected);
    }

    #[test]
    fn ages() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(60), "1m");
        assert_eq!(age(3599), "59m");
        assert_eq!(age(3600), "1h");
        assert_eq!(age(86_399), "23h");
        assert_eq!(age(3 * 86_400 + 5), "3d");
    }

    #[test]
    fn json_is_pretty_and_parses_back() {
        let nets = vec![net("frontend", "172.21.0.0/24")];
        let text = json(&nets).expect("json");
        assert!(
            text.starts_with("[\n  {\n    \"schema\": 1,\n    \"name\": \"frontend\""),
            "{text}"
        );
        assert!(text.ends_with("]\n"));
        let back: Vec<Network> = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, nets);
    }
}
