//! The shibafu command line.

fn main() {}
