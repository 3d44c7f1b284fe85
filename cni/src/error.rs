//! CNI error results: the spec's codes (1-99 as the spec defines them, 100 and up shibafu's own)
//! and how agent answers map onto them.

use serde_json::{json, Value};
use shibafu_overlay::api::{ClientError, ErrorKind};

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variables.
pub const INVALID_ENV: u32 = 4;
/// I/O failure (reading stdin).
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content.
pub const DECODE_FAILURE: u32 = 6;
/// Invalid network configuration.
pub const INVALID_CONFIG: u32 = 7;
/// Try again later (the agent is not reachable or still starting).
pub const TRY_AGAIN: u32 = 11;
/// STATUS: the plugin is not available (agent or etcd not ready).
pub const NOT_AVAILABLE: u32 = 50;
/// The agent refused or failed the attach (name taken, no free address, ...).
pub const AGENT_REFUSED: u32 = 100;
/// ADD of a (container id, interface) that is attached already.
pub const ALREADY_ATTACHED: u32 = 101;
/// CHECK found the attachment not as it should be.
pub const CHECK_FAILED: u32 = 102;
/// A bug: the plugin panicked.
pub const INTERNAL: u32 = 999;

/// A CNI error result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The code.
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// More detail (may be empty).
    pub details: String,
}

impl CniError {
    /// An error with a code and message.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with details.
    pub fn details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The error as the JSON the runtime reads from stdout.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({"cniVersion": cni_version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }

    /// An agent failure during `what`: unreachable or unavailable is "try again", bad input an
    /// invalid configuration, an existing attachment 101, anything else the agent's refusal.
    pub fn from_agent(what: &str, e: ClientError) -> CniError {
        let code = match &e {
            ClientError::Unreachable { .. }
            | ClientError::Timeout { .. }
            | ClientError::NoneReachable { .. } => TRY_AGAIN,
            ClientError::Api(a) => match a.kind {
                ErrorKind::Unavailable => TRY_AGAIN,
                ErrorKind::Invalid | ErrorKind::NotFound => INVALID_CONFIG,
                ErrorKind::Attached => ALREADY_ATTACHED,
                _ => AGENT_REFUSED,
            },
            _ => AGENT_REFUSED,
        };
        CniError::new(code, format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::api::ApiError;

    use super::*;

    #[test]
    fn json_shape_follows_the_spec() {
        let e = CniError::new(INVALID_ENV, "CNI_IFNAME is missing");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 4, "msg": "CNI_IFNAME is missing"})
        );
        let e = e.details("set it");
        assert_eq!(e.to_json("1.1.0")["details"], "set it");
    }

    #[test]
    fn agent_failures_map_to_codes() {
        let api = |kind| ClientError::Api(ApiError::new(kind, "x"));
        let code = |e| CniError::from_agent("add", e).code;
        assert_eq!(code(api(ErrorKind::Unavailable)), TRY_AGAIN);
        assert_eq!(code(api(ErrorKind::NotFound)), INVALID_CONFIG);
        assert_eq!(code(api(ErrorKind::Invalid)), INVALID_CONFIG);
        assert_eq!(code(api(ErrorKind::Attached)), ALREADY_ATTACHED);
        assert_eq!(code(api(ErrorKind::Duplicate)), AGENT_REFUSED);
        assert_eq!(code(api(ErrorKind::Conflict)), AGENT_REFUSED);
        let unreachable = ClientError::Unreachable {
            peer: "agent".into(),
            target: shibafu_overlay::api::Target::Unix("/nope".into()),
            reason: "no such file".into(),
            hint: "start it".into(),
        };
        assert_eq!(code(unreachable), TRY_AGAIN);
    }
}
