use super::*;

fn sample() -> Topology {
    let node = |name: &str, ip: &str| NodeInfo {
        name: name.into(),
        underlay: ip.parse().expect("ip"),
        version: "0.1.0".into(),
        started_at: 0,
        age_secs: 5,
        wireguard: None,
    };
    let mut db = Network::new("database", "172.23.0.0/24".parse().expect("net"), 4098);
    db.internal = true;
    let mut api = Endpoint::new("backend", "b1", "node2", "172.22.0.2".parse().expect("ip"));
    api.service = Some("api".into());
    Topology {
        nodes: vec![node("node1", "10.99.0.11"), node("node2", "10.99.0.12")],
        networks: vec![
            Network::new("frontend", "172.21.0.0/24".parse().expect("net"), 4096),
            Network::new("backend", "172.22.0.0/24".parse().expect("net"), 4097),
            db,
        ],
        endpoints: vec![
            Endpoint::new(
                "frontend",
                "web1",
                "node1",
                "172.21.0.2".parse().expect("ip"),
            ),
            api,
            Endpoint::new("database", "d1", "node3", "172.23.0.2".parse().expect("ip")),
        ],
        services: vec![Service::new("backend", "api")],
        links: vec![Link::new("frontend", "database")],
        policies: vec![Policy::new(
            "database-isolation",
            "database",
            vec![
                Rule::parse(Action::Deny, Direction::Ingress, "frontend").expect("rule"),
                Rule::parse(Action::Allow, Direction::Ingress, "backend:5432").expect("rule"),
            ],
        )],
    }
}

#[test]
fn text_lists_every_kind_of_object() {
    let t = text(&sample());
    assert_eq!(
        t,
        "Nodes:
  node1   10.99.0.11   1 container(s)
  node2   10.99.0.12   1 container(s)
  node3   down         1 container(s)

Networks:
  frontend 172.21.0.0/24 (zone frontend.local, vni 4096, isolation none)
    web1   172.21.0.2   node1
  backend 172.22.0.0/24 (zone backend.local, vni 4097, isolation none)
    b1   172.22.0.2   node2   service api
  database 172.23.0.0/24 (zone database.local, vni 4098, internal, isolation none)
    d1   172.23.0.2   node3

Services:
  api.backend.local: b1 (node2)

Links:
  database <-> frontend

Policies:
  database-isolation on database
    rule 1: deny ingress from frontend
    rule 2: allow ingress from backend port 5432/tcp
"
    );
}

#[test]
fn dot_has_a_box_per_node_and_edges_for_every_relation() {
    let d = dot(&sample());
    assert!(
        d.starts_with("digraph shibafu {\n") && d.ends_with("}\n"),
        "{d}"
    );
    for want in [
        "subgraph \"cluster_node_node1\"",
        "label=\"node node3\ndown\"",
        "\"c:node1/web1\" [label=\"web1\n172.21.0.2\"",
        "\"c:node1/web1\" -> \"n:frontend\"",
        "\"s:backend/api\" -> \"c:node2/b1\"",
        "\"n:database\" -> \"n:frontend\" [label=\"link\"",
        "\"p:database-isolation\" [shape=note, label=\"policy database-isolation\n1. deny ingress from frontend\n2. allow ingress from backend port 5432/tcp\"",
        "\"p:database-isolation\" -> \"n:database\"",
    ] {
        assert!(d.contains(want), "missing {want:?} in\n{d}");
    }
    assert_eq!(d.matches('{').count(), d.matches('}').count());
}

#[test]
fn labels_are_quoted_for_dot() {
    assert_eq!(q(r#"a "b" \c"#), r#""a \"b\" \\c""#);
}
