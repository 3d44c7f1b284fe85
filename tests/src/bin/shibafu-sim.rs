//! `shibafu-sim`: the scale benchmark's cluster simulator (see `bench/scale.sh`).
//!
//! ```text
//! shibafu-sim --etcd URLS [--tls-ca F --tls-cert F --tls-key F] --nodes N --per-node M
//!             --networks K --churn PER_SEC --secs S --probe-netns PATH --agent-pid PID
//!             [--hold SECS]
//! ```
//! Writes N simulated nodes with M endpoints each on K networks into etcd (leases kept alive),
//! waits until the real agent answers the last name written (`anchor.scale0.local`) in DNS, then churns endpoints at PER_SEC for
//! S seconds while timing, every 100 ms, how long a new endpoint takes from its etcd write to
//! the agent's DNS answer (queried from inside the namespace at PATH, on network `scale0`).
//! Prints one JSON object of figures: populate and settle times, the agent's resident memory,
//! its CPU share during the churn, and the latency percentiles; then keeps the cluster (leases
//! alive) for `--hold` seconds, for the agent's start-up to be timed into it, and removes it.

#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use shibafu_overlay::model::Object;
use shibafu_overlay::store::{EtcdStore, Store, StoreExt};
use shibafu_overlay::tls::TlsFiles;
use shibafu_tests::sim::{self, Shape};

/// Every flag's value, by name.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn need<T: std::str::FromStr>(args: &[String], name: &str) -> anyhow::Result<T> {
    let v = flag(args, name).with_context(|| format!("{name} is required"))?;
    v.parse().map_err(|_| anyhow::anyhow!("bad {name} {v}"))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shape = Shape {
        nodes: need(&args, "--nodes")?,
        per_node: need(&args, "--per-node")?,
        networks: need(&args, "--networks")?,
    };
    anyhow::ensure!(
        (1..=99).contains(&shape.networks)
            && shape.nodes * shape.per_node / shape.networks < 30_000,
        "1..=99 networks, fewer than 30,000 endpoints each"
    );
    let churn: f64 = need(&args, "--churn")?;
    let secs: u64 = need(&args, "--secs")?;
    let pid: u32 = need(&args, "--agent-pid")?;
    let netns: String = need(&args, "--probe-netns")?;
    let hold: u64 = flag(&args, "--hold")
        .map_or(Ok(0), |v| v.parse())
        .context("--hold")?;
    let etcd: Vec<String> = need::<String>(&args, "--etcd")?
        .split(',')
        .map(String::from)
        .collect();
    let tls = TlsFiles::from_flags(
        flag(&args, "--tls-ca").map(Into::into),
        flag(&args, "--tls-cert").map(Into::into),
        flag(&args, "--tls-key").map(Into::into),
    )?;
    let dns = probe_socket(&netns)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(shape, (churn, secs, hold), pid, dns, etcd, tls))
}

