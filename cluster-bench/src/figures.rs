//! The SVG figures, written by hand: a few hundred elements need no plotting library, and
//! `font-family="sans-serif"` needs no particular font.
//!
//! Both figures are small multiples of the fan-out workload. Each client keeps one colour
//! in every panel and in both figures (and one marker shape on the latency lines), taken
//! from its place in `ClientKind::ALL`: a client added there gets the next pair. There is
//! a colour for every client and two to spare, and thirteen colours and four shapes give
//! 52 distinct pairs. A TLS row is its client's colour, dashed. The legend is a row above
//! the panels, clear of the data.
//!
//! - [`latency_svg`]: one panel per injected delay (three to a row, four as two by two):
//!   p50 latency of a pipeline by K, log-log (K grows by factors, and so does latency at
//!   0 ms; each panel has its own latency range, since 1 ms of delay lifts every line by
//!   milliseconds).
//! - [`cpu_svg`]: a row of panels per injected delay, a column per K: CPU per command as
//!   a stacked bar per client, system time (pale) under user time (solid), on a linear
//!   scale shared down each column.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::clients::ClientKind;
use crate::report::Record;

/// Colours that stay apart from each other (Tableau 10, a cyan, an indigo and a near
/// black): one per client with room to spare, and a count prime to the four markers, so
/// that colour and marker repeat together only after 52 series.
const PALETTE: [&str; 13] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#17becf", "#3b3b98", "#333333",
];

/// Font sizes and an estimate of a character's width at `FONT` for laying out text.
const FONT: f64 = 12.0;
const CHAR_W: f64 = 7.0;

/// One line or bar series: a client over one transport.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    /// The row label, e.g. `uring` or `uring+tls`.
    label: &'static str,
    colour: &'static str,
    /// Marker shape index (0 circle, 1 square, 2 triangle, 3 diamond): clients next to
    /// each other differ in shape too, which tells apart points that overlap, and with
    /// thirteen colours and four shapes 52 series get distinct pairs.
    marker: usize,
    dashed: bool,
}

/// Every series in the records, in legend order: clients in `ClientKind::ALL` order
/// (unknown names after them, in order of appearance), plain before TLS.
fn series_of(records: &[&Record]) -> Vec<Series> {
    let mut unknown: Vec<&str> = Vec::new();
    let mut keyed: BTreeMap<(usize, bool), &'static str> = BTreeMap::new();
    for r in records {
        let base = if r.tls {
            r.client.strip_suffix("+tls").unwrap_or(r.client)
        } else {
            r.client
        };
        let index = match ClientKind::ALL.iter().position(|c| c.name() == base) {
            Some(i) => i,
            None => {
                let at = unknown.iter().position(|u| *u == base).unwrap_or_else(|| {
                    unknown.push(base);
                    unknown.len() - 1
                });
                ClientKind::ALL.len() + at
            }
        };
        keyed.entry((index, r.tls)).or_insert(r.client);
    }
    keyed
        .into_iter()
        .map(|((index, tls), label)| Series {
            label,
            colour: PALETTE[index % PALETTE.len()],
            marker: index % 4,
            dashed: tls,
        })
        .collect()
}

/// The fan-out records grouped by injected delay, in order.
fn by_delay(records: &[Record]) -> BTreeMap<u64, Vec<&Record>> {
    let mut panels: BTreeMap<u64, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.workload == "fanout") {
        panels.entry(r.delay_ms).or_default().push(r);
    }
    panels
}

/// Where the panels go: title and legend above, then rows of panels.
struct Layout {
    /// Width of one panel's cell, including its axis labels.
    cell_w: f64,
    cell_h: f64,
    /// Inside a cell: the plot area's offsets and size.
    plot_left: f64,
    plot_top: f64,
    plot_w: f64,
    plot_h: f64,
    columns: usize,
    /// Where the first row of panels starts (below title and legend).
    panels_top: f64,
    width: f64,
    height: f64,
}

const MARGIN: f64 = 16.0;
const PLOT_LEFT: f64 = 78.0;
const PLOT_TOP: f64 = 28.0;
/// Below the plot: tick labels and the axis title.
const PLOT_BOTTOM: f64 = 48.0;
const PLOT_RIGHT: f64 = 16.0;

