//! The percentile plot as SVG, drawn the way HdrHistogram's own plotter
//! draws it: round-trip time against percentile, on an axis of 1/(1-p) in
//! decades (0%, 90%, 99%, 99.9%...) so the tail gets as much room as the
//! median. One `<path>` per series. Pure: histograms in, text out.

use hdrhistogram::Histogram;
use std::fmt::Write as _;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 620.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 420.0;
/// Enough decades for a million samples; beyond that the last point is the maximum anyway.
const MAX_DECADES: u32 = 6;
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

pub struct PlotSeries<'a> {
    pub label: String,
    pub histogram: &'a Histogram<u64>,
}

/// The plot of `series` (empty histograms are left out) under `title`.
pub fn percentile_svg(title: &str, series: &[PlotSeries]) -> String {
    let series: Vec<&PlotSeries> = series.iter().filter(|s| !s.histogram.is_empty()).collect();
    let most = series.iter().map(|s| s.histogram.len()).max().unwrap_or(1);
    // The decades the samples can resolve: n samples reach the 1 - 1/n percentile.
    let decades = ((most as f64).log10().ceil() as u32).clamp(1, MAX_DECADES);
    let highest = series.iter().map(|s| s.histogram.max()).max().unwrap_or(1).max(1);
    let (unit, scale) = if highest >= 10_000 { ("ms", 1000.0) } else { ("us", 1.0) };
    let step = nice_step(highest as f64 / scale / 5.0);
    let y_max = (highest as f64 / scale / step).ceil().max(1.0) * step;
    let x_of = |p: f64| {
        let d = if p >= 1.0 { f64::from(decades) } else { (1.0 / (1.0 - p)).log10().min(f64::from(decades)) };
        LEFT + (RIGHT - LEFT) * d / f64::from(decades)
    };
    let y_of = |us: u64| BOTTOM - (BOTTOM - TOP) * (us as f64 / scale / y_max).min(1.0);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"#,
        (LEFT + RIGHT) / 2.0,
        escape(title)
    );
    for i in 0..=((y_max / step).round() as u32) {
        let v = f64::from(i) * step;
        let y = BOTTOM - (BOTTOM - TOP) * v / y_max;
        let _ = writeln!(svg, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="#dddddd"/>"##);
        let _ = writeln!(svg, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 6.0, y + 4.0, trim(v));
    }
    for d in 0..=decades {
        let x = LEFT + (RIGHT - LEFT) * f64::from(d) / f64::from(decades);
        let _ = writeln!(svg, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}" stroke="#dddddd"/>"##);
        let _ =
            writeln!(svg, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#, BOTTOM + 18.0, decade_label(d));
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#333333"/>"##,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 40.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{}" text-anchor="middle" transform="rotate(-90 20 {})">round trip ({unit})</text>"#,
        (TOP + BOTTOM) / 2.0,
        (TOP + BOTTOM) / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut d = String::new();
        for v in s.histogram.iter_quantiles(5) {
            let cmd = if d.is_empty() { 'M' } else { 'L' };
            let _ = write!(d, "{cmd}{:.1},{:.1} ", x_of(v.quantile_iterated_to()), y_of(v.value_iterated_to()));
        }
        let _ = writeln!(
            svg,
            r#"<path data-series="{}" d="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            escape(&s.label),
            d.trim_end()
        );
        let y = TOP + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="3"/>"#,
            RIGHT + 15.0,
            RIGHT + 35.0
        );
        let _ = writeln!(svg, r#"<text x="{}" y="{}">{}</text>"#, RIGHT + 42.0, y + 4.0, escape(&s.label));
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|&s| s >= raw).unwrap_or(10.0 * power)
}

fn trim(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The percentile at `d` decades: 0%, 90%, 99%, 99.9%...
fn decade_label(d: u32) -> String {
    match d {
        0 => "0%".into(),
        1 => "90%".into(),
        _ => format!("99.{}%", "9".repeat(d as usize - 2)).replace(".%", "%"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::new_histogram;

    #[test]
    fn one_path_per_non_empty_series_and_escaped_labels() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for us in 1..=10_000u64 {
            a.record(us).unwrap();
            b.record(us * 3).unwrap();
        }
        let empty = new_histogram();
        let svg = percentile_svg(
            "scan <1> & \"2\"",
            &[
                PlotSeries { label: "open".into(), histogram: &a },
                PlotSeries { label: "x<y".into(), histogram: &b },
                PlotSeries { label: "filtered".into(), histogram: &empty },
            ],
        );
        assert_eq!(svg.matches("<path ").count(), 2);
        assert!(svg.contains(r#"data-series="open""#) && svg.contains(r#"data-series="x&lt;y""#));
        assert!(svg.contains("scan &lt;1&gt; &amp; &quot;2&quot;"));
        // 10,000 samples resolve four decades: the axis ends at 99.99%, in ms above 10 ms.
        assert!(svg.contains(">99.99%<") && !svg.contains(">99.999%<"));
        assert!(svg.contains("round trip (ms)"));
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
    }

    #[test]
    fn axis_steps_and_labels() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(4.2), 5.0);
        assert_eq!(nice_step(64.0), 100.0);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!([0, 1, 2, 3, 4].map(decade_label), ["0%", "90%", "99%", "99.9%", "99.99%"]);
        assert_eq!(trim(2.5), "2.5");
        assert_eq!(trim(20.0), "20");
    }

    #[test]
    fn no_samples_draw_an_empty_frame() {
        let empty = new_histogram();
        let svg = percentile_svg("nothing", &[PlotSeries { label: "all".into(), histogram: &empty }]);
        assert_eq!(svg.matches("<path ").count(), 0);
        assert!(svg.ends_with("</svg>\n"));
    }
}
