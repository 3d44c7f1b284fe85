//! The API over a real unix socket, with a fake actor behind it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use actix::prelude::*;
use shibafu_overlay::model::Network;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::dataplane::actor::CheckLocal;
use crate::firewall_actor::CheckNetwork;
use crate::messages::AgentStatus;
use crate::network_actor::{AttachError, AttachWorkload, DetachWorkload};
use crate::registry::actor::GetWorkloads;
use crate::registry::book::Entry;
use crate::runtime::RuntimeActor;
use shibafu_overlay::container::ShimContainerHost;

/// Every actor the API reads from, answering as node7 with network frontend.
pub(super) struct FakeStore;

impl Actor for FakeStore {
    type Context = Context<Self>;
}

impl Handler<GetStatus> for FakeStore {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(AgentStatus {
            node: "node7".into(),
            underlay: "10.9.9.17".parse().expect("ip"),
            version: "test".into(),
            etcd_connected: true,
            registered: true,
            revision: 42,
            networks: vec!["frontend".into()],
            nodes: vec!["node7".into(), "node8".into()],
            upstream_dns: vec![],
        })
    }
}

impl Handler<GetTunnel> for FakeStore {
    type Result = MessageResult<GetTunnel>;
    fn handle(&mut self, _: GetTunnel, _: &mut Context<Self>) -> Self::Result {
        MessageResult(shibafu_overlay::api::TunnelReport {
            up: true,
            backend: Some("userspace (boringtun-cli 0.7.1)".into()),
            key: "abcdEFGH".into(),
            tunnel: "100.64.0.9".into(),
            mtu: 1440,
            port: 51820,
            ..Default::default()
        })
    }
}

impl Handler<GetNetworks> for FakeStore {
    type Result = MessageResult<GetNetworks>;
    fn handle(&mut self, _: GetNetworks, _: &mut Context<Self>) -> Self::Result {
        MessageResult(vec![Network::new(
            "frontend",
            "172.21.0.0/24".parse().expect("subnet"),
            4096,
        )])
    }
}

impl Handler<TraceDns> for FakeStore {
    type Result = Result<shibafu_overlay::dns::trace::DnsTrace, shibafu_overlay::api::ApiError>;
    fn handle(&mut self, m: TraceDns, _: &mut Context<Self>) -> Self::Result {
        Err(shibafu_overlay::api::ApiError::not_found(format!(
            "no DNS server for {}",
            m.network
        )))
    }
}

impl Handler<GetWorkloads> for FakeStore {
    type Result = MessageResult<GetWorkloads>;
    fn handle(&mut self, _: GetWorkloads, _: &mut Context<Self>) -> Self::Result {
        MessageResult(std::sync::Arc::default())
    }
}

impl Handler<CheckLocal> for FakeStore {
    type Result = Result<Vec<String>, crate::dataplane::DataplaneError>;
    fn handle(&mut self, _: CheckLocal, _: &mut Context<Self>) -> Self::Result {
        Ok(vec![])
    }
}

