//! `shibafu-agent dns`: the DNS engine standalone, serving a records file.
//!
//! SIGHUP reloads the file (parsed and validated first; the old records stay on error), SIGUSR1
//! logs the metrics, SIGTERM/SIGINT stop the server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use shibafu_overlay::dns::balance::{self, Instance};
use shibafu_overlay::dns::forward::{ForwardConfig, Forwarder};
use shibafu_overlay::dns::{
    bind_tcp, bind_udp_group, parse_records, AnswerOrder, DnsServer, ServerConfig, Snapshot,
    SnapshotBuilder,
};
use shibafu_overlay::metrics::{Collect, Exposition, Registry};
use shibafu_overlay::model::LbPolicy;
use shibafu_overlay::telemetry::Telemetry;
use tokio::signal::unix::{signal, SignalKind};

/// Flags of `shibafu-agent dns`.
#[derive(clap::Args, Debug)]
pub struct DnsArgs {
    /// Address to serve on, UDP and TCP (repeat for several).
    #[arg(long, required = true, value_name = "IP:PORT")]
    listen: Vec<SocketAddr>,
    /// A zone to answer authoritatively (repeat for several); SOA and NS are made up unless the
    /// records file has them.
    #[arg(long = "zone", required = true, value_name = "ZONE")]
    zones: Vec<String>,
    /// Records file: one `NAME [TTL] TYPE DATA` per line, `#` and `;` comments. SIGHUP reloads it.
    #[arg(long, value_name = "FILE")]
    records: Option<PathBuf>,
    /// Upstream for names outside the zones, tried in order (repeatable; port 53 by default).
    #[arg(long = "forward", value_name = "IP[:PORT]", value_parser = parse_upstream)]
    forward: Vec<SocketAddr>,
    /// Conditional upstream for names under SUFFIX (repeatable; the longest suffix wins).
    #[arg(long = "forward-zone", value_name = "SUFFIX=IP[:PORT]", value_parser = parse_forward_zone)]
    forward_zones: Vec<(String, SocketAddr)>,
    /// Log every query (structured, to stderr).
    #[arg(long)]
    query_log: bool,
    /// UDP threads (SO_REUSEPORT sockets) per listen address.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// TTL of records written without one.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    default_ttl: u32,
    /// Log the metrics every SECONDS (0: only on SIGUSR1 and at exit).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    stats_interval: u64,
    /// Answer every name with several addresses as a service: one address per answer, in this
    /// policy's order.
    #[arg(long, value_enum, value_name = "POLICY")]
    balance: Option<Balance>,
    /// With --balance weighted: the weights of a name's addresses in file order [default: 1].
    #[arg(long, value_delimiter = ',', value_name = "W,W,...")]
    weights: Vec<u32>,
    /// With --balance least-connections: the connections of a name's addresses in file order
    /// [default: 0].
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    connections: Vec<u32>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (the DNS families, with
    /// network="standalone").
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
}

/// The `network` label of the standalone server's metrics.
const STANDALONE: &str = "standalone";

/// The standalone server as a metrics collector.
struct Scraped(DnsServer);

impl Collect for Scraped {
    fn collect(&self, out: &mut Exposition) {
        self.0.collect(STANDALONE, out);
    }
}

/// A load-balancing policy of `--balance`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum Balance {
    /// Each address in turn.
    RoundRobin,
    /// In proportion to --weights.
    Weighted,
    /// The addresses with the fewest --connections, in turn.
    LeastConnections,
}

impl DnsArgs {
    /// The answer order of balanced names, if --balance is given.
    fn balanced(&self) -> Option<AnswerOrder> {
        let policy = match self.balance? {
            Balance::RoundRobin => LbPolicy::RoundRobin,
            Balance::Weighted => LbPolicy::Weighted,
            Balance::LeastConnections => LbPolicy::LeastConnections,
        };
        let n = self.weights.len().max(self.connections.len()).max(1);
        let instances: Vec<Instance> = (0..n)
            .map(|i| Instance {
                weight: self.weights.get(i).copied().unwrap_or(1),
                connections: self.connections.get(i).copied().unwrap_or(0),
            })
            .collect();
        Some(balance::order(policy, &instances))
    }
}

/// `IP` or `IP:PORT` (`[v6]:PORT` for IPv6 with a port); port 53 by default.
fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not IP or IP:PORT (write IPv6 with a port as [fd00::1]:53)"))
}

