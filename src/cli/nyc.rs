//! `fleet-optimization nyc-problem`: a rebalancing problem built from the
//! bundled real NYC TLC taxi trips (data/nyc/, see SOURCE.md there).
//!
//! Model: every taxi zone with a centroid that has a pickup or a drop-off in
//! the time window becomes a zone of the problem, with
//! - `target` = pickups in the window (the demand to be ready for),
//! - `idle` = drop-offs in the window (vehicles becoming free there),
//! - `min_vehicles` = 1 where the target is at least 2 (a coverage floor in
//!   busy zones), else 0.
//!
//! The sample is sparse (about 200 trips a day), so by default (`--date all`)
//! the window is the same hour of day on every day of the file: a
//! typical-hour picture of demand and supply. Travel is great-circle km
//! times a detour of 1.3; costs 0.6 per empty km, 15 per unmet vehicle, 5
//! per vehicle below a floor; 9 Pareto points. Trips join zones by zone
//! name (`pickup_zone`/`dropoff_zone` = the centroids' `zone`); zones drawn
//! as several polygons (several centroid rows with one LocationID) get the
//! area-weighted mean centroid. Unreadable rows are counted and reported on
//! stderr, never fatal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Args;
use fleet_engine::problem_file::{ProblemFile, TravelSpec, ZoneSpec};
use serde::Deserialize;

use super::{print_json, Failure};

/// Which days the window covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Days {
    /// The same hours on every day of the file.
    All,
    /// One calendar day (year, month, day); the window may run past midnight.
    On(i32, u32, u32),
}

fn parse_days(s: &str) -> Result<Days, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Days::All);
    }
    parse_date(s)
        .map(|(y, m, d)| Days::On(y, m, d))
        .ok_or_else(|| format!("{s:?} is neither `all` nor a date YYYY-MM-DD"))
}

/// Parses `YYYY-MM-DD` (a real calendar date).
fn parse_date(s: &str) -> Option<(i32, u32, u32)> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = [31, 28 + leap as u32, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    ((1..=12).contains(&m) && d >= 1 && d <= days[m as usize - 1]).then_some((y, m, d))
}

/// Days since 1970-01-01 of a calendar date (the engine's civil-date arithmetic).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    fleet_engine::time::days_from_civil(i64::from(y), i64::from(m), i64::from(d))
}

/// Minutes since 1970-01-01 00:00 of a `YYYY-MM-DD HH:MM[:SS]` local time
/// (the same parsing as the pipeline's trip replay).
fn parse_minutes(s: &str) -> Option<i64> {
    fleet_pipeline::nyc::parse_local_ms(s).map(|ms| ms.div_euclid(60_000))
}

/// Build a rebalancing problem from the bundled NYC taxi trips and print it.
///
/// Each taxi zone with a pickup or drop-off in the window becomes a zone:
/// target = pickups (demand), idle = drop-offs (vehicles becoming free),
/// min_vehicles = 1 where target >= 2. With `--date all` (default) the window
/// is the same hours on every day of the file (the sample holds ~200 trips a
/// day), giving a typical-hour picture. Haversine km x 1.3; costs 0.6/km,
/// 15 per unmet vehicle, 5 per vehicle below a floor; 9 Pareto points.
/// The problem (DESIGN.md 2.1 format) goes to stdout, a summary to stderr.
#[derive(Debug, Args)]
#[command(after_help = "Example (from the repository root):\n  \
    fleet-optimization nyc-problem --hour 18 > nyc.json && fleet-optimization solve --input nyc.json")]
pub struct NycArgs {
    /// Trips CSV (TLC columns pickup, dropoff, pickup_zone, dropoff_zone, ...).
    #[arg(
        long,
        value_name = "CSV",
        default_value = "data/nyc/trips_2019_03_sample.csv"
    )]
    pub trips: PathBuf,
    /// Zone centroids CSV (columns LocationID, zone, lon, lat, area_sqmi).
    #[arg(
        long,
        value_name = "CSV",
        default_value = "data/nyc/taxi_zone_centroids.csv"
    )]
    pub zones: PathBuf,
    /// `all` (the same hours on every day) or one day, YYYY-MM-DD.
    #[arg(long, value_name = "DATE", default_value = "all", value_parser = parse_days)]
    pub date: Days,
    /// First hour of the window, 0-23 (18: the evening rush, the busiest hour
    /// of the sample).
    #[arg(long, default_value_t = 18, value_parser = clap::value_parser!(u8).range(0..24))]
    pub hour: u8,
    /// Length of the window in hours, 1-24.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=24))]
    pub window_hours: u8,
}

#[derive(Debug, Deserialize)]
struct Trip {
    pickup: String,
    dropoff: String,
    pickup_zone: String,
    dropoff_zone: String,
}

#[derive(Debug, Deserialize)]
struct Centroid {
    #[serde(rename = "LocationID")]
    location_id: u32,
    zone: String,
    lon: f64,
    lat: f64,
    area_sqmi: f64,
}

/// One taxi zone: id, area-weighted centroid sums, pickups, drop-offs.
#[derive(Debug, Default)]
struct Tally {
    id: u32,
    weighted_lat: f64,
    weighted_lon: f64,
    area: f64,
    pickups: u32,
    dropoffs: u32,
}

fn open_csv(path: &Path, what: &str) -> Result<csv::Reader<std::fs::File>, Failure> {
    csv::Reader::from_path(path).map_err(|e| {
        let hint = match e.kind() {
            csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
                "no such file; run from the repository root (the default paths are relative to it) \
                 or pass the path explicitly"
                    .to_owned()
            }
            _ => e.to_string(),
        };
        Failure::Other(format!("cannot read the {what} {}: {hint}", path.display()))
    })
}

