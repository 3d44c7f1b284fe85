//! Lab tier, `shibafu-cni` continuing a container runtime's trace: an ADD called with
//! `TRACEPARENT` and the OTLP variables exports a `shibafu-cni` span in that trace, under the
//! runtime's span, and the agent's `agent.request` of `/v1/cni/add` joins the same trace (the
//! collector is an [`OtlpReceiver`] on the lab's control host, as in `lab_traces.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use shibafu_tests::cni::Runtime;
use shibafu_tests::cni_lab::{container, create_net, NET};
use shibafu_tests::{root_or_skip, wait_until, Lab, OtlpReceiver, ReceivedSpan};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// The spans of TRACE: the plugin's and the agent's `/v1/cni/add` request, once both arrived.
fn arrived(spans: &[ReceivedSpan]) -> Option<(Vec<ReceivedSpan>, ReceivedSpan)> {
    let ours: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == TRACE)
        .cloned()
        .collect();
    let cni: Vec<ReceivedSpan> = ours
        .iter()
        .filter(|s| s.service() == "shibafu-cni")
        .cloned()
        .collect();
    let api = ours
        .iter()
        .find(|s| s.name == "agent.request" && s.attr("url.path") == "/v1/cni/add")?;
    (!cni.is_empty()).then(|| (cni, api.clone()))
}

#[test]
fn an_add_continues_the_runtimes_traceparent_through_the_agent() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(1);
    let receiver = OtlpReceiver::start_in(
        &format!("sf-{}-ctl", lab.name()),
        SocketAddr::new(lab.ctl_addr(), 4318),
    );
    let endpoint = receiver.endpoint();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    lab.restart_with_env("node1", &otel);
    create_net(&lab);
    let ready = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        lab.agent_get("node1", "/v1/networks")
            .is_some_and(|v| v.to_string().contains(NET))
    });
    assert!(ready, "node1 never saw {NET}");

    let mut rt = Runtime::shibafu(&lab, "node1", NET)
        .with_env("TRACEPARENT", &format!("00-{TRACE}-{PARENT}-01"));
    for (k, v) in otel {
        rt = rt.with_env(k, v);
    }
    let (_ns, att) = container("cnitr");
    rt.add(&att).expect_ok("ADD with TRACEPARENT");

    let mut found = None;
    let came = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        found = arrived(&receiver.spans());
        found.is_some()
    });
    assert!(
        came,
        "no shibafu-cni span and agent.request /v1/cni/add in trace {TRACE}: {:#?}",
        receiver.spans()
    );
    let (cni, api) = found.expect("arrived");
    let root = cni.iter().find(|s| s.parent_id == PARENT);
    let root = root.unwrap_or_else(|| panic!("no shibafu-cni span under {PARENT}: {cni:#?}"));
    assert_eq!(root.name, "cni add", "{root:?}");
    assert_eq!(root.attr("container"), att.container_id, "{root:?}");
    assert_eq!(root.attr("ifname"), "eth0", "{root:?}");
    assert_eq!(api.service(), "shibafu-agent", "{api:?}");
    assert_eq!(api.host(), "node1", "{api:?}");
    let under_cni = cni.iter().any(|s| s.span_id == api.parent_id);
    assert!(
        under_cni,
        "the agent request is not under a shibafu-cni span: {api:?}\n{cni:#?}"
    );
    rt.del(&att).expect_ok("DEL");
    drop(receiver);
    lab.down();
}
