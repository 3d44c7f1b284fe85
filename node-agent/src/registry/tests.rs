//! The registry's rules, without an actor: stage, commit, abort, remove, and the file.

use super::*;
use crate::testing::{endpoint, workload, TempDir};

fn api() -> Entry {
    workload("api", &[endpoint("backend", "api", "node1", "172.22.0.2")])
}

#[test]
fn staged_workloads_are_on_disk_but_not_announced_until_committed() {
    let dir = TempDir::new("reg-stage");
    let mut reg = Registry::load(&dir.0).expect("load");
    reg.stage(api());
    assert!(reg.get("api").is_none(), "staged is not committed");
    assert!(reg.effective().contains_key("api"));
    let write = reg.book_write("api").expect("record");
    reg.file().write(write).expect("write");
    let again = Registry::load(&dir.0).expect("reload");
    assert!(
        again.get("api").is_some(),
        "a crash mid-attach still finds the workload on restart"
    );
    let (old, new) = reg.commit("api").expect("staged");
    assert_eq!((old, new), (None, api()));
    assert_eq!(reg.endpoints().count(), 1);
    assert!(reg.commit("api").is_none(), "nothing staged any more");
}

#[test]
fn an_abort_keeps_the_committed_workload_as_it_was() {
    let dir = TempDir::new("reg-abort");
    let mut reg = Registry::load(&dir.0).expect("load");
    reg.stage(api());
    reg.commit("api");
    let mut more = api();
    more.interfaces.push(Iface {
        ifname: "eth1".into(),
        endpoint: endpoint("frontend", "api", "node1", "172.21.0.2"),
    });
    reg.stage(more.clone());
    assert_eq!(reg.effective().get("api"), Some(&more));
    assert_eq!(reg.abort("api"), Some(more));
    assert_eq!(reg.effective().get("api"), Some(&api()));
    assert_eq!(reg.get("api"), Some(&api()));
}

#[test]
fn removal_takes_one_network_or_all_and_unknown_names_are_refused() {
    let dir = TempDir::new("reg-remove");
    let mut reg = Registry::load(&dir.0).expect("load");
    let two = workload(
        "api",
        &[
            endpoint("backend", "api", "node1", "172.22.0.2"),
            endpoint("frontend", "api", "node1", "172.21.0.2"),
        ],
    );
    reg.stage(two.clone());
    reg.commit("api");
    assert!(matches!(
        reg.remove("nope", None),
        Err(RegistryError::Unknown(_))
    ));
    assert!(matches!(
        reg.remove("api", Some("other")),
        Err(RegistryError::Unknown(_))
    ));
    let r = reg.remove("api", Some("frontend")).expect("one");
    assert_eq!(r.before, two);
    assert_eq!(r.gone.len(), 1);
    assert_eq!(reg.get("api").map(|e| e.interfaces.len()), Some(1));
    reg.remove("api", None).expect("rest");
    assert!(reg.workloads().is_empty());
}
