//! Charts drawn on the server as SVG: horizontal bars with their labels and
//! values as text, so they read without JavaScript, print, and say the same
//! to a screen reader (each chart has a title and a table fallback).

use std::fmt::Write as _;

/// One bar: its label and value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Bar {
    pub(super) label: String,
    pub(super) value: f64,
    /// How the value is written (`12`, `3.5 h`).
    pub(super) shown: String,
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A horizontal bar chart titled `title`; an empty `bars` draws a note.
pub(super) fn bars(title: &str, bars: &[Bar]) -> String {
    const ROW: usize = 28;
    const LABEL: usize = 170;
    const WIDTH: usize = 560;
    const PLOT: usize = WIDTH - LABEL - 90;
    let height = ROW * bars.len().max(1) + 8;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{}" class="chart"><title>{}</title>"#,
        escape(title),
        escape(title)
    );
    if bars.is_empty() {
        let _ = write!(svg, r#"<text x="0" y="20" class="none">No data yet</text>"#);
    }
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    for (i, bar) in bars.iter().enumerate() {
        let y = i * ROW + 4;
        let share = if max > 0.0 && bar.value.is_finite() {
            (bar.value / max).clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Rounded to whole pixels; a non-zero value keeps a visible sliver.
        let length = ((share * PLOT as f64).round() as usize).max(usize::from(bar.value > 0.0));
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" class="label">{}</text><rect x="{}" y="{}" width="{length}" height="{}" class="bar"/><text x="{}" y="{}" class="value">{}</text>"#,
            LABEL - 8,
            y + 17,
            escape(&bar.label),
            LABEL,
            y + 4,
            ROW - 10,
            LABEL + length + 6,
            y + 17,
            escape(&bar.shown),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, value: f64) -> Bar {
        Bar {
            label: label.into(),
            value,
            shown: format!("{value}"),
        }
    }

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars(
            "Runs <by> state",
            &[bar("done", 10.0), bar("<b>x</b>", 5.0), bar("none", 0.0)],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<title>Runs &lt;by&gt; state</title>"));
        assert!(
            svg.contains(r#"width="300""#),
            "the largest fills the plot: {svg}"
        );
        assert!(svg.contains(r#"width="150""#), "half of it: {svg}");
        assert!(svg.contains(r#"width="0""#), "zero draws nothing: {svg}");
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;") && !svg.contains("<b>"));
    }

    #[test]
    fn no_bars_says_so() {
        assert!(bars("t", &[]).contains("No data yet"));
    }
}
