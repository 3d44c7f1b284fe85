//! Shared harness for the host and lab tiers: namespace and lab guards.
