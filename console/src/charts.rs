//! Server-rendered SVG charts (plotters): time series with a clock-time axis,
//! units in human scale, a legend, and the policy as a dashed line; and the
//! utilisation histogram. SVG text is drawn by the browser, so no fonts are
//! needed here and nothing is fetched from elsewhere.

use plotters::prelude::*;

use headroom_history::report::Bar;

const WIDTH: u32 = 760;
const HEIGHT: u32 = 300;
const FONT: &str = "sans-serif";

/// One line of a time chart.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text ("node 1").
    pub label: String,
    /// (unix seconds, value in the chart's base unit).
    pub points: Vec<(i64, f64)>,
}

/// The scale that keeps `max` readable: (divisor, unit label).
pub fn scale(unit: &str, max: f64) -> (f64, String) {
    let steps: &[(f64, &str)] = match unit {
        "bit/s" => &[
            (1e9, "Gbit/s"),
            (1e6, "Mbit/s"),
            (1e3, "kbit/s"),
            (1.0, "bit/s"),
        ],
        "bytes" => &[
            (1073741824.0, "GiB"),
            (1048576.0, "MiB"),
            (1024.0, "KiB"),
            (1.0, "B"),
        ],
        "pkt/s" => &[(1e6, "Mpkt/s"), (1e3, "kpkt/s"), (1.0, "pkt/s")],
        _ => return (1.0, unit.to_string()),
    };
    for (d, l) in steps {
        if max >= *d {
            return (*d, (*l).to_string());
        }
    }
    let (d, l) = steps[steps.len() - 1];
    (
        d,
        if l.is_empty() {
            unit.to_string()
        } else {
            l.to_string()
        },
    )
}

fn clock(t: f64) -> String {
    let secs = t.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn palette(i: usize) -> RGBColor {
    const C: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

fn no_data(title: &str, why: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"80\" role=\"img\">\
         <text x=\"10\" y=\"24\" font-family=\"{FONT}\" font-size=\"15\">{}</text>\
         <text x=\"10\" y=\"54\" font-family=\"{FONT}\" font-size=\"13\" fill=\"#666\">{}</text></svg>",
        crate::pages::escape(title),
        crate::pages::escape(why)
    )
}

/// A time chart of `lines` in `unit` (a history unit label: `bit/s`,
/// `cores`, ...) over [from, to] (unix seconds), with `policy` (label,
/// value) drawn dashed.
pub fn time_chart(
    title: &str,
    unit: &str,
    lines: &[Line],
    policy: Option<(&str, f64)>,
    from: i64,
    to: i64,
) -> String {
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(policy.map(|p| p.1))
        .fold(0f64, f64::max);
    if lines.iter().all(|l| l.points.is_empty()) {
        return no_data(title, "no points recorded in this window yet");
    }
    let (div, label) = scale(unit, max);
    // An all-zero chart still gets a readable axis (0 to 1 of its unit).
    let ymax = if max > 0.0 { max / div * 1.15 } else { 1.0 };
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 16))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(64)
            .build_cartesian_2d(from as f64..to.max(from + 1) as f64, 0f64..ymax)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|t| clock(*t))
            .x_desc("time (UTC)")
            .y_desc(label.as_str())
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()?;
        for (i, l) in lines.iter().enumerate() {
            let c = palette(i);
            chart
                .draw_series(LineSeries::new(
                    l.points.iter().map(|(t, v)| (*t as f64, v / div)),
                    c.stroke_width(2),
                ))?
                .label(l.label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
        }
        if let Some((name, v)) = policy {
            let y = v / div;
            let dashes = (0..40).map(|k| {
                let span = (to - from).max(1) as f64 / 40.0;
                let x0 = from as f64 + k as f64 * span;
                PathElement::new([(x0, y), (x0 + span * 0.6, y)], BLACK.stroke_width(1))
            });
            chart
                .draw_series(dashes)?
                .label(name.to_string())
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.stroke_width(1)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(e) => no_data(title, &format!("chart failed: {e}")),
    }
}

/// The utilisation histogram: share of the time in each band of `of`
/// ("policy" or "max").
pub fn histogram(title: &str, bars: &[Bar], of: &str) -> String {
    if bars.iter().all(|b| b.fraction == 0.0) {
        return no_data(title, "no points recorded in this window yet");
    }
    let mut svg = String::new();
    let n = bars.len();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 240)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 16))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..n as f64, 0f64..100f64)?;
        let names: Vec<String> = bars
            .iter()
            .map(|b| match b.to_percent {
                Some(t) => format!("{:.0}-{:.0}", b.from_percent, t),
                None => format!(">{:.0}", b.from_percent),
            })
            .collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                names.get(i).cloned().unwrap_or_default()
            })
            .x_desc(format!("percent of {of}"))
            .y_desc("% of the time")
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 13))
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            Rectangle::new(
                [(i as f64 + 0.1, 0.0), (i as f64 + 0.9, b.fraction * 100.0)],
                palette(0).filled(),
            )
        }))?;
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(e) => no_data(title, &format!("chart failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_chart_has_axes_legend_and_policy() {
        let lines = vec![Line {
            label: "node 1".into(),
            points: (0..60).map(|i| (1000 + i, 5e6)).collect(),
        }];
        let svg = time_chart(
            "gold out",
            "bit/s",
            &lines,
            Some(("booked", 7e6)),
            1000,
            1060,
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        for want in ["Mbit/s", "node 1", "booked", "time (UTC)", "00:16:40"] {
            assert!(svg.contains(want), "{want} missing");
        }
        assert!(time_chart("x", "bit/s", &[], None, 0, 60).contains("no points"));
    }

    #[test]
    fn scales_are_human() {
        assert_eq!(scale("bit/s", 7e6), (1e6, "Mbit/s".to_string()));
        assert_eq!(scale("bytes", 2048.0).1, "KiB");
        assert_eq!(scale("cores", 1.5), (1.0, "cores".to_string()));
        assert_eq!(scale("bit/s", 0.0).1, "bit/s");
    }
}
