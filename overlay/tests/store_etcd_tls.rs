//! The store against a real etcd that serves TLS and requires client certificates
//! (`--client-cert-auth`), with certificates made by shibafu's own issuing code: a client of
//! the cluster CA reads, writes and watches; one without a certificate, with another CA's, or
//! speaking plain HTTP gets nothing.

mod common;

use std::path::{Path, PathBuf};

use shibafu_overlay::store::{EtcdStore, Store, StoreError};
use shibafu_overlay::tls::issue::{self, Request};
use shibafu_overlay::tls::{Role, TlsFiles};

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA named `ca` in `dir` and one certificate for `name` with `role`.
fn issue_one(dir: &Path, ca: &str, name: &str, role: Role) -> TlsFiles {
    let ca_pem = match std::fs::read_to_string(dir.join("ca.pem")) {
        Ok(cert) => issue::Issued {
            cert_pem: cert,
            key_pem: std::fs::read_to_string(dir.join("ca-key.pem")).expect("ca key"),
        },
        Err(_) => {
            let new = issue::new_ca(ca, 2).expect("ca");
            issue::write(dir, "ca", &new, false).expect("write ca");
            new
        }
    };
    let req = Request {
        name: name.into(),
        role,
        sans: vec!["127.0.0.1".into(), "localhost".into()],
        days: 1,
    };
    issue::issue_into(dir, &ca_pem, &req).expect("issue")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_with_a_certificate_of_the_cluster_ca_reach_etcd() {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("shibafu-etcd-tls-{}", std::process::id())));
    let ours = scratch.0.join("ours");
    let theirs = scratch.0.join("theirs");
    let server = issue_one(&ours, "cluster-ca", "etcd1", Role::Etcd);
    let agent = issue_one(&ours, "cluster-ca", "node1", Role::Agent);
    let stranger = issue_one(&theirs, "other-ca", "node1", Role::Agent);
    let etcd = common::Etcd::start_tls(server);
    let endpoints = etcd.endpoints();
    assert!(endpoints[0].starts_with("https://"));

    // A client of the cluster CA connects (retried while etcd starts serving).
    let store = etcd.store_with(Some(&agent)).await;
    store
        .put("/shibafu/v1/tls-test", b"v".to_vec(), None)
        .await
        .expect("put");
    let got = store.get("/shibafu/v1/tls-test").await.expect("get");
    assert_eq!(got.map(|kv| kv.value), Some(b"v".to_vec()));

    let none = EtcdStore::connect(&endpoints, None).await;
    assert!(
        matches!(&none, Err(StoreError::Config(m)) if m.contains("--tls-cert")),
        "https without a certificate is refused before connecting: {:?}",
        none.as_ref().err()
    );
    let other = EtcdStore::connect(&endpoints, Some(&stranger)).await;
    assert!(
        matches!(other, Err(StoreError::Unavailable(_))),
        "another CA's certificate does not reach etcd"
    );
    let plain = vec![endpoints[0].replace("https://", "http://")];
    assert!(
        EtcdStore::connect(&plain, None).await.is_err(),
        "plain HTTP does not reach a TLS etcd"
    );
    let mixed = EtcdStore::connect(&plain, Some(&agent)).await;
    assert!(
        matches!(&mixed, Err(StoreError::Config(m)) if m.contains("https://")),
        "a certificate with http:// endpoints is a configuration mistake: {:?}",
        mixed.as_ref().err()
    );
}
