//! The RuntimeActor against a fake container host and a fake NetworkActor: the whole lifecycle
//! without root, processes or a kernel.

mod fake_network;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use shibafu_overlay::api::{ApiError, ContainerInfo, ErrorKind, RunContainer};
use shibafu_overlay::container::state::Status;
use shibafu_overlay::container::{ContainerHost, FakeContainerHost, FakeOp};

use super::*;
use crate::messages::SubscribeLocal;
use fake_network::{FakeNetwork, Requests};

/// A runtime wired to fakes, as the agent wires the real ones.
struct Rig {
    runtime: Addr<RuntimeActor>,
    host: Arc<FakeContainerHost>,
    requests: Requests,
}

fn rig(host: FakeContainerHost, net: impl FnOnce(Requests) -> FakeNetwork) -> Rig {
    let host = Arc::new(host);
    let requests = Requests::default();
    let net = net(requests.clone()).start();
    let recipients = NetworkRecipients {
        attach: net.clone().recipient(),
        detach: net.clone().recipient(),
    };
    let runtime = RuntimeActor::new(host.clone(), recipients).start();
    net.do_send(SubscribeLocal(runtime.clone().recipient()));
    Rig {
        runtime,
        host,
        requests,
    }
}

fn plain() -> Rig {
    rig(FakeContainerHost::new(), FakeNetwork::new)
}

fn request(name: &str, command: &[&str]) -> RunContainer {
    RunContainer {
        name: name.into(),
        networks: vec!["backend".into()],
        command: command.iter().map(|c| c.to_string()).collect(),
        ..RunContainer::default()
    }
}

/// The answer of `fut`, which must come within a second.
async fn soon<T>(fut: impl Future<Output = Result<T, MailboxError>>) -> T {
    tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .expect("answered within a second")
        .expect("mailbox")
}

async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Rig {
    async fn run(&self, name: &str, command: &[&str]) -> Result<ContainerInfo, ApiError> {
        soon(self.runtime.send(Run(request(name, command), Trace::NONE))).await
    }

    async fn get(&self, name: &str) -> Result<ContainerInfo, ApiError> {
        soon(self.runtime.send(Get(name.into()))).await
    }

    async fn ps(&self) -> Vec<(String, String)> {
        let list = soon(self.runtime.send(List)).await.expect("list");
        list.into_iter().map(|c| (c.name, c.state)).collect()
    }

    async fn exited(&self, name: &str, code: i32) {
        eventually("the exit is observed and released", async || {
            let c = self.get(name).await.expect("container");
            c.exit_code == Some(code) && c.interfaces.is_empty()
        })
        .await;
    }

    async fn remove(&self, name: &str, force: bool) -> Result<ContainerInfo, ApiError> {
        let rm = Remove {
            name: name.into(),
            force,
        };
        soon(self.runtime.send(rm)).await
    }

    fn pinned(&self, name: &str) -> bool {
        self.host.is_pinned(&self.host.netns_path(name))
    }
}

#[test]
fn run_then_observed_exit_detaches_and_rm_removes() {
    System::new().block_on(async {
        let r = plain();
        let web = r.run("web", &["sleep", "600"]).await.expect("run");
        assert_eq!((web.state.as_str(), web.pid), ("running", Some(1001)));
        assert_eq!(web.command, ["sleep", "600"]);
        assert_eq!(web.netns, "/fake/netns/web");
        assert_eq!(web.interfaces[0].ifname, "eth0");
        assert!(r.pinned("web"));
        assert_eq!(r.ps().await, [("web".into(), "running".into())]);

        r.host.exit("web", 3);
        r.exited("web", 3).await;
        eventually("namespace unpinned", async || !r.pinned("web")).await;
        assert_eq!(r.requests.all(), ["attach web", "detach web"]);
        assert_eq!(r.ps().await, [("web".into(), "exited".into())]);

        let removed = r.remove("web", false).await.expect("rm");
        assert_eq!(removed.exit_code, Some(3));
        assert!(r.ps().await.is_empty());
        assert_eq!(r.host.status("web"), None, "its files are gone");
        let err = r.get("web").await.expect_err("gone");
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert_eq!(r.requests.all().len(), 2, "nothing left to detach");
    });
}

