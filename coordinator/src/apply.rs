//! Declarative configuration (`POST /v1/apply`, `GET /v1/export`): read the cluster, build the
//! desired state ([`crate::apply_desired`]), plan ([`crate::apply_plan`]) and write every change
//! in ONE transaction that also compares the mod revision of everything the plan relied on, so
//! a document is applied whole or not at all, and never over a concurrent change.

use std::collections::BTreeMap;

use shibafu_overlay::api::{ApiError, ApplyAnswer, ApplyRequest, Document, ErrorKind};
use shibafu_overlay::model::{decode, Endpoint, Object, Peer, SCHEMA_VERSION};
use shibafu_overlay::store::keys::{Key, Prefix};
use shibafu_overlay::store::{Compare, Store, StoreExt, TxnOp};
use tracing::{debug, info};

use crate::apply_desired::desired;
use crate::apply_plan::{plan, Current, Step};
use crate::cluster::{self, backoff, store_error, MAX_ATTEMPTS, MAX_TXN_OPS, NETWORKS_GUARD};
use crate::export::document_of;
use crate::links::LINKS_GUARD;

/// The cluster with the mod revision of every key read, and the guards as read first.
struct Snapshot {
    current: Current,
    revisions: BTreeMap<String, i64>,
    guards: Vec<Compare>,
}

/// Applies `req`: answers the changes, written unless it is a dry run; refuses the whole
/// document, with every problem and its path, when any part of it is wrong.
pub async fn apply(store: &dyn Store, req: &ApplyRequest) -> Result<ApplyAnswer, ApiError> {
    for attempt in 0..MAX_ATTEMPTS {
        let snap = read(store).await?;
        let (desired, mut problems) = desired(&req.document, &snap.current, req.prune);
        let (steps, more) = plan(&snap.current, &desired, req.prune);
        problems.extend(more);
        if !problems.is_empty() {
            let n = problems.len();
            let msg = format!("the document has {n} problem(s); nothing was changed");
            return Err(ApiError::with_problems(msg, problems));
        }
        let encrypts = steps.iter().any(|s| {
            matches!(s, Step::CreateNetwork(n) | Step::UpdateNetwork { new: n, .. } if n.encrypted)
        });
        if encrypts {
            crate::cluster::require_keys(store).await?;
        }
        let changes = steps.iter().map(Step::change).collect();
        if req.dry_run || steps.is_empty() {
            return Ok(ApplyAnswer {
                changes,
                applied: false,
            });
        }
        let (compares, ops) = transaction(store, &snap, &steps).await?;
        let size = compares.len().max(ops.len());
        if size > MAX_TXN_OPS {
            return Err(ApiError::invalid(format!(
                "the change needs {size} operations in one etcd transaction, more than the \
                 {MAX_TXN_OPS} it may hold: apply it in parts (fewer objects per file)"
            )));
        }
        if store.txn(compares, ops).await.map_err(store_error)? {
            info!(changes = steps.len(), prune = req.prune, "document applied");
            return Ok(ApplyAnswer {
                changes,
                applied: true,
            });
        }
        debug!(attempt, "apply lost to a concurrent change; retrying");
        backoff(attempt).await;
    }
    Err(ApiError::new(
        ErrorKind::Conflict,
        "too many concurrent changes to the cluster while applying; try again",
    ))
}

/// The whole cluster as a document that applies as no change.
pub async fn export(store: &dyn Store) -> Result<Document, ApiError> {
    Ok(document_of(&read(store).await?.current))
}

async fn read(store: &dyn Store) -> Result<Snapshot, ApiError> {
    let mut guards = Vec::new();
    for name in [NETWORKS_GUARD, LINKS_GUARD] {
        let key = Key::Guard(name.to_string()).to_string();
        guards.push(match store.get(&key).await.map_err(store_error)? {
            Some(kv) => Compare::ModRevision(key, kv.mod_revision),
            None => Compare::Absent(key),
        });
    }
    let mut revisions = BTreeMap::new();
    let mut current = Current {
        networks: list(store, Prefix::Networks, &mut revisions).await?,
        links: list(store, Prefix::Links, &mut revisions).await?,
        services: list(store, Prefix::Services, &mut revisions).await?,
        policies: list(store, Prefix::Policies, &mut revisions).await?,
        ..Current::default()
    };
    let (endpoints, _) = store
        .list_objects::<Endpoint>(&Prefix::Endpoints)
        .await
        .map_err(store_error)?;
    for e in endpoints {
        current.containers.insert(e.name.clone());
        *current.endpoints.entry(e.network.clone()).or_default() += 1;
        if let Some(s) = e.service {
            *current.instances.entry((e.network, s)).or_default() += 1;
        }
    }
    Ok(Snapshot {
        current,
        revisions,
        guards,
    })
}