impl Layout {
    /// `panels` panels, `columns` to a row.
    fn new(panels: usize, columns: usize, plot_w: f64, plot_h: f64, legend_rows: usize) -> Layout {
        let columns = columns.clamp(1, panels.max(1));
        let rows = panels.max(1).div_ceil(columns);
        let cell_w = PLOT_LEFT + plot_w + PLOT_RIGHT;
        let cell_h = PLOT_TOP + plot_h + PLOT_BOTTOM;
        // Title, subtitle, legend rows.
        let panels_top = 50.0 + 20.0 * legend_rows as f64 + 8.0;
        Layout {
            cell_w,
            cell_h,
            plot_left: PLOT_LEFT,
            plot_top: PLOT_TOP,
            plot_w,
            plot_h,
            columns,
            panels_top,
            width: 2.0 * MARGIN + cell_w * columns as f64,
            height: panels_top + cell_h * rows as f64 + MARGIN,
        }
    }

    /// Wide enough for the title (15 px bold) and subtitle too: a single narrow panel
    /// would cut them off.
    fn fitting(mut self, title: &str, subtitle: &str) -> Layout {
        let text =
            (9.0 * title.chars().count() as f64).max(CHAR_W * subtitle.chars().count() as f64);
        self.width = self.width.max(2.0 * MARGIN + text);
        self
    }

    /// The top-left corner of panel `i`'s plot area.
    fn plot_origin(&self, i: usize) -> (f64, f64) {
        let (col, row) = (i % self.columns, i / self.columns);
        (
            MARGIN + col as f64 * self.cell_w + self.plot_left,
            self.panels_top + row as f64 * self.cell_h + self.plot_top,
        )
    }
}

/// What a legend entry shows before its text.
enum Swatch {
    /// A line segment with a marker, as drawn in the latency panels.
    Line(Series),
    /// A filled box, as the user part of a bar.
    Bar(Series),
    /// How to read a stacked bar: solid above pale.
    UserOverSystem,
    /// The mark over a bar whose split is rough.
    Rough,
}

impl Swatch {
    /// The swatch with its left edge at x and its middle at y; 24 px wide.
    fn draw(&self, x: f64, y: f64) -> String {
        let dash = |s: &Series| {
            if s.dashed {
                " stroke-dasharray=\"5 3\""
            } else {
                ""
            }
        };
        match self {
            Swatch::Line(s) => format!(
                "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"2.5\"{}/>\n{}\n",
                x + 24.0,
                s.colour,
                dash(s),
                marker(s.marker, x + 12.0, y, s.colour)
            ),
            Swatch::Bar(s) => format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"16\" height=\"12\" fill=\"{}\"{}/>\n",
                x + 4.0,
                y - 6.0,
                s.colour,
                if s.dashed {
                    " stroke=\"black\" stroke-dasharray=\"3 2\""
                } else {
                    ""
                }
            ),
            Swatch::UserOverSystem => format!(
                "<rect x=\"{bx:.1}\" y=\"{:.1}\" width=\"16\" height=\"7\" fill=\"#777\"/>\n\
                 <rect x=\"{bx:.1}\" y=\"{:.1}\" width=\"16\" height=\"7\" fill=\"#777\" fill-opacity=\"0.3\" stroke=\"#777\"/>\n",
                y - 7.0,
                y,
                bx = x + 4.0,
            ),
            Swatch::Rough => format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#555\">~</text>\n",
                x + 12.0,
                y + 4.0
            ),
        }
    }
}

/// An entry of the legend: its swatch and its text.
struct LegendEntry {
    swatch: Swatch,
    text: String,
}

/// Lays legend entries out in rows across `width`; returns the SVG and the row count.
fn legend(entries: &[LegendEntry], top: f64, width: f64) -> (String, usize) {
    let mut out = String::new();
    let (mut x, mut row) = (MARGIN, 0usize);
    for e in entries {
        let w = 30.0 + CHAR_W * e.text.chars().count() as f64 + 18.0;
        if x + w > width - MARGIN && x > MARGIN {
            x = MARGIN;
            row += 1;
        }
        let y = top + 20.0 * row as f64;
        out.push_str(&e.swatch.draw(x, y));
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 30.0,
            y + 4.0,
            escape(&e.text)
        );
        x += w;
    }
    (out, row + 1)
}

