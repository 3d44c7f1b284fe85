//! Which of this node's workloads are checked or counted, and how (pure): every endpoint that
//! names a service, with its own check or else its service's, and a connection count when the
//! service balances by least connections.

use std::collections::BTreeMap;
use std::time::Duration;

use shibafu_overlay::health::Target;
use shibafu_overlay::model::{HealthCheck, LbPolicy};
use shibafu_overlay::state::ClusterState;

use crate::registry::book::Entry;
use crate::registry::{self, LocalWorkloads};

/// An instance: (network, endpoint id), as health records are keyed.
pub type InstanceKey = (String, String);

/// How often instances without a check have their connections counted.
pub const COUNT_PERIOD: Duration = Duration::from_secs(1);

/// What is done to one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The service the instance belongs to.
    pub service: String,
    /// Where probes go (its PID is found when a command check first needs it).
    pub target: Target,
    /// Whether it is a container of this agent (only those can run command checks).
    pub container: bool,
    /// Its check: the endpoint's own, else its service's.
    pub check: Option<HealthCheck>,
    /// The port whose established connections are counted (least-connections services).
    pub count_port: Option<u16>,
}

impl Spec {
    /// Time between rounds: the check's interval, else [`COUNT_PERIOD`].
    pub fn period(&self) -> Duration {
        self.check
            .as_ref()
            .map_or(COUNT_PERIOD, |c| Duration::from_millis(c.interval_ms))
    }
}

/// Every instance among `local` that has a check or a count, given the services of `state`.
pub fn desired(state: &ClusterState, local: &LocalWorkloads) -> BTreeMap<InstanceKey, Spec> {
    let mut out = BTreeMap::new();
    for entry in local.values() {
        add_instances(state, entry, &mut out);
    }
    out
}

/// The instances of the workloads that differ between `old` and `new`: those they had before
/// and those they have now. Every other workload's instances are the same in both, so
/// [`desired`] of `new` is that of `old` without the first and with the second.
pub fn changed(
    state: &ClusterState,
    old: &LocalWorkloads,
    new: &LocalWorkloads,
) -> (BTreeMap<InstanceKey, Spec>, BTreeMap<InstanceKey, Spec>) {
    let (mut had, mut has) = (BTreeMap::new(), BTreeMap::new());
    for (before, after) in registry::changes(old, new) {
        if let Some(w) = before {
            add_instances(state, w, &mut had);
        }
        if let Some(w) = after {
            add_instances(state, w, &mut has);
        }
    }
    (had, has)
}

