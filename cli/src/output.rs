//! Rendering of command output: aligned tables, JSON, ages. Pure: every function returns text.

use serde::Serialize;
use shibafu_overlay::api::ContainerInfo;
use shibafu_overlay::model::{Link, Network};

/// Spaces between table columns.
const GAP: usize = 3;

/// Renders rows under headers in left-aligned columns separated by three spaces; the last
/// column is not padded. Every line ends with a newline.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let all: Vec<Vec<String>> = std::iter::once(header)
        .chain(rows.iter().cloned())
        .collect();
    columns(&all)
}

/// Renders rows (of any lengths) in left-aligned columns separated by three spaces, without
/// a header; the last cell of a row is not padded. Every line ends with a newline.
pub fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(old) => *old = (*old).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
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

/// `ps`: NAME STATE NETWORKS ADDRESSES, sorted by name. Lists are comma-separated, in
/// interface order; `-` stands for none.
pub fn containers_table(containers: &[ContainerInfo]) -> String {
    let mut sorted: Vec<&ContainerInfo> = containers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|c| {
            let networks: Vec<String> = c.interfaces.iter().map(|i| i.network.clone()).collect();
            let addresses: Vec<String> = c
                .interfaces
                .iter()
                .flat_map(|i| {
                    std::iter::once(i.ipv4.to_string()).chain(i.ipv6.map(|a| a.to_string()))
                })
                .collect();
            vec![
                c.name.clone(),
                state_cell(c),
                list_cell(&networks),
                list_cell(&addresses),
            ]
        })
        .collect();
    table(&["NAME", "STATE", "NETWORKS", "ADDRESSES"], &rows)
}

fn list_cell(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(",")
    }
}

/// The STATE of `ps`: `running`, `exited (CODE)`, `attached`, `attached (cni)` (by a container
/// runtime through CNI), ... as the agent reports it.
pub fn state_cell(c: &ContainerInfo) -> String {
    match (c.state.as_str(), c.exit_code) {
        ("exited", Some(code)) => format!("exited ({code})"),
        ("attached", _) if c.cni.is_some() => "attached (cni)".to_string(),
        (state, _) => state.to_string(),
    }
}

/// One line per interface, `NAME IFNAME NETWORK IPV4 [IPV6]`, aligned; only the interfaces on
/// `network` when given. A container without such interfaces prints its name alone.
pub fn interface_lines(c: &ContainerInfo, network: Option<&str>) -> String {
    let rows: Vec<Vec<String>> = c
        .interfaces
        .iter()
        .filter(|i| network.is_none_or(|n| i.network == n))
        .map(|i| {
            let mut row = vec![
                c.name.clone(),
                i.ifname.clone(),
                i.network.clone(),
                i.ipv4.to_string(),
            ];
            row.extend(i.ipv6.map(|a| a.to_string()));
            row
        })
        .collect();
    if rows.is_empty() {
        format!("{}\n", c.name)
    } else {
        columns(&rows)
    }
}

/// `network links`: NETWORK LINKED, one row per link in canonical order, sorted.
pub fn links_table(links: &[Link]) -> String {
    let mut sorted: Vec<&Link> = links.iter().collect();
    sorted.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|l| vec![l.a.clone(), l.b.clone()])
        .collect();
    table(&["NETWORK", "LINKED"], &rows)
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
    use shibafu_overlay::api::InterfaceInfo;

    use super::*;

    fn net(name: &str, subnet: &str) -> Network {
        Network::new(name, subnet.parse().expect("subnet"), 4096)
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

    fn iface(network: &str, ifname: &str, ipv4: &str, ipv6: Option<&str>) -> InterfaceInfo {
        InterfaceInfo {
            network: network.into(),
            ifname: ifname.into(),
            ipv4: ipv4.parse().expect("ipv4"),
            ipv6: ipv6.map(|a| a.parse().expect("ipv6")),
            mac: "02:00:00:00:00:01".parse().expect("mac"),
        }
    }

    fn container(
        name: &str,
        state: &str,
        exit: Option<i32>,
        ifs: Vec<InterfaceInfo>,
    ) -> ContainerInfo {
        ContainerInfo {
            name: name.into(),
            state: state.into(),
            pid: (state == "running").then_some(4242),
            exit_code: exit,
            command: vec!["sleep".into(), "1000".into()],
            netns: format!("/run/shibafu/netns/{name}"),
            interfaces: ifs,
            cni: None,
        }
    }

    #[test]
    fn containers_table_sorted_with_states_and_lists() {
        let list = [
            container(
                "web",
                "running",
                None,
                vec![iface("frontend", "eth0", "172.21.0.2", Some("fd00:21::2"))],
            ),
            container(
                "api",
                "running",
                None,
                vec![
                    iface("backend", "eth0", "172.22.0.2", None),
                    iface("frontend", "eth1", "172.21.0.3", None),
                ],
            ),
            container("job", "exited", Some(3), vec![]),
            container(
                "cni",
                "attached",
                None,
                vec![iface("backend", "eth0", "172.22.0.9", None)],
            ),
        ];
        let expected = "\
NAME   STATE        NETWORKS           ADDRESSES
api    running      backend,frontend   172.22.0.2,172.21.0.3
cni    attached     backend            172.22.0.9
job    exited (3)   -                  -
web    running      frontend           172.21.0.2,fd00:21::2
";
        assert_eq!(containers_table(&list), expected);
        assert_eq!(
            containers_table(&[]),
            "NAME   STATE   NETWORKS   ADDRESSES\n"
        );
    }

    #[test]
    fn states() {
        assert_eq!(
            state_cell(&container("a", "exited", Some(137), vec![])),
            "exited (137)"
        );
        assert_eq!(
            state_cell(&container("a", "exited", None, vec![])),
            "exited"
        );
        assert_eq!(
            state_cell(&container("a", "created", None, vec![])),
            "created"
        );
        let mut pod = container("p", "attached", None, vec![]);
        assert_eq!(state_cell(&pod), "attached");
        pod.cni = Some("c0ffee".into());
        assert_eq!(state_cell(&pod), "attached (cni)");
    }

    #[test]
    fn interface_lines_per_network() {
        let api = container(
            "api",
            "running",
            None,
            vec![
                iface("backend", "eth0", "172.22.0.2", None),
                iface("frontend", "eth1", "172.21.0.13", Some("fd00:21::d")),
            ],
        );
        let expected = "\
api   eth0   backend    172.22.0.2
api   eth1   frontend   172.21.0.13   fd00:21::d
";
        assert_eq!(interface_lines(&api, None), expected);
        assert_eq!(
            interface_lines(&api, Some("backend")),
            "api   eth0   backend   172.22.0.2\n"
        );
        assert_eq!(interface_lines(&api, Some("database")), "api\n");
    }

    #[test]
    fn links_table_sorted() {
        let links = [
            Link::new("frontend", "database"),
            Link::new("frontend", "backend"),
        ];
        let expected = "\
NETWORK    LINKED
backend    frontend
database   frontend
";
        assert_eq!(links_table(&links), expected);
        assert_eq!(links_table(&[]), "NETWORK   LINKED\n");
    }

    #[test]
    fn columns_without_header_take_ragged_rows() {
        let rows = vec![
            vec!["a".to_string(), "bb".to_string()],
            vec!["ccc".to_string(), "d".to_string(), "e".to_string()],
        ];
        assert_eq!(columns(&rows), "a     bb\nccc   d    e\n");
        assert_eq!(columns(&[]), "");
    }
}
