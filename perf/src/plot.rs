//! SVG plots of bench results: zero-loss throughput against frame size and
//! latency (p50/p99) at the latency load points, one series per
//! configuration (DUT kind, placement, flows and any label).
//!
//! Input is the JSON `bench` writes; only the fields plotted are read, so
//! files from older runs (without `label`, `warnings`, ...) still load.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use serde::Deserialize;

/// File name of the throughput plot.
pub const MPPS_SVG: &str = "mpps-vs-size.svg";
/// File name of the latency plot.
pub const LATENCY_SVG: &str = "latency.svg";

const WIDTH: u32 = 1100;
const FONT: &str = "sans-serif";

/// Errors loading results or drawing plots.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A file or directory could not be read.
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// A file is not bench JSON.
    #[error("{0} is not bench result JSON: {1}")]
    Parse(PathBuf, serde_json::Error),
    /// A directory holds no `bench-*.json`.
    #[error("{0} holds no bench-*.json files")]
    EmptyDir(PathBuf),
    /// Nothing to plot.
    #[error("no results to plot (all scenarios failed or the files hold no results)")]
    NoResults,
    /// plotters failed.
    #[error("drawing {0}: {1}")]
    Draw(&'static str, String),
    /// Writing an SVG failed.
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// One latency load point of a result row.
#[derive(Debug, Clone, Deserialize)]
pub struct LatPoint {
    /// Fraction of the zero-loss rate.
    pub load: f64,
    /// p50 (ns).
    pub p50_ns: u64,
    /// p99 (ns).
    pub p99_ns: u64,
    /// Loss ratio in that trial.
    #[serde(default)]
    pub loss_ratio: f64,
}

/// The fields of a result row that are plotted.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    /// DUT kind (`xdpfwd`, `redirect`, ...).
    pub dut: String,
    /// Placement (`a`, `b`).
    pub placement: String,
    /// Frame size without FCS.
    pub size: usize,
    /// Flows.
    pub flows: u32,
    /// Zero-loss throughput (pps).
    pub zero_loss_pps: u64,
    /// Latency points.
    #[serde(default)]
    pub latency: Vec<LatPoint>,
}

/// One bench JSON file.
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    /// Date (YYYY-MM-DD).
    #[serde(default)]
    pub date: String,
    /// Time (HHMMSS, UTC).
    #[serde(default)]
    pub time_utc: String,
    /// Generator engine.
    #[serde(default)]
    pub engine: String,
    /// Sink mode.
    #[serde(default)]
    pub sink_mode: String,
    /// Trial length (s).
    #[serde(default)]
    pub trial_s: f64,
    /// Free-form configuration label (`bench --label`).
    #[serde(default)]
    pub label: Option<String>,
    /// Result rows.
    pub results: Vec<Row>,
}

impl Run {
    /// Parses bench JSON text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Run, PlotError> {
        serde_json::from_str(text).map_err(|e| PlotError::Parse(origin.to_path_buf(), e))
    }

    /// Converts the JSON value `bench` builds.
    pub fn from_value(v: serde_json::Value) -> Result<Run, PlotError> {
        serde_json::from_value(v).map_err(|e| PlotError::Parse(PathBuf::from("<bench run>"), e))
    }

    /// Reads one bench JSON file.
    pub fn load(path: &Path) -> Result<Run, PlotError> {
        let text = fs::read_to_string(path).map_err(|e| PlotError::Read(path.to_path_buf(), e))?;
        Run::parse(&text, path)
    }
}

/// Expands directories to their `bench-*.json` files (sorted); files are
/// kept as given.
pub fn expand_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, PlotError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = fs::read_dir(p)
                .map_err(|e| PlotError::Read(p.clone(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("bench-") && n.ends_with(".json"))
                })
                .collect();
            if found.is_empty() {
                return Err(PlotError::EmptyDir(p.clone()));
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// A result row with its series name.
#[derive(Debug, Clone)]
struct Point<'a> {
    series: String,
    row: &'a Row,
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        "flow"
    } else {
        "flows"
    }
}

