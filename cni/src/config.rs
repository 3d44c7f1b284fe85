//! The network configuration on stdin, checked, and what it and `CNI_ARGS` say about the
//! attachment (its DNS name, service, port, weight, aliases).

use serde::Deserialize;
use serde_json::Value;
use shibafu_overlay::api::CniRef;
use shibafu_overlay::model::validate_name;

use crate::env::CniEnv;
use crate::error::{
    CniError, DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV, UNSUPPORTED_FIELD,
};

/// The CNI versions spoken.
pub const SUPPORTED: [&str; 2] = ["1.0.0", "1.1.0"];

/// The agent socket when the configuration names none (the agent's default `--api-socket`).
pub const DEFAULT_AGENT: &str = "/run/shibafu/agent.sock";

/// The plugin's network configuration (fields of other plugins and runtimes are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct NetConf {
    /// Version of the spec the runtime speaks.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// `cniVersions` (spec 1.1.0): every version the configuration list supports. The runtime
    /// selects the highest it speaks and passes it as `cniVersion`; read here only to say so
    /// when the selected version is not one shibafu speaks.
    #[serde(default, rename = "cniVersions")]
    pub cni_versions: Option<Vec<String>>,
    /// `shibafu` (the plugin installed as `<cni-bin-dir>/shibafu`), or `shibafu-cni` when it
    /// is installed under its own name.
    #[serde(rename = "type")]
    pub kind: String,
    /// The shibafu network.
    #[serde(default)]
    pub network: Option<String>,
    /// The agent's unix socket.
    #[serde(default)]
    pub agent: Option<String>,
    /// `args`: `args.shibafu` describes the attachment.
    #[serde(default)]
    pub args: Option<Args>,
    /// The result of the plugins before (ADD) or of the whole list (CHECK, DEL).
    #[serde(default, rename = "prevResult")]
    pub prev_result: Option<Value>,
    /// An IPAM section: refused, the agent allocates addresses cluster-wide itself.
    #[serde(default)]
    pub ipam: Option<Value>,
    /// GC: the attachments the runtime still uses.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

/// `args` of the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Args {
    /// shibafu's part.
    #[serde(default)]
    pub shibafu: Option<ShibafuArgs>,
}

/// `args.shibafu`: the attachment's DNS name, service membership and aliases.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShibafuArgs {
    /// DNS name.
    #[serde(default)]
    pub name: Option<String>,
    /// Service to join.
    #[serde(default)]
    pub service: Option<String>,
    /// Service port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Weight (1-1000).
    #[serde(default)]
    pub weight: Option<u32>,
    /// Extra DNS names.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, Deserialize)]
pub struct ValidAttachment {
    /// Container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

impl From<ValidAttachment> for CniRef {
    fn from(v: ValidAttachment) -> CniRef {
        CniRef {
            container_id: v.container_id,
            ifname: v.ifname,
        }
    }
}

/// The version of a configuration that may not even parse (for the error result).
pub fn version_of(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .unwrap_or_else(|| SUPPORTED[1].to_string())
}

impl NetConf {
    /// Parses and checks the configuration: JSON (else 6), a spoken version (else 1),
    /// `type: shibafu` (else 7).
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let raw: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(DECODE_FAILURE, "the network configuration is not JSON")
                .details(e.to_string())
        })?;
        let conf: NetConf = serde_json::from_value(raw)
            .map_err(|e| CniError::new(INVALID_CONFIG, format!("network configuration: {e}")))?;
        if !SUPPORTED.contains(&conf.cni_version.as_str()) {
            return Err(conf.unsupported_version());
        }
        if let Some(ipam) = &conf.ipam {
            return Err(CniError::new(
                UNSUPPORTED_FIELD,
                format!(
                    "unsupported field \"ipam\": {ipam}: shibafu allocates addresses \
                     cluster-wide itself; remove it"
                ),
            ));
        }
        if conf.kind != "shibafu" && conf.kind != "shibafu-cni" {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!("type is {:?}; this plugin is \"shibafu\"", conf.kind),
            ));
        }
        Ok(conf)
    }

    /// Code 1 for a `cniVersion` not spoken, saying which of `cniVersions` the runtime could
    /// have selected instead.
    fn unsupported_version(&self) -> CniError {
        let e = CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {:?} is not supported; use one of {}",
                self.cni_version,
                SUPPORTED.join(", ")
            ),
        );
        let offered = self.cni_versions.as_deref().unwrap_or_default();
        let listed: Vec<&str> = SUPPORTED
            .into_iter()
            .filter(|v| offered.iter().any(|o| o == v))
            .collect();
        match listed.last() {
            Some(v) => e.details(format!(
                "the configuration's cniVersions lists {}: a runtime that speaks {v} selects it \
                 (the highest version both support); this runtime selected {}",
                listed.join(", "),
                self.cni_version
            )),
            None => e,
        }
    }

    /// The shibafu network (required).
    pub fn network(&self) -> Result<&str, CniError> {
        match self.network.as_deref() {
            Some(n) if !n.is_empty() => Ok(n),
            _ => Err(CniError::new(
                INVALID_CONFIG,
                "\"network\" is missing: name the shibafu network (see `shibafu network ls`)",
            )),
        }
    }

    /// The agent's socket.
    pub fn agent(&self) -> &str {
        self.agent.as_deref().unwrap_or(DEFAULT_AGENT)
    }

    /// `args.shibafu`, or the defaults.
    pub fn shibafu_args(&self) -> ShibafuArgs {
        self.args
            .as_ref()
            .and_then(|a| a.shibafu.clone())
            .unwrap_or_default()
    }
}

