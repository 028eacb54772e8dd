//! The bundled NYC TLC trips (data/nyc/, see SOURCE.md there) as telemetry:
//! the embedded default source, and a generator for load.
//!
//! The trips carry no vehicle ids, so a fleet is reconstructed: a trip is
//! served by a vehicle that became idle in its pickup zone earlier (the one
//! idle longest), else by a new vehicle. Each trip then yields a request at
//! pickup, the vehicle `occupied` at pickup and `idle` at drop-off. Trip
//! times are local New York times, used as if UTC. Points are the zone
//! centroids, so zone assignment is exact.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use fleet_engine::synthetic::Rng;
use fleet_engine::time::days_from_civil;

use crate::event::{Event, EventKind, VehicleState};
use crate::zones::ZoneInfo;

/// One trip joined to zones (indices into the zone list).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trip {
    pub pickup_ms: i64,
    pub dropoff_ms: i64,
    pub pickup_zone: usize,
    pub dropoff_zone: usize,
}

/// What reading a trips file skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TripCounts {
    pub rows: u64,
    pub malformed: u64,
    pub unknown_zone: u64,
    /// Trips kept without a readable fare (their fare reads as 0).
    pub no_fare: u64,
}

/// `YYYY-MM-DD HH:MM[:SS]` as ms since the epoch (no time zone applied).
pub fn parse_local_ms(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once([' ', 'T'])?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, 28 + leap as i64, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if d.next().is_some() || !(1..=12).contains(&m) || day < 1 || day > month_days[m as usize - 1] {
        return None;
    }
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let min: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next().map_or(Some(0), |s| s.parse().ok())?;
    if !((0..24).contains(&h) && (0..60).contains(&min) && (0..60).contains(&sec)) {
        return None;
    }
    Some(((days_from_civil(y, m, day) * 24 + h) * 60 + min) * 60_000 + sec * 1000)
}

/// Reads a TLC trips CSV (columns `pickup, dropoff, pickup_zone,
/// dropoff_zone`, zone names as in `zones`); unreadable rows and unknown
/// zones are counted, never fatal. Trips come back in pickup order.
pub fn read_trips(path: &Path, zones: &[ZoneInfo]) -> Result<(Vec<Trip>, TripCounts), String> {
    read_trips_with_fares(path, zones).map(|(trips, _, n)| (trips, n))
}

/// [`read_trips`] and each trip's fare in dollars (the optional `fare`
/// column; a missing, unreadable or non-finite fare reads as 0 and is
/// counted in `TripCounts::no_fare`): `fares[i]` belongs to `trips[i]`.
pub fn read_trips_with_fares(
    path: &Path,
    zones: &[ZoneInfo],
) -> Result<(Vec<Trip>, Vec<f64>, TripCounts), String> {
    #[derive(serde::Deserialize)]
    struct Row {
        pickup: String,
        dropoff: String,
        pickup_zone: String,
        dropoff_zone: String,
        fare: Option<String>,
    }
    let by_name: HashMap<&str, usize> = zones
        .iter()
        .enumerate()
        .map(|(i, z)| (z.name.as_str(), i))
        .collect();
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| format!("cannot read the trips file {}: {e}", path.display()))?;
    let (mut trips, mut n) = (Vec::new(), TripCounts::default());
    for row in reader.deserialize::<Row>() {
        n.rows += 1;
        let Ok(row) = row else {
            n.malformed += 1;
            continue;
        };
        let (Some(pickup_ms), Some(dropoff_ms)) =
            (parse_local_ms(&row.pickup), parse_local_ms(&row.dropoff))
        else {
            n.malformed += 1;
            continue;
        };
        let (Some(&pickup_zone), Some(&dropoff_zone)) = (
            by_name.get(row.pickup_zone.as_str()),
            by_name.get(row.dropoff_zone.as_str()),
        ) else {
            n.unknown_zone += 1;
            continue;
        };
        let fare = row
            .fare
            .and_then(|f| f.trim().parse::<f64>().ok())
            .filter(|f| f.is_finite());
        n.no_fare += u64::from(fare.is_none());
        let trip = Trip {
            pickup_ms,
            dropoff_ms: dropoff_ms.max(pickup_ms),
            pickup_zone,
            dropoff_zone,
        };
        trips.push((trip, fare.unwrap_or(0.0)));
    }
    trips.sort_by_key(|(t, _)| t.pickup_ms);
    let (trips, fares) = trips.into_iter().unzip();
    Ok((trips, fares, n))
}

