//! Lab tier, metrics: every agent and coordinator serves `/metrics` at the URLs
//! `shibafu-lab status --json` lists; a scrape from the control host (where a Prometheus of the
//! lab would run) parses strictly, and the figures follow what the test did: DNS queries sent
//! with dig, endpoints per network, health checks of a service, API requests, a policy's rule.

use std::time::Duration;

use shibafu_tests::prometheus::{parse, Parsed};
use shibafu_tests::{root_or_skip, text, wait_until, Lab};

const SETTLE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(200);

/// Scrapes `url` from the control host and parses it strictly (panics with the text if not).
fn scrape(lab: &Lab, url: &str) -> Parsed {
    let body = lab.exec_ok("ctl", &["curl", "-sf", "--max-time", "3", url]);
    parse(&body).unwrap_or_else(|e| panic!("{url}: {e}\n{body}"))
}

/// The metrics URL of component `name`, from the status.
fn url_of(lab: &Lab, name: &str) -> String {
    lab.component(name)["metrics"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no metrics URL"))
        .to_string()
}

fn run(lab: &Lab, node: &str, name: &str, args: &[&str]) {
    let mut full = vec!["run", "-d", "--name", name, "--network", "frontend"];
    full.extend_from_slice(args);
    let out = lab.cli(node, &full);
    assert!(out.status.success(), "{name}: {}", text(&out.stderr));
}

/// A web instance of service `web`: busybox httpd on port 80.
fn web(lab: &Lab, node: &str, name: &str) {
    let args = [
        "--service",
        "web",
        "--port",
        "80",
        "--",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
    ];
    run(lab, node, name, &args);
}

/// Runs `dig +short +tries=1` inside the client container for each (name, type and options).
fn dig(lab: &Lab, queries: &[(&str, &str)]) {
    let script: String = queries
        .iter()
        .map(|(name, qtype)| format!("dig +short +tries=1 +time=2 {name} {qtype}; "))
        .collect();
    lab.cli_ok("node2", &["exec", "client", "sh", "-c", &script]);
}

#[test]
fn every_exposition_parses_strictly_and_follows_what_the_cluster_did() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(2);
    let status = lab.status();
    let urls: Vec<String> = status["metrics"]
        .as_array()
        .expect("status --json lists metrics")
        .iter()
        .filter_map(|u| u.as_str().map(String::from))
        .collect();
    assert_eq!(urls.len(), 3, "two agents and a coordinator: {status}");
    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    lab.cli_ok(
        "node1",
        &[
            "service",
            "create",
            "web",
            "--network",
            "frontend",
            "--port",
            "80",
            "--health-tcp",
            "80",
            "--health-interval",
            "200ms",
            "--health-rise",
            "1",
        ],
    );
    web(&lab, "node1", "web1");
    web(&lab, "node2", "web2");
    run(&lab, "node2", "client", &["--", "sleep", "3600"]);

    let (node1, node2, coord) = (
        url_of(&lab, "node1"),
        url_of(&lab, "node2"),
        url_of(&lab, "coordinator1"),
    );
    let healthy = |p: &Parsed| {
        let with = [
            ("network", "frontend"),
            ("service", "web"),
            ("state", "healthy"),
        ];
        p.value("shibafu_service_instances", &with) == Some(2.0)
    };
    assert!(
        wait_until(SETTLE, POLL, || [&node1, &node2, &coord]
            .iter()
            .all(|u| healthy(&scrape(&lab, u)))),
        "both instances healthy in every view:\n{:?}",
        scrape(&lab, &node2).family("shibafu_service_instances")
    );

    // DNS: what the client sends to its gateway on node2 is counted there, by type and rcode.
    let before = scrape(&lab, &node2);
    dig(
        &lab,
        &[
            ("web1.frontend.local", "A"),
            ("web1.frontend.local", "A"),
            ("web.frontend.local", "A"),
            ("_http._tcp.web.frontend.local", "SRV"),
            ("_http._tcp.web.frontend.local", "SRV"),
            ("nosuch.frontend.local", "TXT"),
            ("web2.frontend.local", "A +tcp"),
            ("www.example.com", "A"),
            ("www.example.com", "A"),
        ],
    );
    let after = scrape(&lab, &node2);
    let moved = |name: &str, with: &[(&str, &str)]| after.sum(name, with) - before.sum(name, with);
    let req = "shibafu_dns_requests_total";
    let net = ("network", "frontend");
    assert_eq!(moved(req, &[net, ("proto", "udp"), ("type", "A")]), 5.0);
    assert_eq!(moved(req, &[net, ("proto", "tcp"), ("type", "A")]), 1.0);
    assert_eq!(moved(req, &[net, ("proto", "udp"), ("type", "SRV")]), 2.0);
    assert_eq!(moved(req, &[net, ("proto", "udp"), ("type", "TXT")]), 1.0);
    assert_eq!(
        moved("shibafu_dns_responses_total", &[net, ("rcode", "NXDOMAIN")]),
        1.0
    );
    assert!(moved("shibafu_dns_request_duration_seconds_count", &[net]) >= 9.0);
    // The external name went upstream once, then came from the cache.
    assert_eq!(moved("shibafu_dns_forwarded_requests_total", &[net]), 2.0);
    assert_eq!(moved("shibafu_dns_forward_requests_total", &[net]), 1.0);
    assert_eq!(moved("shibafu_dns_cache_hits_total", &[net]), 1.0);
    assert_eq!(
        moved("shibafu_dns_forward_request_duration_seconds_count", &[net]),
        1.0
    );
    assert!(
        after.sum(
            "shibafu_dns_request_duration_seconds_bucket",
            &[net, ("le", "+Inf")]
        ) >= 6.0
    );

    // The coordinator's cluster-wide DNS counts under network="_cluster".
    let dns = lab.component("coordinator1")["dns"]
        .as_str()
        .expect("dns")
        .to_string();
    let (ip, port) = dns.rsplit_once(':').expect("ip:port");
    let at = format!("@{ip}");
    let before = scrape(&lab, &coord);
    for _ in 0..2 {
        lab.exec_ok(
            "node1",
            &[
                "dig",
                "+short",
                "+tries=1",
                "+time=2",
                &at,
                "-p",
                port,
                "web2.frontend.local",
                "A",
            ],
        );
    }
    let after = scrape(&lab, &coord);
    let cluster = [("network", "_cluster"), ("proto", "udp"), ("type", "A")];
    assert_eq!(after.sum(req, &cluster) - before.sum(req, &cluster), 2.0);

    // Endpoints per network: three in every view, one on node1 and two on node2.
    for (url, local) in [(&node1, Some(1.0)), (&node2, Some(2.0)), (&coord, None)] {
        let p = scrape(&lab, url);
        assert_eq!(
            p.value("shibafu_network_endpoints", &[net]),
            Some(3.0),
            "{url}"
        );
        assert_eq!(
            p.value("shibafu_network_local_endpoints", &[net]),
            local,
            "{url}"
        );
    }

    // Health checks ran and moved the instances; the attach was a local reconcile; the
    // agent's own writes came back through the watch.
    let p1 = scrape(&lab, &node1);
    let web_on = [net, ("service", "web")];
    assert!(
        p1.sum(
            "shibafu_health_checks_total",
            &[web_on[0], web_on[1], ("result", "pass")]
        ) >= 1.0
    );
    assert!(
        p1.sum(
            "shibafu_health_transitions_total",
            &[web_on[0], web_on[1], ("to", "healthy")]
        ) >= 1.0
    );
    assert!(
        p1.sum(
            "shibafu_reconcile_duration_seconds_count",
            &[("kind", "local")]
        ) >= 1.0
    );
    assert!(p1.sum("shibafu_dns_update_duration_seconds_count", &[]) >= 1.0);
    assert!(p1.sum("shibafu_dataplane_ops_total", &[("result", "applied")]) >= 1.0);
    assert!(p1.sum("shibafu_etcd_watch_lag_seconds_count", &[]) >= 1.0);
    assert_eq!(p1.value("shibafu_etcd_connected", &[]), Some(1.0));

    // The coordinator counted the API requests by declared route.
    let pc = scrape(&lab, &coord);
    let created = [
        ("method", "POST"),
        ("route", "/v1/networks"),
        ("code", "201"),
    ];
    assert_eq!(pc.value("shibafu_api_requests_total", &created), Some(1.0));

    // A policy's rule counts the connections it lets in, on the node that judges them.
    lab.cli_ok(
        "node1",
        &[
            "network",
            "policy",
            "create",
            "--name",
            "web-in",
            "--network",
            "frontend",
            "--service",
            "web",
            "--allow-ingress-from",
            "frontend:80",
        ],
    );
    let rule = [("policy", "web-in"), ("rule", "1"), ("verdict", "allow")];
    assert!(
        wait_until(SETTLE, POLL, || {
            let _ = lab.cli(
                "node2",
                &[
                    "exec",
                    "client",
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "2",
                    "http://web1.frontend.local/",
                ],
            );
            scrape(&lab, &node1)
                .value("shibafu_policy_packets_total", &rule)
                .is_some_and(|n| n >= 1.0)
        }),
        "{:?}",
        scrape(&lab, &node1).family("shibafu_policy_packets_total")
    );
    let isolation = [
        ("policy", "web-in"),
        ("rule", "isolation"),
        ("verdict", "deny"),
    ];
    assert!(scrape(&lab, &node1)
        .value("shibafu_policy_packets_total", &isolation)
        .is_some());

    // Every URL parses strictly once more, after all of it.
    for url in &urls {
        scrape(&lab, url);
    }
    lab.down();
}
