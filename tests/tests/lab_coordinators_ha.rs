//! Lab tier: no request is lost while coordinators stop and start. A client keeps sending
//! writes and reads (`network create`, `network ls`, `network rm`) through the CLI's list of
//! both coordinators while each one in turn is stopped (SIGTERM) and started again: every
//! command succeeds, and every change acknowledged is in the cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shibafu_tests::{root_or_skip, text, Lab};

/// Iterations at most (each: create, list, remove).
const MAX_ROUNDS: usize = 300;

#[test]
fn stopping_any_coordinator_loses_no_request() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up_with_coordinators(1, 2);
    let done = AtomicBool::new(false);
    let (rounds, failures) = std::thread::scope(|s| {
        let client = s.spawn(|| {
            let (mut rounds, mut failures) = (0, Vec::new());
            while !done.load(Ordering::SeqCst) && rounds < MAX_ROUNDS {
                let name = format!("n{rounds}");
                for args in [
                    vec!["network", "create", name.as_str(), "172.30.0.0/24"],
                    vec!["network", "ls"],
                    vec!["network", "rm", name.as_str()],
                ] {
                    let out = lab.cli("node1", &args);
                    if !out.status.success() {
                        failures.push(format!("{args:?}: {}", text(&out.stderr)));
                    }
                }
                rounds += 1;
            }
            (rounds, failures)
        });
        for c in [
            "coordinator1",
            "coordinator2",
            "coordinator1",
            "coordinator2",
        ] {
            std::thread::sleep(Duration::from_millis(1500));
            lab.lab_ok(&["stop", c]);
            std::thread::sleep(Duration::from_millis(1500));
            lab.lab_ok(&["start", c]);
        }
        std::thread::sleep(Duration::from_millis(500));
        done.store(true, Ordering::SeqCst);
        client.join().expect("client")
    });
    assert!(rounds >= 10, "the client made only {rounds} rounds");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed:\n{}",
        failures.len(),
        rounds * 3,
        failures.join("\n")
    );
    let left = lab.cli_ok("node1", &["network", "ls"]);
    assert!(
        !left.lines().any(|l| l.starts_with('n')),
        "every acknowledged removal holds: {left}"
    );
}
