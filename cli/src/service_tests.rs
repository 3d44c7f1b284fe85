//! Command lines of `shibafu service` and `run --service` as the issue writes them, and the
//! tables they print.

use shibafu_overlay::model::HealthCheck;

use super::*;
use crate::args::testing::command;
use crate::args::Command;

fn service(args: &[&str]) -> Result<ServiceCmd, clap::Error> {
    let all: Vec<&str> = std::iter::once("service")
        .chain(args.iter().copied())
        .collect();
    match command(&all)? {
        Command::Service { cmd } => Ok(cmd),
        other => panic!("not service: {other:?}"),
    }
}

#[test]
fn the_spellings_of_the_issue_parse() {
    let cmd = service(&[
        "create",
        "web",
        "--network",
        "frontend",
        "--lb",
        "weighted",
        "--port",
        "80",
        "--port-name",
        "http",
        "--protocol",
        "tcp",
        "--all-unhealthy",
        "fail-open",
        "--health-http",
        "80/healthz",
        "--health-interval",
        "1s",
        "--health-timeout",
        "500ms",
        "--health-rise",
        "2",
        "--health-fall",
        "2",
        "--health-start-period",
        "0s",
    ])
    .expect("create");
    let ServiceCmd::Create(args) = cmd else {
        panic!("not create")
    };
    let s = spec(&args, "frontend".into());
    assert_eq!(s.lb, Some(LbPolicy::Weighted));
    assert_eq!(s.all_unhealthy, Some(AllUnhealthy::FailOpen));
    assert_eq!(
        s.health.probe,
        Some(Probe::Http {
            port: 80,
            path: "/healthz".into()
        })
    );
    assert_eq!(
        (s.health.interval_ms, s.health.timeout_ms),
        (Some(1000), Some(500))
    );
    for args in [
        &[
            "update",
            "web",
            "--network",
            "frontend",
            "--lb",
            "least-connections",
        ][..],
        &["update", "web", "--health-tcp", "80"],
        &["update", "web", "--health-cmd", "test -f /tmp/ok"],
        &["ls"],
        &["ls", "--format", "json"],
        &["inspect", "web"],
        &[
            "inspect",
            "web",
            "--network",
            "frontend",
            "--format",
            "json",
        ],
        &["rm", "web"],
        &["rm", "web", "--network", "frontend"],
    ] {
        service(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    let run = command(&[
        "run",
        "-d",
        "--name",
        "web1",
        "--network",
        "frontend",
        "--service",
        "web",
        "--port",
        "80",
        "--weight",
        "3",
        "--health-tcp",
        "80",
        "--",
        "busybox",
        "httpd",
        "-f",
    ])
    .expect("run");
    let Command::Run(r) = run else {
        panic!("not run")
    };
    let req = crate::run::request(r).expect("request");
    assert_eq!(
        (req.weight, req.health.probe),
        (Some(3), Some(Probe::Tcp { port: 80 }))
    );
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    for (args, says) in [
        (
            &["create", "web", "--network", "f", "--port", "0"][..],
            "1-65535",
        ),
        (
            &["create", "web", "--network", "f", "--port", "70000"],
            "1-65535",
        ),
        (
            &["create", "web", "--network", "f", "--lb", "random"],
            "random",
        ),
        (
            &["create", "web", "--network", "f", "--health-interval", "5x"],
            "ms, s or m",
        ),
        (
            &[
                "create",
                "web",
                "--network",
                "f",
                "--health-http",
                "80healthz",
            ],
            "PORT/PATH",
        ),
        (
            &[
                "create",
                "web",
                "--network",
                "f",
                "--health-tcp",
                "80",
                "--health-cmd",
                "x",
            ],
            "cannot be used",
        ),
        (
            &["create", "web", "--network", "f", "--health-rise", "0"],
            "0",
        ),
    ] {
        let e = service(args).expect_err("refused").to_string();
        assert!(e.contains(says), "{args:?}: {e}");
    }
}

fn info() -> ServiceInfo {
    let mut service = Service::new("frontend", "web");
    service.port = Some(80);
    service.port_name = Some("http".into());
    service.health = Some(HealthCheck::new(Probe::Tcp { port: 80 }));
    let instance = |name: &str, ip: &str, state, answered| InstanceInfo {
        name: name.into(),
        node: "node1".into(),
        ipv4: ip.parse().expect("ip"),
        ipv6: None,
        port: Some(80),
        weight: 1,
        checked: true,
        state,
        answered,
        checked_ms: Some(1_000),
        connections: Some(2),
        output: String::new(),
    };
    ServiceInfo {
        service,
        instances: vec![
            instance("web1", "172.21.0.2", Some(HealthState::Healthy), true),
            instance("web2", "172.21.0.3", Some(HealthState::Unhealthy), false),
        ],
    }
}

#[test]
fn ls_and_inspect_show_instances_and_their_health() {
    let table = services_table(&[info()]);
    assert_eq!(
        table,
        "NAME   NETWORK    LB            PORT     INSTANCES   HEALTHY\n\
         web    frontend   round-robin   80/tcp   2           1\n"
    );
    let text = inspect_text(&info(), 6_000);
    assert!(text.contains("SRV:             _http._tcp.web"), "{text}");
    assert!(text.contains("tcp 80 every 1000ms"), "{text}");
    assert!(
        text.contains(
            "web2   node1   172.21.0.3   80     1        unhealthy (not answered)   5s ago"
        ),
        "{text}"
    );
}