/// The taxi zones of the centroids file.
#[derive(Debug, Default)]
struct ZoneTable {
    /// One per LocationID, in file order.
    zones: Vec<Tally>,
    /// Index in `zones` of each zone name.
    by_name: HashMap<String, usize>,
    /// Unreadable rows.
    bad_rows: u64,
}

/// Reads the centroids.
fn read_zones(path: &Path) -> Result<ZoneTable, Failure> {
    let mut reader = open_csv(path, "zone centroids")?;
    let (mut zones, mut by_id, mut by_name) = (Vec::<Tally>::new(), HashMap::new(), HashMap::new());
    let mut bad = 0u64;
    for row in reader.deserialize::<Centroid>() {
        let Ok(c) = row else {
            bad += 1;
            continue;
        };
        let valid = (-90.0..=90.0).contains(&c.lat) && (-180.0..=180.0).contains(&c.lon);
        if !(valid && c.area_sqmi.is_finite() && c.area_sqmi >= 0.0) {
            bad += 1;
            continue;
        }
        let k = *by_id.entry(c.location_id).or_insert_with(|| {
            zones.push(Tally {
                id: c.location_id,
                ..Tally::default()
            });
            zones.len() - 1
        });
        // Zero-area parts still place the zone if it has no other part.
        let w = c.area_sqmi.max(1e-9);
        let z = &mut zones[k];
        (z.weighted_lat, z.weighted_lon, z.area) = (
            z.weighted_lat + w * c.lat,
            z.weighted_lon + w * c.lon,
            z.area + w,
        );
        by_name.entry(c.zone).or_insert(k);
    }
    Ok(ZoneTable {
        zones,
        by_name,
        bad_rows: bad,
    })
}

/// What was read, for the summary on stderr.
#[derive(Debug, Default)]
struct Counts {
    rows: u64,
    bad_rows: u64,
    unknown_zone: u64,
    pickups: u64,
    dropoffs: u64,
}

pub fn run(args: &NycArgs) -> Result<(), Failure> {
    let ZoneTable {
        mut zones,
        by_name,
        bad_rows: bad_centroids,
    } = read_zones(&args.zones)?;
    if zones.is_empty() {
        return Err(Failure::Usage(format!(
            "no usable zone in {} (expected columns LocationID, zone, lon, lat, area_sqmi)",
            args.zones.display()
        )));
    }
    let window = i64::from(args.window_hours) * 60;
    let start = i64::from(args.hour) * 60;
    let in_window = |minutes: i64| match args.date {
        Days::All => (minutes.rem_euclid(1440) - start).rem_euclid(1440) < window,
        Days::On(y, m, d) => {
            (0..window).contains(&(minutes - days_from_civil(y, m, d) * 1440 - start))
        }
    };
    let mut reader = open_csv(&args.trips, "trips")?;
    let mut n = Counts::default();
    for row in reader.deserialize::<Trip>() {
        n.rows += 1;
        let Ok(trip) = row else {
            n.bad_rows += 1;
            continue;
        };
        let (Some(pickup), Some(dropoff)) =
            (parse_minutes(&trip.pickup), parse_minutes(&trip.dropoff))
        else {
            n.bad_rows += 1;
            continue;
        };
        let (from, to) = (
            by_name.get(&trip.pickup_zone),
            by_name.get(&trip.dropoff_zone),
        );
        n.unknown_zone += (from.is_none() || to.is_none()) as u64;
        if let (Some(&k), true) = (from, in_window(pickup)) {
            zones[k].pickups += 1;
            n.pickups += 1;
        }
        if let (Some(&k), true) = (to, in_window(dropoff)) {
            zones[k].dropoffs += 1;
            n.dropoffs += 1;
        }
    }
    zones.retain(|z| z.pickups > 0 || z.dropoffs > 0);
    if zones.is_empty() {
        return Err(Failure::Usage(format!(
            "no pickup or drop-off in the window ({} trips read); choose a --date within the file \
             or `--date all`",
            n.rows
        )));
    }
    let file = ProblemFile {
        zones: zones
            .iter()
            .map(|z| {
                let round = |v: f64| (v / z.area * 1e6).round() / 1e6;
                let min = u32::from(z.pickups >= 2);
                ZoneSpec::new(
                    z.id.to_string(),
                    round(z.weighted_lat),
                    round(z.weighted_lon),
                    z.dropoffs,
                    z.pickups,
                    min,
                )
            })
            .collect(),
        travel: TravelSpec::haversine(1.3),
        costs: fleet_engine::model::Costs::DESIGN_EXAMPLE.into(),
        max_move_km: None,
        neighbours: None,
        pareto_points: 9,
        horizon: None,
    };
    eprintln!(
        "nyc-problem: {} zones from {} trip rows: {} pickups (targets), {} drop-offs (idle) in the window; \
         skipped {} malformed trip rows, {} trips with a zone without centroid, {} malformed centroid rows",
        file.zones.len(),
        n.rows,
        n.pickups,
        n.dropoffs,
        n.bad_rows,
        n.unknown_zone,
        bad_centroids
    );
    print_json(&file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_parse() {
        assert_eq!(parse_days("all"), Ok(Days::All));
        assert_eq!(parse_days("2019-03-06"), Ok(Days::On(2019, 3, 6)));
        assert!(parse_days("2019-02-29").is_err());
        assert!(parse_days("2019-3-6").is_err());
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            days_from_civil(2019, 3, 1) - days_from_civil(2019, 2, 28),
            1
        );
        let t = parse_minutes("2019-03-06 18:05:59").unwrap();
        assert_eq!(t, days_from_civil(2019, 3, 6) * 1440 + 18 * 60 + 5);
        assert_eq!(parse_minutes("2019-03-06 24:00:00"), None);
        assert_eq!(parse_minutes(""), None);
    }
}
