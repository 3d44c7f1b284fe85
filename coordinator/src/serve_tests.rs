//! The API over TLS on a loopback port, reached with the real client and certificates from the
//! real issuing code: the role of each certificate decides what it may do.

use std::path::{Path, PathBuf};

use shibafu_overlay::api::{
    Client, ClientError, Coordinator, CreateNetwork, ErrorKind, Target, NO_CERTIFICATE,
};
use shibafu_overlay::store::MemoryStore;
use shibafu_overlay::tls::issue::{self, Request};
use shibafu_overlay::tls::{Role, TlsFiles};

use super::*;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA in `dir` and a certificate for each of `holders`, by name.
fn pki(dir: &Path, holders: &[(&str, Role)]) -> Vec<TlsFiles> {
    let ca = issue::new_ca("test-ca", 1).expect("ca");
    issue::write(dir, "ca", &ca, false).expect("write ca");
    let req = |name: &str, role: Role| Request {
        name: name.to_string(),
        role,
        sans: vec!["127.0.0.1".into()],
        days: 1,
    };
    holders
        .iter()
        .map(|(name, role)| issue::issue_into(dir, &ca, &req(name, *role)).expect("issue"))
        .collect()
}

fn client(target: &Target, files: Option<&TlsFiles>) -> Coordinator {
    let tls = files.map(|f| f.client_config().expect("client config"));
    Coordinator::from_client(Client::new(target.clone(), "coordinator", "hint").with_tls(tls))
}

fn net(name: &str, subnet: &str) -> CreateNetwork {
    serde_json::from_value(serde_json::json!({"name": name, "subnet": subnet})).expect("request")
}

fn forbidden(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(ClientError::Api(e)) if e.kind == ErrorKind::Forbidden => e.error,
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn reads_need_a_certificate_of_the_ca_and_changes_an_admin_one() {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("shibafu-coord-tls-{}", std::process::id())));
    let ours = pki(
        &scratch.0.join("ours"),
        &[
            ("coordinator1", Role::Coordinator),
            ("alice", Role::Admin),
            ("grafana", Role::ReadOnly),
            ("node1", Role::Agent),
        ],
    );
    let theirs = pki(&scratch.0.join("theirs"), &[("mallory", Role::Admin)]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = Target::Https(listener.local_addr().expect("addr").to_string());
    let config = ours[0].server_config().expect("server config");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = http::router(Arc::new(MemoryStore::new()));
    let server = tokio::spawn(serve::serve(listener, Some(config), router, async {
        let _ = stopped.await;
    }));

    let admin = client(&target, Some(&ours[1]));
    admin
        .create_network(&net("frontend", "172.21.0.0/24"))
        .await
        .expect("an admin creates a network");
    let reader = client(&target, Some(&ours[2]));
    let seen = reader.list_networks().await.expect("a reader lists");
    assert_eq!(seen.len(), 1);
    let why = forbidden(
        reader
            .create_network(&net("backend", "172.22.0.0/24"))
            .await,
    );
    assert!(
        why.contains("grafana (read-only) may not POST /v1/networks"),
        "{why}"
    );
    let agent = client(&target, Some(&ours[3]));
    agent.list_networks().await.expect("an agent reads");
    forbidden(agent.remove_network("frontend", false).await);
    assert_eq!(
        admin.list_networks().await.expect("list").len(),
        1,
        "refused changes changed nothing"
    );

    let stranger = client(&target, Some(&theirs[0]));
    let refused = stranger.list_networks().await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Unreachable { .. } | ClientError::Protocol { .. })
        ),
        "another CA's certificate gets no answer: {refused:?}"
    );
    let anonymous = client(&target, None).list_networks().await;
    assert!(
        matches!(&anonymous, Err(ClientError::Unreachable { reason, .. }) if reason == NO_CERTIFICATE),
        "{anonymous:?}"
    );
    let plain = Target::Http(
        target
            .to_string()
            .trim_start_matches("https://")
            .to_string(),
    );
    assert!(
        client(&plain, None).list_networks().await.is_err(),
        "plain HTTP gets no answer from a TLS coordinator"
    );

    stop.send(()).expect("stop");
    server.await.expect("join").expect("clean shutdown");
}
