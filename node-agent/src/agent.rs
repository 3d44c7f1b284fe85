//! The agent daemon: an actix System wiring the store actor and the local API.
//!
//! On SIGTERM or SIGINT the agent stops serving and exits, leaving the dataplane and containers
//! as they are: a restarted agent adopts them. Its lease is left to expire (so a quick restart
//! is invisible to the cluster) unless `--deregister` is given.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::{Actor, Addr, Arbiter, Recipient};
use anyhow::Context;
use futures::FutureExt;
use shibafu_overlay::model::{Node, SCHEMA_VERSION};
use shibafu_overlay::store::{EtcdStore, Store};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::{self, ApiState, CniLinks};
use crate::dataplane::actor::DataplaneActor;
use crate::dataplane::{HostConfig, Reconciler};
use crate::dns_actor::DnsActor;
use crate::firewall_actor::FirewallActor;
use crate::health::{HealthActor, HealthLinks, RecordQueue};
use crate::lazy_store::LazyStore;
use crate::messages::{Deregister, Subscribe, SubscribeLocal, TraceDns};
use crate::metrics::AgentMetrics;
use crate::network_actor::{Links, NetworkActor};
use crate::policy_actor::PolicyActor;
use crate::publish::{PublishQueue, StorePublisher};
use crate::registry::actor::RegistryActor;
use crate::registry::Registry;
use crate::runtime::{NetworkRecipients, RuntimeActor, RuntimeRecipients};
use crate::store_actor::{Connector, StoreActor, StoreConfig};
use crate::tunnel::args::WgArgs;
use crate::tunnel::GetTunnel;
use shibafu_overlay::container::ShimContainerHost;
use shibafu_overlay::firewall::ControlPlane;
use shibafu_overlay::firewall::NftFirewall;
use shibafu_overlay::health::{system_clock, SystemProber};
use shibafu_overlay::ipam::Ipam;
use shibafu_overlay::netlink::NetlinkDataplane;
use shibafu_overlay::policy::PolicyEnforcer;
use shibafu_overlay::telemetry::{LogFormat, Telemetry};
use shibafu_overlay::tls::TlsFiles;

/// Health records written to etcd at once (etcd commits concurrent writes together).
const HEALTH_WRITES_AT_ONCE: usize = 16;
/// Policy counter records written at once.
const COUNTER_WRITES_AT_ONCE: usize = 4;

/// Flags of `shibafu-agent run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Log lines as `text` or `json` (one object a line, for log collectors).
    #[arg(
        long,
        env = "SHIBAFU_LOG_FORMAT",
        default_value = "text",
        value_name = "text|json"
    )]
    log_format: LogFormat,
    /// This node's name (a DNS label), unique in the cluster.
    #[arg(long)]
    node: String,
    /// etcd endpoints, comma-separated (`http://10.0.0.2:2379,http://10.0.0.3:2379`).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd: Vec<String>,
    /// The cluster CA (PEM); with --tls-cert and --tls-key, etcd is reached over TLS (https://
    /// endpoints) with this node's certificate.
    #[arg(long, env = "SHIBAFU_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM, role `agent`, from `shibafu cert issue --for agent`).
    #[arg(long, env = "SHIBAFU_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "SHIBAFU_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// This node's underlay address: the VTEP of every VXLAN device here.
    #[arg(long)]
    underlay: IpAddr,
    /// Directory for the agent's state (containers, pinned namespaces).
    #[arg(long, default_value = "/var/lib/shibafu")]
    state_dir: PathBuf,
    /// Unix socket of the local API.
    #[arg(long, default_value = "/run/shibafu/agent.sock")]
    api_socket: PathBuf,
    /// Upstream DNS server for names outside the cluster, `IP` or `IP:PORT` (repeatable).
    #[arg(long = "upstream-dns", value_parser = parse_upstream)]
    upstream_dns: Vec<SocketAddr>,
    /// Lease TTL in seconds: a node whose agent stops disappears from the cluster after this.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_ttl: u64,
    /// On SIGTERM, remove this node from the cluster at once (revoke its lease) instead of
    /// letting the lease expire.
    #[arg(long)]
    deregister: bool,
    /// Keep bridged frames out of this host's iptables/nftables hooks: sets
    /// net.bridge.bridge-nf-call-{iptables,ip6tables,arptables} to 0 here and keeps them so.
    /// shibafu's rules only concern routed traffic, so this saves conntrack and rule evaluation
    /// on every same-network frame. Only for hosts dedicated to shibafu: other bridges on the
    /// host (Docker's) lose their br_netfilter filtering.
    #[arg(long)]
    no_bridge_netfilter: bool,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off unless given). There is no
    /// authentication: bind an address only your monitoring reaches (the underlay address, or
    /// 127.0.0.1).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// WireGuard (encrypted networks).
    #[command(flatten)]
    wg: WgArgs,
}

fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not IP or IP:PORT (e.g. 10.0.0.2 or 10.0.0.2:5353)"))
}

/// The TLS files for etcd: the `--tls-*` flags, checked now (a bad file stops the start with
/// a clear message, not a retry loop), used for https:// endpoints.
fn etcd_tls(args: &RunArgs) -> anyhow::Result<Option<TlsFiles>> {
    let tls = TlsFiles::from_flags(
        args.tls_ca.clone(),
        args.tls_cert.clone(),
        args.tls_key.clone(),
    )?;
    if let Some(files) = &tls {
        files.client_config().context("the agent's TLS files")?;
    }
    shibafu_overlay::store::etcd::check_tls(&args.etcd, tls.as_ref()).context("--etcd")?;
    Ok(tls)
}

fn etcd_connector(endpoints: Vec<String>, tls: Option<TlsFiles>) -> Connector {
    Arc::new(move || {
        let (endpoints, tls) = (endpoints.clone(), tls.clone());
        async move {
            let store = EtcdStore::connect(&endpoints, tls.as_ref()).await?;
            Ok(Arc::new(store) as Arc<dyn Store>)
        }
        .boxed()
    })
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    few_arenas();
    let _telemetry = Telemetry::new("shibafu-agent")
        .host_name(&args.node)
        .log_format(args.log_format)
        .init();
    shibafu_overlay::model::validate_name(&args.node)
        .with_context(|| format!("--node {:?}", args.node))?;
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating --state-dir {}", args.state_dir.display()))?;
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = Node {
        schema: SCHEMA_VERSION,
        name: args.node.clone(),
        underlay: args.underlay,
        version: env!("CARGO_PKG_VERSION").to_string(),
        wg: None,
        started_at,
    };
    let wg = args.wg.record(&args.state_dir, &args.node)?;
    let tunnel_addr = wg.tunnel;
    let cfg = StoreConfig {
        node: Node {
            wg: Some(wg),
            ..base.clone()
        },
        lease_ttl: Duration::from_secs(args.lease_ttl),
        upstream_dns: args.upstream_dns.clone(),
    };
    let system = actix::System::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    system.block_on(async {
        let listener = api::bind(&args.api_socket)
            .with_context(|| format!("binding --api-socket {}", args.api_socket.display()))?;
        let metrics = AgentMetrics::new(&args.node);
        if let Some(at) = args.metrics_listen {
            let listener = shibafu_overlay::metrics::bind(at)
                .await
                .context("--metrics-listen")?;
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            actix_rt::spawn(shibafu_overlay::metrics::serve(
                listener,
                metrics.registry(),
                shutdown,
            ));
            info!(addr = %at, "serving metrics at /metrics");
        }
        let tls = etcd_tls(&args)?;
        let certificate = tls.as_ref().map(TlsFiles::info).transpose()?;
        let connector = etcd_connector(args.etcd.clone(), tls);
        let store = StoreActor::new(cfg, connector.clone())
            .with_metrics(metrics.store.clone())
            .start();
        let (network, runtime, dns_trace, tunnel, cni) =
            start_workload_actors(&args, &store, connector, &metrics, base, tunnel_addr).await?;
        let router = api::router(ApiState {
            status: store.clone().recipient(),
            networks: store.clone().recipient(),
            network,
            runtime,
            dns_trace,
            tunnel,
            cni,
            certificate,
        });
        let mut api_stop = stop_rx.clone();
        let shutdown = async move {
            let _ = api_stop.wait_for(|s| *s).await;
        };
        actix_rt::spawn(async move {
            if let Err(e) = api::serve(listener, router, shutdown).await {
                error!(error = %e, "local API stopped");
            }
        });
        actix_rt::spawn(wait_for_signal(store, args.deregister, stop_tx));
        info!(node = %args.node, socket = %args.api_socket.display(), etcd = %args.etcd.join(","), "agent running");
        anyhow::Ok(())
    })?;
    system.run().context("running the actor system")?;
    let _ = std::fs::remove_file(&args.api_socket);
    info!("agent stopped");
    Ok(())
}

