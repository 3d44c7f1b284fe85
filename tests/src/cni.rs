//! A small CNI runtime, as libcni drives plugins, for black-box tests of `shibafu-cni` (and of
//! the reference plugins side by side): a [`Runtime`] runs a plugin list (conflist) for one
//! [`Attachment`] inside a lab node's namespace, chaining results as `prevResult`, caching the
//! ADD result for CHECK and DEL, and killing any call that takes longer than [`CALL_TIMEOUT`].
//!
//! Plugins are found by `type` in CNI_PATH: a temporary directory where `shibafu` links to the
//! built `shibafu-cni` (the CLI is also called `shibafu`, so the plugin is installed under its
//! type name as a real deployment would), then `/usr/lib/cni` (containernetworking-plugins).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{bin_dir, unique_name, Lab, NetnsGuard};

/// Where Debian installs the reference plugins.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// How long one plugin call may take before it is killed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One container attachment as a runtime names it, plus what the runtime passes along.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: the namespace file.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`, ...), given as `runtimeConfig` to the plugins
    /// that declare them.
    pub capability_args: serde_json::Map<String, Value>,
}

impl Attachment {
    /// An attachment of the namespace `ns` as `eth0`, with a fresh 64-hex-digit container id.
    pub fn of(ns: &NetnsGuard) -> Attachment {
        let seed = unique_name("");
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut id = String::new();
        for i in 0..4u64 {
            for b in seed.bytes().chain(i.to_le_bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            id.push_str(&format!("{h:016x}"));
        }
        Attachment {
            container_id: id,
            netns: ns.path().display().to_string(),
            ifname: "eth0".to_string(),
            args: Vec::new(),
            capability_args: serde_json::Map::new(),
        }
    }

    /// Adds a `CNI_ARGS` pair.
    pub fn arg(mut self, key: &str, value: &str) -> Attachment {
        self.args.push((key.to_string(), value.to_string()));
        self
    }

    /// The CNI_* environment of a call with `command` for this attachment.
    pub fn env(&self, command: &str, cni_path: &str) -> Vec<(String, String)> {
        let args: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", &self.netns),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_ARGS", &args.join(";")),
            ("CNI_PATH", cni_path),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// What one plugin call did.
#[derive(Debug, Clone)]
pub struct CniCall {
    /// What ran: plugin, namespace, environment and stdin (for failure messages).
    pub invocation: String,
    /// Exit status (`None` when it was killed after [`CALL_TIMEOUT`]).
    pub status: Option<ExitStatus>,
    /// Stdout as text.
    pub stdout: String,
    /// Stdout parsed as JSON (`Value::Null` when it is not JSON).
    pub json: Value,
    /// Stderr as text.
    pub stderr: String,
}

impl CniCall {
    /// Exited 0.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The error code of an error result (`"code"` of stdout's JSON).
    pub fn code(&self) -> Option<u64> {
        self.json["code"].as_u64()
    }

    /// Everything about the call, for assertion messages.
    pub fn show(&self) -> String {
        format!(
            "{}\n  status: {:?}\n  stdout: {}\n  stderr: {}",
            self.invocation,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Panics (showing the call) unless it exited 0 without a panic; returns its JSON.
    pub fn expect_ok(&self, what: &str) -> &Value {
        assert!(self.ok(), "{what} should succeed: {}", self.show());
        self.expect_no_panic(what);
        &self.json
    }

    /// Panics unless the call failed the CNI way: non-zero exit, an error JSON with `code`
    /// `code`, a `msg` and `cniVersion`, no panic or backtrace on stderr.
    pub fn expect_error(&self, code: u64, what: &str) {
        let shape = self.status.is_some()
            && !self.ok()
            && self.code() == Some(code)
            && self.json["msg"].as_str().is_some_and(|m| !m.is_empty())
            && self.json["cniVersion"].is_string();
        assert!(shape, "{what}: expected error code {code}: {}", self.show());
        self.expect_no_panic(what);
    }

    /// Panics when stdout or stderr shows a Rust panic or backtrace.
    pub fn expect_no_panic(&self, what: &str) {
        let panicked = [&self.stderr, &self.stdout]
            .iter()
            .any(|t| t.contains("panicked") || t.contains("RUST_BACKTRACE"));
        assert!(!panicked, "{what}: the plugin panicked: {}", self.show());
    }
}

/// Runs `plugin` with exactly the CNI variables `env` (the test's own CNI_* are dropped) and
/// `stdin`, inside the namespace `netns` (`ip netns exec`, as a runtime on that host would),
/// killing it after [`CALL_TIMEOUT`].
pub fn invoke(netns: &str, plugin: &Path, env: &[(String, String)], stdin: &[u8]) -> CniCall {
    let base = std::env::temp_dir().join(unique_name("sf-cnicall"));
    let file = |ext: &str| base.with_extension(ext);
    std::fs::write(file("in"), stdin).expect("write plugin stdin");
    // An absolute `ip`: `env` may change PATH, which the lookup of the program would use.
    let ip = ["/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let mut cmd = Command::new(ip.unwrap_or("ip"));
    cmd.args(["netns", "exec", netns]).arg(plugin);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CNI_")) {
        cmd.env_remove(k);
    }
    let open = |ext: &str| File::create(file(ext)).expect("create plugin output file");
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(File::open(file("in")).expect("open plugin stdin"))
        .stdout(open("out"))
        .stderr(open("err"));
    let env_text: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let invocation = format!(
        "{} in {netns}\n  env: {}\n  stdin: {}",
        plugin.display(),
        env_text.join(" "),
        String::from_utf8_lossy(stdin)
    );
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + CALL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let read = |ext: &str| {
        let t = String::from_utf8_lossy(&std::fs::read(file(ext)).unwrap_or_default()).into();
        let _ = std::fs::remove_file(file(ext));
        t
    };
    let (stdout, stderr): (String, String) = (read("out"), read("err"));
    let _ = std::fs::remove_file(file("in"));
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    CniCall {
        invocation,
        status,
        stdout,
        json,
        stderr,
    }
}

/// A CNI runtime for one conflist on one lab node. Its plugin directory goes on drop.
#[derive(Debug)]
pub struct Runtime {
    netns: String,
    dirs: Vec<PathBuf>,
    conflist: Value,
    cache: Mutex<HashMap<String, Value>>,
    path: Option<(String, String)>,
}

impl Runtime {
    /// A runtime running `conflist` (`{"cniVersion","name","plugins":[...]}`) on NODE of `lab`.
    pub fn new(lab: &Lab, node: &str, conflist: Value) -> Runtime {
        let own = std::env::temp_dir().join(unique_name("sf-cnibin"));
        std::fs::create_dir_all(&own).expect("mkdir plugin dir");
        // Linked only when built, so the reference plugins run without it.
        let built = bin_dir().join("shibafu-cni");
        if built.is_file() {
            std::os::unix::fs::symlink(&built, own.join("shibafu")).expect("link shibafu-cni");
        }
        Runtime {
            netns: format!("sf-{}-{node}", lab.name()),
            dirs: vec![own, PathBuf::from(REFERENCE_DIR)],
            conflist,
            cache: Mutex::new(HashMap::new()),
            path: None,
        }
    }

    /// The same runtime giving plugin `kind` a PATH without `ip6tables` (only `iptables`, its
    /// save and restore, then /usr/bin): portmap 1.1.1's CHECK looks for its chain in
    /// ip6tables too whenever ip6tables works, and fails for an IPv4-only container
    /// (containernetworking/plugins#819); without ip6tables it checks IPv4 only. (The firewall
    /// plugin, in contrast, needs ip6tables.)
    pub fn without_ip6tables(mut self, kind: &str) -> Runtime {
        let dir = self.dirs[0].join("path");
        std::fs::create_dir_all(&dir).expect("mkdir PATH dir");
        for tool in ["iptables", "iptables-save", "iptables-restore"] {
            let real = ["/usr/sbin", "/sbin", "/usr/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool));
            if let Some(real) = real.into_iter().find(|p| p.exists()) {
                std::os::unix::fs::symlink(real, dir.join(tool)).expect("link iptables");
            }
        }
        self.path = Some((kind.to_string(), format!("{}:/usr/bin:/bin", dir.display())));
        self
    }

    /// `CNI_PATH`.
    pub fn cni_path(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        dirs.join(":")
    }

    /// Runs the plugin of type `kind` raw: exactly `env` and `stdin`.
    pub fn raw(&self, kind: &str, env: &[(String, String)], stdin: &[u8]) -> CniCall {
        let plugin = self.dirs.iter().map(|d| d.join(kind)).find(|p| p.exists());
        let plugin = plugin.unwrap_or_else(|| {
            panic!(
                "no CNI plugin {kind:?} in {} (shibafu-cni built?)",
                self.cni_path()
            )
        });
        let mut env = env.to_vec();
        if let Some((_, p)) = self.path.as_ref().filter(|(k, _)| k == kind) {
            env.push(("PATH".to_string(), p.clone()));
        }
        invoke(&self.netns, &plugin, &env, stdin)
    }

    fn name(&self) -> String {
        self.conflist["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn plugins(&self) -> Vec<Value> {
        self.conflist["plugins"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn key(&self, att: &Attachment) -> String {
        format!("{}/{}/{}", self.name(), att.container_id, att.ifname)
    }

    /// The cached ADD result of `att`.
    pub fn cached(&self, att: &Attachment) -> Option<Value> {
        self.cache
            .lock()
            .expect("cache lock")
            .get(&self.key(att))
            .cloned()
    }

    /// The config one plugin gets, as libcni builds it: the plugin's object with the list's
    /// name and cniVersion, `runtimeConfig` for the capabilities it declares, `prevResult`.
    fn config(&self, plugin: &Value, att: Option<&Attachment>, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = json!(self.name());
        conf["cniVersion"] = self.conflist["cniVersion"].clone();
        let caps = plugin["capabilities"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let rc: serde_json::Map<String, Value> = caps
            .iter()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .filter_map(|(c, _)| Some((c.clone(), att?.capability_args.get(c)?.clone())))
            .collect();
        if !rc.is_empty() {
            conf["runtimeConfig"] = Value::Object(rc);
        }
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        conf
    }

    /// Runs `command` through the list (reversed for DEL) for `att`; each plugin gets the
    /// previous plugin's result (ADD) or the cached result (CHECK, DEL). The first failing
    /// call, else the last.
    fn through(&self, command: &str, att: &Attachment) -> CniCall {
        let mut prev = if command == "ADD" {
            None
        } else {
            self.cached(att)
        };
        let mut plugins = self.plugins();
        if command == "DEL" {
            plugins.reverse();
        }
        let mut last = None;
        for p in &plugins {
            let stdin =
                serde_json::to_vec(&self.config(p, Some(att), prev.as_ref())).expect("json");
            let kind = p["type"].as_str().unwrap_or_default();
            let call = self.raw(kind, &att.env(command, &self.cni_path()), &stdin);
            if !call.ok() {
                return call;
            }
            if command == "ADD" {
                prev = Some(call.json.clone());
            }
            last = Some(call);
        }
        let mut cache = self.cache.lock().expect("cache lock");
        match (command, prev) {
            ("ADD", Some(result)) => drop(cache.insert(self.key(att), result)),
            ("DEL", _) => drop(cache.remove(&self.key(att))),
            _ => {}
        }
        last.expect("a conflist with plugins")
    }

    /// ADD; the final result is cached on success.
    pub fn add(&self, att: &Attachment) -> CniCall {
        self.through("ADD", att)
    }

    /// CHECK with the cached result.
    pub fn check(&self, att: &Attachment) -> CniCall {
        self.through("CHECK", att)
    }

    /// DEL in reverse order with the cached result; the cache entry goes when all succeeded.
    pub fn del(&self, att: &Attachment) -> CniCall {
        self.through("DEL", att)
    }

    /// Runs `command` (STATUS, GC, VERSION) on every plugin, `extra` merged into each config.
    fn each(&self, command: &str, extra: &Value) -> Vec<CniCall> {
        let env = vec![
            ("CNI_COMMAND".to_string(), command.to_string()),
            ("CNI_PATH".to_string(), self.cni_path()),
        ];
        let plugins = self.plugins();
        plugins
            .iter()
            .map(|p| {
                let mut conf = self.config(p, None, None);
                for (k, v) in extra.as_object().into_iter().flatten() {
                    conf[k] = v.clone();
                }
                if command == "VERSION" {
                    conf = json!({"cniVersion": conf["cniVersion"]});
                }
                let kind = p["type"].as_str().unwrap_or_default();
                self.raw(kind, &env, &serde_json::to_vec(&conf).expect("json"))
            })
            .collect()
    }

    /// STATUS of every plugin, in order.
    pub fn status(&self) -> Vec<CniCall> {
        self.each("STATUS", &json!({}))
    }

    /// VERSION of every plugin, in order.
    pub fn version(&self) -> Vec<CniCall> {
        self.each("VERSION", &json!({}))
    }

    /// GC of every plugin with `cni.dev/valid-attachments` = `valid`; cached results of this
    /// list not in `valid` are dropped, as libcni does.
    pub fn gc(&self, valid: &[&Attachment]) -> Vec<CniCall> {
        let list: Vec<Value> = valid
            .iter()
            .map(|a| json!({"containerID": a.container_id, "ifname": a.ifname}))
            .collect();
        let calls = self.each("GC", &json!({"cni.dev/valid-attachments": list}));
        let keep: Vec<String> = valid.iter().map(|a| self.key(a)).collect();
        let prefix = format!("{}/", self.name());
        let mut cache = self.cache.lock().expect("cache lock");
        cache.retain(|k, _| !k.starts_with(&prefix) || keep.contains(k));
        calls
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dirs[0]);
    }
}

/// The socket of NODE's agent in `lab`.
pub fn agent_socket(lab: &Lab, node: &str) -> String {
    let sock = lab.state_dir().join("nodes").join(node).join("agent.sock");
    sock.display().to_string()
}

/// The shibafu plugin config (one conflist entry) for `network` via NODE's agent.
pub fn shibafu_plugin(lab: &Lab, node: &str, network: &str) -> Value {
    json!({"type": "shibafu", "network": network, "agent": agent_socket(lab, node)})
}

/// A conflist `name` at cniVersion 1.0.0 of `plugins`.
pub fn conflist(name: &str, plugins: Vec<Value>) -> Value {
    json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins})
}

/// The address (without prefix length) of the `i`th IP of a CNI result.
pub fn result_ip(result: &Value, i: usize) -> String {
    let addr = result["ips"][i]["address"].as_str().unwrap_or_default();
    addr.split('/').next().unwrap_or_default().to_string()
}

/// The gateway of the first IP of a CNI result.
pub fn result_gateway(result: &Value) -> String {
    result["ips"][0]["gateway"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `shibafu ps --all --format json` on NODE: the entries made by CNI (with a `cni` id).
pub fn cni_entries(lab: &Lab, node: &str) -> Vec<Value> {
    let out = lab.cli_ok(node, &["ps", "--all", "--format", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("ps: {e}: {out}"));
    let all = v.as_array().cloned().unwrap_or_default();
    all.into_iter().filter(|c| c["cni"].is_string()).collect()
}

/// The container ids of the CNI entries of `ps` on NODE, sorted.
pub fn cni_ids(lab: &Lab, node: &str) -> Vec<String> {
    let entries = cni_entries(lab, node);
    let mut ids: Vec<String> = entries
        .iter()
        .filter_map(|c| c["cni"].as_str())
        .map(String::from)
        .collect();
    ids.sort();
    ids
}

/// The `endpoints` of `shibafu network inspect NETWORK`.
pub fn endpoints(lab: &Lab, network: &str) -> Vec<Value> {
    let out = lab.cli_ok("node1", &["network", "inspect", network]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect: {e}: {out}"));
    v["endpoints"].as_array().cloned().unwrap_or_default()
}

/// What the standard lifecycle did under one runtime.
#[derive(Debug)]
pub struct Lifecycle {
    /// The first ADD.
    pub add: CniCall,
    /// CHECK right after.
    pub check: CniCall,
    /// CHECK after `ip route add 198.51.100.0/24 via GATEWAY` in the container.
    pub check_extra_route: CniCall,
    /// A second ADD of the same (container id, ifname) without DEL.
    pub add_again: CniCall,
    /// CHECK after `ip link del IFNAME` in the container.
    pub check_link_gone: CniCall,
    /// DEL.
    pub del: CniCall,
    /// DEL again.
    pub del_again: CniCall,
}

/// The standard lifecycle of `att` (namespace `ns`) under `rt`, after its ADD `add`: CHECK,
/// CHECK with a route added by hand, a second ADD, CHECK after the container interface was
/// deleted by hand, DEL, DEL again.
pub fn lifecycle_after(rt: &Runtime, att: &Attachment, ns: &NetnsGuard, add: CniCall) -> Lifecycle {
    add.expect_ok("ADD");
    let gw = result_gateway(&add.json);
    let check = rt.check(att);
    ns.ip(&["route", "add", "198.51.100.0/24", "via", &gw]);
    let check_extra_route = rt.check(att);
    let add_again = rt.add(att);
    ns.ip(&["link", "del", &att.ifname]);
    let check_link_gone = rt.check(att);
    let del = rt.del(att);
    let del_again = rt.del(att);
    Lifecycle {
        add,
        check,
        check_extra_route,
        add_again,
        check_link_gone,
        del,
        del_again,
    }
}
