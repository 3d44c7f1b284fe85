//! Lab tier: one trace follows `shibafu run -d` from the CLI on node1 through its agent (API,
//! run, attach, IPAM, the etcd write) to the reconcile and DNS update it causes on node2 and
//! node3, exported over OTLP/HTTP to a receiver on the lab's control host; `shibafu network
//! create`, `service create` and `network policy create` through the coordinator to every agent;
//! and `shibafu exec`, whose spans go out before it becomes the container's command.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use shibafu_tests::{
    bin, describe, exec_out, root_or_skip, text, wait_until, Lab, OtlpReceiver, ReceivedSpan,
};

const POLL: Duration = Duration::from_millis(200);

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    f: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| f(s)).collect();
    match found.as_slice() {
        [s] => s,
        _ => panic!("expected one {what}, found {}: {spans:#?}", found.len()),
    }
}

/// The CLI command `cli` went through the coordinator (`path`) to an `agent_span` on every node,
/// each a child of a coordinator span, all in the CLI's trace.
fn coordinator_change_reaches_every_agent(
    spans: &[ReceivedSpan],
    cli: &str,
    path: &str,
    agent_span: &str,
) {
    let root = one(spans, cli, |s| s.name == cli);
    let ours: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let api = ours
        .iter()
        .find(|s| s.name == "coordinator.request" && s.parent_id == root.span_id)
        .unwrap_or_else(|| panic!("no coordinator request under {cli}: {ours:#?}"));
    assert_eq!(api.service(), "shibafu-coordinator");
    assert_eq!(api.attr("url.path"), path);
    let coordinator: Vec<&str> = ours
        .iter()
        .filter(|s| s.service() == "shibafu-coordinator")
        .map(|s| s.span_id.as_str())
        .collect();
    for node in ["node1", "node2", "node3"] {
        let rec = ours
            .iter()
            .find(|s| s.name == agent_span && s.host() == node)
            .unwrap_or_else(|| panic!("no {agent_span} on {node} in the trace: {ours:#?}"));
        assert!(
            coordinator.contains(&rec.parent_id.as_str()),
            "{node}'s {agent_span} is not under a coordinator span: {rec:?}"
        );
    }
}

/// True once every node has an `agent_span` in the trace of the CLI span `cli`.
fn arrived_everywhere(spans: &[ReceivedSpan], cli: &str, agent_span: &str) -> bool {
    let Some(root) = spans.iter().find(|s| s.name == cli) else {
        return false;
    };
    ["node1", "node2", "node3"].iter().all(|node| {
        spans
            .iter()
            .any(|s| s.trace_id == root.trace_id && s.name == agent_span && s.host() == *node)
    })
}

/// `shibafu ps` against a missing agent, with `env` added; its output and how long it took.
fn cli_ps(env: &[(&str, &str)]) -> (std::process::Output, Duration) {
    let mut cmd = Command::new(bin("shibafu"));
    cmd.args(["--agent", "/nonexistent/agent.sock", "ps"])
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .envs(env.iter().copied());
    let t0 = Instant::now();
    let out = exec_out(&mut cmd);
    (out, t0.elapsed())
}

#[test]
fn an_unreachable_collector_neither_breaks_nor_holds_up_a_command() {
    let (plain, _) = cli_ps(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]);
    // A loopback listener that never accepts: connections complete, no answer ever comes.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    for url in [&silent_url, &closed_url] {
        let (out, took) = cli_ps(&[("OTEL_EXPORTER_OTLP_ENDPOINT", url)]);
        assert_eq!(out.status.code(), plain.status.code(), "{url}");
        assert_eq!(out.stdout, plain.stdout, "{url}");
        assert!(
            text(&out.stderr).contains("cannot reach agent"),
            "{url}: {}",
            text(&out.stderr)
        );
        assert!(
            took < Duration::from_secs(4),
            "{url}: the CLI took {took:?}"
        );
    }
}