#[test]
fn a_failed_run_undoes_every_step() {
    System::new().block_on(async {
        let r = plain();
        r.host.fail_next(FakeOp::Start);
        let err = r.run("web", &["true"]).await.expect_err("start fails");
        assert_eq!(err.kind, ErrorKind::Internal);
        assert_eq!(r.requests.all(), ["attach web", "detach web"]);
        assert!(!r.pinned("web") && r.host.status("web").is_none());
        assert!(r.ps().await.is_empty());

        let mut bad = request("api", &["true"]);
        bad.networks = vec!["nope".into()];
        let err = soon(r.runtime.send(Run(bad, Trace::NONE)))
            .await
            .expect_err("unknown net");
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(
            !r.pinned("api"),
            "the namespace goes with the refused attach"
        );

        for (req, kind) in [
            (request("Bad_Name", &["true"]), ErrorKind::Invalid),
            (request("job", &[]), ErrorKind::Invalid),
            (
                RunContainer {
                    rootfs: Some("/no/such/dir".into()),
                    ..request("job", &["true"])
                },
                ErrorKind::Invalid,
            ),
            (
                RunContainer {
                    cap_add: vec!["NET_ADMINN".into()],
                    ..request("job", &["true"])
                },
                ErrorKind::Invalid,
            ),
        ] {
            let err = soon(r.runtime.send(Run(req, Trace::NONE)))
                .await
                .expect_err("refused");
            assert_eq!(err.kind, kind, "{err}");
        }
        assert!(r.ps().await.is_empty() && !r.pinned("job"));
        // The name is free again.
        r.run("web", &["true"]).await.expect("second try");
    });
}

#[test]
fn names_are_unique_on_the_node() {
    System::new().block_on(async {
        let host = FakeContainerHost::new();
        host.record("old", &["true"], Status::Exited(0), false);
        let r = rig(host, FakeNetwork::new);
        r.run("web", &["sleep", "9"]).await.expect("run");
        for name in ["web", "old"] {
            let err = r.run(name, &["true"]).await.expect_err("duplicate");
            assert_eq!(err.kind, ErrorKind::Duplicate);
            assert!(err.error.contains("shibafu rm"), "{err}");
        }
    });
}

#[test]
fn stop_answers_once_the_container_exited_and_left_its_networks() {
    System::new().block_on(async {
        let r = plain();
        r.run("web", &["sleep", "600"]).await.expect("run");
        let stopped = soon(r.runtime.send(Stop {
            name: "web".into(),
            grace: 10,
        }))
        .await
        .expect("stop");
        assert_eq!(
            (stopped.state.as_str(), stopped.exit_code),
            ("exited", Some(143))
        );
        assert!(stopped.interfaces.is_empty(), "answered before the detach");
        assert_eq!(r.requests.all(), ["attach web", "detach web"]);
        assert!(!r.pinned("web"));
        // Stopping again is harmless.
        let again = soon(r.runtime.send(Stop {
            name: "web".into(),
            grace: 10,
        }))
        .await
        .expect("stop again");
        assert_eq!(again, stopped);
        let err = soon(r.runtime.send(Stop {
            name: "ghost".into(),
            grace: 1,
        }))
        .await
        .expect_err("unknown");
        assert_eq!(err.kind, ErrorKind::NotFound);
    });
}

#[test]
fn logs_follow_offsets_and_the_exit_code_comes_with_the_end() {
    System::new().block_on(async {
        let r = plain();
        r.run("job", &["sh"]).await.expect("run");
        r.host.write_log("job", "hello\n");
        let logs = |offset| {
            r.runtime.send(Logs {
                name: "job".into(),
                offset,
            })
        };
        let first = soon(logs(0)).await.expect("logs");
        assert_eq!(
            (first.data.as_str(), first.next_offset, first.exit_code),
            ("hello\n", 6, None)
        );
        let idle = soon(logs(6)).await.expect("logs");
        assert_eq!(
            (idle.data.as_str(), idle.next_offset, idle.exit_code),
            ("", 6, None)
        );
        r.host.write_log("job", "bye\n");
        r.host.exit("job", 2);
        r.exited("job", 2).await;
        let last = soon(logs(6)).await.expect("logs");
        assert_eq!(
            (last.data.as_str(), last.next_offset, last.exit_code),
            ("bye\n", 10, Some(2))
        );
        let end = soon(logs(10)).await.expect("logs");
        assert_eq!(
            (end.data.as_str(), end.next_offset, end.exit_code),
            ("", 10, Some(2))
        );
        let err = soon(r.runtime.send(Logs {
            name: "ghost".into(),
            offset: 0,
        }))
        .await
        .expect_err("unknown");
        assert_eq!(err.kind, ErrorKind::NotFound);
    });
}