/// What the attachment is called and joins: `args.shibafu` first, then `CNI_ARGS`
/// (`SHIBAFU_NAME`, `SHIBAFU_SERVICE`, `SHIBAFU_PORT`, `SHIBAFU_WEIGHT`, `K8S_POD_NAME`), then
/// the container id (its first 12 characters when it is a 64-digit hex id).
pub fn attachment(conf: &NetConf, env: &CniEnv, id: &str) -> Result<ShibafuArgs, CniError> {
    let mut a = conf.shibafu_args();
    let arg = |k: &str| env.args.get(k).filter(|v| !v.is_empty()).cloned();
    let from_env = a.name.is_none();
    a.name = a
        .name
        .or_else(|| arg("SHIBAFU_NAME"))
        .or_else(|| arg("K8S_POD_NAME"))
        .or_else(|| Some(default_name(id)));
    a.service = a.service.or_else(|| arg("SHIBAFU_SERVICE"));
    if a.port.is_none() {
        a.port = number(arg("SHIBAFU_PORT"), "SHIBAFU_PORT")?;
    }
    if a.weight.is_none() {
        a.weight = number(arg("SHIBAFU_WEIGHT"), "SHIBAFU_WEIGHT")?;
    }
    let code = if from_env {
        INVALID_ENV
    } else {
        INVALID_CONFIG
    };
    let name = a.name.as_deref().unwrap_or_default();
    validate_name(name).map_err(|e| {
        CniError::new(code, format!("attachment name {name:?}: {e}"))
            .details("give a DNS label as args.shibafu.name or CNI_ARGS SHIBAFU_NAME")
    })?;
    Ok(a)
}

fn number<T: std::str::FromStr>(v: Option<String>, key: &str) -> Result<Option<T>, CniError> {
    v.map(|s| {
        s.parse()
            .map_err(|_| CniError::new(INVALID_ENV, format!("CNI_ARGS {key}={s:?}: not a number")))
    })
    .transpose()
}

