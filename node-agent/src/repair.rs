//! Watches the kernel for damage to what this node built and has the owners repair it at once,
//! rather than at the next 30 s resync: route-netlink deletions (a bridge, VXLAN device or veth,
//! an address, a static FDB or neighbour entry) go to the dataplane owner, collected for a
//! moment so a burst is one repair; nftables changes beyond set elements go to the firewall
//! owner, which checks its tables and restores them if someone altered them.

use std::time::Duration;

use actix::Recipient;
use shibafu_overlay::netlink::watch::{self, nft, Damage};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::dataplane::actor::Damaged;
use crate::firewall_actor::Recheck;

/// How long events are collected after the first one before the owner is told.
const SETTLE: Duration = Duration::from_millis(100);

/// Starts the watchers (in the agent's namespace) and the tasks that pass their events on.
pub fn start(dataplane: Recipient<Damaged>, firewall: Recipient<Recheck>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Damage>();
    actix_rt::spawn(async move {
        // Started again (after a pause) whenever the socket fails; ends with the agent.
        while let Err(e) = watch::watch(tx.clone()).await {
            warn!(error = %e, "watching the kernel for damage failed; again in 5 s (the resync covers meanwhile)");
            tokio::time::sleep(Duration::from_secs(5)).await;
            let _ = tx.send(Damage::Lost);
        }
    });
    actix_rt::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            tokio::time::sleep(SETTLE).await;
            while let Ok(more) = rx.try_recv() {
                if !batch.contains(&more) {
                    batch.push(more);
                }
            }
            debug!(damage = ?batch, "kernel reports deletions");
            dataplane.do_send(Damaged(batch));
        }
    });
    let (ntx, mut nrx) = mpsc::unbounded_channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("nft-events".into())
        .spawn(move || match nft::nft_events() {
            Ok(fd) => loop {
                match nft::next_nft_change(&fd) {
                    // Set elements alone (this agent's attaches and detaches): nothing to check.
                    Ok(false) => {}
                    Ok(true) if ntx.send(()).is_ok() => {}
                    Ok(true) => break,
                    Err(e) => {
                        warn!(error = %e, "nftables events stopped; the firewall check waits for its timer");
                        break;
                    }
                }
            },
            Err(e) => {
                warn!(error = %e, "cannot watch nftables; the firewall check waits for its timer")
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the nftables watcher");
        return;
    }
    actix_rt::spawn(async move {
        while nrx.recv().await.is_some() {
            tokio::time::sleep(SETTLE).await;
            while nrx.try_recv().is_ok() {}
            firewall.do_send(Recheck);
        }
    });
}
