//! A strict parser of the Prometheus text exposition format (0.0.4), for tests: every family
//! has exactly one HELP and one TYPE line before its samples, families are not interleaved,
//! names, label names and escapes are valid, counters end in `_total` and are not negative, no
//! series appears twice, and every histogram series has ascending `le` buckets with
//! cumulative counts ending in `+Inf`, a `_sum`, and a `_count` equal to the `+Inf` bucket.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (a histogram's ends in `_bucket`, `_sum` or `_count`).
    pub name: String,
    /// Labels, by name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// One family: its type, help and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// The HELP text, unescaped.
    pub help: String,
    /// Samples in the order given.
    pub samples: Vec<Sample>,
}

/// A parsed exposition: families by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Families by name.
    pub families: BTreeMap<String, Family>,
}

impl Parsed {
    /// The family `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.get(name)
    }

    /// Sum of the samples named `name` whose labels include every pair of `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == name)
            .filter(|s| {
                with.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The value of the one sample named `name` with exactly the labels `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

/// Parses `text` strictly; the error names the line and what is wrong with it.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let mut current: Option<String> = None;
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut series: BTreeSet<String> = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            check_name(name, true).map_err(at)?;
            if helps.contains_key(name) || p.families.contains_key(name) {
                return Err(at("a second HELP, or HELP after TYPE".into()));
            }
            helps.insert(name.to_string(), unescape_help(help).map_err(at)?);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            check_name(name, true).map_err(at)?;
            if !["counter", "gauge", "histogram"].contains(&kind) {
                return Err(at(format!("unexpected type {kind}")));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at("a counter's name must end in _total".into()));
            }
            let help = helps
                .get(name)
                .cloned()
                .ok_or_else(|| at("TYPE without a HELP before it".into()))?;
            if p.families.contains_key(name) {
                return Err(at("a second TYPE".into()));
            }
            current = Some(name.to_string());
            p.families.insert(
                name.to_string(),
                Family {
                    kind: kind.to_string(),
                    help,
                    samples: Vec::new(),
                },
            );
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            return Err(at("only HELP and TYPE comments, and no blank lines".into()));
        }
        let sample = parse_sample(line).map_err(at)?;
        let family_name = current
            .clone()
            .ok_or_else(|| at("a sample before any TYPE".into()))?;
        match owner(&p.families, &sample.name) {
            Some(o) if o == family_name => {}
            Some(o) => {
                return Err(at(format!(
                    "a sample of {o} after its block (families interleaved)"
                )))
            }
            None => return Err(at("a sample of no family declared before it".into())),
        }
        let family = p
            .families
            .get_mut(&family_name)
            .ok_or_else(|| at("no family".into()))?;
        if family.kind == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(at("a counter below 0 or NaN".into()));
        }
        if sample.labels.contains_key("le") != sample.name.ends_with("_bucket")
            || (family.kind != "histogram" && sample.labels.contains_key("le"))
        {
            return Err(at("le belongs to histogram buckets only".into()));
        }
        if !series.insert(format!("{}{:?}", sample.name, sample.labels)) {
            return Err(at("duplicate series".into()));
        }
        family.samples.push(sample);
    }
    for (name, help) in &helps {
        if !p.families.contains_key(name) {
            return Err(format!("HELP for {name} without a TYPE ({help:?})"));
        }
    }
    for (name, f) in &p.families {
        if f.kind == "histogram" {
            check_histogram(name, f)?;
        }
    }
    Ok(p)
}

/// Labels of a sample, by name.
type Labels = BTreeMap<String, String>;
/// One label: name and value.
type Label = (String, String);
/// A histogram series as read: (le, cumulative count) buckets, `_sum`, `_count`.
type HistogramSeries = (Vec<(f64, f64)>, Option<f64>, Option<f64>);

/// The family a sample named `name` belongs to: the one of that name, or the histogram it
/// is a `_bucket`, `_sum` or `_count` of.
fn owner(families: &BTreeMap<String, Family>, name: &str) -> Option<String> {
    if families.get(name).is_some_and(|f| f.kind != "histogram") {
        return Some(name.to_string());
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
        .map(str::to_string)
}

/// Checks every series of histogram `name`: buckets ascending and cumulative, `+Inf` last,
/// `_count` equal to it, `_sum` present.
fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
    let mut series: BTreeMap<Labels, HistogramSeries> = BTreeMap::new();
    for s in &f.samples {
        let mut labels = s.labels.clone();
        let le = labels.remove("le");
        let entry = series.entry(labels).or_default();
        match le {
            Some(le) => {
                let bound = parse_value(&le).map_err(|e| format!("{name}: le {le:?}: {e}"))?;
                entry.0.push((bound, s.value));
            }
            None if s.name.ends_with("_sum") => entry.1 = Some(s.value),
            None => entry.2 = Some(s.value),
        }
    }
    for (labels, (buckets, sum, count)) in &series {
        let what = format!("histogram {name}{labels:?}");
        if buckets.is_empty() {
            return Err(format!("{what}: no buckets"));
        }
        for w in buckets.windows(2) {
            if w[0].0.partial_cmp(&w[1].0) != Some(std::cmp::Ordering::Less) {
                return Err(format!(
                    "{what}: le not ascending ({} then {})",
                    w[0].0, w[1].0
                ));
            }
            if w[1].1 < w[0].1 {
                return Err(format!(
                    "{what}: buckets not cumulative ({} then {})",
                    w[0].1, w[1].1
                ));
            }
        }
        let (last, inf) = buckets[buckets.len() - 1];
        if last != f64::INFINITY {
            return Err(format!("{what}: the last bucket is not le=\"+Inf\""));
        }
        if buckets.iter().any(|(_, n)| n.fract() != 0.0 || *n < 0.0) {
            return Err(format!("{what}: a bucket count that is not a whole number"));
        }
        match (sum, count) {
            (Some(_), Some(c)) if *c == inf => {}
            (Some(_), Some(c)) => {
                return Err(format!("{what}: _count {c} differs from +Inf bucket {inf}"))
            }
            _ => return Err(format!("{what}: _sum or _count missing")),
        }
    }
    Ok(())
}

fn check_name(name: &str, colons: bool) -> Result<(), String> {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (colons && c == ':')
            || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    if chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false)) {
        Ok(())
    } else {
        Err(format!("invalid name {name:?}"))
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "no value".to_string())?;
    let name = &line[..name_end];
    check_name(name, true)?;
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        for (k, v) in parsed {
            if labels.insert(k.clone(), v).is_some() {
                return Err(format!("label {k} twice"));
            }
        }
        rest = after;
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no single space before the value".to_string())?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `name="value",...}` and returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Result<(Vec<Label>, &str), String> {
    let mut out = Vec::new();
    loop {
        if let Some(after) = s.strip_prefix('}') {
            return Ok((out, after));
        }
        let (name, after) = s
            .split_once("=\"")
            .ok_or_else(|| "label without =\"".to_string())?;
        check_name(name, false)?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape in a label value: {other:?}")),
                },
                Some((_, '\n')) | None => return Err("unterminated label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        out.push((name.to_string(), value));
        s = &after[end + 1..];
        if let Some(next) = s.strip_prefix(',') {
            s = next;
            if s.starts_with('}') {
                return Err("a comma before }".into());
            }
        } else if !s.starts_with('}') {
            return Err("labels not separated by commas".into());
        }
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if v
            .chars()
            .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
        {
            Err(format!("bad value {v:?}"))
        }
        _ => v.parse::<f64>().map_err(|_| format!("bad value {v:?}")),
    }
}

/// HELP text with `\\` and `\n` unescaped (no other escape is valid there).
fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => return Err(format!("bad escape {other:?}")),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "prometheus_tests.rs"]
mod tests;