#[test]
fn a_detached_run_is_one_trace_from_the_cli_to_the_reconcile_on_every_other_node() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(3);
    let addr = SocketAddr::new(lab.ctl_addr(), 4318);
    let receiver = OtlpReceiver::start_in(&format!("sf-{}-ctl", lab.name()), addr);
    let endpoint = receiver.endpoint();
    let base = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    // node2 exports JSON, the others protobuf: both encodings reach the receiver.
    lab.restart_with_env("node1", &base);
    let mut json = base.to_vec();
    json.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"));
    lab.restart_with_env("node2", &json);
    lab.restart_with_env("node3", &base);
    lab.restart_with_env("coordinator", &base);
    let mut create = lab.exec_cmd(
        "node1",
        &["shibafu", "network", "create", "frontend", "172.21.0.0/24"],
    );
    create.envs(base);
    let out = exec_out(&mut create);
    assert!(out.status.success(), "{}", describe(&create, &out));
    for node in lab.node_names() {
        assert!(
            wait_until(Duration::from_secs(15), POLL, || lab
                .agent_get(&node, "/v1/networks")
                .is_some_and(|v| v.to_string().contains("frontend"))),
            "{node} never saw the network"
        );
    }

    let mut run = lab.exec_cmd(
        "node1",
        &[
            "shibafu",
            "run",
            "-d",
            "--name",
            "web1",
            "--network",
            "frontend",
            "--",
            "sleep",
            "300",
        ],
    );
    run.envs(base);
    let out = exec_out(&mut run);
    assert!(out.status.success(), "{}", describe(&run, &out));

    // Every span of the run's trace the assertions below look for, by (name, host).
    let expected = [
        ("agent.request", "node1"),
        ("container.run", "node1"),
        ("network.attach", "node1"),
        ("ipam.allocate", "node1"),
        ("dataplane.apply", "node1"),
        ("etcd.put", "node1"),
        ("dataplane.reconcile", "node2"),
        ("dns.update", "node2"),
        ("dataplane.reconcile", "node3"),
        ("dns.update", "node3"),
    ];
    let complete = |spans: &[ReceivedSpan]| {
        let Some(run) = spans.iter().find(|s| s.name == "shibafu run") else {
            return false;
        };
        expected.iter().all(|(name, host)| {
            spans
                .iter()
                .any(|s| s.trace_id == run.trace_id && s.name == *name && s.host() == *host)
        }) && arrived_everywhere(spans, "shibafu network create", "dataplane.reconcile")
    };
    assert!(
        wait_until(Duration::from_secs(20), POLL, || complete(
            &receiver.spans()
        )),
        "spans never arrived: {:#?}",
        receiver.spans()
    );
    let spans = receiver.spans();

    let cli = one(&spans, "CLI span", |s| s.name == "shibafu run");
    assert_eq!(cli.service(), "shibafu");
    assert_eq!(cli.parent_id, "", "the CLI starts the trace");
    let trace = cli.trace_id.clone();
    let ours: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == trace)
        .cloned()
        .collect();
    let child_of = |parent: &ReceivedSpan, name: &str, host: &str| -> ReceivedSpan {
        one(&ours, name, |s| {
            s.name == name && s.parent_id == parent.span_id && s.host() == host
        })
        .clone()
    };

    let api = one(&ours, "agent.request POST /v1/containers", |s| {
        s.name == "agent.request"
            && s.attr("url.path") == "/v1/containers"
            && s.attr("http.request.method") == "POST"
    });
    assert_eq!(
        api.parent_id, cli.span_id,
        "agent request under the CLI span"
    );
    assert_eq!(api.attr("http.request.method"), "POST");
    assert_eq!(api.service(), "shibafu-agent");
    assert_eq!(api.host(), "node1");
    let run = child_of(api, "container.run", "node1");
    assert_eq!(run.attr("container"), "web1");
    let attach = child_of(&run, "network.attach", "node1");
    assert_eq!(attach.attr("network"), "frontend");
    assert_eq!(attach.attr("container"), "web1");
    assert_eq!(attach.attr("node"), "node1");
    let ipam = child_of(&attach, "ipam.allocate", "node1");
    assert_eq!(ipam.attr("network"), "frontend");
    let apply = child_of(&attach, "dataplane.apply", "node1");
    assert_eq!(apply.attr("attach"), "true");
    let put = child_of(&attach, "etcd.put", "node1");
    assert_eq!(put.attr("key"), "/shibafu/v1/endpoints/frontend/web1");

    for node in ["node2", "node3"] {
        let rec = child_of(&put, "dataplane.reconcile", node);
        assert_eq!(rec.attr("node"), node);
        assert!(
            rec.attr("revision").parse::<i64>().is_ok_and(|r| r > 0),
            "{rec:?}"
        );
        let dns = child_of(&put, "dns.update", node);
        assert_eq!(dns.attr("network"), "frontend");
    }
    coordinator_change_reaches_every_agent(
        &spans,
        "shibafu network create",
        "/v1/networks",
        "dataplane.reconcile",
    );

    // A service change likewise reaches every agent's DNS.
    let mut service = lab.exec_cmd(
        "node2",
        &[
            "shibafu",
            "service",
            "create",
            "api",
            "--network",
            "frontend",
        ],
    );
    service.envs(base);
    let out = exec_out(&mut service);
    assert!(out.status.success(), "{}", describe(&service, &out));
    assert!(
        wait_until(Duration::from_secs(20), POLL, || arrived_everywhere(
            &receiver.spans(),
            "shibafu service create",
            "dns.update"
        )),
        "service spans never arrived: {:#?}",
        receiver.spans()
    );
    coordinator_change_reaches_every_agent(
        &receiver.spans(),
        "shibafu service create",
        "/v1/services",
        "dns.update",
    );

    // A policy change reaches every agent's policy update.
    let mut policy = lab.exec_cmd(
        "node3",
        &[
            "shibafu",
            "network",
            "policy",
            "create",
            "--name",
            "frontend-in",
            "--network",
            "frontend",
            "--allow-ingress-from",
            "frontend:80/tcp",
        ],
    );
    policy.envs(base);
    let out = exec_out(&mut policy);
    assert!(out.status.success(), "{}", describe(&policy, &out));
    assert!(
        wait_until(Duration::from_secs(20), POLL, || arrived_everywhere(
            &receiver.spans(),
            "shibafu network policy create",
            "policy.update"
        )),
        "policy spans never arrived: {:#?}",
        receiver.spans()
    );
    coordinator_change_reaches_every_agent(
        &receiver.spans(),
        "shibafu network policy create",
        "/v1/policies",
        "policy.update",
    );
    exec_exports_its_spans(&lab, &receiver, &base);

    let mut json_spans = spans.iter().filter(|s| s.host() == "node2");
    assert!(json_spans.clone().count() > 0);
    assert!(json_spans.all(|s| s.content_type == "application/json"));
    assert!(spans
        .iter()
        .filter(|s| s.host() == "node3")
        .all(|s| s.content_type == "application/x-protobuf"));
    lab.down();
}