/// Allocator arenas the agent's threads share (glibc). By default each thread that allocates
/// (the actor thread, DNS, the runtime's workers) gets an arena of its own, up to eight per
/// core, and each keeps the free memory its churn leaves: 64 MB resident against 48 MB with
/// two, in the scale benchmark, at the same CPU. Called before any thread starts.
fn few_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; no thread is running yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Starts the owners of this host's workloads and wires them: the local registry (the book),
/// the firewall owner (nftables), the policy table's owner, the dataplane reconciler (netlink), the NetworkActor (attach
/// and detach through them), the DnsActor, the RuntimeActor (over shim processes under the
/// state directory) and the HealthActor; subscribes them to cluster and local changes.
async fn start_workload_actors(
    args: &RunArgs,
    store: &Addr<StoreActor>,
    connector: Connector,
    metrics: &AgentMetrics,
    base: Node,
    tunnel_addr: std::net::Ipv4Addr,
) -> anyhow::Result<(
    NetworkRecipients,
    RuntimeRecipients,
    Recipient<TraceDns>,
    Recipient<GetTunnel>,
    CniLinks,
)> {
    let dp = NetlinkDataplane::current();
    let underlay_mtu = match dp.underlay_mtu(args.underlay).await {
        Ok(mtu) => mtu,
        Err(e) => {
            warn!(error = %e, "cannot read the underlay MTU; assuming 1500");
            1500
        }
    };
    let registry = Registry::load(&args.state_dir).context("loading local state")?;
    let local = registry.effective();
    let publish = PublishQueue::start(Arc::new(StorePublisher {
        put: store.clone().recipient(),
        delete: store.clone().recipient(),
    }));
    let registry = RegistryActor::new(registry, publish.clone()).start();
    let firewall = FirewallActor::new(Arc::new(NftFirewall::current()))
        .with_metrics(metrics.dataplane.clone())
        .start();
    if !std::path::Path::new("/proc/sys/net/bridge").exists() {
        warn!("br_netfilter is not available (no /proc/sys/net/bridge): same-network traffic of networks with policies will not go through them; load the br_netfilter module");
    }
    let policy = PolicyActor::new(
        args.node.clone(),
        PolicyEnforcer::new(Arc::new(NftFirewall::current())),
        RecordQueue::start(
            Arc::new(StorePublisher {
                put: store.clone().recipient(),
                delete: store.clone().recipient(),
            }),
            COUNTER_WRITES_AT_ONCE,
        ),
    )
    .with_metrics(metrics.policy.clone(), metrics.dataplane.clone())
    .start();
    store.do_send(Subscribe(policy.recipient()));
    let cfg = HostConfig {
        node: args.node.clone(),
        underlay: Some(args.underlay),
        underlay_mtu,
        bridge_netfilter_off: args.no_bridge_netfilter,
        encrypt_all: args.wg.encrypt_all,
        tunnel_if: args.wg.wg_interface.clone(),
        control: args
            .etcd
            .iter()
            .filter_map(|u| {
                let addr = ControlPlane::url_addr(u);
                if addr.is_none() {
                    warn!(url = %u, "--etcd names no IP address and port: containers are not kept off it by the firewall");
                }
                addr
            })
            .chain(args.metrics_listen)
            .collect(),
    };
    let mut reconciler = Reconciler::new(cfg, Arc::new(dp), local);
    // A WireGuard device that outlived the last agent carries traffic now: the first
    // reconcile keeps the encrypted networks' tunnel entries instead of dropping them until
    // the tunnel owner has looked.
    if args.wg.device_exists().await {
        reconciler.set_tunnel(Some(tunnel_addr));
    }
    // The dataplane owner has a thread of its own too: a change pass awaits the kernel without
    // queueing behind the other owners' work on the main thread (nor they behind it).
    let owner = DataplaneActor::new(
        reconciler,
        args.node.clone(),
        firewall.clone().recipient(),
        publish,
    )
    .with_metrics(metrics.dataplane.clone());
    let dataplane = DataplaneActor::start_in_arbiter(&Arbiter::new().handle(), move |_| owner);
    store.do_send(Subscribe(dataplane.clone().recipient()));
    let tunnel = args.wg.start(
        &args.state_dir,
        base,
        underlay_mtu,
        Arc::new(StorePublisher {
            put: store.clone().recipient(),
            delete: store.clone().recipient(),
        }),
        dataplane.clone().recipient(),
        metrics.tunnel.clone(),
    )?;
    store.do_send(Subscribe(tunnel.clone().recipient()));
    // DNS has a thread of its own: its servers answer, and its snapshot is rebuilt, beside
    // attaches and reconciles instead of between them (changes meanwhile fold into one rebuild).
    let (node, upstreams, dns_metrics) = (
        args.node.clone(),
        args.upstream_dns.clone(),
        metrics.dns.clone(),
    );
    let dns = DnsActor::start_in_arbiter(&Arbiter::new().handle(), move |_| {
        DnsActor::new(node, upstreams, 53).with_metrics(dns_metrics)
    });
    registry.do_send(SubscribeLocal(dns.clone().recipient()));
    store.do_send(Subscribe(dns.clone().recipient()));
    let dns_trace = dns.recipient();
    let lazy: Arc<dyn Store> = Arc::new(LazyStore::new(connector));
    let ipam = Ipam::new(lazy.clone(), args.node.clone());
    crate::repair::start(dataplane.clone().recipient(), firewall.clone().recipient());
    let cni = CniLinks {
        serial: std::sync::Arc::default(),
        pins: args.state_dir.join("netns/cni"),
        workloads: registry.clone().recipient(),
        check: dataplane.clone().recipient(),
        firewall: firewall.recipient(),
    };
    let links = Links::new(&args.node, ipam, lazy, &registry, dataplane.recipient());
    let net = NetworkActor::new(links).start();
    store.do_send(Subscribe(net.clone().recipient()));
    let recipients = NetworkRecipients {
        attach: net.clone().recipient(),
        detach: net.recipient(),
    };
    let agent_bin =
        std::env::current_exe().context("locating the agent binary for container shims")?;
    let containers = Arc::new(ShimContainerHost::new(
        args.state_dir.clone(),
        agent_bin.clone(),
    ));
    let runtime = RuntimeActor::new(containers, recipients.clone()).start();
    registry.do_send(SubscribeLocal(runtime.clone().recipient()));
    // Health records get their own queue: a burst of them never delays endpoint records.
    let health = HealthActor::new(HealthLinks {
        node: args.node.clone(),
        prober: Arc::new(
            SystemProber::start(agent_bin.clone()).context("starting the health-check threads")?,
        ),
        publish: RecordQueue::start(
            Arc::new(StorePublisher {
                put: store.clone().recipient(),
                delete: store.clone().recipient(),
            }),
            HEALTH_WRITES_AT_ONCE,
        ),
        pids: runtime.clone().recipient(),
        clock: system_clock(),
    })
    .with_metrics(metrics.health.clone())
    .start();
    store.do_send(Subscribe(health.clone().recipient()));
    registry.do_send(SubscribeLocal(health.recipient()));
    info!(underlay_mtu, "workload actors started");
    Ok((
        recipients,
        RuntimeRecipients::of(&runtime),
        dns_trace,
        tunnel.recipient(),
        cni,
    ))
}

