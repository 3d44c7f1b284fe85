//! The shibafu cluster API server: validates network changes and writes them to etcd, and with
//! `--dns-listen` answers every network zone with the cluster-wide view. It keeps no state of
//! its own: several coordinators serve one etcd cluster, each registered under a lease.

mod apply;
mod apply_desired;
mod apply_plan;
mod cluster;
mod dns;
mod export;
mod gc;
mod http;
mod http_apply;
mod http_endpoints;
mod http_policies;
mod http_services;
mod links;
mod member;
mod metrics;
mod policies;
mod policy_check;
#[cfg(test)]
mod racing_store;
mod rotation;
mod serve;
#[cfg(test)]
#[path = "serve_tests.rs"]
mod serve_tests;
mod services;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::Parser;
use shibafu_overlay::dns::Snapshot;
use shibafu_overlay::store::{compactor, lease, EtcdStore, Store, StoreError};
use shibafu_overlay::tls::TlsFiles;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

/// The shibafu cluster API server.
#[derive(Debug, Parser)]
#[command(name = "shibafu-coordinator", version, about)]
struct Args {
    /// Log lines as `text` or `json` (one object a line, for log collectors).
    #[arg(
        long,
        env = "SHIBAFU_LOG_FORMAT",
        default_value = "text",
        value_name = "text|json"
    )]
    log_format: shibafu_overlay::telemetry::LogFormat,
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
    /// Seconds between compactions of etcd's history, each up to the revision of the one
    /// before (0: never, for an etcd that compacts itself with --auto-compaction-retention).
    #[arg(long, env = "SHIBAFU_COMPACT_INTERVAL", default_value_t = 300)]
    compact_interval: u64,
    /// Seconds a node must stay unregistered before its IPAM blocks are reclaimed.
    #[arg(long, env = "SHIBAFU_RECLAIM_GRACE", default_value_t = 60)]
    reclaim_grace: u64,
    /// This coordinator's name, a DNS label (default: the host name up to its first dot).
    #[arg(long, env = "SHIBAFU_COORDINATOR_NAME")]
    name: Option<String>,
    /// API URL to register for clients (default: http://<listen>; needed when listening on
    /// 0.0.0.0).
    #[arg(long, env = "SHIBAFU_ADVERTISE", value_name = "URL")]
    advertise: Option<String>,
    /// Answer every network zone of the cluster over DNS (UDP and TCP) on this address.
    #[arg(long, env = "SHIBAFU_DNS_LISTEN", value_name = "ADDR:PORT")]
    dns_listen: Option<SocketAddr>,
    /// Seconds of this coordinator's lease: its record (and its NS entry) goes this long after
    /// it stops without SIGTERM.
    #[arg(long, env = "SHIBAFU_LEASE_TTL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    lease_ttl: u64,
    /// The cluster CA (PEM): with --tls-cert and --tls-key, the API is served over TLS to
    /// clients with a certificate of this CA only, and https:// etcd endpoints are reached
    /// with the same certificate.
    #[arg(long, env = "SHIBAFU_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// This coordinator's certificate (PEM, role `coordinator`, from `shibafu cert issue`).
    #[arg(long, env = "SHIBAFU_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "SHIBAFU_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off unless given). There is no
    /// authentication: bind an address only your monitoring reaches.
    #[arg(long, env = "SHIBAFU_METRICS_LISTEN", value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = shibafu_overlay::telemetry::Telemetry::new("shibafu-coordinator")
        .log_format(args.log_format)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let name = match args.name.clone() {
        Some(n) => n,
        None => member::default_name()?,
    };
    member::check_name(&name)?;
    let tls = TlsFiles::from_flags(
        args.tls_ca.clone(),
        args.tls_cert.clone(),
        args.tls_key.clone(),
    )?;
    let server_tls = match &tls {
        Some(files) => Some(
            files
                .server_config()
                .context("the coordinator's TLS files")?,
        ),
        None => {
            warn!("serving the API without TLS: anyone who reaches it can change the cluster (give --tls-ca, --tls-cert, --tls-key)");
            None
        }
    };
    let api = member::api_url(args.listen, args.advertise.as_deref(), tls.is_some())?;
    let dns_addr = match args.dns_listen {
        Some(listen) => Some(member::dns_addr(listen, &api)?),
        None => None,
    };
    let record = member::record(&name, api, dns_addr);
    let store: Arc<dyn Store> =
        Arc::new(connect_etcd(&args.etcd, tls.as_ref(), args.etcd_wait).await?);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is the address in use?)", args.listen))?;
    let dns_sockets = match args.dns_listen {
        Some(at) => Some(dns::DnsSockets::bind(at).with_context(|| {
            format!("cannot serve DNS on {at} (in use? port 53 needs root or CAP_NET_BIND_SERVICE)")
        })?),
        None => None,
    };
    let metrics_listener = match args.metrics_listen {
        Some(at) => Some(
            shibafu_overlay::metrics::bind(at)
                .await
                .context("--metrics-listen")?,
        ),
        None => None,
    };
    let metrics = Arc::new(metrics::CoordinatorMetrics::default());
    let dns_bound = dns_sockets.as_ref().and_then(|s| s.local_addr().ok());
    info!(name = %name, listen = %args.listen, api = %record.api, dns = ?dns_bound, etcd = %args.etcd.join(","), "coordinator serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(gc::run(
        store.clone(),
        Duration::from_secs(args.gc_interval),
        Duration::from_secs(args.reclaim_grace),
        stop_rx.clone(),
    ));
    if args.compact_interval > 0 {
        tasks.spawn(compactor::run(
            store.clone(),
            Duration::from_secs(args.compact_interval),
            stop_rx.clone(),
        ));
    }
    tasks.spawn(lease::hold(
        store.clone(),
        member::owned(&record)?,
        Duration::from_secs(args.lease_ttl),
        stopped(stop_rx.clone()),
    ));
    let gauges = metrics_listener.as_ref().map(|_| metrics.clone());
    if let Some(listener) = metrics_listener {
        let registry = shibafu_overlay::metrics::Registry::new();
        registry.register(metrics.clone());
        info!(addr = ?listener.local_addr().ok(), "serving metrics at /metrics");
        tasks.spawn(shibafu_overlay::metrics::serve(
            listener,
            registry,
            stopped(stop_rx.clone()),
        ));
        if dns_sockets.is_none() {
            let stop = stopped(stop_rx.clone());
            tasks.spawn(metrics::follow(store.clone(), metrics.clone(), stop));
        }
    }
    if let Some(sockets) = dns_sockets {
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        tasks.spawn(dns::follow(
            store.clone(),
            snapshot.clone(),
            gauges,
            stopped(stop_rx.clone()),
        ));
        let stop = stopped(stop_rx.clone());
        let server = dns::server(snapshot);
        metrics.set_dns(server.clone());
        tasks.spawn(async move {
            if let Err(e) = dns::serve(sockets, server, stop).await {
                warn!(error = %e, "DNS server stopped");
            }
        });
    }
    let mut router = metrics::track_api(http::router(store), metrics);
    if let Some(own) = tls.as_ref().map(TlsFiles::info).transpose()? {
        info!(certificate = %own.name, expires = %own.expires, "serving the API over TLS");
        router = router.layer(axum::Extension(http::OwnCertificate(own)));
    }
    let served = serve::serve(listener, server_tls, router, shutdown_signal()).await;
    // Tasks that already ended have nothing to be told.
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            warn!(error = %e, "coordinator task ended abnormally");
        }
    }
    served.context("serving the API failed")?;
    info!("coordinator stopped");
    Ok(())
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Connects to etcd, retrying for up to `wait_secs` (etcd may still be starting); `tls` is used
/// for https:// endpoints.
async fn connect_etcd(
    endpoints: &[String],
    tls: Option<&TlsFiles>,
    wait_secs: u64,
) -> anyhow::Result<EtcdStore> {
    let tls = tls.filter(|_| endpoints.iter().any(|e| e.starts_with("https://")));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
    loop {
        match EtcdStore::connect(endpoints, tls).await {
            Ok(store) => return Ok(store),
            Err(e @ StoreError::Config(_)) => return Err(e).context("--etcd"),
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

/// Serves the API over `store` on `listener` (plain TCP) until `shutdown` completes.
#[cfg(test)]
pub(crate) async fn serve_plain(
    listener: TcpListener,
    store: Arc<dyn Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve::serve(listener, None, http::router(store), shutdown).await
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
        assert_eq!(a.name, None);
        assert_eq!(a.dns_listen, None);
        assert_eq!(a.lease_ttl, 5);
        assert_eq!(a.compact_interval, 300);
        let a = Args::try_parse_from([
            "c",
            "--name",
            "coordinator2",
            "--advertise",
            "http://10.0.0.3:7480",
            "--dns-listen",
            "10.0.0.3:53",
            "--lease-ttl",
            "10",
        ])
        .expect("cluster flags");
        assert_eq!(a.name.as_deref(), Some("coordinator2"));
        assert_eq!(a.advertise.as_deref(), Some("http://10.0.0.3:7480"));
        assert_eq!(
            a.dns_listen.map(|d| d.to_string()).as_deref(),
            Some("10.0.0.3:53")
        );
        assert_eq!(a.lease_ttl, 10);
        assert!(Args::try_parse_from(["c", "--lease-ttl", "0"]).is_err());
        assert!(Args::try_parse_from(["c", "--listen", "nope"]).is_err());
        assert!(Args::try_parse_from(["c", "--gc-interval", "0"]).is_err());
        let a = Args::try_parse_from(["c", "--compact-interval", "0"]).expect("never compact");
        assert_eq!(a.compact_interval, 0);
    }
}
