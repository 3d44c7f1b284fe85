use shibafu_overlay::metrics::{Exposition, HistogramSnapshot};

use super::*;

const GOOD: &str = "\
# HELP a_total Things \\\\ counted.\\nTwo lines.
# TYPE a_total counter
a_total{network=\"x\\\"y\\\\z\\n\",type=\"A\"} 3
a_total{network=\"b\",type=\"A\"} 1
# HELP g A gauge
# TYPE g gauge
g -1.5
# HELP h_seconds Durations
# TYPE h_seconds histogram
h_seconds_bucket{n=\"1\",le=\"0.1\"} 1
h_seconds_bucket{n=\"1\",le=\"+Inf\"} 2
h_seconds_sum{n=\"1\"} 0.3
h_seconds_count{n=\"1\"} 2
";

#[test]
fn a_valid_exposition_parses_with_labels_unescaped() {
    let p = parse(GOOD).expect("valid");
    assert_eq!(p.families.len(), 3);
    let a = p.family("a_total").expect("a_total");
    assert_eq!(a.help, "Things \\ counted.\nTwo lines.");
    assert_eq!(
        p.value("a_total", &[("network", "x\"y\\z\n"), ("type", "A")]),
        Some(3.0)
    );
    assert_eq!(p.sum("a_total", &[("type", "A")]), 4.0);
    assert_eq!(p.value("g", &[]), Some(-1.5));
    assert_eq!(p.value("h_seconds_count", &[("n", "1")]), Some(2.0));
}

/// Replaces `from` by `to` in the valid text; the result must be refused with `why` in the
/// error.
fn refused(from: &str, to: &str, why: &str) {
    assert!(GOOD.contains(from), "{from:?} not in the sample");
    let text = GOOD.replacen(from, to, 1);
    let err = parse(&text).expect_err(&format!("accepted:\n{text}"));
    assert!(err.contains(why), "{err:?} should say {why:?}");
}

#[test]
fn every_rule_is_enforced() {
    refused("# HELP g A gauge\n", "", "without a HELP");
    refused("# TYPE g gauge\n", "", "no family declared");
    refused("# HELP a_total", "g 1\n# HELP a_total", "before any TYPE");
    refused(
        "# TYPE g gauge\n",
        "# TYPE g gauge\n# TYPE g gauge\n",
        "second TYPE",
    );
    refused("# TYPE g gauge", "# TYPE g summary", "unexpected type");
    refused(
        "# TYPE a_total counter",
        "# TYPE a_total gauge\n# HELP x_total y\n# TYPE x_total counter",
        "interleaved",
    );
    refused(
        "a_total{network=\"b\",type=\"A\"} 1",
        "a_total{network=\"b\",type=\"A\"} -1",
        "below 0",
    );
    refused(
        "{network=\"b\",type=\"A\"} 1",
        "{network=\"x\\\"y\\\\z\\n\",type=\"A\"} 1",
        "duplicate series",
    );
    refused("{network=\"b\",", "{network=\"b\\q\",", "bad escape");
    refused("{network=\"b\",", "{network=\"b\",network=\"c\",", "twice");
    refused("type=\"A\"} 1", "type=\"A\",} 1", "comma before");
    refused("g -1.5", "g one", "bad value");
    refused("g -1.5", "g  -1.5", "bad value");
    refused("g -1.5", "g{le=\"1\"} -1.5", "le belongs");
    refused(
        "h_seconds_bucket{n=\"1\",le=\"+Inf\"} 2",
        "h_seconds_bucket{n=\"1\",le=\"+Inf\"} 0",
        "not cumulative",
    );
    refused(
        "h_seconds_bucket{n=\"1\",le=\"+Inf\"} 2",
        "h_seconds_bucket{n=\"1\",le=\"5\"} 2",
        "not le=\"+Inf\"",
    );
    refused(
        "h_seconds_count{n=\"1\"} 2",
        "h_seconds_count{n=\"1\"} 3",
        "differs",
    );
    refused("h_seconds_sum{n=\"1\"} 0.3\n", "", "missing");
    refused(
        "h_seconds_bucket{n=\"1\",le=\"0.1\"} 1\n",
        "h_seconds_bucket{n=\"1\",le=\"0.1\"} 1\nh_seconds_bucket{n=\"1\",le=\"0.05\"} 1\n",
        "not ascending",
    );
    refused(
        "g -1.5\n",
        "g -1.5\na_total{network=\"c\",type=\"A\"} 1\n",
        "interleaved",
    );
    refused("g -1.5\n", "g -1.5\n\n", "blank");
    refused(
        "# TYPE a_total counter",
        "# TYPE a counter",
        "must end in _total",
    );
}

#[test]
fn what_the_renderer_writes_parses_back_exactly() {
    let tricky = [
        "plain",
        "",
        "quote\"",
        "back\\slash",
        "new\nline",
        "\\n literal",
        "ünïcödé",
        "{}=,",
        "trailing\\",
    ];
    let mut e = Exposition::new();
    let mut c = e.counter("t_total", "Tricky \\ help\nwith lines", ["v", "i"]);
    for (i, v) in tricky.iter().enumerate() {
        c.add([v, &i.to_string()], i as f64);
    }
    let h = HistogramSnapshot {
        bounds: vec![0.001, 0.5, 2.0],
        counts: vec![3, 0, 2, 1],
        sum: 4.25,
    };
    e.histogram("d_seconds", "D", ["v"])
        .add(["a\"b"], &h)
        .add(["c"], &h);
    e.gauge("g_bytes", "G", []).add([], 1e20);
    let text = e.render();
    let p = parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    for (i, v) in tricky.iter().enumerate() {
        let index = i.to_string();
        assert_eq!(
            p.value("t_total", &[("v", v), ("i", &index)]),
            Some(i as f64),
            "{v:?}"
        );
    }
    assert_eq!(
        p.family("t_total").map(|f| f.help.as_str()),
        Some("Tricky \\ help\nwith lines")
    );
    assert_eq!(
        p.value("d_seconds_bucket", &[("v", "a\"b"), ("le", "0.5")]),
        Some(3.0)
    );
    assert_eq!(
        p.value("d_seconds_bucket", &[("v", "c"), ("le", "+Inf")]),
        Some(6.0)
    );
    assert_eq!(p.value("d_seconds_sum", &[("v", "c")]), Some(4.25));
    assert_eq!(p.value("g_bytes", &[]), Some(1e20));
}
