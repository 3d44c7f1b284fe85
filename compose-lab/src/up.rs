//! `shibafu-lab up`: build the topology, start etcd, the coordinators (each on a host of its
//! own), the upstream DNS server and one agent per node, wait until every agent sees every node,
//! create the spec's networks. A failure anywhere tears down everything made so far.

use std::fs;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::components::{self, Bins};
use crate::down;
use crate::layout::{coordinator_name, etcd_name, Layout, COORDINATOR_PORT, ETCD_METRICS_PORT};
use crate::netns;
use crate::probe;
use crate::procs;
use crate::spec::LabSpec;
use crate::state::{CoordinatorState, LabLock, LabState, NodeState, ProcSpec};

/// The switch: a veth pair inside the switch namespace whose first end carries every host's
/// macvlan uplink in bridge mode. Host to host is then one hop (macvlan to macvlan), as over a
/// direct link, where a Linux bridge would add a second veth crossing per packet.
const SWITCH_PARENT: &str = "sw0";
/// The other end of the switch's veth pair (it only keeps the parent's carrier up).
const SWITCH_PEER: &str = "sw0peer";
/// Name of every host's underlay interface.
pub const UPLINK: &str = "eth0";
/// How long one daemon may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Brings a lab up (`nodes` and `coordinators` override the spec's counts); on failure removes
/// whatever it made and returns the error.
pub fn up(
    layout: &Layout,
    spec: &LabSpec,
    nodes: Option<usize>,
    coordinators: Option<usize>,
) -> anyhow::Result<LabState> {
    let names = spec.node_names(nodes)?;
    let coordinators = spec.coordinator_count(coordinators)?;
    let bins = Bins::find()?;
    let lock = LabLock::acquire(layout)?;
    refuse_if_present(layout)?;
    fs::create_dir_all(layout.dir.join("logs"))
        .with_context(|| format!("creating {}", layout.dir.display()))?;
    let mut st = LabState {
        name: layout.name.clone(),
        subnet: layout.subnet(),
        etcd_url: layout.etcd_url(),
        etcd_endpoints: layout.etcd_endpoints(),
        coordinator_url: layout.coordinator_url(0),
        dns_addr: layout.dns_addr(),
        ..LabState::default()
    };
    st.save(layout)?;
    match build(layout, spec, &names, coordinators, &bins, &mut st) {
        Ok(()) => {
            st.ready = true;
            st.save(layout)?;
            Ok(st)
        }
        Err(e) => {
            let problems = down::teardown(layout, Some(&st));
            lock.remove();
            if let Some(root) = layout.dir.parent() {
                down::remove_root_if_empty(root);
            }
            for p in &problems {
                tracing::error!(problem = %p, "cleanup after failed up");
            }
            Err(e.context(format!(
                "lab {:?} failed to come up; what it made was removed{}",
                layout.name,
                if problems.is_empty() {
                    ""
                } else {
                    " (with problems, see above)"
                }
            )))
        }
    }
}

fn refuse_if_present(layout: &Layout) -> anyhow::Result<()> {
    let leftovers = netns::list_with_prefix(&layout.prefix());
    if layout.state_file().exists() || !leftovers.is_empty() {
        bail!(
            "lab {:?} is already up (state {}, namespaces: {}): use it, or remove it first with `shibafu-lab --name {} down`",
            layout.name,
            layout.dir.display(),
            if leftovers.is_empty() { "none".to_string() } else { leftovers.join(" ") },
            layout.name
        );
    }
    Ok(())
}

