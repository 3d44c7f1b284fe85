//! Lab tier: `--log-format json` on the agent and the coordinator. A lab's coordinator and its
//! node's agent are stopped and started again by hand, in their namespaces, with the command
//! lines the lab gave them plus `--log-format json`; every line they log is then one JSON object
//! with a timestamp, a level, a target and the event's fields, and an event inside a request
//! carries the request's span.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shibafu_tests::{exec_out, root_or_skip, unique_name, wait_until, Lab};

const POLL: Duration = Duration::from_millis(200);

/// A lab component run by this test with `--log-format json`, logging to a file of its own;
/// stopped (SIGTERM, then SIGKILL) and its directory removed on drop.
struct JsonLogged {
    child: Option<Child>,
    dir: PathBuf,
}

impl JsonLogged {
    /// Stops the lab's `component` and starts its command line again with `--log-format json`,
    /// inside its namespace.
    fn restart(lab: &Lab, component: &str) -> JsonLogged {
        let state = std::fs::read_to_string(lab.state_dir().join("lab.json")).expect("lab.json");
        let state: Value = serde_json::from_str(&state).expect("lab.json is JSON");
        let spec = &state["procs"][component];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let program = spec["program"].as_str().expect("program");
        let netns = spec["netns"].as_str().expect("netns");
        lab.lab_ok(&["stop", component]);
        let dir = std::env::temp_dir().join(unique_name("sflog"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = File::create(dir.join("log")).expect("log file");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{netns}"))
            .arg("--")
            .arg(program)
            .args(strings(&spec["args"]))
            .args(["--log-format", "json"])
            .env_remove("SHIBAFU_LOG_FORMAT")
            .env("SHIBAFU_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = cmd.spawn().expect("start the component");
        JsonLogged {
            child: Some(child),
            dir,
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Every line logged so far, each of which must be a JSON object.
    fn events(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| match serde_json::from_str::<Value>(l) {
                Ok(v) if v.is_object() => v,
                _ => panic!("not a JSON object: {l:?}"),
            })
            .collect()
    }

    /// The first event with message `message` whose fields pass `f`.
    fn event(&self, message: &str, f: impl Fn(&Value) -> bool) -> Option<Value> {
        self.events()
            .into_iter()
            .find(|e| e["fields"]["message"] == message && f(&e["fields"]))
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = exec_out(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        let exited = wait_until(Duration::from_secs(10), POLL, || {
            child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for JsonLogged {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every event has the fields a log collector reads.
fn well_formed(who: &str, events: &[Value]) {
    assert!(!events.is_empty(), "{who} logged nothing");
    for e in events {
        let ts = e["timestamp"].as_str().unwrap_or_default();
        assert!(
            ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.contains('T') && ts.ends_with('Z'),
            "{who}: timestamp: {e}"
        );
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&e["level"].as_str().unwrap_or("")),
            "{who}: level: {e}"
        );
        assert!(e["target"].is_string(), "{who}: target: {e}");
        assert!(
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{who}: message: {e}"
        );
    }
}

#[test]
fn agent_and_coordinator_log_json_objects_with_log_format_json() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(1);
    let mut coordinator = JsonLogged::restart(&lab, "coordinator1");
    assert!(
        wait_until(Duration::from_secs(20), POLL, || lab
            .cli("node1", &["network", "ls"])
            .status
            .success()),
        "the coordinator did not come back: {}",
        coordinator.text()
    );
    let mut agent = JsonLogged::restart(&lab, "node1");
    assert!(
        wait_until(Duration::from_secs(20), POLL, || lab
            .agent_get("node1", "/v1/status")
            .is_some()),
        "the agent did not come back: {}",
        agent.text()
    );
    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    assert!(
        wait_until(Duration::from_secs(20), POLL, || agent
            .event("firewall applied", |f| f["networks"] == 1)
            .is_some()),
        "the agent never logged the network's firewall: {}",
        agent.text()
    );

    let created = coordinator
        .event("network created", |f| f["network"] == "frontend")
        .unwrap_or_else(|| panic!("no \"network created\": {}", coordinator.text()));
    assert_eq!(created["level"], "INFO", "{created}");
    assert_eq!(created["fields"]["network"], "frontend", "{created}");
    assert_eq!(created["fields"]["subnet"], "172.21.0.0/24", "{created}");
    assert!(created["fields"]["vni"].is_u64(), "{created}");
    assert_eq!(created["span"]["name"], "create_network", "{created}");
    assert_eq!(created["span"]["network"], "frontend", "{created}");
    assert!(
        created["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("shibafu_coordinator")),
        "{created}"
    );
    let running = agent
        .event("agent running", |_| true)
        .unwrap_or_else(|| panic!("no \"agent running\": {}", agent.text()));
    assert_eq!(running["fields"]["node"], "node1", "{running}");

    agent.stop();
    coordinator.stop();
    assert!(
        agent.event("agent stopped", |_| true).is_some(),
        "{}",
        agent.text()
    );
    well_formed("agent", &agent.events());
    well_formed("coordinator", &coordinator.events());
    drop((agent, coordinator));
    lab.down();
}