/// A UDP socket in the namespace at `path`, connected to network `scale0`'s DNS server.
fn probe_socket(path: &str) -> anyhow::Result<UdpSocket> {
    let path = path.to_string();
    std::thread::spawn(move || -> anyhow::Result<UdpSocket> {
        let ns = std::fs::File::open(&path).with_context(|| path.clone())?;
        // SAFETY: setns on this thread only, with a descriptor it keeps open for the call.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
        if rc != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.connect(SocketAddr::from((sim::network(0).gateway(), 53)))?;
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(s)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("probe thread panicked"))?
}

async fn run(
    shape: Shape,
    (churn, secs, hold): (f64, u64, u64),
    pid: u32,
    dns: UdpSocket,
    etcd: Vec<String>,
    tls: Option<TlsFiles>,
) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&etcd, tls.as_ref()).await?);
    let dns = Arc::new(dns);
    let started = Instant::now();
    let leases = sim::populate(store.clone(), shape, 30, 64).await?;
    let populate = started.elapsed();
    let keeper = tokio::spawn(sim::keep_alive(
        store.clone(),
        leases.clone(),
        Duration::from_secs(5),
    ));
    let total = shape.nodes * shape.per_node;
    let last = (0..total)
        .rev()
        .find(|i| i % shape.networks == 0)
        .unwrap_or(0);
    let settle = answered_within(
        &dns,
        &format!("e{last}.scale0.local"),
        Duration::from_secs(120),
    )
    .await
    .context("the agent never answered the last endpoint of scale0")?;
    let rss_settled = rss_mb(pid)?;
    // Scripts scraping the agent around the churn wait for this line.
    eprintln!("shibafu-sim: settled; churning for {secs} s");

    let cpu_before = cpu_ticks(pid)?;
    let churn_started = Instant::now();
    let end = churn_started + Duration::from_secs(secs);
    let churner = tokio::spawn(churn_loop(store.clone(), shape, churn, leases.clone(), end));
    let mut latencies = Vec::new();
    let mut n = 0usize;
    while Instant::now() < end {
        let ep = shibafu_overlay::model::Endpoint::new(
            "scale0",
            &format!("lat{n}"),
            "sim0",
            sim::address(0, 30_000 + n % 1000),
        );
        let t = Instant::now();
        store.put_object(&ep, Some(leases[0])).await?;
        let name = format!("lat{n}.scale0.local");
        if answered_within(&dns, &name, Duration::from_secs(5))
            .await
            .is_some()
        {
            latencies.push(t.elapsed());
        }
        store.delete(&ep.key().to_string()).await?;
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let changes = churner.await??;
    let elapsed = churn_started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid)? - cpu_before) as f64 / ticks_per_sec() / elapsed * 100.0;
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies
            .get(i)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let figures = serde_json::json!({
        "nodes": shape.nodes, "per_node": shape.per_node, "networks": shape.networks,
        "endpoints": total,
        "populate_s": populate.as_secs_f64(),
        "settle_s": settle.as_secs_f64(),
        "rss_mb_settled": rss_settled,
        "rss_mb_end": rss_mb(pid)?,
        "churn_per_s": changes as f64 / elapsed,
        "agent_cpu_pct": cpu,
        "latency_ms": {"n": latencies.len(), "of": n, "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
    });
    println!("{figures}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    tokio::time::sleep(Duration::from_secs(hold)).await;
    keeper.abort();
    for l in leases {
        let _ = store.revoke_lease(l).await;
    }
    Ok(())
}

/// Toggles random endpoints (removed if there, written back if not) at `rate` a second until
/// `end`; answers how many changes it made.
async fn churn_loop(
    store: Arc<dyn Store>,
    shape: Shape,
    rate: f64,
    leases: Vec<i64>,
    end: Instant,
) -> anyhow::Result<usize> {
    let total = shape.nodes * shape.per_node;
    let mut gone = BTreeSet::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    let mut changes = 0;
    while Instant::now() < end {
        tick.tick().await;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = (seed % total as u64) as usize;
        if gone.remove(&i) {
            store
                .put_object(&sim::endpoint(&shape, i), Some(leases[i / shape.per_node]))
                .await?;
        } else {
            store.delete(&sim::key(&shape, i)).await?;
            gone.insert(i);
        }
        changes += 1;
    }
    Ok(changes)
}

/// How long until `name` answers A with an address (polled every 2 ms), or `None` past `limit`.
async fn answered_within(dns: &Arc<UdpSocket>, name: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let query = shibafu_tests::burst::query(0x5e5e, name);
    while start.elapsed() < limit {
        let (dns, q) = (dns.clone(), query.clone());
        let ok = tokio::task::spawn_blocking(move || ask(&dns, &q))
            .await
            .unwrap_or(false);
        if ok {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// True if the server answers `q` with NOERROR and at least one record.
fn ask(dns: &UdpSocket, q: &[u8]) -> bool {
    if dns.send(q).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    match dns.recv(&mut buf) {
        Ok(n) if n >= 12 && buf[0..2] == q[0..2] => {
            buf[3] & 0x0f == 0 && u16::from_be_bytes([buf[6], buf[7]]) > 0
        }
        _ => false,
    }
}

/// Resident memory of `pid` in MB.
fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(t(11) + t(12))
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}