/// Every object under `prefix`, recording each key's mod revision; a value that does not
/// decode stops the apply (it could not be compared or replaced safely).
async fn list<T: Object>(
    store: &dyn Store,
    prefix: Prefix,
    revisions: &mut BTreeMap<String, i64>,
) -> Result<Vec<T>, ApiError> {
    let (kvs, _) = store.list(&prefix.to_string()).await.map_err(store_error)?;
    let mut out = Vec::new();
    for kv in kvs {
        let value = decode::<T>(&kv.key, &kv.value).map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!(
                    "{} is stored unusable ({e}); remove it before applying",
                    kv.key
                ),
            )
        })?;
        revisions.insert(kv.key, kv.mod_revision);
        out.push(value);
    }
    Ok(out)
}

/// The compares and operations of one transaction, by key (etcd refuses a key twice).
struct Txn<'a> {
    snap: &'a Snapshot,
    compares: BTreeMap<String, Compare>,
    ops: BTreeMap<String, TxnOp>,
}

impl Txn<'_> {
    fn compare(&mut self, c: Compare) {
        let key = match &c {
            Compare::Absent(k) | Compare::ModRevision(k, _) | Compare::Value(k, _) => k.clone(),
        };
        self.compares.entry(key).or_insert(c);
    }

    /// `key` must be as read: absent if it was, else at the same revision.
    fn as_read(&mut self, key: &Key) {
        let key = key.to_string();
        match self.snap.revisions.get(&key) {
            Some(rev) => self.compare(Compare::ModRevision(key, *rev)),
            None => self.compare(Compare::Absent(key)),
        }
    }

    /// `key`, which something written refers to, must not change, unless it is written now.
    fn refer(&mut self, key: Key) {
        if let Some(rev) = self.snap.revisions.get(&key.to_string()) {
            self.compare(Compare::ModRevision(key.to_string(), *rev));
        }
    }

    fn put<T: Object>(&mut self, value: &T) -> Result<(), ApiError> {
        self.as_read(&value.key());
        let op = TxnOp::put_object(value, None).map_err(store_error)?;
        self.ops.insert(value.key().to_string(), op);
        Ok(())
    }

    fn delete(&mut self, key: Key) {
        self.as_read(&key);
        self.ops.insert(key.to_string(), TxnOp::delete(&key));
    }

    /// Adds an operation planned elsewhere (a network removal's deletes).
    fn op(&mut self, op: TxnOp) {
        let key = match &op {
            TxnOp::Put { key, .. } | TxnOp::Delete(key) => key.clone(),
        };
        self.ops.insert(key, op);
    }

    fn bump(&mut self, guard: &str) {
        let key = Key::Guard(guard.to_string()).to_string();
        let value = serde_json::json!({"schema": SCHEMA_VERSION, "last": "apply"});
        self.ops.insert(
            key.clone(),
            TxnOp::Put {
                key,
                value: value.to_string().into_bytes(),
                lease: None,
            },
        );
    }
}

async fn transaction(
    store: &dyn Store,
    snap: &Snapshot,
    steps: &[Step],
) -> Result<(Vec<Compare>, Vec<TxnOp>), ApiError> {
    let mut t = Txn {
        snap,
        compares: BTreeMap::new(),
        ops: BTreeMap::new(),
    };
    for g in &snap.guards {
        t.compare(g.clone());
    }
    for step in steps {
        match step {
            Step::CreateNetwork(n) | Step::UpdateNetwork { new: n, .. } => {
                t.put(n)?;
                t.bump(NETWORKS_GUARD);
            }
            Step::RemoveNetwork(name) => {
                t.as_read(&Key::Network(name.clone()));
                // Read with force so that an endpoint attached since the snapshot is seen
                // here and refused, never deleted.
                let removal = cluster::plan_removal(store, name, true).await?;
                if removal.removed.endpoints > 0 {
                    return Err(ApiError::new(
                        ErrorKind::HasEndpoints,
                        format!(
                            "network {name:?} has endpoints attached since the apply began: \
                             --prune removes only networks without endpoints"
                        ),
                    ));
                }
                // Links made since the snapshot fail the snapshot's links guard.
                removal.ops.into_iter().for_each(|op| t.op(op));
            }
            Step::CreateLink(l) => {
                t.put(l)?;
                t.refer(Key::Network(l.a.clone()));
                t.refer(Key::Network(l.b.clone()));
                t.bump(LINKS_GUARD);
            }
            Step::RemoveLink(l) => t.delete(l.key()),
            Step::PutService { new, .. } => {
                t.put(new)?;
                t.refer(Key::Network(new.network.clone()));
            }
            Step::RemoveService(s) => t.delete(s.key()),
            Step::PutPolicy { new, .. } => {
                t.put(new)?;
                t.refer(Key::Network(new.network.clone()));
                if let Some(s) = &new.service {
                    t.refer(Key::Service {
                        network: new.network.clone(),
                        name: s.clone(),
                    });
                }
                for rule in &new.rules {
                    match &rule.peer {
                        Peer::Network(n) => t.refer(Key::Network(n.clone())),
                        Peer::Service(s) => {
                            for svc in snap.current.services.iter().filter(|x| &x.name == s) {
                                t.refer(svc.key());
                            }
                        }
                        _ => {}
                    }
                }
            }
            Step::RemovePolicy(p) => t.delete(p.key()),
        }
    }
    Ok((
        t.compares.into_values().collect(),
        t.ops.into_values().collect(),
    ))
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