/// Names every row's series: DUT kind, placement, flows, label; engine and
/// sink mode when the runs differ in them; the run time when the same
/// configuration comes from more than one run.
fn series_points(runs: &[Run]) -> Vec<Point<'_>> {
    let engines: BTreeSet<&str> = runs.iter().map(|r| r.engine.as_str()).collect();
    let sinks: BTreeSet<&str> = runs.iter().map(|r| r.sink_mode.as_str()).collect();
    let mut pts: Vec<(usize, Point<'_>)> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        for row in &run.results {
            let mut name = format!(
                "{}, placement {}, {} {}",
                row.dut,
                row.placement.to_uppercase(),
                row.flows,
                plural(row.flows)
            );
            if engines.len() > 1 {
                name.push_str(&format!(", engine {}", run.engine));
            }
            if sinks.len() > 1 {
                name.push_str(&format!(", sink {}", run.sink_mode));
            }
            if let Some(l) = run.label.as_deref().filter(|l| !l.is_empty()) {
                name.push_str(&format!(", {l}"));
            }
            pts.push((i, Point { series: name, row }));
        }
    }
    let mut runs_of: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, p) in &pts {
        runs_of.entry(p.series.clone()).or_default().insert(*i);
    }
    pts.into_iter()
        .map(|(i, mut p)| {
            if runs_of.get(&p.series).is_some_and(|s| s.len() > 1) {
                let t = if runs[i].time_utc.is_empty() {
                    format!("#{}", i + 1)
                } else {
                    fmt_time(&runs[i].time_utc)
                };
                p.series.push_str(&format!(" (run {t})"));
            }
            p
        })
        .collect()
}

/// "HHMMSS" as "HH:MM:SS" (anything else unchanged).
fn fmt_time(t: &str) -> String {
    if t.len() == 6 && t.chars().all(|c| c.is_ascii_digit()) {
        format!("{}:{}:{}", &t[0..2], &t[2..4], &t[4..6])
    } else {
        t.to_owned()
    }
}

/// Series names in first-seen order.
fn series_order(pts: &[Point<'_>]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    pts.iter()
        .filter(|p| seen.insert(p.series.clone()))
        .map(|p| p.series.clone())
        .collect()
}

fn color(i: usize) -> RGBColor {
    // colour-blind friendly (Okabe-Ito without the yellow), then darker extras
    const C: [RGBColor; 12] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(86, 180, 233),
        RGBColor(230, 159, 0),
        RGBColor(0, 0, 0),
        RGBColor(120, 60, 160),
        RGBColor(140, 90, 40),
        RGBColor(110, 110, 110),
        RGBColor(20, 80, 40),
        RGBColor(160, 30, 60),
    ];
    C[i % C.len()]
}

/// Caption second line: where the figures come from.
fn provenance(runs: &[Run]) -> String {
    let mut dates: Vec<&str> = runs.iter().map(|r| r.date.as_str()).collect();
    dates.dedup();
    let times: Vec<String> = runs.iter().map(|r| fmt_time(&r.time_utc)).collect();
    let mut s = format!(
        "bench {} {} {} UTC",
        dates.join(", "),
        if times.len() == 1 { "run" } else { "runs" },
        times.join(", ")
    );
    let engines: BTreeSet<&str> = runs.iter().map(|r| r.engine.as_str()).collect();
    let sinks: BTreeSet<&str> = runs.iter().map(|r| r.sink_mode.as_str()).collect();
    let trials: BTreeSet<String> = runs.iter().map(|r| format!("{}", r.trial_s)).collect();
    // shared settings here; differing ones are in the series names
    if let (1, Some(e)) = (engines.len(), engines.first()) {
        s.push_str(&format!("; engine {e}"));
    }
    if let (1, Some(k)) = (sinks.len(), sinks.first()) {
        s.push_str(&format!(", sink {k}"));
    }
    if let (1, Some(t)) = (trials.len(), trials.first()) {
        s.push_str(&format!(", {t} s trials"));
    }
    s
}

fn draw_err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> PlotError {
    move |e| PlotError::Draw(what, e.to_string())
}

/// Pixel width of the left label area for these names (sans-serif 14 px).
fn label_width(names: &[String]) -> u32 {
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(10);
    (longest as u32 * 15 / 2 + 20).clamp(80, 520)
}

