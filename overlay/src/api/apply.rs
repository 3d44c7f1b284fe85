//! Bodies of declarative configuration (`POST /v1/apply`, `GET /v1/export`): the whole desired
//! state of a cluster as one document, and the changes that converge the cluster to it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::coordinator::LinkNetworks;
use super::services::ServiceSpec;
use super::types::CreateNetwork;
use crate::model::Policy;

/// The desired state of a cluster: what `shibafu apply -f FILE` sends once the file is read, and
/// what `GET /v1/export` answers. Fields absent from an object take the defaults of the create
/// commands. A problem is located by its path into this document (see [`Problem::path`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Networks, in the order of the file.
    #[serde(default)]
    pub networks: Vec<CreateNetwork>,
    /// Links between two networks.
    #[serde(default)]
    pub links: Vec<LinkNetworks>,
    /// Services.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Network policies (the `schema` field is set by the coordinator).
    #[serde(default)]
    pub policies: Vec<Policy>,
}

/// Body of `POST /v1/apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The desired state.
    pub document: Document,
    /// Only answer the changes; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Also remove what the document does not name.
    #[serde(default)]
    pub prune: bool,
}

/// Answer of `POST /v1/apply`: the changes, made (in one transaction) unless it was a dry run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyAnswer {
    /// Every change: creations and updates in the order networks, links, services, policies
    /// (each in the document's order), then removals.
    pub changes: Vec<Change>,
    /// Whether the changes were written (false for a dry run or when there were none).
    pub applied: bool,
}

/// One problem of a refused document: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Slash-separated path into the [`Document`] as JSON: `networks/0/subnet`,
    /// `policies/1/rules/2/peer`; empty for a problem with something the document does not name.
    pub path: String,
    /// What is wrong and what to do.
    pub error: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, error: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            error: error.into(),
        }
    }
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    /// Created (`+`).
    Create,
    /// Changed in place (`~`).
    Update,
    /// Removed (`-`).
    Remove,
}

/// What kind of object a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A network.
    Network,
    /// A link between two networks.
    Link,
    /// A service.
    Service,
    /// A network policy.
    Policy,
}

/// One change of an apply, shown as `+ network frontend`, `- link a b` or
/// `~ policy p: rules [...] -> [...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Create, update or remove.
    pub action: ChangeAction,
    /// What kind of object.
    pub kind: ObjectKind,
    /// Its name: `frontend`; `a b` for a link; `NETWORK/NAME` for a service.
    pub name: String,
    /// What changes in an update, one `field OLD -> NEW` each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.action {
            ChangeAction::Create => '+',
            ChangeAction::Update => '~',
            ChangeAction::Remove => '-',
        };
        let kind = match self.kind {
            ObjectKind::Network => "network",
            ObjectKind::Link => "link",
            ObjectKind::Service => "service",
            ObjectKind::Policy => "policy",
        };
        write!(f, "{sign} {kind} {}", self.name)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details.join("; "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_read_like_a_diff() {
        let c = |action, kind, name: &str, details: &[&str]| Change {
            action,
            kind,
            name: name.into(),
            details: details.iter().map(|d| d.to_string()).collect(),
        };
        let add = c(ChangeAction::Create, ObjectKind::Network, "frontend", &[]);
        assert_eq!(add.to_string(), "+ network frontend");
        let unlink = c(ChangeAction::Remove, ObjectKind::Link, "a b", &[]);
        assert_eq!(unlink.to_string(), "- link a b");
        let rules = c(
            ChangeAction::Update,
            ObjectKind::Policy,
            "p",
            &["rules [x] -> [y]", "service - -> web"],
        );
        assert_eq!(
            rules.to_string(),
            "~ policy p: rules [x] -> [y]; service - -> web"
        );
    }

    #[test]
    fn an_empty_document_is_an_empty_object() {
        let d: Document = serde_json::from_str("{}").expect("empty");
        assert_eq!(d, Document::default());
        assert!(serde_json::from_str::<Document>(r#"{"network":[]}"#).is_err());
        let r: ApplyRequest = serde_json::from_str(r#"{"document":{}}"#).expect("request");
        assert!(!r.dry_run && !r.prune);
    }
}
