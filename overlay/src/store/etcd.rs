//! The etcd [`Store`] (etcd v3 API over gRPC, via etcd-client).
//!
//! Every unary call is bounded by a timeout, so a dead server surfaces as `Unavailable` instead
//! of a call that hangs; watches detect dead connections through HTTP/2 keepalive pings.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, CompactionOptions, Compare as EtcdCompare, CompareOp, ConnectOptions,
    EventType, GetOptions, Identity, LeaseKeepAliveStream, LeaseKeeper, PutOptions, TlsOptions,
    Txn, TxnOp as EtcdTxnOp, WatchOptions,
};
use futures::stream::{self, StreamExt};
use tokio::sync::Mutex;

use super::keys::ROOT;
use super::{Compare, KeyValue, Store, StoreError, TxnOp, WatchEvent, WatchStream};
use crate::tls::TlsFiles;

/// Upper bound of one unary call (and of opening a watch).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one keepalive may go unanswered before its stream is taken for stuck and a fresh
/// one opened. Leases are refreshed every third of their TTL (5 s by default), so a silent
/// stream kept for the whole call timeout lets the lease expire (its last refresh was already a
/// third of the TTL earlier) even if the cluster answers again at once; the node's records then
/// leave every DNS until it registers again. lab_etcd_ha failed in that shape under load: a
/// name of one node missing from another's DNS for 1.3 s, 7 s after the etcd leader stopped.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_millis(1500);
/// HTTP/2 ping interval and timeout; etcd refuses pings more often than every 5 s.
const PING_INTERVAL: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Part of etcd's (and etcd-client's) message for an unknown lease.
const LEASE_NOT_FOUND: &str = "lease not found";
/// etcd's answer to a compaction at or below the revision already compacted.
const COMPACTED_ALREADY: &str = "required revision has been compacted";

/// Checks the endpoints' schemes against `files`: https needs the files, and the files need
/// every endpoint https (etcd serving TLS). What a daemon calls at start, so a mistake stops it
/// with this message instead of a retry loop.
pub fn check_tls(endpoints: &[String], files: Option<&TlsFiles>) -> Result<(), StoreError> {
    let https = endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    let bad = |reason: &str| StoreError::Config(format!("etcd {}: {reason}", endpoints.join(",")));
    match files {
        None if https > 0 => Err(bad(
            "https:// endpoints need the cluster CA and a client certificate (--tls-ca, --tls-cert, --tls-key)",
        )),
        Some(_) if https != endpoints.len() => Err(bad(
            "with a client certificate, every endpoint must be https://",
        )),
        _ => Ok(()),
    }
}

/// etcd's TLS options from `files`, after [`check_tls`].
fn tls_options(
    endpoints: &[String],
    files: Option<&TlsFiles>,
) -> Result<Option<TlsOptions>, StoreError> {
    check_tls(endpoints, files)?;
    let Some(files) = files else {
        return Ok(None);
    };
    let (ca, cert, key) = files.pem().map_err(|e| StoreError::Config(e.to_string()))?;
    Ok(Some(
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key)),
    ))
}

/// A store backed by an etcd cluster.
pub struct EtcdStore {
    client: Client,
    keepers: Mutex<HashMap<i64, (LeaseKeeper, LeaseKeepAliveStream)>>,
}

impl EtcdStore {
    /// Connects to etcd (`http://127.0.0.1:2379` style endpoints, or `https://` ones with
    /// `tls`: the cluster CA and this process's client certificate) and checks it answers.
    pub async fn connect(
        endpoints: &[String],
        tls: Option<&TlsFiles>,
    ) -> Result<EtcdStore, StoreError> {
        let unreachable = |e: StoreError| {
            let reason = match e {
                StoreError::Unavailable(msg) => msg,
                other => other.to_string(),
            };
            StoreError::Unavailable(format!(
                "cannot reach etcd at {} ({reason}): check that etcd runs there",
                endpoints.join(",")
            ))
        };
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_keep_alive(PING_INTERVAL, PING_TIMEOUT)
            .with_keep_alive_while_idle(false);
        if let Some(tls) = tls_options(endpoints, tls)? {
            options = options.with_tls(tls);
        }
        let client = timed(Client::connect(endpoints, Some(options)))
            .await
            .map_err(unreachable)?;
        let store = EtcdStore {
            client,
            keepers: Mutex::new(HashMap::new()),
        };
        store.get(ROOT).await.map_err(unreachable)?;
        Ok(store)
    }
}

/// Runs one etcd call with the call timeout; every failure becomes `Unavailable`.
async fn timed<T>(
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    timed_within(CALL_TIMEOUT, call).await
}

/// Runs one etcd call that must answer within `limit`; every failure becomes `Unavailable`.
async fn timed_within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(StoreError::Unavailable(format!(
            "etcd did not answer within {limit:?}"
        ))),
    }
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(format!("etcd: {e}"))
}

/// Maps etcd's "lease not found" answer to `LeaseNotFound`.
fn lease_error(lease: i64, e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(msg) if msg.contains(LEASE_NOT_FOUND) => {
            StoreError::LeaseNotFound(lease)
        }
        other => other,
    }
}

fn convert_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
    }
}

fn convert_event(ev: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = ev.kv()?;
    Some(match ev.event_type() {
        EventType::Put => WatchEvent::Put(convert_kv(kv)),
        EventType::Delete => WatchEvent::Delete {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            mod_revision: kv.mod_revision(),
        },
    })
}

fn convert_compare(c: Compare) -> EtcdCompare {
    match c {
        Compare::Absent(k) => EtcdCompare::create_revision(k, CompareOp::Equal, 0),
        Compare::ModRevision(k, r) => EtcdCompare::mod_revision(k, CompareOp::Equal, r),
        Compare::Value(k, v) => EtcdCompare::value(k, CompareOp::Equal, v),
    }
}

