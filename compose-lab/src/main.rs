//! `shibafu-lab`: an N-node shibafu lab on one machine. Network namespaces are the hosts, a
//! macvlan switch in a namespace of its own is the underlay, and real etcd, coordinators, agents
//! and an upstream DNS server run inside them. The machine's own namespace is never touched.

mod components;
mod down;
mod etcd_rbac;
mod exec;
mod faults;
mod layout;
mod netns;
mod pki;
mod probe;
mod procs;
mod spec;
mod state;
mod status;
mod up;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::layout::Layout;
use crate::spec::LabSpec;
use crate::state::{LabLock, LabState};

/// An N-node shibafu lab on one machine (network namespaces as hosts).
#[derive(Parser)]
#[command(name = "shibafu-lab", version, about)]
struct Cli {
    /// Lab name: namespaces, state directory and underlay subnet derive from it.
    #[arg(long, global = true, env = "SHIBAFU_LAB", default_value = "lab")]
    name: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the lab and start etcd, the coordinators, the upstream DNS and one agent per node.
    Up {
        /// Number of nodes (node1..nodeN); default 3, or what SPEC says.
        #[arg(long)]
        nodes: Option<usize>,
        /// Number of coordinators (coordinator1..N, each on a host of its own); default 1, or
        /// what SPEC says.
        #[arg(long)]
        coordinators: Option<usize>,
        /// Members of the etcd cluster (1, 3 or 5; etcd1..etcdN, all on the control host, client
        /// ports 2379, 2389, 2399, ...); agents and coordinators get every member.
        #[arg(long, default_value_t = 1, value_parser = parse_members)]
        etcd_members: usize,
        /// TLS everywhere (the default): etcd with client certificates, coordinators serving
        /// TLS to certificate holders, agents with their own certificates, `exec` set up with
        /// an admin certificate; the lab's CA and certificates are in <lab>/pki.
        #[arg(long, conflicts_with = "insecure")]
        secure: bool,
        /// Plain HTTP to etcd and the coordinators, with no authentication.
        #[arg(long)]
        insecure: bool,
        /// Lab spec (YAML): nodes, networks to create, upstream DNS records.
        spec: Option<PathBuf>,
    },
    /// Remove every namespace, link, process and file of the lab (safe to run twice).
    Down,
    /// Show what runs where.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a lab host (a node, a coordinator, or `ctl`), with the shibafu CLI
    /// pointed at it.
    Exec {
        /// Node or coordinator name, or `ctl` (etcd, upstream DNS) or `sw` (the switch).
        node: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Stop a node's agent (leaving its namespace and containers), or etcd, a coordinator, dns.
    Stop {
        /// Node name, `etcd` (`etcdN`: one member of several), `coordinatorN` (`coordinator`:
        /// all of them) or `dns`.
        component: String,
    },
    /// Start a stopped component again with the same flags.
    Start {
        /// Node name, `etcd` (`etcdN`: one member of several), `coordinatorN` (`coordinator`:
        /// all of them) or `dns`.
        component: String,
    },
    /// Cut a node's underlay link.
    Partition {
        /// Node name.
        node: String,
    },
    /// Restore a node's underlay link.
    Heal {
        /// Node name.
        node: String,
    },
}

/// Where lab state directories live.
fn state_root() -> PathBuf {
    std::env::var_os("SHIBAFU_LAB_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/shibafu-lab"))
}

fn main() {
    // The lab records no spans of its own; it passes OTEL_* on to what it starts.
    let _telemetry = shibafu_overlay::telemetry::Telemetry::new("shibafu-lab")
        .without_targets()
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "shibafu-lab: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "shibafu-lab needs root (it creates network namespaces): run it with sudo"
    );
    let root = state_root();
    let layout = Layout::new(&cli.name, &root)?;
    let mut out = std::io::stdout().lock();
    match cli.cmd {
        Cmd::Up {
            nodes,
            coordinators,
            etcd_members,
            secure: _,
            insecure,
            spec,
        } => {
            let mut layout = layout;
            layout.etcd_members = etcd_members;
            layout.secure = !insecure;
            let spec = match spec {
                Some(p) => LabSpec::parse(
                    &std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?,
                )?,
                None => LabSpec::default(),
            };
            let st = up::up(&layout, &spec, nodes, coordinators)?;
            status::print_table(&status::collect(&layout, &st), &mut out)?;
            writeln!(
                out,
                "\nexplore: shibafu-lab --name {n} exec node1 -- shibafu node ls\nstop:    shibafu-lab --name {n} down",
                n = layout.name
            )?;
        }
        Cmd::Down => {
            let lock = LabLock::acquire(&layout)?;
            let st = LabState::load(&layout).unwrap_or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), "unreadable state file; sweeping by name");
                None
            });
            let problems = down::teardown(&layout, st.as_ref());
            lock.remove();
            down::remove_root_if_empty(&root);
            if !problems.is_empty() {
                anyhow::bail!(
                    "lab {:?} removed with problems:\n  {}",
                    layout.name,
                    problems.join("\n  ")
                );
            }
            tracing::info!(lab = %layout.name, "lab removed");
        }
        Cmd::Status { json } => {
            let st = LabState::load_existing(&layout)?;
            let s = status::collect(&layout, &st);
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                status::print_table(&s, &mut out)?;
            }
        }
        Cmd::Exec { node, cmd } => {
            let st = LabState::load_existing(&layout)?;
            let bins = components::Bins::find()?;
            drop(out);
            return exec::run(&layout, &bins, &st, &node, &cmd);
        }
        Cmd::Stop { component } => with_state(&layout, |st| faults::stop(&layout, st, &component))?,
        Cmd::Start { component } => {
            with_state(&layout, |st| faults::start(&layout, st, &component))?
        }
        Cmd::Partition { node } => with_state(&layout, |st| faults::partition(&layout, st, &node))?,
        Cmd::Heal { node } => with_state(&layout, |st| faults::heal(&layout, st, &node))?,
    }
    Ok(0)
}

fn with_state(
    layout: &Layout,
    f: impl FnOnce(&mut LabState) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let _lock = LabLock::acquire(layout)?;
    let mut st = LabState::load_existing(layout)?;
    f(&mut st)
}

fn parse_members(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (1 | 3 | 5)) => Ok(n),
        _ => Err(format!(
            "{s:?}: give 1, 3 or 5 (a majority must survive a member's loss)"
        )),
    }
}
