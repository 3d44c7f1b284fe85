//! The owner's table: where each container of this node stands, the owner's work in flight for
//! it, and the requests waiting for that work. Plain data; the actor drives it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use shibafu_overlay::api::{ApiError, ContainerInfo};
use shibafu_overlay::container::state::Status;
use tokio::sync::oneshot;

/// Where a container stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A `run` is setting it up; the name is taken.
    Starting,
    /// Recorded, but its process never started (an agent stopped in the middle of a run).
    Created,
    /// Running; the host pid of its PID 1.
    Running(i32),
    /// Exited with this code.
    Exited(i32),
}

impl From<Status> for Phase {
    fn from(s: Status) -> Phase {
        match s {
            Status::Created => Phase::Created,
            Status::Running(pid) => Phase::Running(pid),
            Status::Exited(code) => Phase::Exited(code),
        }
    }
}

/// The owner's work in flight for one container; at most one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Nothing.
    Idle,
    /// Detaching it from its networks and unpinning its namespace after it exited.
    Releasing,
    /// Removing it.
    Removing,
}

/// Where the answer to a waiting request goes.
pub type Reply = oneshot::Sender<Result<ContainerInfo, ApiError>>;

/// One container of this node.
#[derive(Debug)]
pub struct Container {
    /// Tells it apart from an earlier container of the same name: results of work started for
    /// that one are dropped.
    pub id: u64,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Its network namespace file.
    pub netns: PathBuf,
    /// Where it stands.
    pub phase: Phase,
    /// The owner's work in flight.
    pub work: Work,
    /// Its namespace file may still be pinned (false once released after its exit).
    pub pinned: bool,
    /// Stop requests, answered once it no longer runs and no work is in flight.
    pub stops: Vec<Reply>,
    /// Remove requests with the view each answers with (the container as it was when asked).
    pub removals: Vec<(Reply, ContainerInfo)>,
}

impl Container {
    /// True when it has exited and still holds networks (`attached`) or its namespace.
    pub fn needs_release(&self, attached: bool) -> bool {
        matches!(self.phase, Phase::Exited(_))
            && self.work == Work::Idle
            && (self.pinned || attached)
    }

    /// True when it does not run and no work is in flight for it.
    pub fn settled(&self) -> bool {
        !matches!(self.phase, Phase::Running(_)) && self.work == Work::Idle
    }
}

/// This node's containers by name.
#[derive(Debug, Default)]
pub struct Table {
    containers: BTreeMap<String, Container>,
    next_id: u64,
}

impl Table {
    /// Records a container with no work in flight; returns its id.
    pub fn insert(
        &mut self,
        name: &str,
        command: Vec<String>,
        netns: PathBuf,
        phase: Phase,
        pinned: bool,
    ) -> u64 {
        self.next_id += 1;
        self.containers.insert(
            name.to_string(),
            Container {
                id: self.next_id,
                command,
                netns,
                phase,
                work: Work::Idle,
                pinned,
                stops: Vec::new(),
                removals: Vec::new(),
            },
        );
        self.next_id
    }

    /// The container `name`.
    pub fn get(&self, name: &str) -> Option<&Container> {
        self.containers.get(name)
    }

    /// The container `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Container> {
        self.containers.get_mut(name)
    }

    /// The container `name` if it is still the one with `id`.
    pub fn current(&mut self, name: &str, id: u64) -> Option<&mut Container> {
        self.containers.get_mut(name).filter(|c| c.id == id)
    }

    /// Forgets a container.
    pub fn remove(&mut self, name: &str) -> Option<Container> {
        self.containers.remove(name)
    }

    /// Every container, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Container)> {
        self.containers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_of_an_earlier_container_of_the_same_name_are_dropped() {
        let mut t = Table::default();
        let old = t.insert("web", vec![], "/ns/web".into(), Phase::Exited(0), false);
        t.remove("web");
        let new = t.insert("web", vec![], "/ns/web".into(), Phase::Starting, true);
        assert_ne!(old, new);
        assert!(t.current("web", old).is_none());
        assert!(t.current("web", new).is_some());
    }

    #[test]
    fn exited_containers_are_released_once_and_stops_wait_for_it() {
        let mut t = Table::default();
        t.insert("job", vec![], "/ns/job".into(), Phase::Running(7), true);
        let c = t.get_mut("job").expect("job");
        assert!(!c.needs_release(true) && !c.settled());
        c.phase = Phase::Exited(3);
        assert!(c.needs_release(false), "its namespace is still pinned");
        c.work = Work::Releasing;
        assert!(!c.needs_release(true) && !c.settled());
        c.work = Work::Idle;
        c.pinned = false;
        assert!(c.settled());
        assert!(!c.needs_release(false), "released and not attached");
        assert!(c.needs_release(true), "still attached: release again");
    }
}