/// How many legend rows the entries take at this width (laid out as [`legend`] does).
fn legend_rows(entries: &[LegendEntry], width: f64) -> usize {
    legend(entries, 0.0, width).1
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A marker of `shape` centred at (x, y).
fn marker(shape: usize, x: f64, y: f64, colour: &str) -> String {
    match shape {
        1 => format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"7\" height=\"7\" fill=\"{colour}\"/>",
            x - 3.5,
            y - 3.5
        ),
        2 => format!(
            "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"{colour}\"/>",
            x,
            y - 4.5,
            x - 4.5,
            y + 3.5,
            x + 4.5,
            y + 3.5
        ),
        3 => format!(
            "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"{colour}\"/>",
            x,
            y - 5.0,
            x + 5.0,
            y,
            x,
            y + 5.0,
            x - 5.0,
            y
        ),
        _ => format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{colour}\"/>"),
    }
}

/// The SVG's opening, white background, title and subtitle.
fn open_svg(layout: &Layout, title: &str, subtitle: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
         viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"sans-serif\" font-size=\"{FONT}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{MARGIN}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n\
         <text x=\"{MARGIN}\" y=\"40\" fill=\"#555\">{}</text>\n",
        escape(title),
        escape(subtitle),
        w = layout.width,
        h = layout.height,
    )
}

/// A figure with nothing to draw says so instead of drawing empty axes.
fn empty_svg(title: &str) -> String {
    let layout = Layout::new(1, 1, 300.0, 60.0, 1);
    let mut out = open_svg(&layout, title, "no fan-out records in this run");
    out.push_str("</svg>\n");
    out
}

/// Round numbers for a log axis between `lo` and `hi`: the finest of a few sets of
/// steps that gives at most eight ticks (a narrow range gets 2000, 2500, 3000; a wide
/// one 1-2-5 steps or decades). Returns the ticks and the axis range, widened to the
/// outer ticks.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, f64, f64) {
    let (lo, hi) = (lo.max(1e-9), hi.max(lo * 1.0001));
    const STEPS: [&[f64]; 5] = [
        &[1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        &[1.0, 2.0, 3.0, 5.0],
        &[1.0, 2.0, 5.0],
        &[1.0, 3.0],
        &[1.0],
    ];
    for mantissas in STEPS {
        let steps = |from: f64| {
            let mut v = Vec::new();
            let mut decade = 10f64.powf(from.log10().floor() - 1.0);
            while decade <= hi * 100.0 {
                for m in mantissas.iter() {
                    v.push(m * decade);
                }
                decade *= 10.0;
            }
            v
        };
        let all = steps(lo);
        let below = all
            .iter()
            .copied()
            .filter(|t| *t <= lo * 1.0001)
            .fold(f64::NAN, f64::max);
        let above = all
            .iter()
            .copied()
            .find(|t| *t >= hi / 1.0001)
            .unwrap_or(hi);
        let ticks: Vec<f64> = all
            .into_iter()
            .filter(|t| *t >= below / 1.0001 && *t <= above * 1.0001)
            .collect();
        if ticks.len() <= 8 || mantissas.len() == 1 {
            return (ticks, below, above);
        }
    }
    unreachable!("the decade pass always returns")
}

/// Round numbers for a linear axis from 0 to at least `hi`: about five steps of 1, 2 or
/// 5 × 10^n. Returns the ticks and the axis top.
fn linear_ticks(hi: f64) -> (Vec<f64>, f64) {
    let hi = if hi > 0.0 { hi } else { 1.0 };
    let raw = hi / 5.0;
    let decade = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * decade)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * decade);
    let n = (hi / step).ceil() as usize;
    let ticks: Vec<f64> = (0..=n).map(|i| i as f64 * step).collect();
    (ticks, n as f64 * step)
}