/// Writes the two header lines; returns the area below them.
fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    what: &'static str,
    title: &str,
    sub: &str,
) -> Result<DrawingArea<DB, plotters::coord::Shift>, PlotError> {
    root.fill(&WHITE).map_err(draw_err(what))?;
    let (top, body) = root.split_vertically(64);
    top.draw(&Text::new(
        title.to_owned(),
        (16, 10),
        (FONT, 22).into_font().style(FontStyle::Bold),
    ))
    .map_err(draw_err(what))?;
    top.draw(&Text::new(
        sub.to_owned(),
        (16, 40),
        (FONT, 14).into_font().color(&RGBColor(80, 80, 80)),
    ))
    .map_err(draw_err(what))?;
    Ok(body)
}

/// Zero-loss Mpps against frame size, one line per configuration; with a
/// single frame size, one horizontal bar per configuration.
pub fn mpps_svg(runs: &[Run]) -> Result<String, PlotError> {
    const WHAT: &str = "the throughput plot";
    let pts = series_points(runs);
    if pts.is_empty() {
        return Err(PlotError::NoResults);
    }
    let names = series_order(&pts);
    let sizes: BTreeSet<usize> = pts.iter().map(|p| p.row.size).collect();
    let mpps = |r: &Row| r.zero_loss_pps as f64 / 1e6;
    let ymax = pts.iter().map(|p| mpps(p.row)).fold(0.0, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.15 } else { 1.0 };
    let mut svg = String::new();
    if sizes.len() == 1 {
        let size = sizes.iter().next().copied().unwrap_or(0);
        // one bar per point; a configuration measured twice keeps both
        // coloured by DUT kind, the name is on the axis
        let mut duts: Vec<&str> = Vec::new();
        let bars: Vec<(usize, &Point<'_>)> = pts
            .iter()
            .map(|p| {
                let c = duts
                    .iter()
                    .position(|d| *d == p.row.dut)
                    .unwrap_or_else(|| {
                        duts.push(&p.row.dut);
                        duts.len() - 1
                    });
                (c, p)
            })
            .collect();
        let n = bars.len();
        let height = 150 + 34 * n as u32;
        let lw = label_width(&names);
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
            let body = header(
                &root,
                WHAT,
                &format!("Zero-loss throughput, {size} B frames (without FCS)"),
                &provenance(runs),
            )?;
            let mut chart = ChartBuilder::on(&body)
                .margin_right(40)
                .margin_top(6)
                .x_label_area_size(44)
                .y_label_area_size(lw)
                .build_cartesian_2d(0f64..ymax, -0.5f64..(n as f64 - 0.5))
                .map_err(draw_err(WHAT))?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(0)
                .x_max_light_lines(2)
                .x_desc("zero-loss throughput (Mpps)")
                .axis_desc_style((FONT, 15))
                .label_style((FONT, 13))
                .draw()
                .map_err(draw_err(WHAT))?;
            // first configuration at the top
            let y = |i: usize| (n - 1 - i) as f64;
            chart
                .draw_series(bars.iter().enumerate().map(|(i, (c, p))| {
                    Rectangle::new(
                        [(0.0, y(i) - 0.35), (mpps(p.row), y(i) + 0.35)],
                        color(*c).filled(),
                    )
                }))
                .map_err(draw_err(WHAT))?;
            let value_style =
                TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            let name_style =
                TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
            for (i, (_, p)) in bars.iter().enumerate() {
                let (bx, by) = chart.backend_coord(&(mpps(p.row), y(i)));
                root.draw(&Text::new(
                    format!("{:.3}", mpps(p.row)),
                    (bx + 6, by),
                    value_style.clone(),
                ))
                .map_err(draw_err(WHAT))?;
                let (lx, _) = chart.backend_coord(&(0.0, y(i)));
                root.draw(&Text::new(
                    p.series.clone(),
                    (lx - 8, by),
                    name_style.clone(),
                ))
                .map_err(draw_err(WHAT))?;
            }
            root.present().map_err(draw_err(WHAT))?;
        }
        return Ok(svg);
    }
    let xmin = sizes.iter().next().copied().unwrap_or(0) as f64;
    let xmax = sizes.iter().next_back().copied().unwrap_or(0) as f64;
    let pad = ((xmax - xmin) * 0.04).max(1.0);
    let height = 620 + 22 * names.len() as u32;
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let body = header(
            &root,
            WHAT,
            "Zero-loss throughput against frame size",
            &provenance(runs),
        )?;
        let (plot_area, legend_area) =
            body.split_vertically(height - 64 - 22 * names.len() as u32 - 20);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((xmin - pad)..(xmax + pad), 0f64..ymax)
            .map_err(draw_err(WHAT))?;
        chart
            .configure_mesh()
            .max_light_lines(2)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("frame size without FCS (bytes)")
            .y_desc("zero-loss throughput (Mpps)")
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()
            .map_err(draw_err(WHAT))?;
        for (c, name) in names.iter().enumerate() {
            let mut line: Vec<(f64, f64)> = pts
                .iter()
                .filter(|p| p.series == *name)
                .map(|p| (p.row.size as f64, mpps(p.row)))
                .collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            let col = color(c);
            chart
                .draw_series(LineSeries::new(line.clone(), col.stroke_width(2)))
                .map_err(draw_err(WHAT))?;
            chart
                .draw_series(PointSeries::of_element(
                    line,
                    4,
                    col.filled(),
                    &|xy, s, st| Circle::new(xy, s, st),
                ))
                .map_err(draw_err(WHAT))?;
        }
        // legend under the plot: long names do not cover data
        for (c, name) in names.iter().enumerate() {
            let y = 10 + 22 * c as i32;
            legend_area
                .draw(&PathElement::new(
                    vec![(80, y + 8), (110, y + 8)],
                    color(c).stroke_width(3),
                ))
                .map_err(draw_err(WHAT))?;
            legend_area
                .draw(&Text::new(name.clone(), (118, y), (FONT, 14)))
                .map_err(draw_err(WHAT))?;
        }
        root.present().map_err(draw_err(WHAT))?;
    }
    Ok(svg)
}

