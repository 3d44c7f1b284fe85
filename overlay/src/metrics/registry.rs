//! The registry a scrape walks: every collector writes its families into one [`Exposition`].

use std::sync::{Arc, PoisonError, RwLock};

use super::expose::Exposition;

/// Something that reports metrics when scraped. Collectors read atomics or take short locks
/// of their own; they never wait on an actor or do I/O.
pub trait Collect: Send + Sync {
    /// Writes this collector's families into `out`.
    fn collect(&self, out: &mut Exposition);
}

/// The collectors of one process. Cheap to clone; clones share the collectors.
#[derive(Clone, Default)]
pub struct Registry {
    collectors: Arc<RwLock<Vec<Arc<dyn Collect>>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a collector (for the life of the process).
    pub fn register(&self, c: Arc<dyn Collect>) {
        self.collectors
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c);
    }

    /// Every collector's families, rendered in the text format.
    pub fn render(&self) -> String {
        let mut out = Exposition::new();
        out.gauge(
            "shibafu_build_info",
            "Always 1; the version of the running binary in its label.",
            ["version"],
        )
        .add([env!("CARGO_PKG_VERSION")], 1.0);
        let collectors = self
            .collectors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for c in collectors {
            c.collect(&mut out);
        }
        if !out.refused().is_empty() {
            tracing::warn!(families = ?out.refused(), "metric families left out of the scrape (a bug: conflicting or invalid names)");
        }
        out.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(f64);

    impl Collect for Fixed {
        fn collect(&self, out: &mut Exposition) {
            out.gauge("shibafu_fixed", "A fixed value", [])
                .add([], self.0);
        }
    }

    #[test]
    fn a_scrape_walks_every_collector() {
        let r = Registry::new();
        r.register(Arc::new(Fixed(1.0)));
        r.clone().register(Arc::new(Fixed(2.0)));
        let text = r.render();
        assert!(text.contains("shibafu_fixed 3\n"), "{text}");
        assert!(text.contains("shibafu_build_info{version=\""), "{text}");
    }
}
