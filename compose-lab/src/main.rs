//! An N-node shibafu lab on one machine.

fn main() {}
