//! Forwarding: conditional and default upstreams, TTL cache, in-flight coalescing, serve-stale.
