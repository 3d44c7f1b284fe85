//! TLS of the control plane: the cluster CA's files, rustls configurations for the coordinator
//! (a server that requires client certificates of the CA) and its clients, the role a
//! certificate carries ([`role`]) and when it expires. rustls with the ring provider; no
//! OpenSSL.

pub mod issue;
pub mod role;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use role::{CertInfo, Role};

/// Errors reading certificates or building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificates or key.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// Some of the three files are given, not all.
    #[error("give --tls-ca, --tls-cert and --tls-key together (missing: {0})")]
    Incomplete(String),
}

/// The three files of an identity: the cluster CA (what peers must be signed by), this
/// process's certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This process's certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files from optional flags: `None` when none is given, an error when only some are.
    pub fn from_flags(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<TlsFiles>, TlsError> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles { ca, cert, key })),
            (ca, cert, key) => {
                let missing: Vec<&str> = [
                    (ca.is_none(), "--tls-ca"),
                    (cert.is_none(), "--tls-cert"),
                    (key.is_none(), "--tls-key"),
                ]
                .into_iter()
                .filter_map(|(m, f)| m.then_some(f))
                .collect();
                Err(TlsError::Incomplete(missing.join(", ")))
            }
        }
    }

    /// What this process's certificate says (name, role, expiry).
    pub fn info(&self) -> Result<CertInfo, TlsError> {
        let der = certs(&self.cert)?.remove(0);
        CertInfo::from_der(&der).map_err(|reason| file_error(&self.cert, reason))
    }

    /// A server configuration that requires a client certificate signed by the CA.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(self.roots()?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&self.cert)?, key(&self.key)?)
            .map_err(config_error)?;
        Ok(Arc::new(config))
    }

    /// A client configuration that trusts only the CA and presents this certificate.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(certs(&self.cert)?, key(&self.key)?)
            .map_err(config_error)?;
        Ok(Arc::new(config))
    }

    /// The PEM text of the CA, the certificate and the key, as etcd's client takes them.
    pub fn pem(&self) -> Result<(String, String, String), TlsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| file_error(p, format!("cannot read: {e}")))
        };
        Ok((read(&self.ca)?, read(&self.cert)?, read(&self.key)?))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in certs(&self.ca)? {
            roots
                .add(c)
                .map_err(|e| file_error(&self.ca, format!("not a usable CA certificate: {e}")))?;
        }
        Ok(roots)
    }
}

fn file_error(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn config_error(e: rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// Every certificate of a PEM file (at least one).
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(path, format!("cannot read certificates: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_error(path, format!("cannot read a private key: {e}")))
}

/// What the client certificate of a verified TLS connection says, if it sent one that reads.
pub fn peer_info(conn: &rustls::ServerConnection) -> Option<CertInfo> {
    let first = conn.peer_certificates()?.first()?;
    CertInfo::from_der(first).ok()
}
