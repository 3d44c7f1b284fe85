//! Adds and deletes addresses of nftables address sets over nfnetlink, in one atomic batch, without
//! running `nft`.
//!
//! `nft add element` first lists every set of the table into its cache: ~110 ms on a policy
//! table of thousands of sets. Endpoint churn only needs single addresses in plain
//! `ipv4_addr`/`ipv6_addr` hash sets, so [`change_elements`] sends the element messages nft would
//! send ([`wire`]) on a NETLINK_NETFILTER socket kept per namespace ([`socket`]) and reads the
//! kernel's verdict.

mod socket;
mod wire;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use tracing::debug;

use super::FirewallError;
use socket::NfSocket;

/// Add or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementOp {
    /// Add the address; adding one the set holds already is not an error (`nft add element`).
    Add,
    /// Delete the address; deleting one the set lacks is an error (ENOENT, like nft).
    Delete,
}

impl fmt::Display for ElementOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElementOp::Add => "add",
            ElementOp::Delete => "delete",
        })
    }
}

/// One element change of an address set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElementChange {
    /// The set's name in the table.
    pub set: String,
    /// Add or delete.
    pub op: ElementOp,
    /// The address: IPv4 for `ipv4_addr` sets, IPv6 for `ipv6_addr` sets.
    pub addr: IpAddr,
}

impl ElementChange {
    /// Adds `addr` to `set`.
    pub fn add(set: impl Into<String>, addr: IpAddr) -> ElementChange {
        ElementChange {
            set: set.into(),
            op: ElementOp::Add,
            addr,
        }
    }

    /// Deletes `addr` from `set`.
    pub fn delete(set: impl Into<String>, addr: IpAddr) -> ElementChange {
        ElementChange {
            set: set.into(),
            op: ElementOp::Delete,
            addr,
        }
    }
}

/// Applies `changes` to sets of `inet <table>` in ONE nfnetlink batch (all or nothing), in the
/// namespace at `netns` (None = current), and waits for the kernel's answer (the batch's last
/// message asks for an ack; failures of any message arrive before it); a kernel error (no such
/// set, wrong address family, ...) comes back as [`FirewallError::SetElement`] with the errno
/// and which change failed.
///
/// `Add` of a present element and `Delete` of an absent one behave as `nft add element` and
/// `nft delete element`: no error, and ENOENT. Changes apply in order; consecutive changes to
/// one set with one op share a message. Nothing is sent for no changes. The namespace's netlink
/// socket stays open for later calls: closing it after a commit would cost ~10-20 ms.
pub async fn change_elements(
    netns: Option<&Path>,
    table: &str,
    changes: &[ElementChange],
) -> Result<(), FirewallError> {
    check_name("table", table)?;
    for c in changes {
        check_name("set", &c.set)?;
    }
    if changes.is_empty() {
        return Ok(());
    }
    let shared = socket::socket_for(netns).await?;
    let table = table.to_string();
    let changes = changes.to_vec();
    let job = move || {
        let sock = shared.lock().unwrap_or_else(|p| p.into_inner());
        let out = apply(&sock, &table, &changes);
        drop(sock);
        if let Err(Outcome::Broken(_)) = &out {
            socket::evict(&shared);
        }
        out.map_err(Outcome::into_error)
    };
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| FirewallError::Task(e.to_string()))?
}

