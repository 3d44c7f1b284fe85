use super::*;

#[test]
fn families_render_with_help_type_and_escaped_labels() {
    let mut e = Exposition::new();
    e.counter(
        "shibafu_x_total",
        "Things.\nSecond \\ line",
        ["network", "type"],
    )
    .add(["b", "A"], 2.0)
    .add(["a\"q\\\n", "AAAA"], 1.0);
    e.gauge("shibafu_g", "A gauge", []).add([], 0.5);
    let text = e.render();
    assert_eq!(
        text,
        "# HELP shibafu_g A gauge\n\
         # TYPE shibafu_g gauge\n\
         shibafu_g 0.5\n\
         # HELP shibafu_x_total Things.\\nSecond \\\\ line\n\
         # TYPE shibafu_x_total counter\n\
         shibafu_x_total{network=\"a\\\"q\\\\\\n\",type=\"AAAA\"} 1\n\
         shibafu_x_total{network=\"b\",type=\"A\"} 2\n"
    );
    assert!(e.refused().is_empty());
}

#[test]
fn the_same_series_twice_adds_up_instead_of_duplicating() {
    let mut e = Exposition::new();
    e.counter("a_total", "h", ["n"]).add(["x"], 1.0);
    e.counter("a_total", "h", ["n"])
        .add(["x"], 2.0)
        .add(["y"], 1.0);
    let text = e.render();
    assert!(text.contains("a_total{n=\"x\"} 3\n"), "{text}");
    assert_eq!(text.matches("# TYPE a_total").count(), 1, "{text}");
}

#[test]
fn histograms_are_cumulative_and_end_in_inf() {
    let mut e = Exposition::new();
    let h = HistogramSnapshot {
        bounds: vec![0.001, 0.01],
        counts: vec![2, 0, 1],
        sum: 1.5,
    };
    e.histogram("d_seconds", "Durations", ["network"])
        .add(["n"], &h)
        .add(["n"], &h);
    e.histogram("e_seconds", "No labels", []).add([], &h);
    let text = e.render();
    assert!(
        text.contains(
            "d_seconds_bucket{network=\"n\",le=\"0.001\"} 4\n\
             d_seconds_bucket{network=\"n\",le=\"0.01\"} 4\n\
             d_seconds_bucket{network=\"n\",le=\"+Inf\"} 6\n\
             d_seconds_sum{network=\"n\"} 3\n\
             d_seconds_count{network=\"n\"} 6\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("e_seconds_bucket{le=\"+Inf\"} 3\ne_seconds_sum 1.5\ne_seconds_count 3\n"),
        "{text}"
    );
}

#[test]
fn malformed_histograms_and_conflicting_families_are_left_out() {
    let mut e = Exposition::new();
    let bad = HistogramSnapshot {
        bounds: vec![0.1, 0.01],
        counts: vec![1, 1, 1],
        sum: 0.0,
    };
    e.histogram("h_seconds", "h", []).add([], &bad);
    e.gauge("h_seconds", "h", []).add([], 1.0);
    e.counter("no_suffix", "h", []).add([], 1.0);
    e.gauge("bad-name", "h", []).add([], 1.0);
    e.gauge("g", "h", ["le"]).add(["1"], 1.0);
    let text = e.render();
    assert_eq!(text, "# HELP h_seconds h\n# TYPE h_seconds histogram\n");
    assert_eq!(e.refused(), ["h_seconds", "no_suffix", "bad-name", "g"]);
}

#[test]
fn numbers_render_as_prometheus_reads_them() {
    assert_eq!(number(3.0), "3");
    assert_eq!(number(0.000012), "0.000012");
    assert_eq!(number(f64::INFINITY), "+Inf");
    assert_eq!(number(f64::NEG_INFINITY), "-Inf");
    assert_eq!(number(f64::NAN), "NaN");
}
