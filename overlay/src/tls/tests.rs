//! Certificates made with the issuing code, read back, and used in real TLS handshakes over an
//! in-memory pipe: the server takes only clients of its CA and learns their role.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::issue::{self, Request};
use super::*;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("shibafu-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA in `dir` (`ca.pem`, `ca-key.pem`) and a certificate for each of `holders`.
fn pki(dir: &Path, ca_name: &str, holders: &[(&str, Role)]) -> Vec<TlsFiles> {
    let ca = issue::new_ca(ca_name, 30).expect("ca");
    issue::write(dir, "ca", &ca, false).expect("write ca");
    let req = |name: &str, role: Role| Request {
        name: name.to_string(),
        role,
        sans: vec!["127.0.0.1".into(), "coordinator1".into()],
        days: 10,
    };
    holders
        .iter()
        .map(|(name, role)| issue::issue_into(dir, &ca, &req(name, *role)).expect("issue"))
        .collect()
}

#[test]
fn issued_certificates_carry_name_role_and_expiry_and_private_keys_are_0600() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new("info");
    let files = pki(&s.0, "test-ca", &[("alice", Role::ReadOnly)]);
    let info = files[0].info().expect("info");
    assert_eq!(info.name, "alice");
    assert_eq!(info.role, Some(Role::ReadOnly));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (9..=10).contains(&info.days_left(now)),
        "10 days from now: {}",
        info.days_left(now)
    );
    assert_eq!(info.days_left(now + 11 * 86_400), -1, "expired a day later");
    assert!(
        info.expires.ends_with('Z') && info.expires.len() == 20,
        "{}",
        info.expires
    );
    for key in [s.0.join("ca-key.pem"), files[0].key.clone()] {
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let again = issue::write(&s.0, "alice", &issue::new_ca("x", 1).expect("ca"), false);
    assert!(
        matches!(again, Err(TlsError::File { .. })),
        "an existing certificate is not replaced without asking"
    );
}

#[test]
fn roles_read_only_from_one_shibafu_organization() {
    assert_eq!("read-only".parse::<Role>(), Ok(Role::ReadOnly));
    assert!("root".parse::<Role>().is_err());
    assert!(Role::Admin.may_write() && Role::Admin.may_read());
    assert!(!Role::ReadOnly.may_write() && Role::ReadOnly.may_read());
    assert!(!Role::Agent.may_write() && !Role::Coordinator.may_write());
    assert!(!Role::Etcd.may_read());
    let s = Scratch::new("ca-role");
    let files = pki(&s.0, "test-ca", &[]);
    let _ = files;
    let ca = CertInfo::from_der(&certs(&s.0.join("ca.pem")).expect("ca")[0]).expect("ca info");
    assert_eq!(ca.role, None, "the CA's organization names no role");
    assert!(CertInfo::from_der(b"garbage").is_err());
}

#[test]
fn incomplete_flags_and_bad_files_are_refused_with_the_file_named() {
    assert_eq!(TlsFiles::from_flags(None, None, None).expect("none"), None);
    let half = TlsFiles::from_flags(Some("a".into()), None, Some("c".into()));
    assert!(matches!(half, Err(TlsError::Incomplete(m)) if m == "--tls-cert"));
    let s = Scratch::new("bad");
    std::fs::write(s.0.join("junk.pem"), "not a certificate").expect("write");
    let bad = TlsFiles {
        ca: s.0.join("junk.pem"),
        cert: s.0.join("junk.pem"),
        key: s.0.join("missing.pem"),
    };
    let err = bad.server_config().expect_err("junk");
    assert!(err.to_string().contains("junk.pem"), "{err}");
}

/// One TLS exchange over a pipe; the server's view of the client, or the handshake error.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> Result<Option<CertInfo>, String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let serve = async move {
        let mut tls = TlsAcceptor::from(server)
            .accept(a)
            .await
            .map_err(|e| e.to_string())?;
        let info = peer_info(tls.get_ref().1);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(info)
    };
    let call = async move {
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let mut tls = TlsConnector::from(client)
            .connect(name, b)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let (served, called) = tokio::join!(serve, call);
    called?;
    served
}

#[tokio::test]
async fn the_server_takes_clients_of_its_ca_only_and_learns_their_role() {
    let s = Scratch::new("handshake");
    let ours = pki(
        &s.0,
        "test-ca",
        &[("coordinator1", Role::Coordinator), ("alice", Role::Admin)],
    );
    let server = ours[0].server_config().expect("server");
    let seen = handshake(server.clone(), ours[1].client_config().expect("client"))
        .await
        .expect("a client of the CA is taken");
    let seen = seen.expect("the client sent its certificate");
    assert_eq!(
        (seen.name.as_str(), seen.role),
        ("alice", Some(Role::Admin))
    );

    let other = Scratch::new("handshake-other");
    let theirs = pki(&other.0, "other-ca", &[("mallory", Role::Admin)]);
    let refused = handshake(server.clone(), theirs[0].client_config().expect("client")).await;
    assert!(refused.is_err(), "a client of another CA is refused");

    let roots = {
        let mut r = RootCertStore::empty();
        for c in certs(&ours[0].ca).expect("ca") {
            r.add(c).expect("root");
        }
        r
    };
    let anonymous =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let refused = handshake(server, Arc::new(anonymous)).await;
    assert!(
        refused.is_err(),
        "a client without a certificate is refused"
    );
}
