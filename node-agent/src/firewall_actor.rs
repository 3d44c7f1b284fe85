//! FirewallActor: the one owner of shibafu's nftables table on this host. Other owners send
//! their part ([`Contribute`]); the actor composes the parts, applies the result atomically when
//! it changed (one at a time, the latest composition winning), and every 30 s checks that
//! nobody altered or removed the table, restoring it if so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use shibafu_overlay::firewall::{Composer, Firewall, FirewallSpec, Part};
use tracing::{info, warn};

use crate::metrics::DataplaneMetrics;

/// How often the table is checked for outside changes.
const CHECK: Duration = Duration::from_secs(30);

/// Replaces one contributor's part of the ruleset.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Contribute(pub Part);

/// Are the rules of a network loaded, and is the table as applied? `Err` says what is not.
/// A table someone altered is restored by the check (and reported).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct CheckNetwork(pub String);

/// nftables changed (someone's or our own): check the table now and restore it if altered.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Recheck;

/// The actor; see the module documentation.
pub struct FirewallActor {
    fw: Arc<dyn Firewall>,
    composer: Composer,
    /// The spec last applied successfully.
    applied: Option<FirewallSpec>,
    /// An apply is running.
    busy: bool,
    /// Load durations and errors, for scrapes.
    metrics: Arc<DataplaneMetrics>,
}

impl FirewallActor {
    /// The actor over a firewall backend.
    pub fn new(fw: Arc<dyn Firewall>) -> FirewallActor {
        FirewallActor {
            fw,
            composer: Composer::new(),
            applied: None,
            busy: false,
            metrics: Arc::default(),
        }
    }

    /// Records load durations and errors in `metrics` (scraped by `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<DataplaneMetrics>) -> FirewallActor {
        self.metrics = metrics;
        self
    }

    /// Applies the composition if it differs from what was applied; a change arriving during an
    /// apply is picked up when it ends.
    fn converge(&mut self, ctx: &mut Context<Self>) {
        let Some(spec) = self.composer.compose() else {
            return;
        };
        if self.busy || self.applied.as_ref() == Some(&spec) {
            return;
        }
        self.busy = true;
        let fw = self.fw.clone();
        let apply = async move {
            let start = Instant::now();
            let res = fw.apply(&spec).await;
            (spec, res, start.elapsed())
        };
        ctx.spawn(apply.into_actor(self).map(|(spec, res, took), act, ctx| {
            act.busy = false;
            act.metrics.firewall_loaded("main", took, res.is_ok());
            match res {
                Ok(()) => {
                    info!(
                        networks = spec.networks.len(),
                        links = spec.links.len(),
                        "firewall applied"
                    );
                    act.applied = Some(spec);
                    act.converge(ctx);
                }
                Err(e) => {
                    warn!(error = %e, "firewall apply failed; retried on the next change or check")
                }
            }
        }));
    }
}

impl FirewallActor {
    /// Checks the table (and restores it when someone altered it), one thing at a time with the
    /// applies: an apply running now makes its own change events, so the check comes after it.
    fn recheck(&mut self, ctx: &mut Context<Self>) {
        if self.applied.is_none() {
            self.converge(ctx);
            return;
        }
        if self.busy {
            return;
        }
        self.busy = true;
        let fw = self.fw.clone();
        let check = async move { fw.ensure().await };
        ctx.spawn(check.into_actor(self).map(|res, act, ctx| {
            act.busy = false;
            match res {
                Ok(true) => {
                    warn!(
                        "shibafu's nftables table was changed or removed by someone else; restored"
                    )
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "checking the nftables table failed"),
            }
            act.converge(ctx);
        }));
    }
}

impl Actor for FirewallActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(CHECK, |act, ctx| act.recheck(ctx));
    }
}

impl Handler<Contribute> for FirewallActor {
    type Result = ();

    fn handle(&mut self, msg: Contribute, ctx: &mut Context<Self>) {
        if self.composer.set(msg.0) {
            self.converge(ctx);
        }
    }
}

impl Handler<Recheck> for FirewallActor {
    type Result = ();

    fn handle(&mut self, _: Recheck, ctx: &mut Context<Self>) {
        self.recheck(ctx);
    }
}

impl Handler<CheckNetwork> for FirewallActor {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: CheckNetwork, _ctx: &mut Context<Self>) -> Self::Result {
        let loaded = self
            .applied
            .as_ref()
            .is_some_and(|s| s.networks.iter().any(|n| n.name == msg.0));
        if !loaded {
            let err = format!("the firewall rules of network {} are not loaded", msg.0);
            return Box::pin(async move { Err(err) });
        }
        if self.busy {
            // An apply or a check is running: the rules are there or about to be.
            return Box::pin(async { Ok(()) });
        }
        let fw = self.fw.clone();
        Box::pin(async move {
            match fw.ensure().await {
                Ok(false) => Ok(()),
                Ok(true) => Err(
                    "shibafu's nftables table had been changed or removed (now restored)".into(),
                ),
                Err(e) => Err(format!("cannot read the nftables table: {e}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::firewall::FakeFirewall;
    use shibafu_overlay::model::Network;

    use super::*;

    fn spec(names: &[&str]) -> FirewallSpec {
        let nets: Vec<Network> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let subnet = format!("10.{i}.0.0/24").parse().expect("net");
                Network::new(n, subnet, 4096 + i as u32)
            })
            .collect();
        FirewallSpec::from_model(&nets, &[], None).expect("spec")
    }

    #[actix::test]
    async fn applies_each_new_composition_once_and_the_latest_wins() {
        let fw = Arc::new(FakeFirewall::new());
        let actor = FirewallActor::new(fw.clone()).start();
        actor.do_send(Contribute(Part::Networks(spec(&["a"]))));
        actor.do_send(Contribute(Part::Networks(spec(&["a"]))));
        actor.do_send(Contribute(Part::Networks(spec(&["a", "b"]))));
        for _ in 0..100 {
            if fw.current() == Some(spec(&["a", "b"])) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(fw.current(), Some(spec(&["a", "b"])));
        let history = fw.history();
        assert!(
            history.len() <= 2,
            "unchanged parts are not applied again: {history:?}"
        );
        assert_eq!(history.first(), Some(&spec(&["a"])));
    }
}