#[test]
fn rm_of_a_running_container_needs_force() {
    System::new().block_on(async {
        let r = plain();
        r.run("web", &["sleep", "600"]).await.expect("run");
        let err = r.remove("web", false).await.expect_err("running");
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert_eq!(
            err.error,
            "container \"web\" is running: stop it first or use `shibafu rm -f web`"
        );
        assert_eq!(r.host.status("web"), Some(Status::Running(1001)));
        let removed = r.remove("web", true).await.expect("rm -f");
        assert_eq!(
            removed.state, "running",
            "answers with the container as it was asked"
        );
        assert!(r.ps().await.is_empty());
        assert!(!r.pinned("web") && r.host.status("web").is_none());
        assert_eq!(r.requests.all(), ["attach web", "detach web"]);
    });
}

#[test]
fn views_answer_while_the_network_side_hangs() {
    System::new().block_on(async {
        let r = rig(FakeContainerHost::new(), |req| {
            FakeNetwork::new(req).hanging_detach()
        });
        r.run("web", &["sleep", "600"]).await.expect("run");
        r.host.exit("web", 0);
        eventually("the detach is asked", async || r.requests.all().len() == 2).await;
        // The release is stuck in the NetworkActor; every view still answers at once.
        assert_eq!(r.ps().await, [("web".into(), "exited".into())]);
        let web = r.get("web").await.expect("get");
        assert_eq!(web.exit_code, Some(0));
        let logs = soon(r.runtime.send(Logs {
            name: "web".into(),
            offset: 0,
        }))
        .await
        .expect("logs");
        assert_eq!(logs.exit_code, Some(0));
        // A stop waits for the release, without holding up anything else.
        let stop = r.runtime.send(Stop {
            name: "web".into(),
            grace: 1,
        });
        let pending = tokio::time::timeout(Duration::from_millis(100), stop).await;
        assert!(
            pending.is_err(),
            "stop answered before the container left its networks"
        );
        assert_eq!(r.ps().await.len(), 1);
    });
}

#[test]
fn a_restarted_agent_adopts_running_and_exited_containers() {
    System::new().block_on(async {
        let host = FakeContainerHost::new();
        host.record("web", &["nginx"], Status::Running(42), true);
        host.record("job", &["make"], Status::Exited(3), true);
        host.record("done", &["true"], Status::Exited(0), false);
        let r = rig(host, |req| {
            FakeNetwork::new(req)
                .with("web", true)
                .with("job", true)
                .with("cni", false)
        });
        let web = r.get("web").await.expect("web");
        assert_eq!(
            (web.state.as_str(), web.pid, web.command.clone()),
            ("running", Some(42), vec!["nginx".to_string()])
        );
        eventually("web shows its interfaces", async || {
            !r.get("web").await.expect("web").interfaces.is_empty()
        })
        .await;
        // `job` exited while the agent was away: it leaves its networks now.
        r.exited("job", 3).await;
        eventually("job's namespace unpinned", async || !r.pinned("job")).await;
        assert_eq!(r.requests.all(), ["detach job"]);
        assert_eq!(
            r.ps().await,
            [
                ("cni".into(), "attached".into()),
                ("done".into(), "exited".into()),
                ("job".into(), "exited".into()),
                ("web".into(), "running".into()),
            ]
        );
        // The adopted container's exit is observed like any other.
        r.host.exit("web", 137);
        r.exited("web", 137).await;
        assert_eq!(r.requests.all(), ["detach job", "detach web"]);
    });
}

#[test]
fn attachments_are_shown_and_rm_detaches_them() {
    System::new().block_on(async {
        let r = rig(FakeContainerHost::new(), |req| {
            FakeNetwork::new(req).with("cni", false)
        });
        eventually("cni is listed", async || r.ps().await.len() == 1).await;
        let cni = r.get("cni").await.expect("attached");
        assert_eq!((cni.state.as_str(), cni.interfaces.len()), ("attached", 1));
        let logs = soon(r.runtime.send(Logs {
            name: "cni".into(),
            offset: 4,
        }))
        .await
        .expect("no log");
        assert_eq!(
            (logs.data.as_str(), logs.next_offset, logs.exit_code),
            ("", 4, None)
        );
        let stopped = soon(r.runtime.send(Stop {
            name: "cni".into(),
            grace: 1,
        }))
        .await
        .expect("stop is a no-op");
        assert_eq!(stopped, cni);
        assert_eq!(r.remove("cni", false).await.expect("rm"), cni);
        assert_eq!(r.requests.all(), ["detach cni"]);
        assert!(r.ps().await.is_empty());
    });
}
