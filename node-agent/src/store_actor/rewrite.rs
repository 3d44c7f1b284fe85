//! After an outage in which owned keys could not be written or deleted (or a registration during
//! which they changed), they are written again under the lease the node holds (and the stale
//! ones deleted), so the node never goes without a live lease: granting a new lease instead left
//! the old one without keepalives, and when the new registration failed while etcd changed
//! leaders the old lease ran out and took every record of the node with it (a name missing from
//! DNS for seconds).

use std::collections::BTreeSet;

use actix::prelude::*;
use shibafu_overlay::store::lease;
use shibafu_overlay::store::StoreError;
use tracing::{info, warn};

use super::StoreActor;

/// The end of a rewrite of the owned keys under `lease`.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Rewritten {
    lease: i64,
    /// `owned_gen` when the rewrite took its copy.
    gen: u64,
    /// The keys it wrote, and the stale ones it deleted.
    wrote: BTreeSet<String>,
    deleted: BTreeSet<String>,
    result: Result<(), StoreError>,
}

impl StoreActor {
    /// Writes every owned key under the current lease and deletes the stale ones (after an
    /// outage, or when they changed during a registration). While a rewrite runs, the next
    /// keepalive answered starts another.
    pub(super) fn rewrite(&mut self, ctx: &mut Context<Self>) {
        let (Some(store), Some(lease)) = (self.store.clone(), self.lease) else {
            return;
        };
        if self.rewriting {
            self.owned_dirty = true;
            return;
        }
        self.rewriting = true;
        self.owned_dirty = false;
        let owned = self.owned.clone();
        let stale = self.stale.clone();
        let gen = self.owned_gen;
        let limit = self.io_limit();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let wrote: BTreeSet<String> = owned.keys().cloned().collect();
            let result = async {
                lease::put_all(&store, lease, &owned, limit).await?;
                lease::delete_all(&store, stale.iter().cloned().collect(), limit).await
            }
            .await;
            me.do_send(Rewritten {
                lease,
                gen,
                wrote,
                deleted: stale,
                result,
            });
        });
    }
}

impl Handler<Rewritten> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: Rewritten, ctx: &mut Context<Self>) {
        self.rewriting = false;
        if self.lease != Some(msg.lease) {
            return;
        }
        match msg.result {
            Ok(()) => {
                info!(
                    keys = msg.wrote.len(),
                    deleted = msg.deleted.len(),
                    "owned keys written again after etcd came back"
                );
                if msg.gen == self.owned_gen {
                    self.stale.retain(|k| !msg.deleted.contains(k));
                } else {
                    // Changed meanwhile: what the copy wrote and is no longer owned goes too,
                    // the stale keys are deleted once more and the current values written.
                    let gone = msg
                        .wrote
                        .into_iter()
                        .filter(|k| !self.owned.contains_key(k));
                    self.stale.extend(gone);
                    self.rewrite(ctx);
                }
            }
            Err(StoreError::LeaseNotFound(_)) => self.lease_lost(ctx),
            Err(e) => {
                // The stale keys are still noted: the next rewrite deletes them.
                warn!(error = %e, "writing owned keys again failed; retried once etcd answers");
                self.owned_dirty = true;
            }
        }
    }
}
