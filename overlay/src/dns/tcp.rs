//! DNS over TCP (RFC 7766): length-prefixed messages, many per connection, pipelined (answers
//! may overtake a slow forwarded one), closed after an idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::answer::{respond_prepared, Outcome, Prepared, Reply, Transport};
use super::metrics::{Tally, ZoneCounts};
use super::server::{reply_of, Shared};
use super::udp::log_query;
use super::wire::Query;

/// Answers queued per connection before the reader waits for the writer.
const QUEUE: usize = 64;

/// Accepts connections on `listener` until the task is aborted (which ends every connection).
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(shared.config.max_tcp_connections));
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "DNS TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many DNS TCP connections; closing a new one");
            continue;
        };
        connections.spawn(connection(shared.clone(), stream, peer, permit));
    }
}

async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(QUEUE);
    let idle = shared.config.tcp_idle_timeout;
    tokio::join!(
        read_queries(&shared, rd, peer, tx),
        write_answers(wr, rx, idle)
    );
}

/// Reads queries until EOF, an error or the idle timeout; answers go to `tx`.
async fn read_queries(
    shared: &Arc<Shared>,
    mut rd: OwnedReadHalf,
    peer: SocketAddr,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let idle = shared.config.tcp_idle_timeout;
    let mut forwards = JoinSet::new();
    loop {
        let Ok(Ok(len)) = timeout(idle, rd.read_u16()).await else {
            break;
        };
        let mut query = vec![0u8; usize::from(len)];
        if !matches!(timeout(idle, rd.read_exact(&mut query)).await, Ok(Ok(_))) {
            break;
        }
        while forwards.try_join_next().is_some() {}
        let start = Instant::now();
        let mut out = Vec::new();
        let mut tally = Tally {
            queries: 1,
            ..Tally::default()
        };
        let (prepared, reply) = {
            let snap = shared.snapshot.load();
            let prepared = Prepared::new(&snap, &query);
            tally.qtype(prepared.query().map(|q| q.qtype));
            let cfg = &shared.answer_cfg;
            let reply = match respond_prepared(
                &snap,
                &query,
                &prepared,
                peer.ip(),
                Transport::Tcp,
                cfg,
                &mut out,
            ) {
                Outcome::Reply(r) => {
                    if let Some(z) = r.zone {
                        let mut counts = ZoneCounts::default();
                        counts.count(&r);
                        shared
                            .metrics
                            .add_zones(std::iter::once((snap.zone_name(z), counts)));
                    }
                    Some(r)
                }
                Outcome::Drop => {
                    tally.dropped += 1;
                    None
                }
                Outcome::Forward => {
                    tally.forwarded += 1;
                    match (&shared.forwarder, prepared.query()) {
                        (Some(fwd), Some(q))
                            if fwd.answer_from_cache(&query, q, Transport::Tcp, &mut out) =>
                        {
                            Some(reply_of(&out))
                        }
                        (Some(_), Some(q)) => {
                            let (shared, tx) = (shared.clone(), tx.clone());
                            let q = q.clone();
                            forwards.spawn(async move {
                                let mut out = Vec::new();
                                let forwarded =
                                    shared.forward(&query, &q, Transport::Tcp, &mut out);
                                if let Some(r) = forwarded.await {
                                    finish(&shared, Some(&q), peer, &r, start);
                                    let _ = tx.send(out).await;
                                }
                            });
                            None
                        }
                        _ => None,
                    }
                }
            };
            (prepared, reply)
        };
        shared.metrics.add_tcp(&tally);
        if let Some(r) = reply {
            finish(shared, prepared.query(), peer, &r, start);
            if tx.send(out).await.is_err() {
                break;
            }
        }
    }
    while forwards.join_next().await.is_some() {}
}

/// Counts and logs one answered query (`q` as parsed, None when the packet was not a query).
fn finish(shared: &Shared, q: Option<&Query>, peer: SocketAddr, r: &Reply, start: Instant) {
    let mut tally = Tally::default();
    tally.reply(r);
    tally.latency(start.elapsed(), 1);
    shared.metrics.add_tcp(&tally);
    if shared.config.query_log {
        log_query(q, peer.ip(), r, "tcp");
    }
}

/// Writes answers as they come, several per write when they queue up.
async fn write_answers(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    idle: std::time::Duration,
) {
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut push = |msg: Vec<u8>| {
            if let Ok(len) = u16::try_from(msg.len()) {
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(&msg);
            }
        };
        push(first);
        while let Ok(more) = rx.try_recv() {
            push(more);
        }
        if !matches!(timeout(idle, wr.write_all(&buf)).await, Ok(Ok(()))) {
            break;
        }
    }
    let _ = wr.shutdown().await;
}