/// The telemetry the trips imply, in event-time order (see the module doc).
pub fn trip_events(trips: &[Trip], zones: &[ZoneInfo], fleet_id: &str) -> Vec<Event> {
    // Drop-offs become idle vehicles when their time comes: process trips
    // and pending drop-offs in time order.
    let mut idle: Vec<VecDeque<usize>> = vec![VecDeque::new(); zones.len()];
    let mut pending: BTreeMap<(i64, usize), (usize, usize)> = BTreeMap::new(); // (time, seq) -> (vehicle, zone)
    let mut vehicles = 0usize;
    let mut events = Vec::with_capacity(trips.len() * 3);
    let at = |zone: usize| (zones[zone].lat, zones[zone].lon);
    let vehicle = |v: usize, ts_ms: i64, zone: usize, state| {
        let (lat, lon) = at(zone);
        Event {
            kind: EventKind::Vehicle { state },
            id: format!("v-{v}"),
            fleet_id: fleet_id.to_owned(),
            ts_ms,
            lat,
            lon,
        }
    };
    for (seq, t) in trips.iter().enumerate() {
        while let Some((&(time, s), &(v, zone))) = pending.iter().next() {
            if time > t.pickup_ms {
                break;
            }
            pending.remove(&(time, s));
            idle[zone].push_back(v);
            events.push(vehicle(v, time, zone, VehicleState::Idle));
        }
        let (lat, lon) = at(t.pickup_zone);
        events.push(Event {
            kind: EventKind::Request {
                dropoff: Some(at(t.dropoff_zone)),
            },
            id: format!("r-{seq}"),
            fleet_id: fleet_id.to_owned(),
            ts_ms: t.pickup_ms,
            lat,
            lon,
        });
        let v = idle[t.pickup_zone].pop_front().unwrap_or_else(|| {
            vehicles += 1;
            vehicles - 1
        });
        events.push(vehicle(
            v,
            t.pickup_ms,
            t.pickup_zone,
            VehicleState::Occupied,
        ));
        pending.insert((t.dropoff_ms, seq), (v, t.dropoff_zone));
    }
    for ((time, _), (v, zone)) in pending {
        events.push(vehicle(v, time, zone, VehicleState::Idle));
    }
    events.sort_by_key(|e| e.ts_ms); // stable: a trip's request precedes its vehicle
    events
}

/// Synthetic telemetry drawn from the trips' zone-to-zone and time-of-day
/// distribution, for load: an endless, seeded stream.
#[derive(Debug, Clone)]
pub struct Generator {
    trips: Vec<Trip>,
    zones: Vec<ZoneInfo>,
    fleet_id: String,
    vehicles: usize,
    rng: Rng,
    /// Event time of the next event, ms.
    now_ms: i64,
    /// Mean event-time gap between events, ms.
    gap_ms: f64,
    seq: u64,
}

impl Generator {
    /// `events_per_event_hour` sets the event-time density (events per hour
    /// of event time); `vehicles` the fleet size.
    pub fn new(
        trips: Vec<Trip>,
        zones: Vec<ZoneInfo>,
        fleet_id: &str,
        vehicles: usize,
        start_ms: i64,
        events_per_event_hour: f64,
        seed: u64,
    ) -> Result<Self, String> {
        if trips.is_empty() {
            return Err("no trips to draw from".into());
        }
        Ok(Generator {
            trips,
            zones,
            fleet_id: fleet_id.to_owned(),
            vehicles: vehicles.max(1),
            rng: Rng::new(seed),
            now_ms: start_ms,
            gap_ms: 3_600_000.0 / events_per_event_hour.max(1.0),
            seq: 0,
        })
    }