fn load_color(load: f64) -> RGBColor {
    if load < 0.3 {
        RGBColor(0, 114, 178)
    } else if load < 0.7 {
        RGBColor(230, 159, 0)
    } else {
        RGBColor(213, 94, 0)
    }
}

/// Axis label for a latency in µs.
fn fmt_us(v: f64) -> String {
    let (v, unit) = if v >= 1e6 {
        (v / 1e6, "s")
    } else if v >= 1e3 {
        (v / 1e3, "ms")
    } else {
        (v, "µs")
    };
    if v >= 1.0 || v == 0.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

/// p50 (filled circle) and p99 (cross) latency at each load point, one row
/// per configuration (and frame size when there are several), log scale.
pub fn latency_svg(runs: &[Run]) -> Result<String, PlotError> {
    const WHAT: &str = "the latency plot";
    let pts = series_points(runs);
    if pts.is_empty() {
        return Err(PlotError::NoResults);
    }
    let sizes: BTreeSet<usize> = pts.iter().map(|p| p.row.size).collect();
    let rows: Vec<(String, &Row)> = pts
        .iter()
        .map(|p| {
            let name = if sizes.len() > 1 {
                format!("{}, {} B", p.series, p.row.size)
            } else {
                p.series.clone()
            };
            (name, p.row)
        })
        .collect();
    let loads: BTreeSet<u64> = rows
        .iter()
        .flat_map(|(_, r)| r.latency.iter().map(|l| (l.load * 1000.0).round() as u64))
        .collect();
    let us = |ns: u64| ns as f64 / 1000.0;
    let vals: Vec<f64> = rows
        .iter()
        .flat_map(|(_, r)| r.latency.iter().flat_map(|l| [us(l.p50_ns), us(l.p99_ns)]))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if vals.is_empty() {
        (1.0, 1000.0)
    } else {
        (
            10f64.powf(lo.log10().floor()),
            10f64.powf((hi * 1.01).log10().ceil()),
        )
    };
    let hi = if hi <= lo { lo * 10.0 } else { hi };
    let n = rows.len();
    let names: Vec<String> = rows.iter().map(|(n, _)| n.clone()).collect();
    let lw = label_width(&names);
    let height = 200 + 54 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let size_note = if sizes.len() == 1 {
            format!(", {} B frames", sizes.iter().next().copied().unwrap_or(0))
        } else {
            String::new()
        };
        let body = header(
            &root,
            WHAT,
            &format!("One-way latency at fractions of the zero-loss rate{size_note}"),
            &format!(
                "{}; dot p50, cross p99; loss in a latency trial is printed next to it",
                provenance(runs)
            ),
        )?;
        let (plot_area, legend_area) = body.split_vertically(height - 64 - 40);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin_right(110)
            .margin_top(6)
            .x_label_area_size(44)
            .y_label_area_size(lw)
            .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..(n as f64 - 0.5))
            .map_err(draw_err(WHAT))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("one-way latency (log scale)")
            .x_label_formatter(&|v| fmt_us(*v))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()
            .map_err(draw_err(WHAT))?;
        let y = |i: usize| (n - 1 - i) as f64;
        let name_style =
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        let note_style = (FONT, 11)
            .into_font()
            .color(&RGBColor(120, 120, 120))
            .pos(Pos::new(HPos::Left, VPos::Center));
        let k = loads.len().max(1) as f64;
        for (i, (name, r)) in rows.iter().enumerate() {
            // light separators between configurations
            if i > 0 {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(lo, y(i) + 0.5), (hi, y(i) + 0.5)],
                        RGBColor(220, 220, 220).stroke_width(1),
                    )))
                    .map_err(draw_err(WHAT))?;
            }
            let (lx, ly) = chart.backend_coord(&(lo, y(i)));
            root.draw(&Text::new(name.clone(), (lx - 8, ly), name_style.clone()))
                .map_err(draw_err(WHAT))?;
            if r.latency.iter().all(|l| l.p50_ns == 0 && l.p99_ns == 0) {
                root.draw(&Text::new(
                    "no latency data (zero-loss rate 0)".to_owned(),
                    (lx + 8, ly),
                    note_style.clone(),
                ))
                .map_err(draw_err(WHAT))?;
                continue;
            }
            for l in &r.latency {
                let j = loads
                    .iter()
                    .position(|x| *x == (l.load * 1000.0).round() as u64)
                    .unwrap_or(0) as f64;
                // sub-rows: lowest load on top
                let yy = y(i) + 0.3 - 0.6 * (j + 0.5) / k;
                let col = load_color(l.load);
                let (p50, p99) = (us(l.p50_ns).max(lo), us(l.p99_ns).max(lo));
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(p50, yy), (p99, yy)],
                        col.stroke_width(2),
                    )))
                    .map_err(draw_err(WHAT))?;
                chart
                    .draw_series(std::iter::once(Circle::new((p50, yy), 4, col.filled())))
                    .map_err(draw_err(WHAT))?;
                chart
                    .draw_series(std::iter::once(Cross::new(
                        (p99, yy),
                        5,
                        col.stroke_width(2),
                    )))
                    .map_err(draw_err(WHAT))?;
                if l.loss_ratio > 0.0 {
                    let (px, py) = chart.backend_coord(&(p50.max(p99), yy));
                    root.draw(&Text::new(
                        format!("loss {:.2}%", l.loss_ratio * 100.0),
                        (px + 10, py),
                        note_style.clone(),
                    ))
                    .map_err(draw_err(WHAT))?;
                }
            }
        }
        // legend: load colours, marker shapes
        let mut x = 80;
        for load in &loads {
            let col = load_color(*load as f64 / 1000.0);
            legend_area
                .draw(&Circle::new((x, 20), 5, col.filled()))
                .map_err(draw_err(WHAT))?;
            legend_area
                .draw(&Text::new(
                    format!("{}% of zero-loss rate", *load as f64 / 10.0),
                    (x + 12, 12),
                    (FONT, 14),
                ))
                .map_err(draw_err(WHAT))?;
            x += 210;
        }
        legend_area
            .draw(&Circle::new((x, 20), 4, BLACK.filled()))
            .map_err(draw_err(WHAT))?;
        legend_area
            .draw(&Text::new("p50".to_owned(), (x + 10, 12), (FONT, 14)))
            .map_err(draw_err(WHAT))?;
        legend_area
            .draw(&Cross::new((x + 60, 20), 5, BLACK.stroke_width(2)))
            .map_err(draw_err(WHAT))?;
        legend_area
            .draw(&Text::new("p99".to_owned(), (x + 70, 12), (FONT, 14)))
            .map_err(draw_err(WHAT))?;
        root.present().map_err(draw_err(WHAT))?;
    }
    Ok(svg)
}