/// `1500` as `1,500`; small values keep a decimal or two.
fn number(v: f64) -> String {
    if v < 10.0 && v.fract() != 0.0 {
        return format!("{v:.1}");
    }
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The panel title, axes frame, horizontal grid lines with their labels and the axis
/// titles for a plot area at (x0, y0).
#[allow(clippy::too_many_arguments)]
fn panel_frame(
    out: &mut String,
    layout: &Layout,
    (x0, y0): (f64, f64),
    title: &str,
    y_ticks: &[(f64, f64)],
    (x_title, x_title_gap): (&str, f64),
    y_title: Option<&str>,
) {
    let (w, h) = (layout.plot_w, layout.plot_h);
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        x0 + w / 2.0,
        y0 - 10.0,
        escape(title)
    );
    for &(value, y) in y_ticks {
        let _ = writeln!(
            out,
            "<line x1=\"{x0:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e4e4e4\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            x0 + w,
            x0 - 6.0,
            y + 4.0,
            number(value)
        );
    }
    let _ = writeln!(
        out,
        "<rect x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"none\" stroke=\"#888\"/>"
    );
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
        x0 + w / 2.0,
        y0 + h + x_title_gap,
        escape(x_title)
    );
    if let Some(t) = y_title {
        let (tx, ty) = (x0 - 60.0, y0 + h / 2.0);
        let _ = writeln!(
            out,
            "<text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\" fill=\"#333\" transform=\"rotate(-90 {tx:.1} {ty:.1})\">{}</text>",
            escape(t)
        );
    }
}

