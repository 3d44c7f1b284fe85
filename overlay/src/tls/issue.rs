//! A cluster CA and the certificates it issues (`shibafu cert init`, `shibafu cert issue`):
//! ECDSA P-256 keys made with rcgen and ring, written as PEM, keys readable by their owner only.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::{Role, TlsError};

/// How far back a new certificate's validity starts, for clocks a little behind.
const SKEW: time::Duration = time::Duration::minutes(5);

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// What to issue: a holder's name, role, the names and addresses it serves on, its lifetime.
#[derive(Debug, Clone)]
pub struct Request {
    /// The subject's common name (a node, a coordinator, a user).
    pub name: String,
    /// The role its organization carries.
    pub role: Role,
    /// Subject alternative names (IP addresses or DNS names) for servers.
    pub sans: Vec<String>,
    /// Days it is valid.
    pub days: u32,
}

fn issue_error(e: rcgen::Error) -> TlsError {
    TlsError::Config(format!("cannot make the certificate: {e}"))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - SKEW;
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// A new self-signed cluster CA named `name`, valid `days` days.
pub fn new_ca(name: &str, days: u32) -> Result<Issued, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(issue_error)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "shibafu");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(issue_error)?;
    let cert = params.self_signed(&key).map_err(issue_error)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for `req`, signed by the CA of `ca_cert_pem` and `ca_key_pem`.
pub fn issue(ca_cert_pem: &str, ca_key_pem: &str, req: &Request) -> Result<Issued, TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)
        .map_err(|e| TlsError::Config(format!("the CA key does not read: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|e| TlsError::Config(format!("the CA certificate does not read: {e}")))?;
    let mut params = CertificateParams::new(req.sans.clone()).map_err(issue_error)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.name.as_str());
    dn.push(DnType::OrganizationName, req.role.organization());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match req.role {
        Role::Coordinator | Role::Etcd => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Admin | Role::ReadOnly | Role::Agent => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, req.days);
    let key = KeyPair::generate().map_err(issue_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(issue_error)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for `req` from the CA `ca` and writes it into `dir` (which holds the
/// CA's `ca.pem`) as `<name>.pem` and `<name>-key.pem`; answers the three files.
pub fn issue_into(dir: &Path, ca: &Issued, req: &Request) -> Result<super::TlsFiles, TlsError> {
    let issued = issue(&ca.cert_pem, &ca.key_pem, req)?;
    let (cert, key) = write(dir, &req.name, &issued, false)?;
    Ok(super::TlsFiles {
        ca: dir.join("ca.pem"),
        cert,
        key,
    })
}

/// Writes `<stem>.pem` and `<stem>-key.pem` (mode 0600) into `dir`; refuses to replace
/// existing files unless `replace`. Answers the two paths.
pub fn write(
    dir: &Path,
    stem: &str,
    issued: &Issued,
    replace: bool,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    if !replace {
        if let Some(there) = [&cert, &key].into_iter().find(|p| p.exists()) {
            return Err(TlsError::File {
                path: there.clone(),
                reason: "exists already (give --force to replace it)".into(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| TlsError::File {
        path: dir.to_path_buf(),
        reason: format!("cannot create the directory: {e}"),
    })?;
    write_file(&key, &issued.key_pem, 0o600)?;
    write_file(&cert, &issued.cert_pem, 0o644)?;
    Ok((cert, key))
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let fail = |e: std::io::Error| TlsError::File {
        path: path.to_path_buf(),
        reason: format!("cannot write: {e}"),
    };
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)
}
