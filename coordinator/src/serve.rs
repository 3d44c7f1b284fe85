//! The API server, over TCP or TLS. Over TLS every client shows a certificate of the cluster CA
//! in the handshake (a client without one, or with another CA's, never reaches HTTP); what it
//! may do follows the role its certificate carries ([`authorize`]): reads need any role but
//! etcd's, changes need `admin`. Either way a stop lets accepted connections end by themselves
//! first, so a request sent just before it is answered.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper::Method;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use shibafu_overlay::api::{ApiError, ErrorKind};
use shibafu_overlay::tls::{peer_info, CertInfo};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::http::HttpError;

/// Time a client has to finish the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Time open connections have to end by themselves after shutdown begins: a client that
/// connected just before sends its request and gets its answer (clients make one request a
/// connection). Closing them at once would drop a request the client has already sent.
const DRAIN: Duration = Duration::from_secs(5);
/// Then the time connections still open (idle keep-alive clients) have to close gracefully.
const CLOSE: Duration = Duration::from_secs(5);

/// Who sent a request: the verified client certificate of its connection.
#[derive(Debug, Clone)]
pub struct Peer(pub CertInfo);

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` completes; then stops
/// accepting, lets open connections end by themselves (at most [`DRAIN`]) and closes the rest
/// gracefully (at most [`CLOSE`]).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let router = match acceptor {
        Some(_) => router.layer(axum::middleware::from_fn(authorize)),
        None => router,
    };
    let graceful = GracefulShutdown::new();
    let mut conns = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, from) = tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        let watcher = graceful.watcher();
        conns.spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            let served = match acceptor {
                Some(acceptor) => {
                    let Some((tls, peer)) = handshake(&acceptor, tcp, from).await else {
                        return;
                    };
                    let service = router.map_request(move |mut req: Request<Incoming>| {
                        req.extensions_mut().insert(peer.clone());
                        req
                    });
                    let conn =
                        http.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
                    watcher.watch(conn).await
                }
                None => {
                    let service = TowerToHyperService::new(router);
                    watcher
                        .watch(http.serve_connection(TokioIo::new(tcp), service))
                        .await
                }
            };
            if let Err(e) = served {
                debug!(%from, error = %e, "API connection ended with an error");
            }
        });
    }
    drop(listener);
    let ended = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, ended).await.is_err() {
        info!(open = conns.len(), "closing the API connections still open");
        if tokio::time::timeout(CLOSE, graceful.shutdown())
            .await
            .is_err()
        {
            info!("open API requests did not finish in time; dropping them");
        }
    }
    Ok(())
}

/// The TLS handshake of one connection and the client certificate it showed; `None` (logged)
/// when the client is refused or too slow.
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    from: SocketAddr,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Peer)> {
    let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            info!(%from, error = %e, "TLS handshake refused");
            return None;
        }
        Err(_) => {
            info!(%from, "TLS handshake not finished in time");
            return None;
        }
    };
    let Some(info) = peer_info(tls.get_ref().1) else {
        info!(%from, "client certificate unreadable");
        return None;
    };
    Some((tls, Peer(info)))
}

/// Lets a request through if its client's role allows it: reads (GET, HEAD) for every role
/// but etcd's, changes for `admin` only.
pub async fn authorize(req: Request, next: Next) -> Response {
    let denied = match req.extensions().get::<Peer>() {
        None => Some("no client certificate".to_string()),
        Some(Peer(info)) => {
            let read = matches!(*req.method(), Method::GET | Method::HEAD);
            match info.role {
                Some(role) if read && role.may_read() => None,
                Some(role) if role.may_write() => None,
                Some(role) => Some(format!(
                    "{} ({role}) may not {} {}: changes need an admin certificate",
                    info.name,
                    req.method(),
                    req.uri().path()
                )),
                None => Some(format!(
                    "the certificate of {} carries no shibafu role",
                    info.name
                )),
            }
        }
    };
    match denied {
        None => next.run(req).await,
        Some(why) => HttpError::from(ApiError::new(ErrorKind::Forbidden, why)).into_response(),
    }
}
