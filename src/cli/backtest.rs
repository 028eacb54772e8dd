//! `fleet-optimization backtest`: the fleet simulator of
//! `fleet_pipeline::backtest` on a trips file, without and with the
//! continuous rebalancer; the comparison as JSON and as a self-contained
//! HTML chart (inline SVG, no scripts).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use fleet_pipeline::backtest::{compare, BacktestConfig, BacktestError, Comparison, Mode, Report};
use fleet_pipeline::nyc::read_trips_with_fares;
use fleet_pipeline::zones::{CentroidZones, DEFAULT_ZONE_MAX_KM};

use super::{print_json, Failure};

/// Simulate a fleet serving real trips, without and with continuous
/// rebalancing, and compare served trips, empty km, cost and ROI.
#[derive(Debug, Args)]
#[command(after_help = "Example (from the repository root):\n  \
    fleet-optimization backtest --fleet-size 25 --json backtest.json --chart backtest.html")]
pub struct BacktestArgs {
    /// Trips CSV (TLC columns pickup, dropoff, pickup_zone, dropoff_zone, fare).
    #[arg(long, default_value = "data/nyc/trips_2019_03_sample.csv")]
    pub trips: PathBuf,
    /// Zone file (zone_id,name,lat,lon); trips join it by zone name.
    #[arg(long, default_value = "data/nyc/zones.csv")]
    pub zones: PathBuf,
    /// Vehicles in the fleet.
    #[arg(long)]
    pub fleet_size: usize,
    /// A request can be served from an idle vehicle in another zone this
    /// close (straight-line km between zone centres).
    #[arg(long, default_value_t = 2.0)]
    pub reach_km: f64,
    /// How often the rebalancer runs, minutes.
    #[arg(long, default_value_t = 60)]
    pub window_minutes: u32,
    /// Empty driving speed, km/h.
    #[arg(long, default_value_t = 20.0)]
    pub speed_kmh: f64,
    /// Write the comparison JSON here instead of standard output.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a chart here: HTML (served %, served and unmet per hour, extra trips, both
    /// modes), or with a `.svg` name the served-% panel alone.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

const ZONE_COLUMNS: [&str; 4] = ["zone_id", "name", "lat", "lon"];

fn read_zones(path: &Path) -> Result<CentroidZones, Failure> {
    let shown = path.display();
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| Failure::Other(format!("cannot read the zone file {shown}: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| Failure::Usage(format!("zone file {shown}: {e}")))?;
    let found: Vec<&str> = headers.iter().map(str::trim).collect();
    if found != ZONE_COLUMNS {
        return Err(Failure::Usage(format!(
            "unknown zone file format: {shown} has columns {}; expected {} (like data/nyc/zones.csv)",
            found.join(","),
            ZONE_COLUMNS.join(",")
        )));
    }
    CentroidZones::from_file(path, DEFAULT_ZONE_MAX_KM).map_err(Failure::Usage)
}

/// A one-line progress bar on stderr, drawn only when it is a terminal.
struct Progress {
    on: bool,
    shown: Option<(Mode, usize)>,
}

impl Progress {
    fn update(&mut self, mode: Mode, done: usize, total: usize) {
        if !self.on || total == 0 {
            return;
        }
        let pct = done * 100 / total;
        if self.shown == Some((mode, pct)) {
            return;
        }
        self.shown = Some((mode, pct));
        let label = match mode {
            Mode::NoRebalancing => "without rebalancing",
            Mode::Continuous => "with rebalancing",
        };
        let filled = pct * 30 / 100;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{label:<20} [{}{}] {pct:>3}% {done}/{total} trips",
            "#".repeat(filled),
            "-".repeat(30 - filled)
        );
        if done == total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

pub fn run(args: &BacktestArgs) -> Result<(), Failure> {
    let config = BacktestConfig {
        reach_km: args.reach_km,
        window_minutes: args.window_minutes,
        speed_kmh: args.speed_kmh,
        ..BacktestConfig::new(args.fleet_size)
    };
    config
        .validate()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let zones = read_zones(&args.zones)?;
    let (trips, fares, counts) =
        read_trips_with_fares(&args.trips, zones.zones()).map_err(Failure::Other)?;
    if trips.is_empty() {
        return Err(Failure::Usage(format!(
            "no usable trip in {} ({counts:?}); check that its zone names match {}",
            args.trips.display(),
            args.zones.display()
        )));
    }
    if counts.malformed + counts.unknown_zone > 0 {
        eprintln!(
            "note: skipped {} unreadable rows and {} with unknown zones of {}",
            counts.malformed, counts.unknown_zone, counts.rows
        );
    }
    let mut progress = Progress {
        on: std::io::stderr().is_terminal(),
        shown: None,
    };
    let comparison = compare(&trips, &fares, zones.zones(), config, &mut |m, d, t| {
        progress.update(m, d, t)
    })
    .map_err(|e| match e {
        BacktestError::Invalid(e) => Failure::Usage(e),
        e @ BacktestError::Solver(_) => Failure::Other(e.to_string()),
    })?;
    if let Some(path) = &args.chart {
        let text = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
        {
            served_pct_svg(&comparison)
        } else {
            chart(&comparison)
        };
        write_file(path, &text, "the chart")?;
    }
    eprintln!("{}", comparison.verdict);
    match &args.json {
        Some(path) => {
            let text = serde_json::to_string_pretty(&comparison)
                .map_err(|e| Failure::Other(format!("cannot encode the report: {e}")))?;
            write_file(path, &(text + "\n"), "the JSON report")
        }
        None => print_json(&comparison),
    }
}

fn write_file(path: &Path, text: &str, what: &str) -> Result<(), Failure> {
    std::fs::write(path, text)
        .map_err(|e| Failure::Other(format!("cannot write {what} to {}: {e}", path.display())))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The smallest "nice" number (1, 2, 5 x 10^k) >= `x`.
fn nice(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&v| v >= x)
        .unwrap_or(10.0 * p)
}

/// One panel: lines over the hours, day grid, y ticks, legend.
fn panel(title: &str, start_ms: &[i64], series: &[(&str, &str, Vec<f64>)]) -> String {
    let (w, h, left, right, top, bottom) = (1100.0, 230.0, 50.0, 10.0, 30.0, 30.0);
    let n = start_ms.len().max(2);
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .fold((0f64, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let step = nice((hi - lo).max(1.0) / 4.0);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let hi = hi.max(lo + step);
    let x = |i: usize| left + (w - left - right) * i as f64 / (n - 1) as f64;
    let y = |v: f64| top + (h - top - bottom) * (hi - v) / (hi - lo);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{left}" y="16" font-size="13" font-weight="bold">{}</text>"#,
        escape(title)
    );
    // Day grid and labels (every day a line, every other day a date).
    for (i, &ms) in start_ms.iter().enumerate() {
        if ms.rem_euclid(86_400_000) == 0 {
            let day = (ms / 86_400_000) % 2 == 0;
            let _ = write!(
                svg,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{1}" stroke="#eee"/>"##,
                x(i),
                h - bottom
            );
            if day {
                let date = fleet_engine::time::format_rfc3339(ms);
                let _ = write!(
                    svg,
                    r##"<text x="{:.1}" y="{}" fill="#666">{}</text>"##,
                    x(i) + 2.0,
                    h - bottom + 14.0,
                    &date[5..10]
                );
            }
        }
    }
    let ticks = ((hi - lo) / step).round() as i32;
    for k in 0..=ticks {
        let v = lo + step * f64::from(k);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{x2}" y1="{yv:.1}" y2="{yv:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end" fill="#666">{label}</text>"##,
            x2 = w - right,
            yv = y(v),
            tx = left - 4.0,
            ty = y(v) + 4.0,
            label = (v * 100.0).round() / 100.0
        );
    }
    for (k, (label, color, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{}"/>"#,
            points.join(" ")
        );
        let lx = left + 420.0 + 190.0 * k as f64;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="7" width="14" height="4" fill="{color}"/><text x="{}" y="14">{}</text>"#,
            lx + 18.0,
            escape(label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The HTML page: the headline numbers and four panels.
/// The "served % per day" panel alone, a standalone SVG (what
/// `--chart FILE.svg` writes, e.g. for a README).
pub fn served_pct_svg(c: &Comparison) -> String {
    let hours: Vec<i64> = c.without.hours.iter().map(|h| h.start_ms).collect();
    let (grey, blue) = ("#999999", "#1f77b4");
    // Each hour carries its day's served %, drawn as steps.
    let daily = |r: &Report| -> Vec<f64> {
        let mut days: std::collections::BTreeMap<i64, (u64, u64)> = Default::default();
        for h in &r.hours {
            let d = days.entry(h.start_ms.div_euclid(86_400_000)).or_default();
            *d = (d.0 + h.requests, d.1 + h.served);
        }
        r.hours
            .iter()
            .map(|h| {
                let (req, served) = days[&h.start_ms.div_euclid(86_400_000)];
                if req == 0 {
                    0.0
                } else {
                    100.0 * served as f64 / req as f64
                }
            })
            .collect()
    };
    panel(
        "Served % per day",
        &hours,
        &[
            ("without rebalancing", grey, daily(&c.without)),
            ("with rebalancing", blue, daily(&c.with)),
        ],
    )
}

pub fn chart(c: &Comparison) -> String {
    let hours: Vec<i64> = c.without.hours.iter().map(|h| h.start_ms).collect();
    let series = |r: &Report, f: fn(&fleet_pipeline::backtest::HourStats) -> u64| -> Vec<f64> {
        r.hours.iter().map(|h| f(h) as f64).collect()
    };
    let (grey, blue) = ("#999999", "#1f77b4");
    let pct = served_pct_svg(c);
    let served = panel(
        "Served requests per hour",
        &hours,
        &[
            (
                "without rebalancing",
                grey,
                series(&c.without, |h| h.served),
            ),
            ("with rebalancing", blue, series(&c.with, |h| h.served)),
        ],
    );
    let unmet = panel(
        "Unmet requests per hour",
        &hours,
        &[
            ("without rebalancing", grey, series(&c.without, |h| h.unmet)),
            ("with rebalancing", "#d62728", series(&c.with, |h| h.unmet)),
        ],
    );
    let mut gap = 0.0;
    let cumulative: Vec<f64> = c
        .with
        .hours
        .iter()
        .zip(&c.without.hours)
        .map(|(a, b)| {
            gap += a.served as f64 - b.served as f64;
            gap
        })
        .collect();
    let extra = panel(
        "Extra trips served by rebalancing, cumulative",
        &hours,
        &[("with - without", "#2ca02c", cumulative)],
    );
    let row = |name: &str, a: String, b: String| {
        format!("<tr><th>{}</th><td>{a}</td><td>{b}</td></tr>", escape(name))
    };
    let both = |f: &dyn Fn(&Report) -> String| (f(&c.without), f(&c.with));
    let mut table = String::new();
    for (name, (a, b)) in [
        ("trips", both(&|r| r.trips.to_string())),
        ("served", both(&|r| r.served.to_string())),
        ("served %", both(&|r| format!("{:.2}", r.served_pct))),
        ("unmet", both(&|r| r.unmet.to_string())),
        (
            "empty km to pickups",
            both(&|r| format!("{:.1}", r.empty_km_to_pickups)),
        ),
        (
            "repositioning km",
            both(&|r| format!("{:.1}", r.repositioning_km)),
        ),
        ("vehicle moves", both(&|r| r.vehicles_moved.to_string())),
        ("empty-km cost", both(&|r| format!("{:.2}", r.cost))),
        (
            "fares of served trips",
            both(&|r| format!("{:.2}", r.revenue)),
        ),
    ] {
        table.push_str(&row(name, a, b));
    }
    let roi = c
        .roi
        .map_or("n/a (no moves)".to_string(), |r| format!("{r:.2}"));
    let cfg = &c.config;
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Backtest: fleet of {fleet}</title>
<style>body{{font-family:sans-serif;margin:20px;color:#222}}table{{border-collapse:collapse;margin:10px 0}}
th,td{{border:1px solid #ccc;padding:3px 10px;text-align:right}}th{{text-align:left}}.v{{font-size:15px;margin:8px 0}}</style>
</head><body>
<h1>Backtest: a fleet of {fleet} on {trips} real trips</h1>
<p>Reach {reach} km, empty driving {speed} km/h x detour {detour}, {cpk} per empty km, rebalancer every {window} minutes.
Requests not served by an idle vehicle in their zone or within reach are lost.</p>
<p class="v"><b>{verdict}</b></p>
<p>The baseline never moves an idle vehicle: one that drops a passenger where nobody is picked up stays there
(real drivers would cruise back), so the gap is largely the rebalancer undoing this stranding.</p>
<table><tr><th></th><th>without rebalancing</th><th>with rebalancing</th></tr>{table}</table>
<p>Extra served: <b>{extra_served}</b>; extra fares: <b>{extra_revenue:.2}</b>; cost of moves: <b>{move_cost:.2}</b>;
change in all empty-km cost: <b>{extra_cost:.2}</b>; ROI (extra fares - cost of moves) / cost of moves: <b>{roi}</b>.</p>
{pct}
{served}
{unmet}
{extra}
</body></html>
"#,
        fleet = cfg.fleet_size,
        trips = c.without.trips,
        reach = cfg.reach_km,
        speed = cfg.speed_kmh,
        detour = cfg.detour_factor,
        cpk = cfg.cost_per_km,
        window = cfg.window_minutes,
        verdict = escape(&c.verdict),
        extra_served = c.extra_served,
        extra_revenue = c.extra_revenue,
        move_cost = c.move_cost,
        extra_cost = c.extra_cost,
    )
}
