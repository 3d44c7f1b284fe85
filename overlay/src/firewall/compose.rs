//! Composing shibafu's one ruleset from the parts its owners contribute. Each contributor
//! replaces only its own part, so two owners can never overwrite each other's rules; the
//! firewall owner renders and applies the composition whenever it changes.

use super::FirewallSpec;

/// One contributor's part of the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Networks, links, isolation and NAT: from the dataplane owner, for the networks it builds.
    Networks(FirewallSpec),
}

/// The parts contributed so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Composer {
    networks: Option<FirewallSpec>,
}

impl Composer {
    /// No part yet.
    pub fn new() -> Composer {
        Composer::default()
    }

    /// Replaces the contributor's part; true when that changed anything.
    pub fn set(&mut self, part: Part) -> bool {
        match part {
            Part::Networks(spec) => {
                let changed = self.networks.as_ref() != Some(&spec);
                self.networks = Some(spec);
                changed
            }
        }
    }

    /// The ruleset to apply; `None` until the networks part has arrived (an agent that has not
    /// read the cluster yet must not replace the rules a previous run left).
    pub fn compose(&self) -> Option<FirewallSpec> {
        self.networks.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Network;

    #[test]
    fn nothing_is_applied_before_the_networks_part_and_unchanged_parts_are_no_change() {
        let mut c = Composer::new();
        assert_eq!(c.compose(), None);
        let nets = [Network::new("a", "10.1.0.0/24".parse().expect("net"), 4096)];
        let spec = FirewallSpec::from_model(&nets, &[], None).expect("spec");
        assert!(c.set(Part::Networks(spec.clone())));
        assert!(!c.set(Part::Networks(spec.clone())));
        assert_eq!(c.compose(), Some(spec));
        assert!(c.set(Part::Networks(FirewallSpec::default())));
        assert_eq!(c.compose(), Some(FirewallSpec::default()));
    }
}
