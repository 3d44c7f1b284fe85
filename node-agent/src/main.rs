//! The per-host shibafu agent.

fn main() {}
