//! Opening a connection to a server: TCP (`http://`), TCP with TLS and a client certificate
//! (`https://`, checked against the cluster CA), or a unix socket.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use super::target::Target;

/// A byte stream to a server.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open connection.
pub type Stream = Box<dyn Io>;

/// Shown when an `https://` server is given but no certificate.
pub const NO_CERTIFICATE: &str = "an https:// server needs the cluster CA and a client certificate: give --tls-ca, --tls-cert and --tls-key (or SHIBAFU_TLS_CA, SHIBAFU_TLS_CERT, SHIBAFU_TLS_KEY)";

/// Opens a connection to `target` (with a TLS handshake under `tls` for https); the error is
/// why it could not be opened.
pub async fn open(target: &Target, tls: Option<&Arc<ClientConfig>>) -> Result<Stream, String> {
    match target {
        Target::Http(authority) => {
            let tcp = TcpStream::connect(authority.as_str())
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::new(tcp))
        }
        Target::Https(authority) => {
            let config = tls.ok_or_else(|| NO_CERTIFICATE.to_string())?;
            let host = target.host().unwrap_or_default().to_string();
            let name = ServerName::try_from(host)
                .map_err(|e| format!("{authority} is no name a certificate can carry: {e}"))?;
            let tcp = TcpStream::connect(authority.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let tls = TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            Ok(Box::new(tls))
        }
        Target::Unix(path) => {
            let unix = UnixStream::connect(path).await.map_err(|e| e.to_string())?;
            Ok(Box::new(unix))
        }
    }
}