/// Adds the instances of one workload that have a check or a count to `out`.
fn add_instances(state: &ClusterState, entry: &Entry, out: &mut BTreeMap<InstanceKey, Spec>) {
    for e in entry.endpoints() {
        let Some(name) = &e.service else { continue };
        let service = state.services().get(&(e.network.clone(), name.clone()));
        let check = e
            .health
            .clone()
            .or_else(|| service.and_then(|s| s.health.clone()));
        let count_port = service
            .filter(|s| s.lb == LbPolicy::LeastConnections)
            .and_then(|s| e.port.or(s.port));
        if check.is_none() && count_port.is_none() {
            continue;
        }
        let target = Target {
            name: entry.name.clone(),
            addr: e.ipv4.into(),
            netns: entry.netns.clone(),
            pid: None,
        };
        let spec = Spec {
            service: name.clone(),
            target,
            container: entry.container,
            check,
            count_port,
        };
        out.insert((e.network.clone(), e.id.clone()), spec);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shibafu_overlay::model::{Object, Probe, Service};
    use shibafu_overlay::store::{ClusterChange, KeyValue, WatchEvent};

    use super::*;
    use crate::testing::{endpoint, network, state_with, workload};

    fn with_service(state: &ClusterState, s: &Service) -> ClusterState {
        let mut st = state.clone();
        st.apply(&ClusterChange::Events(vec![WatchEvent::Put(KeyValue {
            key: s.key().to_string(),
            value: serde_json::to_vec(s).expect("json"),
            create_revision: 50,
            mod_revision: 50,
            lease: 0,
        })]));
        st
    }

    #[test]
    fn instances_take_their_own_check_else_their_services_and_count_for_least_connections() {
        let st = state_with(&[network("f", "10.1.0.0/24", 4096)], &[]);
        let mut web = Service::new("f", "web");
        web.health = Some(HealthCheck::new(Probe::Tcp { port: 80 }));
        let mut db = Service::new("f", "db");
        db.lb = LbPolicy::LeastConnections;
        db.port = Some(5432);
        let st = with_service(&with_service(&st, &web), &db);
        let mut w1 = endpoint("f", "w1", "node1", "10.1.0.2");
        w1.service = Some("web".into());
        let mut w2 = endpoint("f", "w2", "node1", "10.1.0.3");
        w2.service = Some("web".into());
        w2.health = Some(HealthCheck::new(Probe::Http {
            port: 8080,
            path: "/ready".into(),
        }));
        let mut d1 = endpoint("f", "d1", "node1", "10.1.0.4");
        d1.service = Some("db".into());
        d1.port = Some(6432);
        let mut lone = endpoint("f", "lone", "node1", "10.1.0.5");
        lone.service = Some("nocheck".into());
        let plain = endpoint("f", "plain", "node1", "10.1.0.6");
        let local: LocalWorkloads = [w1, w2, d1, lone, plain]
            .iter()
            .map(|e| (e.id.clone(), workload(&e.id, std::slice::from_ref(e))))
            .collect();
        let want = desired(&st, &Arc::new(local));
        let keys: Vec<&str> = want.keys().map(|(_, id)| id.as_str()).collect();
        assert_eq!(
            keys,
            ["d1", "w1", "w2"],
            "no check and no count: not an instance to watch"
        );
        let key = |id: &str| ("f".to_string(), id.to_string());
        assert_eq!(want[&key("w1")].check, web.health);
        assert!(matches!(
            want[&key("w2")].check.as_ref().map(|c| &c.probe),
            Some(Probe::Http { port: 8080, .. })
        ));
        assert_eq!(want[&key("w1")].count_port, None);
        assert_eq!(
            want[&key("d1")].count_port,
            Some(6432),
            "the endpoint's own port"
        );
        assert_eq!(want[&key("d1")].period(), COUNT_PERIOD);
        assert_eq!(
            want[&key("w1")].target.addr.to_string(),
            "10.1.0.2",
            "probes go to the instance's address"
        );
    }

    #[test]
    fn the_changed_workloads_instances_take_the_plan_from_old_to_new() {
        let st = state_with(&[network("f", "10.1.0.0/24", 4096)], &[]);
        let mut web = Service::new("f", "web");
        web.health = Some(HealthCheck::new(Probe::Tcp { port: 80 }));
        let st = with_service(&st, &web);
        let entry = |id: &str, ip: &str, service: Option<&str>, port: Option<u16>| {
            let mut e = endpoint("f", id, "node1", ip);
            e.service = service.map(String::from);
            if let Some(port) = port {
                e.health = Some(HealthCheck::new(Probe::Tcp { port }));
            }
            (id.to_string(), workload(id, &[e]))
        };
        let old: LocalWorkloads = [
            entry("a", "10.1.0.2", Some("web"), None),
            entry("b", "10.1.0.3", Some("web"), None),
            entry("c", "10.1.0.4", None, None),
            entry("d", "10.1.0.5", Some("web"), None),
        ]
        .into_iter()
        .collect();
        let mut new = old.clone();
        new.remove("b");
        new.insert("c".into(), entry("c", "10.1.0.4", Some("web"), None).1);
        new.insert("d".into(), entry("d", "10.1.0.5", Some("web"), Some(81)).1);
        new.insert("e".into(), entry("e", "10.1.0.6", Some("web"), None).1);
        let (had, has) = changed(&st, &old, &new);
        let ids = |m: &BTreeMap<InstanceKey, Spec>| -> Vec<String> {
            m.keys().map(|(_, id)| id.clone()).collect()
        };
        assert_eq!(ids(&had), ["b", "d"], "a, unchanged, is not looked at");
        assert_eq!(ids(&has), ["c", "d", "e"]);
        let mut followed = desired(&st, &old);
        followed.retain(|k, _| !had.contains_key(k));
        followed.extend(has);
        assert_eq!(followed, desired(&st, &new));
    }
}