/// `shibafu exec` replaces itself with the container's command, yet its span and the agent
/// request under it reach the collector.
fn exec_exports_its_spans(lab: &Lab, receiver: &OtlpReceiver, env: &[(&str, &str)]) {
    let mut exec = lab.exec_cmd("node1", &["shibafu", "exec", "web1", "--", "true"]);
    exec.envs(env.iter().copied());
    let out = exec_out(&mut exec);
    assert!(out.status.success(), "{}", describe(&exec, &out));
    let exec_spans = |spans: &[ReceivedSpan]| -> Option<(ReceivedSpan, ReceivedSpan)> {
        let cli = spans.iter().find(|s| s.name == "shibafu exec")?;
        let api = spans
            .iter()
            .find(|s| s.name == "agent.request" && s.parent_id == cli.span_id)?;
        Some((cli.clone(), api.clone()))
    };
    assert!(
        wait_until(Duration::from_secs(10), POLL, || exec_spans(
            &receiver.spans()
        )
        .is_some()),
        "the spans of shibafu exec never arrived: {:#?}",
        receiver.spans()
    );
    let (cli, api) = exec_spans(&receiver.spans()).expect("exec spans");
    assert_eq!(cli.service(), "shibafu");
    assert_eq!(cli.parent_id, "", "{cli:?}");
    assert_eq!(api.attr("url.path"), "/v1/containers/web1", "{api:?}");
    assert_eq!(api.host(), "node1");
}
