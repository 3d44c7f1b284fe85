//! The agent's WireGuard flags, the node record's WireGuard part as it registers, and the
//! start of the tunnel owner.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::{Actor, Addr, Recipient};
use anyhow::Context as _;
use shibafu_overlay::health::system_clock;
use shibafu_overlay::model::{Node, NodeWireGuard};
use shibafu_overlay::wireguard::{public_of, tunnel, BackendChoice, KeyFiles, SystemWg};

use super::metrics::TunnelMetrics;
use super::owner::{TunnelConfig, TunnelOwner};
use super::{TunnelActor, TunnelChanged};
use crate::publish::Publisher;

/// WireGuard flags of `shibafu-agent run`.
#[derive(clap::Args, Debug)]
pub struct WgArgs {
    /// Carry every network's traffic between this node and the others inside WireGuard, not
    /// only the networks created with `--encrypted`.
    #[arg(long, env = "SHIBAFU_ENCRYPT_ALL", value_parser = clap::builder::FalseyValueParser::new())]
    pub encrypt_all: bool,
    /// UDP port of this node's WireGuard device, on the underlay address.
    #[arg(long, default_value_t = tunnel::DEFAULT_PORT)]
    pub wg_port: u16,
    /// Name of this node's WireGuard device. Userspace devices are configured through
    /// /var/run/wireguard/NAME.sock, so agents sharing a filesystem need distinct names.
    #[arg(long, default_value = "wg-shibafu")]
    pub wg_interface: String,
    /// Which WireGuard implementation carries the tunnels: `auto` (the kernel module when the
    /// kernel has it, else userspace), `kernel` or `userspace`.
    #[arg(long, default_value = "auto", value_name = "auto|kernel|userspace")]
    pub wg_backend: BackendChoice,
    /// The userspace WireGuard implementation, run as a managed process when the kernel has
    /// no module (boringtun-cli; `cargo install boringtun-cli`).
    #[arg(long, default_value = "boringtun-cli", value_name = "PATH")]
    pub wg_userspace: PathBuf,
}

impl WgArgs {
    /// The WireGuard part of node `node`'s record from the key files under `state_dir` (made
    /// on first use), known before registering: a restarted node publishes what its peers
    /// already have, so its tunnels stay up.
    pub fn record(&self, state_dir: &Path, node: &str) -> anyhow::Result<NodeWireGuard> {
        let files = KeyFiles::new(state_dir);
        let keys = files
            .load_or_create()
            .context("loading this node's WireGuard key")?;
        Ok(NodeWireGuard {
            public_key: public_of(&keys.current),
            port: self.wg_port,
            tunnel: tunnel::choose_tunnel(node, files.tunnel(), &[]),
            next_key: keys.next.as_ref().map(public_of),
            encrypt_all: self.encrypt_all,
        })
    }

    /// Starts the tunnel owner of node `base`, publishing through `publish` and telling
    /// `dataplane` the tunnel address.
    pub fn start(
        &self,
        state_dir: &Path,
        base: Node,
        underlay_mtu: u32,
        publish: Arc<dyn Publisher>,
        dataplane: Recipient<TunnelChanged>,
        metrics: Arc<TunnelMetrics>,
    ) -> anyhow::Result<Addr<TunnelActor>> {
        let device = SystemWg::new(
            &self.wg_interface,
            self.wg_backend,
            self.wg_userspace.clone(),
            state_dir.join("wireguard").join("userspace.log"),
        );
        let owner = TunnelOwner::load(TunnelConfig {
            base,
            underlay_mtu,
            port: self.wg_port,
            encrypt_all: self.encrypt_all,
            files: KeyFiles::new(state_dir),
            device: Arc::new(device),
            publish,
            clock: system_clock(),
            metrics,
        })
        .context("loading this node's WireGuard key")?;
        Ok(TunnelActor::new(owner, dataplane).start())
    }

    /// Whether this node's device exists now (one an earlier agent left carries traffic).
    pub async fn device_exists(&self) -> bool {
        use shibafu_overlay::netlink::{tunnel_link, TunnelLink};
        matches!(
            tunnel_link(&self.wg_interface).await,
            Ok(TunnelLink::Kernel | TunnelLink::Other(_))
        )
    }
}
