//! The shibafu cluster API server: validates network changes and writes them to etcd. Stateless:
//! several coordinators may serve one etcd cluster.

mod cluster;
mod gc;
mod http;
mod http_services;
mod links;
#[cfg(test)]
mod racing_store;
mod services;
mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use shibafu_overlay::store::{EtcdStore, Store};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

/// The shibafu cluster API server.
#[derive(Debug, Parser)]
#[command(name = "shibafu-coordinator", version, about)]
struct Args {
    /// Address and port to serve the HTTP/JSON API on.
    #[arg(long, env = "SHIBAFU_LISTEN", default_value = "127.0.0.1:7480")]
    listen: SocketAddr,
    /// etcd endpoints, comma-separated (http://HOST:PORT).
    #[arg(
        long,
        env = "SHIBAFU_ETCD",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd: Vec<String>,
    /// Seconds to keep trying to reach etcd at start-up before giving up.
    #[arg(long, env = "SHIBAFU_ETCD_WAIT", default_value_t = 10)]
    etcd_wait: u64,
    /// Seconds between garbage collection passes.
    #[arg(long, env = "SHIBAFU_GC_INTERVAL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    gc_interval: u64,
    /// Seconds a node must stay unregistered before its IPAM blocks are reclaimed.
    #[arg(long, env = "SHIBAFU_RECLAIM_GRACE", default_value_t = 60)]
    reclaim_grace: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    shibafu_overlay::telemetry::Telemetry::new("shibafu-coordinator").init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(connect_etcd(&args.etcd, args.etcd_wait).await?);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is the address in use?)", args.listen))?;
    info!(listen = %args.listen, etcd = %args.etcd.join(","), "coordinator serving");
    let (stop_gc, stopped) = tokio::sync::watch::channel(false);
    let gc = tokio::spawn(gc::run(
        store.clone(),
        Duration::from_secs(args.gc_interval),
        Duration::from_secs(args.reclaim_grace),
        stopped,
    ));
    let served = serve(listener, store, shutdown_signal()).await;
    // The GC task may already have ended; nothing to tell it then.
    let _ = stop_gc.send(true);
    if let Err(e) = gc.await {
        warn!(error = %e, "gc task ended abnormally");
    }
    served.context("serving the API failed")?;
    info!("coordinator stopped");
    Ok(())
}

/// Connects to etcd, retrying for up to `wait_secs` (etcd may still be starting).
async fn connect_etcd(endpoints: &[String], wait_secs: u64) -> anyhow::Result<EtcdStore> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
    loop {
        match EtcdStore::connect(endpoints).await {
            Ok(store) => return Ok(store),
            Err(e) if tokio::time::Instant::now() < deadline => {
                warn!(error = %e, "etcd not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(e)
                    .context("giving up on etcd (is it running? check --etcd or SHIBAFU_ETCD)")
            }
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, then finishes open requests.
pub(crate) async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, http::router(store))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: shutting down"),
                _ = int.recv() => info!("SIGINT: shutting down"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            warn!(error = %e, "cannot watch signals; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_defaults() {
        let a = Args::try_parse_from(["c"]).expect("defaults");
        assert_eq!(a.listen.to_string(), "127.0.0.1:7480");
        assert_eq!(a.etcd, ["http://127.0.0.1:2379"]);
        let a = Args::try_parse_from([
            "c",
            "--listen",
            "10.0.0.1:9000",
            "--etcd",
            "http://a:2379,http://b:2379",
        ])
        .expect("flags");
        assert_eq!(a.listen.to_string(), "10.0.0.1:9000");
        assert_eq!(a.etcd, ["http://a:2379", "http://b:2379"]);
        assert!(Args::try_parse_from(["c", "--listen", "nope"]).is_err());
        assert!(Args::try_parse_from(["c", "--gc-interval", "0"]).is_err());
    }
}
