//! The runtime's environment (`CNI_*` variables), read and checked without side effects.

use std::collections::BTreeMap;

use crate::error::{CniError, INVALID_ENV};

/// The CNI operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Is the plugin ready?
    Status,
    /// Remove attachments the runtime no longer knows.
    Gc,
    /// Supported versions.
    Version,
}

/// The `CNI_*` variables of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`.
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
    /// `CNI_ARGS`, as `KEY=VALUE` pairs.
    pub args: BTreeMap<String, String>,
    /// `TRACEPARENT`: the runtime's trace, continued by the call.
    pub traceparent: Option<String>,
}

impl CniEnv {
    /// Reads the variables through `get` (the process environment in the binary).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<CniEnv, CniError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some("VERSION") => Command::Version,
            Some(other) => {
                return Err(CniError::new(
                    INVALID_ENV,
                    format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK, STATUS, GC or VERSION"),
                ))
            }
            None => return Err(CniError::new(INVALID_ENV, "CNI_COMMAND is not set")),
        };
        let env = CniEnv {
            command,
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: parse_args(get("CNI_ARGS").as_deref().unwrap_or(""))?,
            traceparent: get("TRACEPARENT"),
        };
        if let Some(id) = &env.container_id {
            check_container_id(id)?;
        }
        if let Some(ifname) = &env.ifname {
            check_ifname(ifname)?;
        }
        Ok(env)
    }

    /// `CNI_CONTAINERID`, required by ADD, DEL and CHECK.
    pub fn container_id(&self) -> Result<&str, CniError> {
        required(&self.container_id, "CNI_CONTAINERID")
    }

    /// `CNI_IFNAME`, required by ADD, DEL and CHECK.
    pub fn ifname(&self) -> Result<&str, CniError> {
        required(&self.ifname, "CNI_IFNAME")
    }

    /// `CNI_NETNS`, required by ADD and CHECK.
    pub fn netns(&self) -> Result<&str, CniError> {
        required(&self.netns, "CNI_NETNS")
    }
}

fn required<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, CniError> {
    v.as_deref()
        .ok_or_else(|| CniError::new(INVALID_ENV, format!("{name} is not set")))
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
fn parse_args(text: &str) -> Result<BTreeMap<String, String>, CniError> {
    text.split(';')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::new(
                INVALID_ENV,
                format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
            )),
        })
        .collect()
}

/// The spec's container id: letters, digits, `_`, `.` and `-`, starting with a letter or digit.
fn check_container_id(id: &str) -> Result<(), CniError> {
    if shibafu_overlay::api::valid_container_id(id) {
        Ok(())
    } else {
        Err(CniError::new(
            INVALID_ENV,
            format!("CNI_CONTAINERID {id:?}: only letters, digits, '_', '.' and '-'"),
        ))
    }
}

/// An interface name the kernel takes: 1-15 bytes, no `/`, `:` or whitespace, not `.`/`..`.
fn check_ifname(name: &str) -> Result<(), CniError> {
    if !shibafu_overlay::plan::valid_ifname(name) {
        Err(CniError::new(
            INVALID_ENV,
            format!("CNI_IFNAME {name:?}: 1-15 characters without '/', ':' or spaces"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::read(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_the_variables() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAME=web-0;IgnoreUnknown=1"),
        ])
        .expect("env");
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id().expect("id"), "abc-1");
        assert_eq!(e.args["K8S_POD_NAME"], "web-0");
        assert_eq!(e.args.len(), 2);
    }

    #[test]
    fn bad_environments_are_code_4() {
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[("CNI_COMMAND", "ATTACH")],
            &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "a/b")],
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_IFNAME", "averyveryverylongname"),
            ],
            &[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth 0")],
            &[("CNI_COMMAND", "ADD"), ("CNI_ARGS", "novalue")],
        ];
        for case in cases {
            let e = env(case).expect_err("refused");
            assert_eq!(e.code, INVALID_ENV, "{case:?}: {e:?}");
        }
        let e = env(&[("CNI_COMMAND", "DEL")]).expect("del");
        assert_eq!(e.ifname().expect_err("missing").code, INVALID_ENV);
        assert!(e.netns().expect_err("missing").msg.contains("CNI_NETNS"));
    }
}
