//! Links between networks (`connect-networks` / `isolate`): two linked networks may route to
//! each other, every other pair stays isolated. A link is one key, `/shibafu/v1/links/<a>+<b>`
//! with the names in canonical order, written only while both networks exist.

use shibafu_overlay::api::{ApiError, ErrorKind};
use shibafu_overlay::model::{self, Link, SCHEMA_VERSION};
use shibafu_overlay::store::keys::{Key, Prefix};
use shibafu_overlay::store::{Compare, Store, StoreExt, TxnOp};
use tracing::{debug, info};

use crate::cluster::{self, store_error, MAX_ATTEMPTS};

/// Name of the guard key every link creation bumps, so a network removal that listed the
/// links before a concurrent `connect-networks` fails its transaction and lists them again.
pub const LINKS_GUARD: &str = "links";

/// Whether a link was made by this call or already existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    /// The link was written now.
    Created,
    /// The networks were linked already; nothing changed.
    Existing,
}

/// Checks two names of a link request: valid labels, and two different networks.
pub(crate) fn check_pair(a: &str, b: &str) -> Result<Link, ApiError> {
    for name in [a, b] {
        model::validate_name(name).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    if a == b {
        return Err(ApiError::invalid(format!(
            "cannot link network {a:?} to itself: name two different networks"
        )));
    }
    Ok(Link::new(a, b))
}

pub(crate) fn link_key(link: &Link) -> String {
    Key::Link(link.a.clone(), link.b.clone()).to_string()
}

/// Links networks `a` and `b` (in either order). Both must exist; the link is written in a
/// transaction that requires both networks unchanged since they were read, so a link never
/// outlives a network removed concurrently. Linking twice is not an error.
pub async fn create_link(store: &dyn Store, a: &str, b: &str) -> Result<(Link, Linked), ApiError> {
    let link = check_pair(a, b)?;
    let key = link_key(&link);
    let guard = Key::Guard(LINKS_GUARD.to_string()).to_string();
    let value = serde_json::to_vec(&link)
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("cannot encode link: {e}")))?;
    for attempt in 0..MAX_ATTEMPTS {
        let (_, rev_a) = cluster::read_network(store, &link.a).await?;
        let (_, rev_b) = cluster::read_network(store, &link.b).await?;
        if store.get(&key).await.map_err(store_error)?.is_some() {
            debug!(a = %link.a, b = %link.b, "networks already linked");
            return Ok((link, Linked::Existing));
        }
        let guard_value = serde_json::json!({"schema": SCHEMA_VERSION, "last": key}).to_string();
        let compares = vec![
            Compare::ModRevision(Key::Network(link.a.clone()).to_string(), rev_a),
            Compare::ModRevision(Key::Network(link.b.clone()).to_string(), rev_b),
            Compare::Absent(key.clone()),
        ];
        let ops = vec![
            TxnOp::Put {
                key: key.clone(),
                value: value.clone(),
                lease: None,
            },
            TxnOp::Put {
                key: guard.clone(),
                value: guard_value.into_bytes(),
                lease: None,
            },
        ];
        if store.txn(compares, ops).await.map_err(store_error)? {
            info!(a = %link.a, b = %link.b, "networks linked");
            return Ok((link, Linked::Created));
        }
        debug!(a = %link.a, b = %link.b, attempt, "link lost to a concurrent change; retrying");
        cluster::backoff(attempt).await;
    }
    Err(ApiError::new(
        ErrorKind::Conflict,
        format!(
            "networks {:?} and {:?}: too many concurrent changes; try again",
            link.a, link.b
        ),
    ))
}

/// Removes the link between `a` and `b` (in either order): the networks are isolated again.
pub async fn remove_link(store: &dyn Store, a: &str, b: &str) -> Result<Link, ApiError> {
    let link = check_pair(a, b)?;
    if store.delete(&link_key(&link)).await.map_err(store_error)? {
        info!(a = %link.a, b = %link.b, "networks isolated");
        Ok(link)
    } else {
        Err(ApiError::not_found(format!(
            "networks {:?} and {:?} are not linked",
            link.a, link.b
        )))
    }
}

/// Every link, sorted by its two names. Malformed values are logged and skipped.
pub async fn list_links(store: &dyn Store) -> Result<Vec<Link>, ApiError> {
    let (mut links, _) = store
        .list_objects::<Link>(&Prefix::Links)
        .await
        .map_err(store_error)?;
    links.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    Ok(links)
}

#[cfg(test)]
#[path = "links_tests.rs"]
mod tests;