fn build(
    layout: &Layout,
    spec: &LabSpec,
    names: &[String],
    coordinators: usize,
    bins: &Bins,
    st: &mut LabState,
) -> anyhow::Result<()> {
    tracing::info!(lab = %layout.name, nodes = names.len(), coordinators, subnet = %layout.subnet(), "building topology");
    let switch = layout.switch_ns();
    add_netns(layout, st, &switch)?;
    netns::ip(
        &switch,
        &[
            "link",
            "add",
            SWITCH_PARENT,
            "type",
            "veth",
            "peer",
            "name",
            SWITCH_PEER,
        ],
    )?;
    netns::ip(&switch, &["link", "set", SWITCH_PEER, "up"])?;
    netns::ip(&switch, &["link", "set", SWITCH_PARENT, "up"])?;

    let ctl = layout.ctl_ns();
    add_netns(layout, st, &ctl)?;
    plug(&switch, &ctl, "p0", &layout.ctl_addr().to_string())?;

    for i in 0..coordinators {
        let name = coordinator_name(i);
        let ns = layout.node_ns(&name);
        add_netns(layout, st, &ns)?;
        let addr = layout.coordinator_addr(i).to_string();
        plug(&switch, &ns, &format!("c{}", i + 1), &addr)?;
        st.coordinators.push(CoordinatorState {
            name,
            netns: ns,
            addr,
            url: layout.coordinator_url(i),
            dns: layout.coordinator_dns(i),
        });
        st.save(layout)?;
    }

    for (i, name) in names.iter().enumerate() {
        let ns = layout.node_ns(name);
        add_netns(layout, st, &ns)?;
        let port = format!("p{}", i + 1);
        let addr = layout.node_addr(i).to_string();
        plug(&switch, &ns, &port, &addr)?;
        netns::sysctl(&ns, "net/ipv4/ip_forward", "1")?;
        netns::sysctl(&ns, "net/ipv6/conf/all/forwarding", "1")?;
        // A default route toward the control host, as real hosts have one; the control host
        // does not forward, so nothing leaves the lab.
        netns::ip(
            &ns,
            &[
                "route",
                "add",
                "default",
                "via",
                &layout.ctl_addr().to_string(),
            ],
        )?;
        let dir = layout.node_dir(name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        st.nodes.push(NodeState {
            name: name.clone(),
            netns: ns,
            addr,
            api_socket: layout.api_socket(name),
            partitioned: false,
        });
        st.save(layout)?;
    }

    if layout.secure {
        st.pki = Some(crate::pki::make(layout, bins, coordinators, names)?);
        st.save(layout)?;
    }
    fs::write(components::records_path(layout), spec.records_file())
        .context("writing the upstream DNS records")?;
    start(
        layout,
        st,
        "dns",
        components::upstream_dns(layout, bins, &spec.upstream_dns.zones),
    )?;
    // Every member first: a member of several waits for a quorum before it answers.
    let members = layout.etcd_members;
    for i in 0..members {
        spawn_recorded(
            layout,
            st,
            &etcd_name(i, members),
            components::etcd(layout, bins, i),
        )?;
    }
    for i in 0..members {
        wait_ready(layout, st, &etcd_name(i, members))?;
    }
    if st.pki.is_some() {
        crate::etcd_rbac::enable(layout, bins, st, coordinators, names)?;
    }
    for i in 0..coordinators {
        let spec = components::coordinator(layout, bins, i);
        spawn_recorded(layout, st, &coordinator_name(i), spec)?;
    }
    for i in 0..coordinators {
        wait_ready(layout, st, &coordinator_name(i))?;
    }
    for (i, name) in names.iter().enumerate() {
        let spec = components::agent(layout, bins, name, i);
        spawn_recorded(layout, st, name, spec)?;
    }
    for name in names {
        wait_ready(layout, st, name)?;
    }
    wait_agents_see_all(st)?;
    for net in &spec.networks {
        create_network(layout, bins, st, &net.create_args())?;
    }
    Ok(())
}

fn add_netns(layout: &Layout, st: &mut LabState, ns: &str) -> anyhow::Result<()> {
    // Recorded first, so a failure halfway through creating it is still cleaned up.
    st.namespaces.push(ns.to_string());
    st.save(layout)?;
    netns::add(ns)
}

/// Links host namespace `host` to the switch: a macvlan (bridge mode) on the switch's parent,
/// made in the switch namespace as `port`, moved into the host and named `eth0` there, with
/// `addr`/24.
fn plug(switch: &str, host: &str, port: &str, addr: &str) -> anyhow::Result<()> {
    netns::ip(
        switch,
        &[
            "link",
            "add",
            port,
            "link",
            SWITCH_PARENT,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ],
    )?;
    netns::ip(switch, &["link", "set", port, "netns", host])?;
    netns::ip(host, &["link", "set", port, "name", UPLINK])?;
    netns::ip(host, &["addr", "add", &format!("{addr}/24"), "dev", UPLINK])?;
    netns::ip(host, &["link", "set", UPLINK, "up"])
}

/// Starts component `key` and waits until it is ready.
pub fn start(layout: &Layout, st: &mut LabState, key: &str, spec: ProcSpec) -> anyhow::Result<()> {
    spawn_recorded(layout, st, key, spec)?;
    wait_ready(layout, st, key)
}

fn spawn_recorded(
    layout: &Layout,
    st: &mut LabState,
    key: &str,
    mut spec: ProcSpec,
) -> anyhow::Result<()> {
    let child = procs::spawn(&spec, &layout.mark())?;
    tracing::info!(component = key, pid = child.id(), netns = %spec.netns, "started");
    spec.pid = Some(child.id());
    st.procs.insert(key.to_string(), spec);
    st.save(layout)
}

/// Waits until component `key` answers: etcd's /health, a coordinator's API (over TLS with the
/// admin certificate in a secure lab) and DNS, the upstream DNS server's SOA, an agent's API.
pub fn wait_ready(layout: &Layout, st: &LabState, key: &str) -> anyhow::Result<()> {
    let spec = st
        .procs
        .get(key)
        .with_context(|| format!("no component {key:?}"))?;
    let pid = spec.pid.with_context(|| format!("{key} is not running"))?;
    let watch = Some((pid, spec.log.as_path()));
    let ctl = layout.ctl_ns();
    let what = format!("{key} (pid {pid})");
    if let Some(c) = st.coordinator(key) {
        let api = SocketAddr::new(c.addr.parse()?, COORDINATOR_PORT);
        let dns: SocketAddr = c.dns.parse()?;
        let tls = st
            .pki
            .as_deref()
            .map(crate::pki::admin_client)
            .transpose()?;
        // Any DNS answer will do (REFUSED before the first network).
        return probe::wait_ready(&what, START_TIMEOUT, watch, || {
            let health = match &tls {
                Some(config) => probe::https_get_in(&c.netns, api, "/v1/health", config.clone()),
                None => probe::http_get_in(&c.netns, api, "/v1/health"),
            };
            Ok(health.is_ok_and(|(code, _)| code == 200)
                && probe::dns_answers_in(&c.netns, dns, "shibafu.lab")?)
        });
    }
    match key {
        etcd if is_etcd(etcd) => {
            let url = arg_after(&spec.args, "--listen-metrics-urls").unwrap_or_default();
            let port = url.rsplit(':').next().and_then(|p| p.parse().ok());
            let addr = SocketAddr::new([127, 0, 0, 1].into(), port.unwrap_or(ETCD_METRICS_PORT));
            probe::wait_ready(&what, START_TIMEOUT, watch, || {
                let (code, body) = probe::http_get_in(&ctl, addr, "/health")?;
                Ok(code == 200 && body.contains("true"))
            })
        }
        "dns" => {
            let server: SocketAddr = layout.dns_addr().parse()?;
            let zone = spec
                .args
                .iter()
                .skip_while(|a| *a != "--zone")
                .nth(1)
                .cloned()
                .unwrap_or_default();
            probe::wait_ready(&what, START_TIMEOUT, watch, || {
                probe::dns_answers_in(&ctl, server, &zone)
            })
        }
        node => {
            let socket = st.node(node)?.api_socket.clone();
            probe::wait_ready(&what, START_TIMEOUT, watch, || {
                Ok(probe::http_get_unix(&socket, "/v1/status")?.0 == 200)
            })
        }
    }
}

fn wait_agents_see_all(st: &LabState) -> anyhow::Result<()> {
    let want = st.nodes.len();
    for node in &st.nodes {
        let spec = st.procs.get(&node.name).context("agent missing")?;
        let watch = spec.pid.map(|p| (p, spec.log.as_path()));
        probe::wait_ready(
            &format!("agent of {} seeing all {want} nodes", node.name),
            START_TIMEOUT,
            watch,
            || {
                let (_, body) = probe::http_get_unix(&node.api_socket, "/v1/status")?;
                let v: serde_json::Value = serde_json::from_str(&body)?;
                let connected = v["etcd_connected"].as_bool().unwrap_or(false);
                let seen = v["nodes"].as_array().map_or(0, Vec::len);
                Ok(connected && seen == want)
            },
        )?;
    }
    Ok(())
}

fn create_network(
    layout: &Layout,
    bins: &Bins,
    st: &LabState,
    args: &[String],
) -> anyhow::Result<()> {
    let node = st.nodes.first().context("lab has no nodes")?;
    let out = crate::exec::command(layout, bins, st, &node.name, &bins.cli, args)?
        .output()
        .context("running shibafu network create")?;
    if !out.status.success() {
        bail!(
            "`shibafu {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    tracing::info!(args = %args.join(" "), "created");
    Ok(())
}

/// Is `key` an etcd member (`etcd`, or `etcdN` of a cluster of several)?
pub fn is_etcd(key: &str) -> bool {
    key.strip_prefix("etcd")
        .is_some_and(|n| n.is_empty() || n.parse::<usize>().is_ok())
}

/// The value after flag `flag` in `args`.
fn arg_after(args: &[String], flag: &str) -> Option<String> {
    args.iter().skip_while(|a| *a != flag).nth(1).cloned()
}
