//! The shibafu cluster API server.

fn main() {}
