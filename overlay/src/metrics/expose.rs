//! The Prometheus text exposition format (version 0.0.4): families with HELP and TYPE lines,
//! label values escaped, histograms as cumulative `_bucket` series ending in `le="+Inf"` with
//! `_sum` and `_count`.
//!
//! An [`Exposition`] is built family by family and can never hold two series of one name and
//! label set: a sample added again under the same labels adds to the first (counters and
//! histograms of several sources sum up), so duplicates cannot be rendered.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that only goes up (resets when the process restarts).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations counted in fixed buckets, with their sum and count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A histogram read at one moment: `counts[i]` observations fell at or below `bounds[i]` and
/// above the bound before it; the last count is of those above every bound (`+Inf`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets, ascending, without `+Inf`.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); one more than `bounds`.
    pub counts: Vec<u64>,
    /// Sum of every observation.
    pub sum: f64,
}

impl HistogramSnapshot {
    /// An empty histogram over `bounds`.
    pub fn empty(bounds: &[f64]) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other` into this one; false (nothing added) when their buckets differ.
    fn merge(&mut self, other: &HistogramSnapshot) -> bool {
        if self.bounds != other.bounds || self.counts.len() != other.counts.len() {
            return false;
        }
        self.counts
            .iter_mut()
            .zip(&other.counts)
            .for_each(|(a, b)| *a += b);
        self.sum += other.sum;
        true
    }

    /// Whether it is well formed: ascending finite bounds and one count more than bounds.
    fn valid(&self) -> bool {
        self.counts.len() == self.bounds.len() + 1
            && self.bounds.iter().all(|b| b.is_finite())
            && self.bounds.windows(2).all(|w| w[0] < w[1])
    }
}

#[derive(Debug)]
enum Value {
    Number(f64),
    Histogram(HistogramSnapshot),
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    labels: Vec<&'static str>,
    samples: BTreeMap<Vec<String>, Value>,
}

/// Metric families being gathered for one scrape; see the module documentation.
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, Family>,
    /// Families asked for with a name, type or labels that cannot be rendered.
    refused: Vec<&'static str>,
}

/// Adds samples of a counter or gauge family with `N` labels.
pub struct FamilyWriter<'a, const N: usize> {
    family: Option<&'a mut Family>,
}

/// Adds samples of a histogram family with `N` labels.
pub struct HistogramWriter<'a, const N: usize> {
    family: Option<&'a mut Family>,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// The counter family `name` (ending in `_total`) with these label names.
    pub fn counter<const N: usize>(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
    ) -> FamilyWriter<'_, N> {
        FamilyWriter {
            family: self.family(name, help, Kind::Counter, &labels),
        }
    }

    /// The gauge family `name` with these label names.
    pub fn gauge<const N: usize>(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
    ) -> FamilyWriter<'_, N> {
        FamilyWriter {
            family: self.family(name, help, Kind::Gauge, &labels),
        }
    }

    /// The histogram family `name` with these label names (`le` is added per bucket).
    pub fn histogram<const N: usize>(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
    ) -> HistogramWriter<'_, N> {
        HistogramWriter {
            family: self.family(name, help, Kind::Histogram, &labels),
        }
    }

    /// Names of families refused because their name or labels are invalid, or because the
    /// same name was asked for with another type or other labels (a programming error; the
    /// first family of the name is kept).
    pub fn refused(&self) -> &[&'static str] {
        &self.refused
    }

    fn family(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[&'static str],
    ) -> Option<&mut Family> {
        let names_ok = valid_name(name, true)
            && labels.iter().all(|l| valid_name(l, false) && *l != "le")
            && (kind != Kind::Counter || name.ends_with("_total"));
        let fits = |f: &Family| f.kind == kind && f.labels == labels;
        if !names_ok || self.families.get(name).is_some_and(|f| !fits(f)) {
            self.refused.push(name);
            return None;
        }
        Some(self.families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            labels: labels.to_vec(),
            samples: BTreeMap::new(),
        }))
    }

    /// The text exposition: families by name, series by label values.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(f.help));
            let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
            for (values, value) in &f.samples {
                let labels = label_text(&f.labels, values);
                match value {
                    Value::Number(v) => {
                        let _ = writeln!(out, "{name}{} {}", braces(&labels), number(*v));
                    }
                    Value::Histogram(h) => render_histogram(&mut out, name, &labels, h),
                }
            }
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (i, n) in h.counts.iter().enumerate() {
        cumulative += n;
        let le = h
            .bounds
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| number(*b));
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(out, "{name}_sum{} {}", braces(labels), number(h.sum));
    let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
}

impl<const N: usize> FamilyWriter<'_, N> {
    /// Adds `value` to the series with these label values (created at 0).
    pub fn add(&mut self, values: [&str; N], value: f64) -> &mut Self {
        if let Some(f) = self.family.as_deref_mut() {
            let key = values.iter().map(|v| v.to_string()).collect();
            match f.samples.entry(key).or_insert(Value::Number(0.0)) {
                Value::Number(v) => *v += value,
                Value::Histogram(_) => {}
            }
        }
        self
    }
}

impl<const N: usize> HistogramWriter<'_, N> {
    /// Adds `h` to the series with these label values; a malformed histogram, or one whose
    /// buckets differ from the series', is left out.
    pub fn add(&mut self, values: [&str; N], h: &HistogramSnapshot) -> &mut Self {
        let Some(f) = self.family.as_deref_mut() else {
            return self;
        };
        if !h.valid() {
            return self;
        }
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        match f.samples.get_mut(&key) {
            Some(Value::Histogram(held)) => {
                held.merge(h);
            }
            Some(Value::Number(_)) => {}
            None => {
                f.samples.insert(key, Value::Histogram(h.clone()));
            }
        }
        self
    }
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or, without colons,
/// label name.
fn valid_name(name: &str, colons: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (colons && c == ':')
            || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

fn label_text(names: &[&str], values: &[String]) -> String {
    let mut s = String::new();
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{n}=\"{}\"", escape_label(v));
    }
    s
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text with `\` and newlines escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Prometheus reads it (`+Inf`, `-Inf`, `NaN`, else the shortest decimal).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
#[path = "expose_tests.rs"]
mod tests;