impl Handler<CheckNetwork> for FakeStore {
    type Result = Result<(), String>;
    fn handle(&mut self, _: CheckNetwork, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sf-agent-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

async fn get(path: &std::path::Path, url: &str) -> (u16, serde_json::Value) {
    let mut s = tokio::net::UnixStream::connect(path)
        .await
        .expect("connect");
    let req = format!("GET {url} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8(buf).expect("utf8");
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let code = head
        .split_whitespace()
        .nth(1)
        .expect("status")
        .parse()
        .expect("code");
    (code, serde_json::from_str(body).expect("json body"))
}

/// A NetworkActor stand-in with no workloads.
/// The network owner of a node without networks; counts the attaches that reach it.
#[derive(Default)]
pub(super) struct NoHost {
    pub(super) attaches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Actor for NoHost {
    type Context = Context<Self>;
}

impl Handler<AttachWorkload> for NoHost {
    type Result = Result<(Entry, Vec<Network>), AttachError>;
    fn handle(&mut self, m: AttachWorkload, _: &mut Context<Self>) -> Self::Result {
        self.attaches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(AttachError::UnknownNetwork(m.0.networks.join(",")))
    }
}

impl Handler<DetachWorkload> for NoHost {
    type Result = Result<Entry, AttachError>;
    fn handle(&mut self, m: DetachWorkload, _: &mut Context<Self>) -> Self::Result {
        Err(AttachError::UnknownWorkload(m.name))
    }
}

#[test]
fn serves_status_networks_and_json_errors_on_a_private_socket() {
    let dir = scratch("serve");
    let sock = dir.join("agent.sock");
    // A stale socket left by a killed agent is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("stale socket"));
    actix::System::new().block_on(async {
        let fake = FakeStore.start();
        let listener = bind(&sock).expect("bind over stale socket");
        let mode = std::fs::metadata(&sock).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let host = NoHost::default().start();
        let net = NetworkRecipients {
            attach: host.clone().recipient(),
            detach: host.recipient(),
        };
        let containers = ShimContainerHost::new(dir.clone(), "/bin/false".into());
        let runtime = RuntimeActor::new(std::sync::Arc::new(containers), net.clone()).start();
        let router = router(ApiState {
            status: fake.clone().recipient(),
            dns_trace: fake.clone().recipient(),
            tunnel: fake.clone().recipient(),
            cni: CniLinks {
                serial: std::sync::Arc::default(),
                pins: dir.join("pins"),
                workloads: fake.clone().recipient(),
                check: fake.clone().recipient(),
                firewall: fake.clone().recipient(),
            },
            certificate: None,
            networks: fake.recipient(),
            network: net,
            runtime: RuntimeRecipients::of(&runtime),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = actix_rt::spawn(serve(listener, router, async {
            let _ = rx.await;
        }));

        let (code, status) = get(&sock, "/v1/status").await;
        assert_eq!(code, 200);
        assert_eq!(status["node"], "node7");
        assert_eq!(status["etcd_connected"], true);
        assert_eq!(status["revision"], 42);
        assert_eq!(status["nodes"], serde_json::json!(["node7", "node8"]));

        let (code, tunnel) = get(&sock, "/v1/tunnel").await;
        assert_eq!(code, 200);
        assert_eq!(tunnel["backend"], "userspace (boringtun-cli 0.7.1)");
        assert_eq!(tunnel["key"], "abcdEFGH");

        let (code, nets) = get(&sock, "/v1/networks").await;
        assert_eq!(code, 200);
        assert_eq!(nets[0]["name"], "frontend");
        assert_eq!(nets[0]["subnet"], "172.21.0.0/24");

        let (code, health) = get(&sock, "/v1/health").await;
        assert_eq!((code, &health["status"]), (200, &serde_json::json!("ok")));

        let (code, list) = get(&sock, "/v1/containers").await;
        assert_eq!((code, list), (200, serde_json::json!([])));
        let (code, err) = get(&sock, "/v1/containers/ghost").await;
        assert_eq!((code, &err["kind"]), (404, &serde_json::json!("not_found")));
        let (code, err) = get(&sock, "/v1/containers/ghost/logs?offset=0").await;
        assert_eq!(code, 404, "{err}");

        let (code, err) = get(&sock, "/v1/nope").await;
        assert_eq!(code, 404);
        assert_eq!(err["kind"], "not_found");

        // The diagnosis routes check their input before touching anything.
        let agent = shibafu_overlay::api::Agent::new(
            shibafu_overlay::api::Target::Unix(sock.clone()),
            "test",
        );
        let mut trace = shibafu_overlay::api::DnsTraceRequest {
            network: "frontend".into(),
            query: "web.frontend.local".into(),
            qtype: "BOGUS".into(),
            client: "172.21.0.1".parse().expect("ip"),
        };
        let e = agent.dns_trace(&trace).await.expect_err("bad type");
        assert!(e.to_string().contains("give a record type"), "{e}");
        trace.qtype = "aaaa".into();
        let e = agent.dns_trace(&trace).await.expect_err("no server");
        assert_eq!(e.to_string(), "no DNS server for frontend");
        let probe = shibafu_overlay::api::ProbeRequest {
            kind: shibafu_overlay::api::ProbeKind::Tcp,
            target: "172.21.0.2".parse().expect("ip"),
            port: 80,
            timeout_ms: 0,
            name: None,
        };
        let e = agent.probe("ghost", &probe).await.expect_err("timeout 0");
        assert!(e.to_string().contains("timeout_ms 0"), "{e}");
        let e = agent.container_net("ghost").await.expect_err("unknown");
        assert!(
            matches!(e, shibafu_overlay::api::ClientError::Api(ref a) if a.status() == 404),
            "{e:?}"
        );

        // CNI: DEL of what is not there succeeds; ADD checks the namespace first; CHECK of an
        // unknown attachment is a 404.
        let target = shibafu_overlay::api::CniTarget {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            network: "frontend".into(),
        };
        let gone = agent.cni_del(&target).await.expect("del of nothing");
        assert!(gone.removed.is_empty(), "{gone:?}");
        let add = shibafu_overlay::api::CniAdd {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: dir.join("agent.sock").display().to_string(),
            network: "frontend".into(),
            name: "c1".into(),
            ..Default::default()
        };
        let e = agent.cni_add(&add).await.expect_err("not a namespace");
        assert!(e.to_string().contains("not a network namespace"), "{e}");
        let e = agent.cni_check(&target).await.expect_err("unknown");
        assert!(
            matches!(e, shibafu_overlay::api::ClientError::Api(ref a) if a.status() == 404),
            "{e:?}"
        );
        let gc = shibafu_overlay::api::CniGc {
            network: "frontend".into(),
            valid: vec![],
        };
        assert!(agent.cni_gc(&gc).await.expect("gc").removed.is_empty());

        let _ = tx.send(());
        server.await.expect("join").expect("serve");
    });
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn refuses_to_replace_a_regular_file() {
    let dir = scratch("file");
    let path = dir.join("agent.sock");
    std::fs::write(&path, b"not a socket").expect("write");
    let err = actix::System::new()
        .block_on(async { bind(&path).map(|_| ()) })
        .expect_err("must refuse");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).expect("still there"), b"not a socket");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
