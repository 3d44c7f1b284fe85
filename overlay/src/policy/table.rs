//! The policy table as data ([`Table`]: sets, named counters, chains of rule texts), the script
//! that loads it whole, and the script that turns one table into another touching only what
//! differs (pure). Both are one `nft -f` transaction: all or nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::firewall::ElementChange;

/// The table policies live in (family and name); shibafu's main table is `inet shibafu`.
pub const POLICY_TABLE: &str = "inet shibafu-policy";

/// What a set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SetKind {
    /// IPv4 addresses (hash).
    Addr4,
    /// IPv6 addresses (hash).
    Addr6,
    /// IPv4 prefixes (intervals).
    Net4,
    /// IPv6 prefixes (intervals).
    Net6,
}

impl SetKind {
    /// The body of `add set`.
    fn declaration(self) -> &'static str {
        match self {
            SetKind::Addr4 => "type ipv4_addr;",
            SetKind::Addr6 => "type ipv6_addr;",
            SetKind::Net4 => "type ipv4_addr; flags interval;",
            SetKind::Net6 => "type ipv6_addr; flags interval;",
        }
    }
}

/// A named set and its elements (as nft writes them). A name always has the same kind (the
/// compiler spells the kind into it), so a diff never has to change a set's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Its type.
    pub kind: SetKind,
    /// Its elements.
    pub elements: BTreeSet<String>,
}

/// A chain: its hook line (base chains) and its rules, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// `type filter hook forward priority filter - 10; policy accept;` for a base chain.
    pub hook: Option<String>,
    /// Rule texts.
    pub rules: Vec<String>,
}

/// The whole policy table of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Sets by name.
    pub sets: BTreeMap<String, Set>,
    /// Named counters.
    pub counters: BTreeSet<String>,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
}

/// The script that removes the policy table (valid whether it exists or not).
pub fn render_removal() -> String {
    format!("table {POLICY_TABLE} {{}}\ndelete table {POLICY_TABLE}\n")
}

/// The script that replaces the policy table with `table`; counters named in `kept` start
/// from those packet counts (what the table being replaced had counted).
pub fn render_full(table: &Table, kept: &BTreeMap<String, u64>) -> String {
    let mut s = render_removal();
    let _ = writeln!(s, "add table {POLICY_TABLE}");
    render_changes(&Table::default(), table, kept, &mut s);
    s
}

/// The script that turns `old` (what the kernel holds) into `new`: sets and elements added or
/// deleted one by one, chains whose rules differ flushed and refilled, unchanged chains,
/// counters and elements untouched. Counters `new` no longer names stay: deleting a kernel
/// object costs a commit several times that of a rule change, so they go later, off the path of
/// a change ([`render_counter_removal`]). Empty when nothing differs.
pub fn render_diff(old: &Table, new: &Table) -> String {
    let mut s = String::new();
    render_changes(old, new, &BTreeMap::new(), &mut s);
    s
}

fn render_changes(old: &Table, new: &Table, kept: &BTreeMap<String, u64>, s: &mut String) {
    let t = POLICY_TABLE;
    // New objects first, so the rules added below can name them.
    for (name, set) in &new.sets {
        match old.sets.get(name) {
            Some(o) => {
                elements(s, "delete", name, o.elements.difference(&set.elements));
                elements(s, "add", name, set.elements.difference(&o.elements));
            }
            None => {
                let _ = writeln!(s, "add set {t} {name} {{ {} }}", set.kind.declaration());
                elements(s, "add", name, set.elements.iter());
            }
        }
    }
    for name in new.counters.difference(&old.counters) {
        match kept.get(name) {
            Some(n) => writeln!(s, "add counter {t} {name} {{ packets {n} bytes 0 }}"),
            None => writeln!(s, "add counter {t} {name}"),
        }
        .ok();
    }
    for (name, chain) in &new.chains {
        if !old.chains.contains_key(name) {
            match &chain.hook {
                Some(h) => writeln!(s, "add chain {t} {name} {{ {h} }}"),
                None => writeln!(s, "add chain {t} {name}"),
            }
            .ok();
        }
    }
    for (name, chain) in &new.chains {
        match old.chains.get(name) {
            Some(o) if o.rules == chain.rules => continue,
            Some(_) => {
                let _ = writeln!(s, "flush chain {t} {name}");
            }
            None => {}
        }
        for r in &chain.rules {
            let _ = writeln!(s, "add rule {t} {name} {r}");
        }
    }
    // Then what goes: chains emptied before any is deleted (one may jump to another), and
    // sets and counters once no rule names them.
    let gone: Vec<&String> = old
        .chains
        .keys()
        .filter(|n| !new.chains.contains_key(*n))
        .collect();
    for name in &gone {
        let _ = writeln!(s, "flush chain {t} {name}");
    }
    for name in &gone {
        let _ = writeln!(s, "delete chain {t} {name}");
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        let _ = writeln!(s, "delete set {t} {name}");
    }
}

/// The script that deletes counters no rule names any more.
pub fn render_counter_removal<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names.into_iter().fold(String::new(), |mut s, name| {
        let _ = writeln!(s, "delete counter {POLICY_TABLE} {name}");
        s
    })
}

/// Does the kernel, holding `loaded`, already enforce `new`? (Counters `new` does not name may
/// linger until they are swept.)
pub fn holds(loaded: &Table, new: &Table) -> bool {
    loaded.sets == new.sets
        && loaded.chains == new.chains
        && new.counters.is_subset(&loaded.counters)
}

/// The difference from `old` to `new` as address changes alone, when that is all it is (same
/// sets and chains, no new counter; only elements of address sets differ): what can go to the
/// kernel over netlink without nft. Deletes come before adds.
pub fn element_changes(old: &Table, new: &Table) -> Option<Vec<ElementChange>> {
    if old.chains != new.chains
        || !new.counters.is_subset(&old.counters)
        || !old.sets.keys().eq(new.sets.keys())
    {
        return None;
    }
    let (mut deletes, mut adds) = (Vec::new(), Vec::new());
    for (name, n) in &new.sets {
        let o = old.sets.get(name)?;
        if o.elements == n.elements {
            continue;
        }
        if !matches!(n.kind, SetKind::Addr4 | SetKind::Addr6) {
            return None;
        }
        for e in o.elements.difference(&n.elements) {
            deletes.push(ElementChange::delete(
                name.clone(),
                e.parse::<IpAddr>().ok()?,
            ));
        }
        for e in n.elements.difference(&o.elements) {
            adds.push(ElementChange::add(name.clone(), e.parse::<IpAddr>().ok()?));
        }
    }
    deletes.extend(adds);
    Some(deletes)
}

/// `add element` / `delete element` of `items` (nothing when there are none).
pub(super) fn elements<'a>(
    s: &mut String,
    verb: &str,
    set: &str,
    items: impl Iterator<Item = &'a String>,
) {
    let items: Vec<&str> = items.map(String::as_str).collect();
    if !items.is_empty() {
        let _ = writeln!(
            s,
            "{verb} element {POLICY_TABLE} {set} {{ {} }}",
            items.join(", ")
        );
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