/// Fan-out p50 latency by K: one panel per injected delay, log-log.
pub fn latency_svg(records: &[Record]) -> String {
    let title = "Fan-out pipeline latency by K (p50)";
    let panels = by_delay(records);
    if panels.is_empty() {
        return empty_svg(title);
    }
    let all: Vec<&Record> = panels.values().flatten().copied().collect();
    let series = series_of(&all);
    let entries: Vec<LegendEntry> = series
        .iter()
        .map(|s| LegendEntry {
            swatch: Swatch::Line(s.clone()),
            text: s.label.to_string(),
        })
        .collect();
    // Side by side up to three; four as two by two.
    let columns = if panels.len() == 4 { 2 } else { 3 };
    let subtitle =
        "one panel per injected reply delay; both axes log scale; each panel has its own latency range";
    let probe = Layout::new(panels.len(), columns, 300.0, 250.0, 1).fitting(title, subtitle);
    let rows = legend_rows(&entries, probe.width);
    let layout = Layout::new(panels.len(), columns, 300.0, 250.0, rows).fitting(title, subtitle);
    let mut out = open_svg(&layout, title, subtitle);
    out.push_str(&legend(&entries, 60.0, layout.width).0);

    let mut ks: Vec<usize> = all.iter().map(|r| r.k).collect();
    ks.sort_unstable();
    ks.dedup();
    let (kmin, kmax) = (ks[0] as f64, ks[ks.len() - 1] as f64);
    let x_of = |k: f64, x0: f64| {
        // Half a step of room at each end, so markers do not sit on the frame.
        let pad = 0.08;
        let t = if kmax > kmin {
            (k.log2() - kmin.log2()) / (kmax.log2() - kmin.log2())
        } else {
            0.5
        };
        x0 + (pad + t * (1.0 - 2.0 * pad)) * layout.plot_w
    };
    for (i, (delay, rows)) in panels.iter().enumerate() {
        let (x0, y0) = layout.plot_origin(i);
        let values: Vec<f64> = rows.iter().map(|r| r.p50_us.max(1.0)).collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(0.0, f64::max);
        let (ticks, ylo, yhi) = log_ticks(lo, hi);
        let y_of = |v: f64| {
            let t = (v.max(ylo).log10() - ylo.log10()) / (yhi.log10() - ylo.log10()).max(1e-9);
            y0 + layout.plot_h * (1.0 - t)
        };
        let y_ticks: Vec<(f64, f64)> = ticks.iter().map(|&v| (v, y_of(v))).collect();
        panel_frame(
            &mut out,
            &layout,
            (x0, y0),
            &format!("injected delay {delay} ms"),
            &y_ticks,
            ("K, commands per pipeline (log scale)", 38.0),
            (i % layout.columns == 0).then_some("p50 latency per pipeline (µs, log scale)"),
        );
        for &k in &ks {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{k}</text>",
                x_of(k as f64, x0),
                y0 + layout.plot_h + 18.0
            );
        }
        for s in &series {
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.client == s.label)
                .map(|r| (x_of(r.k as f64, x0), y_of(r.p50_us.max(1.0))))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if points.is_empty() {
                continue;
            }
            let path: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} points=\"{}\"/>",
                s.colour,
                if s.dashed {
                    " stroke-dasharray=\"5 3\""
                } else {
                    ""
                },
                path.join(" ")
            );
            for (x, y) in points {
                let _ = writeln!(out, "{}", marker(s.marker, x, y, s.colour));
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Fan-out CPU per command: a grid of panels, one row per injected delay and one column
/// per K, a stacked bar per client in each (system time pale at the bottom, user time
/// solid on top). CPU per command falls tenfold from small to large K, so each column
/// has its own linear scale, shared down the column so the delays compare.
pub fn cpu_svg(records: &[Record]) -> String {
    let title = "Fan-out client CPU per command: user + system";
    let panels = by_delay(records);
    if panels.is_empty() {
        return empty_svg(title);
    }
    let all: Vec<&Record> = panels.values().flatten().copied().collect();
    let series = series_of(&all);
    let mut entries: Vec<LegendEntry> = series
        .iter()
        .map(|s| LegendEntry {
            swatch: Swatch::Bar(s.clone()),
            text: s.label.to_string(),
        })
        .collect();
    entries.push(LegendEntry {
        swatch: Swatch::UserOverSystem,
        text: "each bar: user time (solid) on system time (pale)".into(),
    });
    if all.iter().any(|r| r.rough_split()) {
        entries.push(LegendEntry {
            swatch: Swatch::Rough,
            text: format!(
                "rough split: under {:.0} ms of CPU measured",
                crate::report::ROUGH_SPLIT_MS
            ),
        });
    }
    let mut ks: Vec<usize> = all.iter().map(|r| r.k).collect();
    ks.sort_unstable();
    ks.dedup();
    // Bars 20 px apart, at least 170 px of plot.
    let slot = 20.0;
    let plot_w = (series.len() as f64 * slot + 16.0).max(170.0);
    let cells = panels.len() * ks.len();
    let subtitle =
        "a row per injected reply delay, a column per K; linear scale, shared down each column";
    let probe = Layout::new(cells, ks.len(), plot_w, 200.0, 1).fitting(title, subtitle);
    let rows = legend_rows(&entries, probe.width);
    let layout = Layout::new(cells, ks.len(), plot_w, 200.0, rows).fitting(title, subtitle);
    let mut out = open_svg(&layout, title, subtitle);
    out.push_str(&legend(&entries, 60.0, layout.width).0);

    for (column, &k) in ks.iter().enumerate() {
        let top = all
            .iter()
            .filter(|r| r.k == k)
            .map(|r| r.user_ns_per_cmd + r.sys_ns_per_cmd)
            .fold(0.0, f64::max);
        // Room above the tallest bar for its mark.
        let (ticks, ymax) = linear_ticks(top * 1.08);
        for (row, (delay, rows)) in panels.iter().enumerate() {
            let (x0, y0) = layout.plot_origin(row * ks.len() + column);
            let y_of = |v: f64| y0 + layout.plot_h * (1.0 - v / ymax);
            let y_ticks: Vec<(f64, f64)> = ticks.iter().map(|&v| (v, y_of(v))).collect();
            panel_frame(
                &mut out,
                &layout,
                (x0, y0),
                &format!("K = {k}, delay {delay} ms"),
                &y_ticks,
                ("clients, coloured as in the legend", 18.0),
                (column == 0).then_some("CPU per command (ns)"),
            );
            let first = x0 + (layout.plot_w - slot * series.len() as f64) / 2.0;
            for (b, s) in series.iter().enumerate() {
                let Some(r) = rows.iter().find(|r| r.client == s.label && r.k == k) else {
                    continue;
                };
                let x = first + b as f64 * slot + 2.0;
                let w = slot - 4.0;
                let (sys_top, user_top) = (
                    y_of(r.sys_ns_per_cmd),
                    y_of(r.sys_ns_per_cmd + r.user_ns_per_cmd),
                );
                let outline = if s.dashed {
                    " stroke=\"black\" stroke-dasharray=\"3 2\" stroke-width=\"0.8\""
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{sys_top:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\" fill-opacity=\"0.3\" stroke=\"{}\"/>\n\
                     <rect x=\"{x:.1}\" y=\"{user_top:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"{outline}><title>{} K={k} delay {delay} ms: user {:.0} ns, system {:.0} ns</title></rect>",
                    y0 + layout.plot_h - sys_top,
                    s.colour,
                    s.colour,
                    sys_top - user_top,
                    s.colour,
                    escape(s.label),
                    r.user_ns_per_cmd,
                    r.sys_ns_per_cmd,
                );
                if r.rough_split() {
                    let _ = writeln!(
                        out,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#555\">~</text>",
                        x + w / 2.0,
                        user_top - 4.0
                    );
                }
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_records(clients: &[&'static str], delays: &[u64]) -> Vec<Record> {
        let mut v = Vec::new();
        for &delay in delays {
            for (c, &client) in clients.iter().enumerate() {
                for k in [16usize, 128, 1024] {
                    let base = 60.0 + 8.0 * c as f64 + k as f64 * 0.9;
                    let p50 = base + 2200.0 * delay as f64;
                    let user = 200.0 + 150.0 * c as f64 + 4000.0 / k as f64;
                    v.push(Record::sample(
                        "fanout",
                        client,
                        k,
                        delay,
                        p50,
                        user,
                        600.0 + 1000.0 / k as f64,
                    ));
                }
            }
        }
        v
    }

    const EIGHT: [&str; 8] = [
        "uring",
        "epoll",
        "serial",
        "blocking",
        "redis-rs",
        "redis-rs-sync",
        "fred",
        "another",
    ];

    #[test]
    fn a_client_keeps_its_colour_and_eight_clients_get_eight() {
        let records = sample_records(&EIGHT, &[0, 1]);
        let all: Vec<&Record> = records.iter().collect();
        let series = series_of(&all);
        assert_eq!(series.len(), 8);
        let mut colours: Vec<&str> = series.iter().map(|s| s.colour).collect();
        colours.sort_unstable();
        colours.dedup();
        assert_eq!(colours.len(), 8, "colours repeat");
        // A subset run gives a client the same colour as the full run.
        let few = sample_records(&["fred", "uring"], &[0]);
        let few: Vec<&Record> = few.iter().collect();
        for s in series_of(&few) {
            let full = series.iter().find(|f| f.label == s.label).unwrap();
            assert_eq!(s.colour, full.colour, "{}", s.label);
        }
        // Table order, unknown names after the known ones.
        let labels: Vec<&str> = series.iter().map(|s| s.label).collect();
        assert_eq!(labels, EIGHT);
    }

    #[test]
    fn every_client_has_a_colour_of_its_own() {
        let names: Vec<&'static str> = ClientKind::ALL.iter().map(|c| c.name()).collect();
        let records = sample_records(&names, &[0]);
        let all: Vec<&Record> = records.iter().collect();
        let series = series_of(&all);
        assert_eq!(series.len(), ClientKind::ALL.len());
        let colours: std::collections::HashSet<&str> = series.iter().map(|s| s.colour).collect();
        assert_eq!(colours.len(), ClientKind::ALL.len(), "colours repeat");
        // The rule that keeps colour and marker pairs apart the longest.
        assert_eq!(
            gcd(PALETTE.len(), 4),
            1,
            "the palette's size shares a factor with 4"
        );
        assert!(PALETTE.len() > ClientKind::ALL.len());
    }

    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }

    #[test]
    fn more_clients_than_colours_still_differ() {
        // As many as the colours and markers have pairs (the module's promise).
        let n = PALETTE.len() * 4;
        let names: Vec<&'static str> = (0..n)
            .map(|i| &*Box::leak(format!("c{i}").into_boxed_str()))
            .collect();
        let records = sample_records(&names, &[0]);
        let all: Vec<&Record> = records.iter().collect();
        let series = series_of(&all);
        assert_eq!(series.len(), n);
        let styles: std::collections::HashSet<(&str, usize)> =
            series.iter().map(|s| (s.colour, s.marker)).collect();
        assert_eq!(styles.len(), n);
    }

    #[test]
    fn tls_rows_share_the_colour_dashed() {
        let mut records = sample_records(&["uring"], &[0]);
        let mut tls = sample_records(&["uring+tls"], &[0]);
        for r in &mut tls {
            r.tls = true;
        }
        records.extend(tls);
        let all: Vec<&Record> = records.iter().collect();
        let series = series_of(&all);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].colour, series[1].colour);
        assert!(!series[0].dashed && series[1].dashed);
    }

    #[test]
    fn one_panel_per_delay_and_the_legend_above_them() {
        let records = sample_records(&EIGHT, &[0, 1, 5]);
        let (latency, cpu) = (latency_svg(&records), cpu_svg(&records));
        for d in [0, 1, 5] {
            assert!(latency.contains(&format!("injected delay {d} ms")), "{d}");
            for k in [16, 128, 1024] {
                assert!(cpu.contains(&format!("K = {k}, delay {d} ms")), "{k} {d}");
            }
        }
        for svg in [latency, cpu] {
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
            // Every legend text sits above the first panel's frame.
            let first_frame_y = svg
                .lines()
                .find(|l| l.starts_with("<rect x=") && l.contains("fill=\"none\""))
                .and_then(|l| attr(l, "y"))
                .unwrap();
            for name in EIGHT {
                let legend_y = svg
                    .lines()
                    .find(|l| l.ends_with(&format!(">{name}</text>")))
                    .and_then(|l| attr(l, "y"))
                    .unwrap();
                assert!(legend_y < first_frame_y - 20.0, "{name}");
            }
        }
    }

    #[test]
    fn write_samples_for_a_look() {
        // `SAMPLE_SVG_DIR=/tmp cargo test -p cluster-bench write_samples` writes the
        // sample figures, to render and look at; without it, nothing is written.
        let Ok(dir) = std::env::var("SAMPLE_SVG_DIR") else {
            return;
        };
        let mut records = sample_records(&EIGHT, &[0, 1]);
        for r in records.iter_mut().filter(|r| r.delay_ms > 0) {
            r.cpu_ms = 40.0;
        }
        let dir = std::path::Path::new(&dir);
        std::fs::write(dir.join("sample-latency.svg"), latency_svg(&records)).unwrap();
        std::fs::write(dir.join("sample-cpu.svg"), cpu_svg(&records)).unwrap();
        let four = sample_records(&EIGHT[..6], &[0, 1, 2, 5]);
        std::fs::write(dir.join("sample-latency-4.svg"), latency_svg(&four)).unwrap();
        // One panel (a --tls run): the title must still fit.
        let mut one = sample_records(&["uring", "redis-rs"], &[0]);
        let mut tls = sample_records(&["uring+tls", "redis-rs+tls"], &[0]);
        tls.iter_mut().for_each(|r| r.tls = true);
        one.extend(tls);
        std::fs::write(dir.join("sample-latency-1.svg"), latency_svg(&one)).unwrap();
        std::fs::write(dir.join("sample-cpu-1.svg"), cpu_svg(&one)).unwrap();
    }

    #[test]
    fn no_fanout_records_say_so() {
        assert!(latency_svg(&[]).contains("no fan-out records"));
        assert!(cpu_svg(&[]).contains("no fan-out records"));
    }

    #[test]
    fn ticks_are_round_and_cover_the_data() {
        let (ticks, lo, hi) = log_ticks(83.0, 1700.0);
        assert_eq!(
            ticks,
            vec![50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0]
        );
        assert_eq!((lo, hi), (50.0, 2000.0));
        // A narrow range still gets ticks inside it.
        let (ticks, lo, hi) = log_ticks(2300.0, 3100.0);
        assert_eq!(ticks, vec![2000.0, 2500.0, 3000.0, 4000.0]);
        assert_eq!((lo, hi), (2000.0, 4000.0));
        let (ticks, _, _) = log_ticks(11_000.0, 14_000.0);
        assert_eq!(ticks, vec![10_000.0, 12_000.0, 15_000.0]);
        let (ticks, lo, hi) = log_ticks(3.0, 400_000.0);
        assert!(ticks.len() <= 8, "{ticks:?}");
        assert!(lo <= 3.0 && hi >= 400_000.0);
        let (ticks, top) = linear_ticks(8650.0);
        assert_eq!(top, 10_000.0);
        assert_eq!(ticks.len(), 6);
        assert_eq!(number(12345.0), "12,345");
        assert_eq!(number(500.0), "500");
    }

    fn attr(line: &str, name: &str) -> Option<f64> {
        let at = line.find(&format!(" {name}=\""))? + name.len() + 3;
        line[at..].split('"').next()?.parse().ok()
    }
}
