//! Established TCP connections to a local port, counted from the kernel's socket tables
//! (`/proc/<task>/net/tcp` and `tcp6`, see proc(5)) of the calling thread's network namespace.
//!
//! Reading those tables walks the kernel's TCP hash table, which namespaces share unless
//! `net.ipv4.tcp_child_ehash_entries` gave them their own: milliseconds per read on a large
//! host, whatever the namespace holds. So a count first reads the namespace's TCP counters
//! (`/proc/<task>/net/snmp`, constant time) and walks the tables only when they moved since
//! the last count, or every [`REFRESH_ROUNDS`] rounds.

use std::io;

/// `st` of an established socket in the tables.
const ESTABLISHED: &str = "01";

/// Counts taken from the counters alone before the tables are read again anyway (a socket that
/// went from established to close-wait moves no counter the fingerprint holds).
pub const REFRESH_ROUNDS: u32 = 10;

/// The TCP counters of a namespace that move whenever a connection is opened, reset or closed:
/// ActiveOpens, PassiveOpens, EstabResets, CurrEstab of `/proc/net/snmp`.
pub type Fingerprint = [u64; 4];

/// A connection count and what the namespace's counters were when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Established connections to the port.
    pub connections: u32,
    fingerprint: Option<Fingerprint>,
    rounds: u32,
}

impl Tally {
    /// A count with no counters behind it (the next count reads the tables).
    pub fn counted(connections: u32) -> Tally {
        Tally {
            connections,
            fingerprint: None,
            rounds: 0,
        }
    }
}

/// The fingerprint in the text of /proc/net/snmp, if it has the `Tcp:` lines.
pub fn fingerprint(snmp: &str) -> Option<Fingerprint> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let names: Vec<&str> = tcp.next()?.split_whitespace().collect();
    let values: Vec<&str> = tcp.next()?.split_whitespace().collect();
    let field = |name: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    Some([
        field("ActiveOpens")?,
        field("PassiveOpens")?,
        field("EstabResets")?,
        field("CurrEstab")?,
    ])
}

/// The established connections to local `port` in the calling thread's namespace, reusing
/// `last` when the namespace's counters have not moved since (see the module documentation).
pub fn count_here(port: u16, last: Option<Tally>) -> io::Result<Tally> {
    let now = fingerprint(&std::fs::read_to_string("/proc/thread-self/net/snmp")?);
    if let Some(last) = last {
        if now.is_some() && last.fingerprint == now && last.rounds + 1 < REFRESH_ROUNDS {
            return Ok(Tally {
                rounds: last.rounds + 1,
                ..last
            });
        }
    }
    Ok(Tally {
        connections: count_established_here(port)?,
        fingerprint: now,
        rounds: 0,
    })
}

/// The sockets of `table` (the text of /proc/net/tcp or tcp6) that are established with local
/// port `port`. The header and malformed lines are skipped.
pub fn count_established(table: &str, port: u16) -> u32 {
    let count = table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let local_port = u16::from_str_radix(hex_port, 16).ok()?;
            (state == ESTABLISHED && local_port == port).then_some(())
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The established connections to local `port` in the network namespace of the calling
/// thread (IPv4 and IPv6 tables; a host without IPv6 has no tcp6 table).
///
/// It reads `/proc/thread-self/net/`: `/proc/net` (that is `/proc/self/net`) shows the
/// namespace of the process's main thread, not of a thread that entered another one.
pub fn count_established_here(port: u16) -> io::Result<u32> {
    let mut total = 0u32;
    for (file, required) in [("tcp", true), ("tcp6", false)] {
        match std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
            Ok(table) => total = total.saturating_add(count_established(&table, port)),
            Err(e) if !required && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0200160A:1F90 0300160A:D431 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0200160A:1F90 0400160A:D432 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0200160A:1F90 0500160A:D433 06 00000000:00000000 03:00000F8E 00000000     0        0 0 3 0000000000000000
   4: 0200160A:D431 0300160A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1004 1 0000000000000000 20 4 30 10 -1
   5: garbage
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000200160A:1F90 0000000000000000FFFF00000600160A:C001 01 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn the_fingerprint_takes_the_counters_that_move_with_connections() {
        let snmp = "Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs
Tcp: 1 200 120000 -1 485 369 97 46 3 11763
Udp: InDatagrams
Udp: 5
";
        assert_eq!(fingerprint(snmp), Some([485, 369, 46, 3]));
        assert_eq!(fingerprint("Ip: 1\nIp: 2\n"), None);
        assert_eq!(Tally::counted(4).connections, 4);
    }

    #[test]
    fn counts_established_sockets_on_the_local_port_only() {
        assert_eq!(
            count_established(TCP, 8080),
            2,
            "not listening, TIME_WAIT or outgoing"
        );
        assert_eq!(
            count_established(TCP, 54321),
            1,
            "the outgoing one by its own port"
        );
        assert_eq!(count_established(TCP6, 8080), 1, "a v4-mapped connection");
        assert_eq!(count_established("", 8080), 0);
    }
}
