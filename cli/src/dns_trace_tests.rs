use super::*;

fn traced(source: TraceSource, rcode: &str, answers: Vec<TraceRecord>) -> Traced {
    Traced {
        node: "node2".into(),
        network: "backend".into(),
        server: "172.22.0.1:53".into(),
        from: Some("web1".into()),
        trace: DnsTrace {
            query: "api.backend.local.".into(),
            qtype: "A".into(),
            client: "172.22.0.5".parse().expect("ip"),
            view: vec!["backend.local.".into()],
            zones: vec!["backend.local.".into(), "frontend.local.".into()],
            source,
            rcode: rcode.into(),
            answers,
            authority: vec![],
            micros: 85,
        },
    }
}

fn rec(data: &str) -> TraceRecord {
    TraceRecord {
        name: "api.backend.local.".into(),
        ttl: 5,
        rtype: "A".into(),
        data: data.into(),
    }
}

#[test]
fn a_local_answer_names_server_view_zone_and_records() {
    let t = traced(
        TraceSource::Local {
            zone: "backend.local.".into(),
            prebuilt: true,
        },
        "NoError",
        vec![rec("172.22.0.2")],
    );
    assert_eq!(
        render(&t),
        "Query:      api.backend.local. A
Asked by:   web1 (172.22.0.5)
Server:     network backend on node2 (172.22.0.1:53)
View:       1 of 2 zones: backend.local.
Source:     local answer from zone backend.local. (prebuilt)
Result:     NoError, 1 answer(s)
Time:       85 us
Answer:
  NAME                 TTL   TYPE   DATA
  api.backend.local.   5     A      172.22.0.2
"
    );
}

#[test]
fn forwarded_answers_name_the_upstream_and_its_latency_or_the_cache() {
    let up = UpstreamTry {
        upstream: "10.0.0.53:53".parse().expect("addr"),
        micros: 1200,
        error: None,
    };
    let failed = UpstreamTry {
        upstream: "10.0.0.54:53".parse().expect("addr"),
        micros: 2000,
        error: Some("timed out".into()),
    };
    let s = source_text(&TraceSource::Forwarded {
        path: ForwardPath::Upstream {
            tries: vec![failed, up],
        },
    });
    assert_eq!(
        s,
        "forwarder: 10.0.0.54:53 failed after 2000 us (timed out); 10.0.0.53:53 answered in 1200 us"
    );
    let s = source_text(&TraceSource::Forwarded {
        path: ForwardPath::Cache { age_secs: 3 },
    });
    assert_eq!(s, "forwarder cache (cached 3 s ago)");
}

#[test]
fn a_missing_name_is_named_nxdomain_and_a_hidden_zone_says_so() {
    let missing = traced(
        TraceSource::Local {
            zone: "backend.local.".into(),
            prebuilt: false,
        },
        "NXDomain",
        vec![],
    );
    assert_eq!(
        verdict(&missing.trace),
        "NXDOMAIN: no such name in zone backend.local."
    );
    let hidden = traced(
        TraceSource::Local {
            zone: "frontend.local.".into(),
            prebuilt: false,
        },
        "NXDomain",
        vec![],
    );
    assert_eq!(
        verdict(&hidden.trace),
        "NXDOMAIN: the name is in zone frontend.local., which 172.22.0.5 may not see (only its networks' zones)"
    );
}

#[test]
fn the_network_is_the_one_whose_zone_holds_the_name() {
    let nets = vec![
        Network::new("frontend", "172.21.0.0/24".parse().expect("net"), 4096),
        Network::new("backend", "172.22.0.0/24".parse().expect("net"), 4097),
    ];
    assert_eq!(
        pick_network(&nets, "API.Backend.Local.").map(|n| n.name.as_str()),
        Some("backend")
    );
    assert_eq!(
        pick_network(&nets, "example.org").map(|n| n.name.as_str()),
        Some("backend"),
        "first by name"
    );
    let a = Endpoint::new("frontend", "c", "node1", "172.21.0.5".parse().expect("ip"));
    let b = Endpoint::new("backend", "c", "node1", "172.22.0.5".parse().expect("ip"));
    assert_eq!(
        pick_endpoint(&[&a, &b], &nets, "api.backend.local").map(|e| e.ipv4.to_string()),
        Some("172.22.0.5".into())
    );
    assert_eq!(
        pick_endpoint(&[&a, &b], &nets, "example.org").map(|e| e.network.as_str()),
        Some("frontend")
    );
    assert!(!in_zone("xbackend.local", "backend.local"));
}
