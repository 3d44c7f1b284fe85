//! What a CNI runtime is configured with: network configuration lists (conflists) and the
//! shibafu plugin's entry in them, and the plugin directory a [`PluginDir`] sets up as CNI_PATH.
//!
//! Plugins are found by `type` in CNI_PATH: a temporary directory where `shibafu` and
//! `shibafu-cni` link to the built `shibafu-cni` (the CLI is also called `shibafu`, so the
//! plugin is installed under its type name as a real deployment would; `shibafu-cni` is the
//! other name it answers to), then `/usr/lib/cni` (containernetworking-plugins).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::{bin_dir, unique_name, Lab};

/// Where Debian installs the reference plugins.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// The names the built `shibafu-cni` is installed under in a [`PluginDir`].
pub const SHIBAFU_TYPES: [&str; 2] = ["shibafu", "shibafu-cni"];

/// The network namespace of NODE in `lab` (`sf-<lab>-<node>`), where its agent runs.
pub fn node_netns(lab: &Lab, node: &str) -> String {
    format!("sf-{}-{node}", lab.name())
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

/// The versions the test runtime speaks (as libcni 1.2 does).
pub const RUNTIME_VERSIONS: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A conflist `name` at cniVersion 1.0.0 of `plugins`.
pub fn conflist(name: &str, plugins: Vec<Value>) -> Value {
    conflist_at("1.0.0", &[], name, plugins)
}

/// A conflist `name` of `plugins` with `cniVersion` `version` and, when `versions` is not
/// empty, `cniVersions` `versions` (spec 1.1.0: every version the list supports).
pub fn conflist_at(version: &str, versions: &[&str], name: &str, plugins: Vec<Value>) -> Value {
    let mut list = json!({"cniVersion": version, "name": name, "plugins": plugins});
    if !versions.is_empty() {
        list["cniVersions"] = json!(versions);
    }
    list
}

/// The version a runtime selects for `conflist`, as spec 1.1.0 says ("version
/// considerations"): the highest of `cniVersion` and `cniVersions` that it speaks
/// ([`RUNTIME_VERSIONS`]); `None` when it speaks none of them.
pub fn selected_version(conflist: &Value) -> Option<String> {
    let listed = conflist["cniVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let offered = listed.iter().chain([&conflist["cniVersion"]]);
    let numbers = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    offered
        .filter_map(Value::as_str)
        .filter(|v| RUNTIME_VERSIONS.contains(v))
        .max_by_key(|v| numbers(v))
        .map(str::to_string)
}

/// A temporary plugin directory ahead of [`REFERENCE_DIR`] in CNI_PATH; removed on drop.
#[derive(Debug)]
pub struct PluginDir {
    own: PathBuf,
}

impl PluginDir {
    /// A fresh directory with the built `shibafu-cni` linked as each of [`SHIBAFU_TYPES`] (only
    /// when built, so the reference plugins run without it).
    pub fn new() -> PluginDir {
        let own = std::env::temp_dir().join(unique_name("sf-cnibin"));
        std::fs::create_dir_all(&own).expect("mkdir plugin dir");
        let built = bin_dir().join("shibafu-cni");
        if built.is_file() {
            for name in SHIBAFU_TYPES {
                std::os::unix::fs::symlink(&built, own.join(name)).expect("link shibafu-cni");
            }
        }
        PluginDir { own }
    }

    /// The directories searched, in order.
    pub fn dirs(&self) -> [&Path; 2] {
        [&self.own, Path::new(REFERENCE_DIR)]
    }

    /// `CNI_PATH`.
    pub fn cni_path(&self) -> String {
        let dirs: Vec<String> = self
            .dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        dirs.join(":")
    }

    /// The plugin of type `kind`: the first `kind` in CNI_PATH; panics when there is none.
    pub fn find(&self, kind: &str) -> PathBuf {
        let found = self
            .dirs()
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.exists());
        found.unwrap_or_else(|| {
            panic!(
                "no CNI plugin {kind:?} in {} (shibafu-cni built?)",
                self.cni_path()
            )
        })
    }

    /// A PATH without `ip6tables`: a directory of links to `iptables`, its save and restore,
    /// then /usr/bin and /bin (see [`crate::cni::Runtime::without_ip6tables`]).
    pub fn path_without_ip6tables(&self) -> String {
        let dir = self.own.join("path");
        std::fs::create_dir_all(&dir).expect("mkdir PATH dir");
        for tool in ["iptables", "iptables-save", "iptables-restore"] {
            let real = ["/usr/sbin", "/sbin", "/usr/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool));
            let link = dir.join(tool);
            if let Some(real) = real.into_iter().find(|p| p.exists() && !link.exists()) {
                std::os::unix::fs::symlink(real, link).expect("link iptables");
            }
        }
        format!("{}:/usr/bin:/bin", dir.display())
    }
}

impl Default for PluginDir {
    fn default() -> PluginDir {
        PluginDir::new()
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.own);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_selects_the_highest_version_of_cni_version_and_cni_versions() {
        let plain = conflist("a", vec![]);
        assert_eq!(selected_version(&plain).as_deref(), Some("1.0.0"));
        let both = conflist_at("1.0.0", &["0.4.0", "1.1.0", "1.0.0"], "b", vec![]);
        assert_eq!(both["cniVersions"], json!(["0.4.0", "1.1.0", "1.0.0"]));
        assert_eq!(selected_version(&both).as_deref(), Some("1.1.0"));
        let future = conflist_at("1.0.0", &["2.0.0", "0.10.0"], "c", vec![]);
        assert_eq!(selected_version(&future).as_deref(), Some("1.0.0"));
        let unknown = conflist_at("9.9.9", &[], "d", vec![]);
        assert_eq!(selected_version(&unknown), None);
    }
}