/// A container id as a DNS name: lowercased; a 64-digit hex id shortened to 12, as Docker shows.
fn default_name(id: &str) -> String {
    let id = id.to_ascii_lowercase();
    if id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        id[..12].to_string()
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::error::UNSUPPORTED_FIELD;

    fn conf(text: &str) -> Result<NetConf, CniError> {
        NetConf::parse(text.as_bytes())
    }

    fn env(args: &str) -> CniEnv {
        let map: BTreeMap<&str, String> = [
            ("CNI_COMMAND", "ADD".to_string()),
            ("CNI_ARGS", args.to_string()),
        ]
        .into();
        CniEnv::read(|k| map.get(k).cloned()).expect("env")
    }

    #[test]
    fn each_bad_configuration_has_its_code() {
        let code = |t: &str| conf(t).expect_err(t).code;
        assert_eq!(code("not json"), DECODE_FAILURE);
        assert_eq!(code(r#"{"type":"shibafu"}"#), INVALID_CONFIG);
        assert_eq!(
            code(r#"{"cniVersion":"0.3.1","type":"shibafu"}"#),
            INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","type":"bridge"}"#),
            INVALID_CONFIG
        );
        let ipam = r#"{"cniVersion":"1.0.0","type":"shibafu","ipam":{"type":"host-local"}}"#;
        let e = conf(ipam).expect_err("ipam");
        assert_eq!(e.code, UNSUPPORTED_FIELD);
        let names_it = e.msg.contains("\"ipam\"") && e.msg.contains(r#"{"type":"host-local"}"#);
        assert!(names_it, "code 2 names the key and its value: {}", e.msg);
        let bad_args = r#"{"cniVersion":"1.0.0","type":"shibafu","args":{"shibafu":{"nmae":"x"}}}"#;
        assert_eq!(code(bad_args), INVALID_CONFIG);
        let c = conf(r#"{"cniVersion":"1.1.0","type":"shibafu","runtimeConfig":{}}"#).expect("ok");
        assert_eq!(c.network().expect_err("no network").code, INVALID_CONFIG);
        assert_eq!(c.agent(), DEFAULT_AGENT);
        assert_eq!(version_of(b"garbage"), "1.1.0");
    }

    #[test]
    fn cni_versions_is_the_runtimes_choice_and_a_hint_when_it_chose_badly() {
        let both =
            r#"{"cniVersion":"1.1.0","cniVersions":["0.4.0","1.0.0","1.1.0"],"type":"shibafu"}"#;
        assert_eq!(conf(both).expect("selected 1.1.0").cni_version, "1.1.0");
        let old =
            r#"{"cniVersion":"0.4.0","cniVersions":["1.1.0","0.4.0","1.0.0"],"type":"shibafu"}"#;
        let e = conf(old).expect_err("0.4.0 selected");
        assert_eq!(e.code, INCOMPATIBLE_VERSION);
        let hint = e.details.contains("lists 1.0.0, 1.1.0") && e.details.contains("speaks 1.1.0");
        assert!(hint, "{e:?}");
        let none = r#"{"cniVersion":"0.4.0","cniVersions":["0.3.1","0.4.0"],"type":"shibafu"}"#;
        assert_eq!(conf(none).expect_err("no common version").details, "");
        let bad = r#"{"cniVersion":"1.1.0","cniVersions":"1.1.0","type":"shibafu"}"#;
        assert_eq!(conf(bad).expect_err("not a list").code, INVALID_CONFIG);
    }

    #[test]
    fn the_name_comes_from_args_then_cni_args_then_the_id() {
        let plain = conf(r#"{"cniVersion":"1.0.0","type":"shibafu","network":"n"}"#).expect("c");
        let id = "0123456789abcdef".repeat(4);
        let a = attachment(&plain, &env(""), &id).expect("id");
        assert_eq!(a.name.as_deref(), Some("0123456789ab"));
        let a = attachment(&plain, &env("K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=x"), &id);
        assert_eq!(a.expect("pod").name.as_deref(), Some("web-0"));
        let env2 = env("K8S_POD_NAME=web-0;SHIBAFU_NAME=api;SHIBAFU_SERVICE=api;SHIBAFU_PORT=80");
        let a = attachment(&plain, &env2, &id).expect("shibafu args");
        assert_eq!((a.name.as_deref(), a.port), (Some("api"), Some(80)));
        let named = conf(
            r#"{"cniVersion":"1.0.0","type":"shibafu","network":"n","args":{"shibafu":{"name":"db","weight":3}}}"#,
        )
        .expect("c");
        let a = attachment(&named, &env2, &id).expect("config args");
        assert_eq!((a.name.as_deref(), a.weight), (Some("db"), Some(3)));
        let e = attachment(&plain, &env("SHIBAFU_PORT=http"), &id).expect_err("port");
        assert_eq!(e.code, INVALID_ENV);
        let e = attachment(&plain, &env("K8S_POD_NAME=web.0"), &id).expect_err("not a label");
        assert_eq!(e.code, INVALID_ENV);
    }
}
