//! A small CNI runtime, as libcni drives plugins, for black-box tests of `shibafu-cni` (and of
//! the reference plugins side by side): a [`Runtime`] runs a plugin list (conflist) for one
//! [`Attachment`] inside a lab node's namespace, chaining results as `prevResult` and caching
//! the ADD result for CHECK and DEL. Each call is a [`crate::cni_call::invoke`]; plugins come
//! from a [`crate::cni_conf::PluginDir`].

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::cni_call::{invoke, CniCall};
use crate::cni_conf::{conflist, node_netns, selected_version, shibafu_plugin, PluginDir};
use crate::{unique_name, Lab, NetnsGuard};

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
        Attachment::at(&ns.path().display().to_string())
    }

    /// An attachment of the namespace file `netns` (`/run/netns/x`, `/proc/PID/ns/net`) as
    /// `eth0`, with a fresh 64-hex-digit container id.
    pub fn at(netns: &str) -> Attachment {
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
            netns: netns.to_string(),
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

/// A CNI runtime for one conflist on one lab node. Its plugin directory goes on drop.
#[derive(Debug)]
pub struct Runtime {
    netns: String,
    plugins: PluginDir,
    conflist: Value,
    cache: Mutex<HashMap<String, Value>>,
    path: Option<(String, String)>,
    extra_env: Vec<(String, String)>,
}

impl Runtime {
    /// A runtime running `conflist` (`{"cniVersion","name","plugins":[...]}`) on NODE of `lab`.
    pub fn new(lab: &Lab, node: &str, conflist: Value) -> Runtime {
        Runtime {
            netns: node_netns(lab, node),
            plugins: PluginDir::new(),
            conflist,
            cache: Mutex::new(HashMap::new()),
            path: None,
            extra_env: Vec::new(),
        }
    }

    /// A runtime with shibafu alone (conflist `sf`) on NETWORK via NODE's agent.
    pub fn shibafu(lab: &Lab, node: &str, network: &str) -> Runtime {
        let list = conflist("sf", vec![shibafu_plugin(lab, node, network)]);
        Runtime::new(lab, node, list)
    }

    /// The same runtime giving plugin `kind` a PATH without `ip6tables` (only `iptables`, its
    /// save and restore, then /usr/bin): portmap 1.1.1's CHECK looks for its chain in
    /// ip6tables too whenever ip6tables works, and fails for an IPv4-only container
    /// (containernetworking/plugins#819); without ip6tables it checks IPv4 only. (The firewall
    /// plugin, in contrast, needs ip6tables.)
    pub fn without_ip6tables(mut self, kind: &str) -> Runtime {
        self.path = Some((kind.to_string(), self.plugins.path_without_ip6tables()));
        self
    }

    /// The same runtime passing `key=value` to every plugin call besides the CNI variables
    /// (`TRACEPARENT`, `OTEL_*`, ...), as a runtime's own environment would be.
    pub fn with_env(mut self, key: &str, value: &str) -> Runtime {
        self.extra_env.push((key.to_string(), value.to_string()));
        self
    }

    /// `CNI_PATH`.
    pub fn cni_path(&self) -> String {
        self.plugins.cni_path()
    }

    /// Runs the plugin of type `kind` raw: exactly `env` and `stdin` (plus [`Self::with_env`]'s
    /// variables and [`Self::without_ip6tables`]'s PATH).
    pub fn raw(&self, kind: &str, env: &[(String, String)], stdin: &[u8]) -> CniCall {
        let plugin = self.plugins.find(kind);
        let mut env = env.to_vec();
        env.extend(self.extra_env.iter().cloned());
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

    /// The version selected for the conflist ([`selected_version`]); the conflist's own
    /// `cniVersion` when the runtime speaks none of them, so the plugins say what is wrong.
    pub fn cni_version(&self) -> Value {
        selected_version(&self.conflist)
            .map(Value::from)
            .unwrap_or_else(|| self.conflist["cniVersion"].clone())
    }

    /// The config one plugin gets, as libcni builds it: the plugin's object with the list's
    /// name and the selected cniVersion, `runtimeConfig` for the capabilities it declares,
    /// `prevResult`.
    fn config(&self, plugin: &Value, att: Option<&Attachment>, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = json!(self.name());
        conf["cniVersion"] = self.cni_version();
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