fn check_name(what: &'static str, name: &str) -> Result<(), FirewallError> {
    if name.is_empty() || name.len() > wire::MAX_NAME || name.contains('\0') {
        return Err(FirewallError::InvalidName {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// What to try, after an errno the kernel gave for an element change.
pub(super) fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "; do the table and set exist (and, to delete, the element)?",
        Some(libc::EINVAL) => "; is the set of type ipv4_addr/ipv6_addr matching the address?",
        Some(libc::EPERM) => "; changing nftables needs CAP_NET_ADMIN",
        Some(libc::EBUSY) => "; the set is constant",
        _ => "",
    }
}

/// Why a batch did not apply: the kernel refused it, or the socket failed (and is replaced).
enum Outcome {
    Refused(FirewallError),
    Broken(FirewallError),
}

impl Outcome {
    fn into_error(self) -> FirewallError {
        match self {
            Outcome::Refused(e) | Outcome::Broken(e) => e,
        }
    }
}

fn broken(what: impl Into<String>) -> impl FnOnce(io::Error) -> Outcome {
    move |source| {
        Outcome::Broken(FirewallError::Netlink {
            what: what.into(),
            source,
        })
    }
}

/// Sends the batch and reads answers up to the ack of its last message (blocking).
fn apply(sock: &NfSocket, table: &str, changes: &[ElementChange]) -> Result<(), Outcome> {
    // Distinct numbers on a shared socket: answers to an earlier batch are told apart.
    static SEQ: AtomicU32 = AtomicU32::new(1);
    let span = u32::try_from(changes.len() + 2).unwrap_or(u32::MAX);
    let batch = wire::encode_batch(table, changes, SEQ.fetch_add(span, Ordering::Relaxed));
    let Some(ack) = batch.ack_seq() else {
        return Ok(());
    };
    let mut buf = vec![0u8; 16 * 1024];
    sock.drain(&mut buf);
    sock.send(&batch.bytes).map_err(broken(format!(
        "sending a batch of {} bytes",
        batch.bytes.len()
    )))?;
    loop {
        let n = sock.recv(&mut buf, true).map_err(|source| {
            // Only failures are answered besides the final ack, so a full buffer means some.
            let what = if source.raw_os_error() == Some(libc::ENOBUFS) {
                "reading the kernel's answers: too many failures to hold; nothing was applied"
            } else {
                "waiting for the kernel's answer to the batch (dropped unanswered?)"
            };
            broken(what)(source)
        })?;
        for reply in wire::parse_replies(&buf[..n]) {
            if !batch.owns(reply.seq) {
                continue;
            }
            // Failures come first, in batch order, and abort the whole batch.
            if reply.error != 0 {
                let source = io::Error::from_raw_os_error(reply.error.saturating_neg());
                return Err(Outcome::Refused(
                    match batch.blame(reply.seq, reply.offset) {
                        Some(index) => FirewallError::SetElement {
                            table: table.to_string(),
                            change: changes[index].clone(),
                            index,
                            source,
                        },
                        None => FirewallError::Netlink {
                            what: format!("the kernel refused the batch for inet {table}"),
                            source,
                        },
                    },
                ));
            }
            if reply.seq == ack {
                debug!(table, changes = changes.len(), "set elements changed");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().expect("v4"))
    }

    #[tokio::test]
    async fn bad_names_and_no_changes_never_reach_the_kernel() {
        let nowhere = Some(Path::new("/nonexistent/shibafu-netns"));
        let add = [ElementChange::add("a4", v4("10.0.0.1"))];
        let long = "x".repeat(256);
        for (table, set) in [("", "a4"), (long.as_str(), "a4"), ("t", ""), ("t", "a\0")] {
            let c = [ElementChange::add(set, v4("10.0.0.1"))];
            let err = change_elements(nowhere, table, &c)
                .await
                .expect_err("bad name");
            assert!(matches!(err, FirewallError::InvalidName { .. }), "{err}");
        }
        change_elements(nowhere, "t", &[])
            .await
            .expect("nothing to do");
        let err = change_elements(nowhere, "t", &add)
            .await
            .expect_err("no namespace");
        assert!(
            err.to_string().contains("/nonexistent/shibafu-netns"),
            "{err}"
        );
    }

    #[test]
    fn a_refusal_says_which_change_and_what_to_check() {
        let err = FirewallError::SetElement {
            table: "shibafu-policy".into(),
            change: ElementChange::delete("a4", v4("10.0.0.9")),
            index: 3,
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        let text = err.to_string();
        for part in [
            "delete element 10.0.0.9",
            "inet shibafu-policy a4",
            "#3",
            "set exist",
        ] {
            assert!(text.contains(part), "{part:?} missing in {text}");
        }
    }
}