/// Draws both plots and writes them into `dir` as `{prefix}mpps-vs-size.svg`
/// and `{prefix}latency.svg`; returns the paths written.
pub fn write_plots(dir: &Path, prefix: &str, runs: &[Run]) -> Result<Vec<PathBuf>, PlotError> {
    let mut written = Vec::new();
    for (name, svg) in [
        (MPPS_SVG, mpps_svg(runs)?),
        (LATENCY_SVG, latency_svg(runs)?),
    ] {
        let path = dir.join(format!("{prefix}{name}"));
        fs::write(&path, svg).map_err(|e| PlotError::Write(path.clone(), e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(dut: &str, size: usize, flows: u32, pps: u64) -> Row {
        Row {
            dut: dut.into(),
            placement: "b".into(),
            size,
            flows,
            zero_loss_pps: pps,
            latency: [0.1, 0.5, 0.9]
                .iter()
                .map(|&load| LatPoint {
                    load,
                    p50_ns: 10_000,
                    p99_ns: 40_000,
                    loss_ratio: 0.0,
                })
                .collect(),
        }
    }

    fn run(time: &str, results: Vec<Row>) -> Run {
        Run {
            date: "2026-11-21".into(),
            time_utc: time.into(),
            engine: "live".into(),
            sink_mode: "xdp".into(),
            trial_s: 3.0,
            label: None,
            results,
        }
    }

    #[test]
    fn plots_name_every_series() {
        let runs = vec![run(
            "120000",
            vec![
                row("redirect", 60, 1, 1_800_000),
                row("redirect", 1514, 1, 800_000),
                row("bridge", 60, 64, 350_000),
                row("bridge", 1514, 64, 300_000),
            ],
        )];
        let m = mpps_svg(&runs).expect("mpps plot");
        assert!(m.starts_with("<svg") && m.len() > 1000);
        assert!(m.contains("redirect, placement B, 1 flow"), "{m}");
        assert!(m.contains("bridge, placement B, 64 flows"));
        assert!(m.contains("frame size without FCS"));
        let l = latency_svg(&runs).expect("latency plot");
        assert!(l.contains("redirect, placement B, 1 flow, 1514 B"));
        assert!(l.contains("p99"));
    }

    #[test]
    fn single_size_bars_and_repeated_configurations() {
        let mut a = run("211930", vec![row("xdpfwd", 60, 1, 80_000)]);
        a.label = Some("quiet".into());
        let b = run("212858", vec![row("xdpfwd", 60, 1, 90_000)]);
        let c = run("213000", vec![row("xdpfwd", 60, 1, 95_000)]);
        let m = mpps_svg(&[b.clone(), c]).expect("bars");
        assert!(
            m.contains("xdpfwd, placement B, 1 flow (run 21:28:58)"),
            "{m}"
        );
        assert!(m.contains("0.090"));
        let m = mpps_svg(&[a, b]).expect("bars");
        assert!(m.contains("xdpfwd, placement B, 1 flow, quiet"));
        assert!(!m.contains("(run "));
    }

    #[test]
    fn bad_input_is_an_error() {
        let p = Path::new("x.json");
        assert!(matches!(Run::parse("", p), Err(PlotError::Parse(..))));
        assert!(matches!(
            Run::parse(r#"{"results": [{"dut": 1}]}"#, p),
            Err(PlotError::Parse(..))
        ));
        assert!(matches!(
            Run::load(Path::new("/nonexistent/bench.json")),
            Err(PlotError::Read(..))
        ));
        let empty = run("1", vec![]);
        assert!(matches!(mpps_svg(&[empty]), Err(PlotError::NoResults)));
        // zero-loss rate 0 and no latency points still draw
        let mut r = row("xdpfwd", 60, 1, 0);
        r.latency.clear();
        assert!(latency_svg(&[run("1", vec![r])]).is_ok());
    }

    #[test]
    fn existing_results_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/2026-11-21");
        let files = expand_inputs(&[dir]).expect("bench files");
        for f in files {
            let r = Run::load(&f).expect("loads");
            assert!(!r.results.is_empty());
        }
    }
}