    /// The next event: a request (a third of the time) or a vehicle report,
    /// from a trip of the same hour of day when there is one.
    pub fn next_event(&mut self) -> Event {
        self.seq += 1;
        self.now_ms += (self.rng.unit() * 2.0 * self.gap_ms) as i64;
        let hour = (self.now_ms / 3_600_000).rem_euclid(24);
        let mut trip = self.trips[self.rng.below(self.trips.len() as u64) as usize];
        for _ in 0..8 {
            if (trip.pickup_ms / 3_600_000).rem_euclid(24) == hour {
                break;
            }
            trip = self.trips[self.rng.below(self.trips.len() as u64) as usize];
        }
        let jitter = |rng: &mut Rng| (rng.unit() - 0.5) * 0.002;
        if self.seq % 3 == 0 {
            let (z, d) = (
                &self.zones[trip.pickup_zone],
                &self.zones[trip.dropoff_zone],
            );
            Event {
                kind: EventKind::Request {
                    dropoff: Some((d.lat, d.lon)),
                },
                id: format!("r-{}", self.seq),
                fleet_id: self.fleet_id.clone(),
                ts_ms: self.now_ms,
                lat: z.lat + jitter(&mut self.rng),
                lon: z.lon + jitter(&mut self.rng),
            }
        } else {
            let z = &self.zones[trip.dropoff_zone];
            let state = if self.rng.unit() < 0.4 {
                VehicleState::Idle
            } else {
                VehicleState::Occupied
            };
            Event {
                kind: EventKind::Vehicle { state },
                id: format!("v-{}", self.rng.below(self.vehicles as u64)),
                fleet_id: self.fleet_id.clone(),
                ts_ms: self.now_ms,
                lat: z.lat + jitter(&mut self.rng),
                lon: z.lon + jitter(&mut self.rng),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zones::{CentroidZones, DEFAULT_ZONE_MAX_KM};

    fn data(file: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/nyc")
            .join(file)
    }

    #[test]
    fn the_bundled_trips_become_consistent_telemetry() {
        let zones = CentroidZones::from_file(&data("zones.csv"), DEFAULT_ZONE_MAX_KM).unwrap();
        let (trips, n) = read_trips(&data("trips_2019_03_sample.csv"), zones.zones()).unwrap();
        assert_eq!(n.rows, 6433);
        // Fares come along in the same (pickup) order; the file's first row
        // (2019-03-23 20:21:09, Lenox Hill West -> UN/Turtle Bay South) is $7.
        let (with_fares, fares, n2) =
            read_trips_with_fares(&data("trips_2019_03_sample.csv"), zones.zones()).unwrap();
        assert_eq!((with_fares.as_slice(), n2), (trips.as_slice(), n));
        assert_eq!(fares.len(), trips.len());
        assert_eq!(n.no_fare, 0);
        assert!(fares.iter().all(|&f| f > 0.0));
        let first = parse_local_ms("2019-03-23 20:21:09").unwrap();
        let lenox = zones
            .zones()
            .iter()
            .position(|z| z.name == "Lenox Hill West");
        let i = (0..trips.len())
            .find(|&i| trips[i].pickup_ms == first && Some(trips[i].pickup_zone) == lenox)
            .unwrap();
        assert_eq!(fares[i], 7.0);
        assert!(trips.len() as u64 + n.malformed + n.unknown_zone == n.rows);
        assert!(trips.len() > 6000, "{n:?}");
        let events = trip_events(&trips, zones.zones(), "nyc");
        let requests = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Request { .. }))
            .count();
        assert_eq!(requests, trips.len());
        assert_eq!(events.len(), 3 * trips.len());
        assert!(events.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        // A vehicle alternates occupied -> idle and never serves two trips at once.
        let mut state: HashMap<&str, VehicleState> = HashMap::new();
        for e in &events {
            if let EventKind::Vehicle { state: s } = e.kind {
                if let Some(prev) = state.insert(&e.id, s) {
                    assert_ne!(prev, s, "{} reported {s:?} twice in a row", e.id);
                }
            }
        }
        assert_eq!(
            parse_local_ms("2019-03-04 08:15:00"),
            Some(1_551_687_300_000)
        );
        assert_eq!(parse_local_ms("2019-02-29 08:15:00"), None);
    }

    #[test]
    fn the_generator_is_seeded_and_time_ordered() {
        let zones = CentroidZones::from_file(&data("zones.csv"), DEFAULT_ZONE_MAX_KM).unwrap();
        let (trips, _) = read_trips(&data("trips_2019_03_sample.csv"), zones.zones()).unwrap();
        let make = || {
            Generator::new(
                trips.clone(),
                zones.zones().to_vec(),
                "nyc",
                500,
                1_551_657_600_000,
                36_000.0,
                7,
            )
            .unwrap()
        };
        let (mut a, mut b) = (make(), make());
        let xs: Vec<Event> = (0..1000).map(|_| a.next_event()).collect();
        let ys: Vec<Event> = (0..1000).map(|_| b.next_event()).collect();
        assert_eq!(xs, ys);
        assert!(xs.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        for e in &xs {
            assert!(crate::event::decode(e.to_json().as_bytes(), i64::MAX / 2).is_ok());
        }
    }
}
