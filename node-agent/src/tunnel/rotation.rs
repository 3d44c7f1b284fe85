//! Key rotation of the tunnel owner: start on request, wait for the peers to accept the next
//! key, switch (see the owner's module documentation for the whole exchange).

use shibafu_overlay::model::key_fingerprint;
use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::wireguard::public_of;
use tracing::{info, warn};

use super::{TunnelOwner, ROTATION_WAIT_MS};

impl TunnelOwner {
    /// Starts a requested rotation not yet served: the next key is made and kept on disk.
    pub(super) fn start_rotation(&mut self, state: &ClusterState) {
        let Some(request) = state.rotations().get(&self.cfg.base.name) else {
            return;
        };
        if self.keys.next.is_some() || self.served == Some(request.requested_ms) {
            return;
        }
        match self.cfg.files.create_next() {
            Ok(k) => {
                info!(next = %key_fingerprint(&public_of(&k)), "key rotation started");
                self.keys.next = Some(k);
                self.rotation_since = Some((self.cfg.clock)());
                self.served = Some(request.requested_ms);
            }
            Err(e) => warn!(error = %e, "cannot start the key rotation"),
        }
    }

    /// Deletes the rotation request once the next key is published or the rotation is over:
    /// from then on the key files and the node record carry it (a restart resumes it).
    pub(super) async fn clear_request(&mut self, state: &ClusterState) {
        let Some(request) = state.rotations().get(&self.cfg.base.name) else {
            return;
        };
        let next = self.keys.next.as_ref().map(public_of);
        let published = self
            .published_node
            .as_ref()
            .and_then(|w| w.next_key.clone());
        let taken =
            self.served == Some(request.requested_ms) && (next.is_none() || next == published);
        if taken {
            let at = Key::Rotation(self.cfg.base.name.clone());
            if let Err(e) = self.cfg.publish.delete(at).await {
                warn!(error = %e, "cannot clear the rotation request");
            }
        }
    }

    /// Has every live peer accepted the next key (or has the wait run out)?
    pub(super) fn ready_to_switch(&self, state: &ClusterState) -> bool {
        let Some(next) = self.keys.next.as_ref().map(public_of) else {
            return false;
        };
        let published = self
            .published_node
            .as_ref()
            .and_then(|w| w.next_key.as_deref())
            == Some(next.as_str());
        if !published {
            return false;
        }
        let waited = (self.cfg.clock)().saturating_sub(self.rotation_since.unwrap_or(0));
        let pending: Vec<&String> = state
            .nodes()
            .values()
            .filter(|n| n.name != self.cfg.base.name && n.wg.is_some())
            .filter(|n| {
                state
                    .tunnels()
                    .get(&n.name)
                    .and_then(|t| t.accepted.get(&self.cfg.base.name))
                    != Some(&next)
            })
            .map(|n| &n.name)
            .collect();
        if !pending.is_empty() && waited < ROTATION_WAIT_MS {
            return false;
        }
        if !pending.is_empty() {
            warn!(?pending, "switching keys without every peer's acceptance");
        }
        true
    }

    /// The next key becomes the key: on disk first, then on the device and in the record.
    pub(super) fn switch(&mut self) {
        if let Err(e) = self.cfg.files.promote_next() {
            warn!(error = %e, "cannot switch keys; retrying");
            return;
        }
        if let Some(next) = self.keys.next.take() {
            info!(key = %key_fingerprint(&public_of(&next)), "key rotated");
            self.keys.current = next;
            self.cfg.metrics.rotated();
        }
        self.rotation_since = None;
    }
}
