//! [`Lab`]: a whole shibafu lab (etcd, coordinators, upstream DNS, N agents in namespaces) for
//! one test, brought up with the real `shibafu-lab` and torn down on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{bin, bin_dir, describe, exec_ok, exec_out, unique_name};

/// A running lab with a unique name; `shibafu-lab down` runs when it drops.
#[derive(Debug)]
pub struct Lab {
    name: String,
    nodes: usize,
    dir: PathBuf,
    down: bool,
}

impl Lab {
    /// Brings up a lab of `nodes` nodes (`node1`..`nodeN`); panics with the lab's output if it
    /// fails (a failed `up` has already removed what it made).
    pub fn up(nodes: usize) -> Lab {
        Lab::start(nodes, None, &[])
    }

    /// Brings up a plain lab (`--insecure`: HTTP, no certificates).
    pub fn up_insecure(nodes: usize) -> Lab {
        Lab::start(nodes, None, &["--insecure"])
    }

    /// Brings up a lab from a spec file.
    pub fn up_with_spec(nodes: usize, spec: &Path) -> Lab {
        Lab::start(nodes, Some(spec), &[])
    }

    /// Brings up a lab of `nodes` nodes and `coordinators` coordinators (`coordinator1`..).
    pub fn up_with_coordinators(nodes: usize, coordinators: usize) -> Lab {
        Lab::start(nodes, None, &["--coordinators", &coordinators.to_string()])
    }

    /// Brings up a lab of `nodes` nodes on an etcd cluster of `members` members
    /// (`etcd1`..`etcdN`).
    pub fn up_with_etcd_members(nodes: usize, members: usize) -> Lab {
        Lab::start(nodes, None, &["--etcd-members", &members.to_string()])
    }

    fn start(nodes: usize, spec: Option<&Path>, flags: &[&str]) -> Lab {
        let mut lab = Lab {
            name: unique_name("t"),
            nodes,
            dir: PathBuf::new(),
            down: false,
        };
        let mut cmd = lab.lab_cmd(&["up", "--nodes", &nodes.to_string()]);
        cmd.args(flags);
        if let Some(s) = spec {
            cmd.arg(s);
        }
        exec_ok(&mut cmd);
        lab.dir = PathBuf::from(lab.status()["dir"].as_str().unwrap_or_default());
        lab
    }

    /// The lab name (namespaces are `sf-<name>-*`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Node names, `node1`..`nodeN`.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("node{i}")).collect()
    }

    /// `shibafu-lab --name <lab> ARGS...` (not run yet).
    pub fn lab_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("shibafu-lab"));
        c.env("SHIBAFU_BIN_DIR", bin_dir())
            .arg("--name")
            .arg(&self.name)
            .args(args);
        c
    }

    /// Runs a `shibafu-lab` subcommand that must succeed (`stop node3`, `partition node2`, ...).
    pub fn lab_ok(&self, args: &[&str]) -> String {
        exec_ok(&mut self.lab_cmd(args))
    }

    /// `shibafu-lab exec NODE -- ARGS...` (not run yet).
    pub fn exec_cmd(&self, node: &str, args: &[&str]) -> Command {
        let mut c = self.lab_cmd(&["exec", node, "--"]);
        c.args(args);
        c
    }

    /// Runs ARGS inside NODE and returns the full output, whatever the exit status.
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        exec_out(&mut self.exec_cmd(node, args))
    }

    /// Runs ARGS inside NODE; it must succeed; returns stdout.
    pub fn exec_ok(&self, node: &str, args: &[&str]) -> String {
        exec_ok(&mut self.exec_cmd(node, args))
    }

    /// Runs the `shibafu` CLI inside NODE; it must succeed; returns stdout.
    pub fn cli_ok(&self, node: &str, args: &[&str]) -> String {
        let mut full = vec!["shibafu"];
        full.extend_from_slice(args);
        self.exec_ok(node, &full)
    }

    /// Starts container NAME on NODE on NETWORK, sleeping an hour (`shibafu run -d`); it must
    /// succeed.
    pub fn run_idle(&self, node: &str, name: &str, network: &str) {
        let args = ["run", "-d", "--name", name, "--network", network, "--"];
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["sleep", "3600"]);
        self.cli_ok(node, &full);
    }

    /// Runs the `shibafu` CLI inside NODE and returns the full output, whatever the status.
    pub fn cli(&self, node: &str, args: &[&str]) -> Output {
        let mut full = vec!["shibafu"];
        full.extend_from_slice(args);
        self.exec(node, &full)
    }

    /// GET `path` from NODE's agent API (curl over its unix socket, inside the node); the
    /// parsed JSON body, or `None` if the agent does not answer.
    pub fn agent_get(&self, node: &str, path: &str) -> Option<serde_json::Value> {
        let socket = self.dir.join("nodes").join(node).join("agent.sock");
        let url = format!("http://agent{path}");
        let sock = socket.display().to_string();
        let out = self.exec(
            node,
            &[
                "curl",
                "-sf",
                "--max-time",
                "3",
                "--unix-socket",
                &sock,
                &url,
            ],
        );
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `shibafu-lab status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let mut cmd = self.lab_cmd(&["status", "--json"]);
        let out = exec_out(&mut cmd);
        assert!(
            out.status.success(),
            "lab status failed: {}",
            describe(&cmd, &out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("lab status is not JSON ({e}): {}", describe(&cmd, &out)))
    }

    /// One component of `shibafu-lab status --json` (`node1`, `etcd`, `coordinator2`, ...).
    pub fn component(&self, name: &str) -> serde_json::Value {
        let status = self.status();
        status["components"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no component {name} in {status}"))
    }

    /// The endpoints of `network` as node1's `network inspect` lists them: name -> IPv4 address
    /// (empty when the network cannot be read).
    pub fn endpoint_addresses(&self, network: &str) -> std::collections::BTreeMap<String, String> {
        let out = self.cli("node1", &["network", "inspect", network]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let eps = v["endpoints"].as_array().cloned().unwrap_or_default();
        eps.iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (s("name"), s("ipv4"))
            })
            .collect()
    }

    /// The control host's address (etcd, the upstream DNS), from the etcd URL the lab reports.
    pub fn ctl_addr(&self) -> std::net::IpAddr {
        let status = self.status();
        let url = status["etcd_url"].as_str().unwrap_or_default();
        url.split("://")
            .last()
            .unwrap_or_default()
            .split(':')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no control address in {status}"))
    }

    /// Restarts component NAME (a node's agent, a coordinator) with the variables of `env` (the
    /// lab passes them on).
    pub fn restart_with_env(&self, name: &str, env: &[(&str, &str)]) {
        self.lab_ok(&["stop", name]);
        let mut start = self.lab_cmd(&["start", name]);
        start.envs(env.iter().copied());
        let out = exec_out(&mut start);
        assert!(out.status.success(), "{}", describe(&start, &out));
    }

    /// The lab's state directory (as `status` reported it after `up`).
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Tears the lab down now (also what drop does); panics if `down` reports a problem.
    pub fn down(mut self) {
        self.down = true;
        exec_ok(&mut self.lab_cmd(&["down"]));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.down {
            return;
        }
        let mut cmd = self.lab_cmd(&["down"]);
        let out = exec_out(&mut cmd);
        if !out.status.success() {
            eprintln!("Lab {}: down failed: {}", self.name, describe(&cmd, &out));
        }
    }
}