/// `SUFFIX=IP[:PORT]`.
fn parse_forward_zone(s: &str) -> Result<(String, SocketAddr), String> {
    let (suffix, upstream) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not SUFFIX=IP[:PORT]"))?;
    if suffix.trim().is_empty() {
        return Err(format!("{s:?} has an empty suffix"));
    }
    Ok((suffix.trim().to_string(), parse_upstream(upstream.trim())?))
}

/// Builds the snapshot from the zones and the records file.
fn load(args: &DnsArgs) -> anyhow::Result<Snapshot> {
    let mut builder = SnapshotBuilder::new();
    for zone in &args.zones {
        builder.zone(zone);
    }
    let serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as u32);
    builder.serial(serial);
    if let Some(order) = args.balanced() {
        builder.order_names_with_several(order);
    }
    if let Some(path) = &args.records {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read records file {}", path.display()))?;
        parse_records(
            &text,
            &path.display().to_string(),
            &args.zones,
            args.default_ttl,
            &mut builder,
        )?;
    }
    Ok(builder.build()?)
}

fn forwarder(args: &DnsArgs) -> anyhow::Result<Option<Forwarder>> {
    if args.forward.is_empty() && args.forward_zones.is_empty() {
        return Ok(None);
    }
    let mut zones: Vec<(String, Vec<SocketAddr>)> = Vec::new();
    for (suffix, addr) in &args.forward_zones {
        let key = suffix.trim_end_matches('.').to_ascii_lowercase();
        match zones.iter_mut().find(|(z, _)| *z == key) {
            Some((_, addrs)) => addrs.push(*addr),
            None => zones.push((key, vec![*addr])),
        }
    }
    let cfg = ForwardConfig {
        upstreams: args.forward.clone(),
        zones,
        ..ForwardConfig::default()
    };
    cfg.validate().context("invalid forwarding flags")?;
    Ok(Some(Forwarder::new(cfg)))
}

/// Serves DNS until SIGTERM or SIGINT.
pub fn run(args: DnsArgs) -> anyhow::Result<()> {
    let _telemetry = Telemetry::new("shibafu-agent").init();
    if args.zones.is_empty() {
        bail!("give at least one --zone");
    }
    let snapshot = load(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(serve(args, snapshot))
}

async fn serve(args: DnsArgs, snapshot: Snapshot) -> anyhow::Result<()> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for addr in &args.listen {
        udp.extend(bind_udp_group(*addr, usize::from(args.threads))?);
        tcp.push(bind_tcp(*addr)?);
    }
    let config = ServerConfig {
        query_log: args.query_log,
        ..ServerConfig::default()
    };
    let handle = Arc::new(ArcSwap::from_pointee(snapshot));
    let server = DnsServer::new(handle.clone(), forwarder(&args)?, config);
    let mut hup = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("install the SIGUSR1 handler")?;
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(at) = args.metrics_listen {
        let listener = shibafu_overlay::metrics::bind(at)
            .await
            .context("--metrics-listen")?;
        let registry = Registry::new();
        registry.register(Arc::new(Scraped(server.clone())));
        tokio::spawn(shibafu_overlay::metrics::serve(listener, registry, async {
            drop(metrics_stopped.await)
        }));
    }
    let signals = {
        let server = server.clone();
        let interval = Duration::from_secs(args.stats_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(if interval.is_zero() {
                Duration::from_secs(3600)
            } else {
                interval
            });
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = hup.recv() => reload(&args, &handle),
                    _ = usr1.recv() => log_metrics(&server),
                    _ = tick.tick(), if !interval.is_zero() => log_metrics(&server),
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                }
            }
            let _ = stop_tx.send(());
        })
    };
    let mut listen: Vec<String> = udp
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    listen.dedup();
    tracing::info!(listen = ?listen, zones = ?server.snapshot().load().zones().collect::<Vec<_>>(), "serving DNS");
    server.run(udp, tcp, async { drop(stop_rx.await) }).await?;
    signals.abort();
    let _ = metrics_stop.send(());
    log_metrics(&server);
    tracing::info!("DNS server stopped");
    Ok(())
}

/// Re-reads the records file; swaps the snapshot only when it is valid.
fn reload(args: &DnsArgs, handle: &ArcSwap<Snapshot>) {
    match load(args) {
        Ok(snap) => {
            let names = snap.name_count();
            handle.store(Arc::new(snap));
            tracing::info!(names, "records reloaded");
        }
        Err(e) => tracing::error!(
            error = format!("{e:#}"),
            "reload failed; still serving the previous records"
        ),
    }
}

fn log_metrics(server: &DnsServer) {
    tracing::info!(target: "shibafu::dns::metrics", "\n{}", server.report().to_prometheus(STANDALONE));
}