/// Waits for SIGTERM or SIGINT, then stops the API and the System (after revoking the lease
/// when asked to deregister).
async fn wait_for_signal(store: Addr<StoreActor>, deregister: bool, stop: watch::Sender<bool>) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stop the agent with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(
        signal = name,
        deregister, "stopping; dataplane and containers stay as they are"
    );
    if deregister {
        match store.send(Deregister).await {
            Ok(Ok(())) => info!("node deregistered"),
            Ok(Err(e)) => warn!(error = %e, "deregistering failed; the lease expires on its own"),
            Err(e) => warn!(error = %e, "deregistering failed; the lease expires on its own"),
        }
    }
    let _ = stop.send(true);
    actix::System::current().stop();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_dns_defaults_to_port_53() {
        assert_eq!(
            parse_upstream("10.0.0.2"),
            Ok("10.0.0.2:53".parse().expect("addr"))
        );
        assert_eq!(
            parse_upstream("10.0.0.2:5353"),
            Ok("10.0.0.2:5353".parse().expect("addr"))
        );
        assert_eq!(
            parse_upstream("fd00::1"),
            Ok("[fd00::1]:53".parse().expect("addr"))
        );
        assert!(parse_upstream("dns.example").is_err());
    }

    #[test]
    fn flags_parse_with_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            run: RunArgs,
        }
        let t = T::try_parse_from([
            "x",
            "--node",
            "node1",
            "--underlay",
            "10.0.0.11",
            "--etcd",
            "http://a:2379,http://b:2379",
            "--upstream-dns",
            "10.0.0.2",
            "--upstream-dns",
            "10.0.0.3:5353",
        ])
        .expect("parse");
        assert_eq!(t.run.etcd, ["http://a:2379", "http://b:2379"]);
        assert_eq!(t.run.lease_ttl, 5);
        assert_eq!(t.run.upstream_dns.len(), 2);
        assert!(!t.run.deregister);
        assert!(T::try_parse_from([
            "x",
            "--node",
            "n",
            "--underlay",
            "10.0.0.1",
            "--lease-ttl",
            "0"
        ])
        .is_err());
    }
}
