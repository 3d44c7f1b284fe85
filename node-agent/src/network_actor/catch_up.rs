//! Read-your-writes for attaches: a network created a moment ago (through the coordinator or
//! another node's agent) is in etcd before this agent's watch brings it. An attach naming a
//! network its state does not know asks etcd, and if etcd has it, waits (bounded) for the watch
//! to reach that revision instead of calling the network unknown.

use std::sync::Arc;
use std::time::Duration;

use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::Store;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::AttachError;

/// How long an attach waits for the watch to bring a network etcd already holds.
pub(super) const CATCH_UP: Duration = Duration::from_secs(5);

/// The latest state, caught up with etcd for `networks`: any of them this state lacks but etcd
/// holds is waited for, at most [`CATCH_UP`]. A network etcd does not hold (or an etcd that
/// does not answer) returns the state as it is, and the attach reports what it lacks.
pub async fn caught_up(
    store: &dyn Store,
    states: &mut watch::Receiver<Option<Arc<ClusterState>>>,
    networks: &[String],
) -> Result<Arc<ClusterState>, AttachError> {
    let state = states.borrow().clone().ok_or(AttachError::Starting)?;
    let mut target = 0;
    for n in networks
        .iter()
        .filter(|n| !state.networks().contains_key(*n))
    {
        match store.get(&Key::Network(n.clone()).to_string()).await {
            Ok(Some(kv)) => target = target.max(kv.mod_revision),
            Ok(None) => {}
            Err(e) => debug!(network = %n, error = %e, "could not ask etcd for a network"),
        }
    }
    if target <= state.revision() {
        return Ok(state);
    }
    debug!(
        revision = state.revision(),
        target, "waiting for the watch to bring a new network"
    );
    let reached =
        |s: &Option<Arc<ClusterState>>| s.as_ref().is_some_and(|s| s.revision() >= target);
    if tokio::time::timeout(CATCH_UP, states.wait_for(reached))
        .await
        .is_err()
    {
        warn!(
            target,
            "the watch did not reach a network's revision in time"
        );
    }
    let latest = states.borrow().clone();
    Ok(latest.unwrap_or(state))
}
