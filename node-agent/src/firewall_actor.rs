//! FirewallActor: the one owner of shibafu's nftables table on this host. Other owners send
//! their part ([`Contribute`]); the actor composes the parts, applies the result atomically when
//! it changed (one at a time, the latest composition winning), answers each contribution once a
//! composition holding it is in the kernel, and every 30 s checks that nobody altered or removed
//! the table, restoring it if so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use shibafu_overlay::firewall::{Composer, Firewall, FirewallSpec, Part};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::metrics::DataplaneMetrics;

/// How often the table is checked for outside changes.
const CHECK: Duration = Duration::from_secs(30);

/// Replaces one contributor's part of the ruleset; answered once a composition holding it is
/// applied (or with why that failed). Senders that need not wait use `do_send`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
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
    /// Compositions so far: a contribution that changed the composition makes the next one.
    generation: u64,
    /// Contributions waiting for the composition of their generation (or a later one) to be
    /// applied.
    waiters: Vec<(u64, oneshot::Sender<Result<(), String>>)>,
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
            generation: 0,
            waiters: Vec::new(),
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
        if self.busy {
            return;
        }
        let generation = self.generation;
        if self.applied.as_ref() == Some(&spec) {
            self.answer(generation, &Ok(()));
            return;
        }
        self.busy = true;
        let fw = self.fw.clone();
        let apply = async move {
            let start = Instant::now();
            let res = fw.apply(&spec).await;
            (spec, res, start.elapsed())
        };
        ctx.spawn(apply.into_actor(self).map(move |(spec, res, took), act, ctx| {
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
                    act.answer(generation, &Ok(()));
                    act.converge(ctx);
                }
                Err(e) => {
                    warn!(error = %e, "firewall apply failed; retried on the next change or check");
                    act.answer(generation, &Err(e.to_string()));
                    // A newer composition arrived meanwhile: it is the next change, try it.
                    if act.generation > generation {
                        act.converge(ctx);
                    }
                }
            }
        }));
    }

    /// Answers the contributions up to `generation` with the outcome of applying it.
    fn answer(&mut self, generation: u64, outcome: &Result<(), String>) {
        let (done, waiting) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(g, _)| *g <= generation);
        self.waiters = waiting;
        for (_, tx) in done {
            let _ = tx.send(outcome.clone());
        }
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
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: Contribute, ctx: &mut Context<Self>) -> Self::Result {
        if self.composer.set(msg.0) {
            self.generation += 1;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push((self.generation, tx));
        self.converge(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("the firewall owner stopped".into()))
        })
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
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use shibafu_overlay::firewall::{FakeFirewall, FirewallError};
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

    #[actix::test]
    async fn a_contribution_is_answered_once_a_composition_holding_it_is_applied() {
        let fw = Arc::new(FakeFirewall::new());
        let actor = FirewallActor::new(fw.clone()).start();
        let send = |names: &[&str]| actor.send(Contribute(Part::Networks(spec(names))));
        send(&["a"]).await.expect("mailbox").expect("applied");
        assert_eq!(
            fw.current(),
            Some(spec(&["a"])),
            "answered before it was applied"
        );
        send(&["a"]).await.expect("mailbox").expect("unchanged");
        assert_eq!(
            fw.history().len(),
            1,
            "an unchanged part is not applied again"
        );
        // Sent while the first is being applied: each is answered once the latest is in.
        let (first, second) = (send(&["a", "b"]), send(&["b"]));
        second.await.expect("mailbox").expect("second");
        assert_eq!(fw.current(), Some(spec(&["b"])));
        first.await.expect("mailbox").expect("first");
    }

    /// A firewall whose first apply fails, slowly, as nft may when it is killed mid-way.
    struct FailsFirst {
        inner: FakeFirewall,
        failed: AtomicBool,
    }

    #[async_trait]
    impl Firewall for FailsFirst {
        async fn apply(&self, spec: &FirewallSpec) -> Result<(), FirewallError> {
            if !self.failed.swap(true, Ordering::SeqCst) {
                actix_rt::time::sleep(Duration::from_millis(30)).await;
                return Err(FirewallError::InvalidUplink("test".into()));
            }
            self.inner.apply(spec).await
        }

        async fn remove(&self) -> Result<(), FirewallError> {
            self.inner.remove().await
        }

        async fn ensure(&self) -> Result<bool, FirewallError> {
            self.inner.ensure().await
        }
    }

    #[actix::test]
    async fn a_failed_apply_answers_its_own_and_tries_what_came_meanwhile() {
        let fw = Arc::new(FailsFirst {
            inner: FakeFirewall::new(),
            failed: AtomicBool::new(false),
        });
        let actor = FirewallActor::new(fw.clone()).start();
        let send = |names: &[&str]| actor.send(Contribute(Part::Networks(spec(names))));
        let (first, second) = (send(&["a"]), send(&["a", "b"]));
        let failed = first.await.expect("mailbox");
        assert!(failed.is_err(), "{failed:?}");
        // The second is applied without waiting for another change or the periodic check.
        let applied = tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("answered at once")
            .expect("mailbox");
        assert_eq!(applied, Ok(()));
        assert_eq!(fw.inner.current(), Some(spec(&["a", "b"])));
    }
}