fn convert_op(op: TxnOp) -> EtcdTxnOp {
    match op {
        TxnOp::Put { key, value, lease } => {
            let opts = lease.map(|l| PutOptions::new().with_lease(l));
            EtcdTxnOp::put(key, value, opts)
        }
        TxnOp::Delete(key) => EtcdTxnOp::delete(key, None),
    }
}

/// Sends one keepalive on an open keepalive stream; returns the TTL etcd answered.
async fn refresh(
    keeper: &mut LeaseKeeper,
    stream: &mut LeaseKeepAliveStream,
) -> Result<i64, etcd_client::Error> {
    keeper.keep_alive().await?;
    match stream.message().await? {
        Some(resp) => Ok(resp.ttl()),
        None => Err(etcd_client::Error::LeaseKeepAliveError(
            "keepalive stream closed".into(),
        )),
    }
}

/// Turns an etcd watch into our stream: events in batches, compaction as `Compacted`.
fn adapt_watch(watch: etcd_client::WatchStream, requested: i64) -> WatchStream {
    stream::unfold(Some(watch), move |state| async move {
        let mut watch = state?;
        loop {
            let resp = match watch.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return None,
                Err(e) => return Some((Err(unavailable(e)), None)),
            };
            if resp.compact_revision() > 0 {
                let err = StoreError::Compacted {
                    requested,
                    compact_revision: resp.compact_revision(),
                };
                return Some((Err(err), None));
            }
            if resp.canceled() {
                let reason = format!("etcd canceled the watch: {}", resp.cancel_reason());
                return Some((Err(StoreError::Unavailable(reason)), None));
            }
            let events: Vec<WatchEvent> = resp.events().iter().filter_map(convert_event).collect();
            if !events.is_empty() {
                return Some((Ok(events), Some(watch)));
            }
        }
    })
    .boxed()
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let mut kv = self.client.kv_client();
        let resp = timed(kv.get(key, None)).await?;
        Ok(resp.kvs().first().map(convert_kv))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StoreError> {
        let mut kv = self.client.kv_client();
        let resp = timed(kv.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok((resp.kvs().iter().map(convert_kv).collect(), revision))
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut kv = self.client.kv_client();
        let opts = GetOptions::new().with_prefix().with_keys_only();
        let resp = timed(kv.get(prefix, Some(opts))).await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect())
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<i64, StoreError> {
        let mut kv = self.client.kv_client();
        let opts = lease.map(|l| PutOptions::new().with_lease(l));
        let resp = timed(kv.put(key, value, opts))
            .await
            .map_err(|e| lease_error(lease.unwrap_or_default(), e))?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut kv = self.client.kv_client();
        let resp = timed(kv.delete(key, None)).await?;
        Ok(resp.deleted() > 0)
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, StoreError> {
        let lease = ops.iter().find_map(|op| match op {
            TxnOp::Put { lease, .. } => *lease,
            TxnOp::Delete(_) => None,
        });
        let txn = Txn::new()
            .when(
                compares
                    .into_iter()
                    .map(convert_compare)
                    .collect::<Vec<_>>(),
            )
            .and_then(ops.into_iter().map(convert_op).collect::<Vec<_>>());
        let mut kv = self.client.kv_client();
        let resp = timed(kv.txn(txn))
            .await
            .map_err(|e| lease_error(lease.unwrap_or_default(), e))?;
        Ok(resp.succeeded())
    }

    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, StoreError> {
        let mut lc = self.client.lease_client();
        Ok(timed(lc.grant(ttl_secs, None)).await?.id())
    }

    async fn keep_alive(&self, lease: i64) -> Result<i64, StoreError> {
        let mut keepers = self.keepers.lock().await;
        if let Some((keeper, stream)) = keepers.get_mut(&lease) {
            match timed_within(KEEPALIVE_TIMEOUT, refresh(keeper, stream)).await {
                Ok(ttl) if ttl > 0 => return Ok(ttl),
                Ok(_) => {
                    keepers.remove(&lease);
                    return Err(StoreError::LeaseNotFound(lease));
                }
                // A stream broken by a reconnect: open a fresh one below.
                Err(_) => {
                    keepers.remove(&lease);
                }
            }
        }
        let mut lc = self.client.lease_client();
        let (mut keeper, mut stream) = match timed(lc.keep_alive(lease)).await {
            Ok(pair) => pair,
            Err(StoreError::Unavailable(msg)) if msg.contains(LEASE_NOT_FOUND) => {
                return Err(StoreError::LeaseNotFound(lease));
            }
            Err(e) => return Err(e),
        };
        // Opening the stream refreshed the lease but hides the TTL: ask once more.
        let ttl = timed_within(KEEPALIVE_TIMEOUT, refresh(&mut keeper, &mut stream)).await?;
        if ttl <= 0 {
            return Err(StoreError::LeaseNotFound(lease));
        }
        keepers.insert(lease, (keeper, stream));
        Ok(ttl)
    }

    async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError> {
        self.keepers.lock().await.remove(&lease);
        let mut lc = self.client.lease_client();
        timed(lc.revoke(lease))
            .await
            .map_err(|e| lease_error(lease, e))?;
        Ok(())
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        let mut wc = self.client.watch_client();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_revision);
        let watch = timed(wc.watch(prefix, Some(opts))).await?;
        Ok(adapt_watch(watch, from_revision))
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let mut kv = self.client.kv_client();
        let opts = CompactionOptions::new().with_physical();
        match timed(kv.compact(revision, Some(opts))).await {
            Err(StoreError::Unavailable(msg)) if msg.contains(COMPACTED_ALREADY) => Ok(()),
            other => other.map(drop),
        }
    }
}
