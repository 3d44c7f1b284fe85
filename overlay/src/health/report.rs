//! What a node publishes about an instance: when a new record is worth a write (a state change
//! or a new connection count, not every check), and check output bounded to
//! [`MAX_OUTPUT`] bytes.

use crate::model::{Health, HealthState, MAX_OUTPUT};

/// Whether an instance now at `state` with `connections` needs a new record when `published`
/// is what etcd holds: the first record, a new state, or a new connection count. A new output
/// or check time alone does not (so it is decided before a record is built).
pub fn worth_publishing(
    published: Option<&Health>,
    state: HealthState,
    connections: Option<u32>,
) -> bool {
    published.is_none_or(|p| p.state != state || p.connections != connections)
}

/// `bytes` as text (invalid UTF-8 replaced), at most [`MAX_OUTPUT`] bytes, cut at a char
/// boundary.
pub fn clip_output(bytes: &[u8]) -> String {
    clip_text(String::from_utf8_lossy(bytes).into_owned())
}

/// `text` cut to at most [`MAX_OUTPUT`] bytes at a char boundary.
pub fn clip_text(mut text: String) -> String {
    if text.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SCHEMA_VERSION;

    fn record(state: HealthState, connections: Option<u32>, checked_ms: u64) -> Health {
        Health {
            schema: SCHEMA_VERSION,
            network: "f".into(),
            endpoint: "web1".into(),
            node: "n1".into(),
            state,
            since_ms: 0,
            checked_ms,
            output: format!("check at {checked_ms}"),
            connections,
        }
    }

    #[test]
    fn only_the_first_record_state_changes_and_new_counts_are_written() {
        use HealthState::{Healthy, Starting};
        assert!(worth_publishing(None, Starting, None));
        let first = record(Starting, None, 1);
        assert!(
            !worth_publishing(Some(&first), Starting, None),
            "same state"
        );
        assert!(worth_publishing(Some(&first), Healthy, None));
        let up = record(Healthy, None, 3);
        assert!(worth_publishing(Some(&up), Healthy, Some(3)));
        let counted = record(Healthy, Some(3), 4);
        assert!(!worth_publishing(Some(&counted), Healthy, Some(3)));
    }

    #[test]
    fn output_is_cut_at_a_char_boundary_within_the_limit() {
        assert_eq!(clip_output(b"ok\n"), "ok\n");
        let long = "a".repeat(MAX_OUTPUT - 1) + "\u{00e9}\u{00e9}";
        let cut = clip_text(long);
        assert_eq!(cut.len(), MAX_OUTPUT - 1, "the two-byte char does not fit");
        let mut bytes = vec![b'x'; MAX_OUTPUT + 100];
        bytes[10] = 0xff;
        let cut = clip_output(&bytes);
        assert!(cut.len() <= MAX_OUTPUT);
        assert!(cut.contains('\u{fffd}'));
    }
}
