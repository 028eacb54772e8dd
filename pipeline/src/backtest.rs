//! A fleet simulator driven by real trips (issue 6): the same trips replayed
//! against a fleet of `fleet_size` vehicles twice, once without rebalancing
//! and once with [`ContinuousRebalancer`] in the loop, to measure what the
//! rebalancer's moves buy (served trips, fares) and cost (empty km).
//!
//! A pure, deterministic discrete-event simulation: no IO, no async, no
//! clock, no randomness. Events in time order (ties: vehicles becoming idle
//! first, then a window boundary, then requests, so a vehicle freed at `t`
//! can serve a request at `t`, and a window `[start, end)` counts requests
//! before `end`):
//!
//! - a **request** at the trip's pickup time and zone is served by a vehicle
//!   idle in the pickup zone, else by one idle in the nearest other zone whose
//!   centre lies within `reach_km` (straight line; ties by zone order; the
//!   longest idle vehicle of a zone goes first); otherwise it is **unmet** and
//!   lost (no queueing, no waiting);
//! - a served trip occupies its vehicle until the trip's drop-off time, when
//!   the vehicle becomes idle in the drop-off zone;
//! - in [`Mode::Continuous`], at every window boundary the rebalancer sees
//!   the window just ended and its plan's moves are executed with idle
//!   vehicles, which drive empty (`detour_factor` x straight km at
//!   `speed_kmh`) and become idle at the destination on arrival.
//!
//! Simplifications: a
//! vehicle fetching a request from a neighbouring zone counts its empty km,
//! but the trip still starts at its recorded pickup time and ends at its
//! recorded drop-off (the few minutes of approach are not simulated); zones
//! are points (their centroids), so a trip within one zone drives no empty
//! km to its pickup; fares are gross revenue (the cost of driving the extra
//! trips themselves is not deducted, so the ROI is optimistic by that much);
//! the rebalancer's `soon_idle` counts trips ending in a zone within the next
//! window and moves under way to it (the pipeline, not knowing drop-off
//! zones, counts every occupied vehicle where it last reported); without
//! rebalancing an
//! idle vehicle never moves (no cruising back to busy areas, as real drivers
//! would), so vehicles dropping passengers where nobody is picked up strand
//! there and the baseline decays over the run; the trips are a sparse
//! sample (about 200 a day in NYC), so the fleet sizes that make sense for it
//! are small.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use fleet_engine::geo::haversine_km;
use fleet_engine::model::Costs;

use crate::nyc::Trip;
use crate::rebalance::{ContinuousRebalancer, RebalanceConfig};
use crate::window::{ClosedWindow, ZoneWindow};
use crate::zones::{CentroidZones, ZoneInfo, DEFAULT_ZONE_MAX_KM};

const HOUR_MS: i64 = 3_600_000;

/// How the fleet is simulated.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BacktestConfig {
    pub fleet_size: usize,
    /// A request can be served by an idle vehicle in another zone whose
    /// centre is at most this far (straight line) from the pickup zone's.
    pub reach_km: f64,
    /// Empty driving speed (repositioning times).
    pub speed_kmh: f64,
    /// How often the rebalancer runs (its window), minutes.
    pub window_minutes: u32,
    /// Cost of an empty km (to a pickup or repositioning).
    pub cost_per_km: f64,
    /// Road km per straight km.
    pub detour_factor: f64,
}

impl BacktestConfig {
    /// The defaults for a fleet of `fleet_size`: reach 2 km, 20 km/h, hourly
    /// windows, the engine's cost per km, detour 1.3.
    pub fn new(fleet_size: usize) -> Self {
        BacktestConfig {
            fleet_size,
            reach_km: 2.0,
            speed_kmh: 20.0,
            window_minutes: 60,
            cost_per_km: Costs::DESIGN_EXAMPLE.per_km,
            detour_factor: 1.3,
        }
    }

    pub fn validate(&self) -> Result<(), BacktestError> {
        let bad = |what: String| Err(BacktestError::Invalid(what));
        if self.fleet_size == 0 || self.fleet_size > fleet_engine::model::MAX_VEHICLES as usize {
            return bad(format!(
                "fleet size must be 1 to {}, not {}",
                fleet_engine::model::MAX_VEHICLES,
                self.fleet_size
            ));
        }
        if !(self.reach_km.is_finite() && self.reach_km >= 0.0) {
            return bad(format!("reach must be >= 0 km, not {}", self.reach_km));
        }
        if !(self.speed_kmh.is_finite() && self.speed_kmh > 0.0) {
            return bad(format!("speed must be > 0 km/h, not {}", self.speed_kmh));
        }
        if self.window_minutes == 0 {
            return bad("the window must be at least 1 minute".into());
        }
        if !(self.cost_per_km.is_finite() && self.cost_per_km >= 0.0) {
            return bad(format!(
                "cost per km must be >= 0, not {}",
                self.cost_per_km
            ));
        }
        if !(self.detour_factor.is_finite() && self.detour_factor >= 1.0) {
            return bad(format!(
                "detour factor must be >= 1, not {}",
                self.detour_factor
            ));
        }
        Ok(())
    }

    /// The rebalancer's settings: the engine's defaults, with this
    /// simulation's cost per km and detour factor.
    pub fn rebalance(&self) -> RebalanceConfig {
        RebalanceConfig {
            costs: Costs {
                per_km: self.cost_per_km,
                ..Costs::DESIGN_EXAMPLE
            },
            detour_factor: self.detour_factor,
            ..RebalanceConfig::default()
        }
    }
}

/// Without rebalancing, or with the continuous rebalancer in the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    NoRebalancing,
    Continuous,
}

/// Why a backtest could not run.
#[derive(Debug, Clone, PartialEq)]
pub enum BacktestError {
    /// Bad settings or input (what is wrong is said).
    Invalid(String),
    /// The rebalancer failed (a bug, never bad input).
    Solver(String),
}

impl std::fmt::Display for BacktestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BacktestError::Invalid(e) => f.write_str(e),
            BacktestError::Solver(e) => write!(f, "the rebalancer failed: {e}"),
        }
    }
}

impl std::error::Error for BacktestError {}

/// Requests of one hour of pickup time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HourStats {
    pub start_ms: i64,
    pub requests: u64,
    pub served: u64,
    pub unmet: u64,
}

/// What one simulation gave.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    pub mode: Mode,
    pub trips: u64,
    pub served: u64,
    pub unmet: u64,
    pub served_pct: f64,
    /// Served by a vehicle idle in the pickup zone.
    pub served_in_zone: u64,
    /// Served by a vehicle idle in another zone within reach.
    pub served_from_nearby: u64,
    /// Empty road km driven to pickups in other zones.
    pub empty_km_to_pickups: f64,
    /// Empty road km driven by the rebalancer's moves.
    pub repositioning_km: f64,
    /// Vehicles sent on a move (a vehicle counts once per move).
    pub vehicles_moved: u64,
    /// Times the rebalancer ran.
    pub rebalancer_windows: u64,
    /// All empty km x cost per km.
    pub cost: f64,
    /// Fares of the served trips.
    pub revenue: f64,
    /// Per hour of pickup time, from the first trip's hour to the last's.
    pub hours: Vec<HourStats>,
}

/// The same trips without and with rebalancing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub config: BacktestConfig,
    pub without: Report,
    pub with: Report,
    /// `with.served - without.served`.
    pub extra_served: i64,
    /// `with.revenue - without.revenue`.
    pub extra_revenue: f64,
    /// Cost of the rebalancer's moves: repositioning km x cost per km.
    pub move_cost: f64,
    /// `with.cost - without.cost`: the moves plus the change in empty km to
    /// pickups they caused (either sign).
    pub extra_cost: f64,
    /// `(extra_revenue - move_cost) / move_cost`; `None` without moves.
    pub roi: Option<f64>,
    /// One sentence saying whether rebalancing helped on this data.
    pub verdict: String,
}

/// What [`Simulator::step`] processed.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A trip's request: served by `vehicle` idle in `from_zone` (empty road
    /// km `km`, 0 in the pickup zone), or unmet.
    Request {
        at_ms: i64,
        trip: usize,
        served: Option<Service>,
    },
    /// A vehicle became idle in `zone`: the end of a trip, or the arrival of
    /// a move (`arrival`).
    Free {
        at_ms: i64,
        vehicle: usize,
        zone: usize,
        arrival: bool,
    },
    /// The rebalancer ran; `moves` are the vehicles sent (vehicle, from, to).
    Window {
        at_ms: i64,
        moves: Vec<(usize, usize, usize)>,
    },
}

impl Step {
    pub fn at_ms(&self) -> i64 {
        match self {
            Step::Request { at_ms, .. } | Step::Free { at_ms, .. } | Step::Window { at_ms, .. } => {
                *at_ms
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Service {
    pub vehicle: usize,
    pub from_zone: usize,
    pub km: f64,
}

/// Where the fleet is: every vehicle is in exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub idle: usize,
    /// On a trip.
    pub busy: usize,
    /// Driving empty to a rebalancing destination.
    pub travelling: usize,
}

/// A vehicle that becomes idle later (ordered by time, then creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at_ms: i64,
    seq: u64,
    vehicle: usize,
    zone: usize,
    arrival: bool,
}

struct Continuous {
    rebalancer: ContinuousRebalancer,
    map: CentroidZones,
    by_id: HashMap<String, usize>,
}

/// The simulation, one event at a time ([`simulate`] runs it through).
pub struct Simulator<'a> {
    trips: &'a [Trip],
    fares: &'a [f64],
    zones: &'a [ZoneInfo],
    config: BacktestConfig,
    /// Trip indices in pickup order.
    order: Vec<usize>,
    next_request: usize,
    now_ms: i64,
    idle: Vec<VecDeque<usize>>,
    pending: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    /// Per zone, the other zones within reach, nearest first: (km, zone).
    near: Vec<Vec<(f64, usize)>>,
    window_ms: i64,
    next_window_ms: i64,
    /// Requests per zone since the last window boundary.
    window_requests: Vec<i64>,
    continuous: Option<Continuous>,
    served: Vec<bool>,
    first_hour_ms: i64,
    report: Report,
}

impl<'a> Simulator<'a> {
    /// `fares[i]` is `trips[i]`'s; trip zones index `zones`.
    pub fn new(
        trips: &'a [Trip],
        fares: &'a [f64],
        zones: &'a [ZoneInfo],
        config: BacktestConfig,
        mode: Mode,
    ) -> Result<Self, BacktestError> {
        config.validate()?;
        let invalid = |s: String| Err(BacktestError::Invalid(s));
        if zones.is_empty() {
            return invalid("no zones".into());
        }
        if trips.is_empty() {
            return invalid("no trips to simulate".into());
        }
        if fares.len() != trips.len() {
            return invalid(format!("{} fares for {} trips", fares.len(), trips.len()));
        }
        for (i, t) in trips.iter().enumerate() {
            if t.pickup_zone >= zones.len() || t.dropoff_zone >= zones.len() {
                return invalid(format!(
                    "trip {i}: zone index beyond the {} zones",
                    zones.len()
                ));
            }
            if t.dropoff_ms < t.pickup_ms {
                return invalid(format!("trip {i}: drop-off before pickup"));
            }
            if !fares[i].is_finite() {
                return invalid(format!("trip {i}: fare {} is not a number", fares[i]));
            }
        }
        let n = zones.len();
        let mut order: Vec<usize> = (0..trips.len()).collect();
        order.sort_by_key(|&i| (trips[i].pickup_ms, i));
        let first_ms = trips[order[0]].pickup_ms;
        let last_ms = trips[order[order.len() - 1]].pickup_ms;

        // The initial fleet: in proportion to pickups per zone over the
        // whole data, largest remainder (ties: zone order).
        let mut pickups = vec![0u64; n];
        for t in trips {
            pickups[t.pickup_zone] += 1;
        }
        let (fleet, total) = (config.fleet_size as u64, trips.len() as u64);
        let mut count: Vec<u64> = pickups.iter().map(|&p| fleet * p / total).collect();
        let mut by_remainder: Vec<usize> = (0..n).collect();
        by_remainder.sort_by_key(|&z| (Reverse(fleet * pickups[z] % total), z));
        let left = fleet - count.iter().sum::<u64>();
        for &z in by_remainder.iter().take(left as usize) {
            count[z] += 1;
        }
        let mut idle = vec![VecDeque::new(); n];
        let mut vehicle = 0;
        for (z, &c) in count.iter().enumerate() {
            for _ in 0..c {
                idle[z].push_back(vehicle);
                vehicle += 1;
            }
        }
        debug_assert_eq!(vehicle, config.fleet_size);

        let near = (0..n)
            .map(|p| {
                let mut near: Vec<(f64, usize)> = (0..n)
                    .filter(|&z| z != p)
                    .map(|z| (km(zones, p, z), z))
                    .filter(|&(d, _)| d <= config.reach_km)
                    .collect();
                near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                near
            })
            .collect();

        let continuous = match mode {
            Mode::NoRebalancing => None,
            Mode::Continuous => {
                let mut by_id = HashMap::new();
                for (i, z) in zones.iter().enumerate() {
                    if by_id.insert(z.id.clone(), i).is_some() {
                        return invalid(format!("zone id {} appears twice", z.id));
                    }
                }
                let map = CentroidZones::new(zones.to_vec(), DEFAULT_ZONE_MAX_KM)
                    .map_err(BacktestError::Invalid)?;
                Some(Continuous {
                    rebalancer: ContinuousRebalancer::new(config.rebalance(), &map),
                    map,
                    by_id,
                })
            }
        };
        let window_ms = i64::from(config.window_minutes) * 60_000;
        let first_hour_ms = first_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let hours = (last_ms.div_euclid(HOUR_MS) - first_ms.div_euclid(HOUR_MS) + 1) as usize;
        Ok(Simulator {
            trips,
            fares,
            zones,
            config,
            order,
            next_request: 0,
            now_ms: first_ms,
            idle,
            pending: BinaryHeap::new(),
            seq: 0,
            near,
            window_ms,
            next_window_ms: (first_ms.div_euclid(window_ms) + 1) * window_ms,
            window_requests: vec![0; n],
            continuous,
            served: vec![false; trips.len()],
            first_hour_ms,
            report: Report {
                mode,
                trips: trips.len() as u64,
                served: 0,
                unmet: 0,
                served_pct: 0.0,
                served_in_zone: 0,
                served_from_nearby: 0,
                empty_km_to_pickups: 0.0,
                repositioning_km: 0.0,
                vehicles_moved: 0,
                rebalancer_windows: 0,
                cost: 0.0,
                revenue: 0.0,
                hours: (0..hours)
                    .map(|h| HourStats {
                        start_ms: first_hour_ms + h as i64 * HOUR_MS,
                        requests: 0,
                        served: 0,
                        unmet: 0,
                    })
                    .collect(),
            },
        })
    }

    /// Simulation time: the time of the last event processed.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Requests processed so far, and in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.next_request, self.order.len())
    }

    /// Where the fleet is, counted from the idle queues and the pending
    /// drop-offs and arrivals.
    pub fn census(&self) -> Census {
        let busy = self.pending.iter().filter(|p| !p.0.arrival).count();
        Census {
            idle: self.idle.iter().map(VecDeque::len).sum(),
            busy,
            travelling: self.pending.len() - busy,
        }
    }

    /// Processes the next event; `None` once every request is processed.
    pub fn step(&mut self) -> Result<Option<Step>, BacktestError> {
        let Some(&trip) = self.order.get(self.next_request) else {
            return Ok(None);
        };
        let request_ms = self.trips[trip].pickup_ms;
        let free_ms = self.pending.peek().map(|p| p.0.at_ms);
        let window_ms = self.continuous.as_ref().map(|_| self.next_window_ms);
        // Ties: frees, then the window boundary, then the request.
        let step = if free_ms.is_some_and(|f| f <= request_ms && window_ms.is_none_or(|w| f <= w)) {
            let Reverse(p) = self.pending.pop().expect("peeked");
            self.advance(p.at_ms)?;
            self.idle[p.zone].push_back(p.vehicle);
            Step::Free {
                at_ms: p.at_ms,
                vehicle: p.vehicle,
                zone: p.zone,
                arrival: p.arrival,
            }
        } else if let Some(w) = window_ms.filter(|&w| w <= request_ms) {
            self.advance(w)?;
            let moves = self.rebalance(w)?;
            self.next_window_ms = w + self.window_ms;
            Step::Window { at_ms: w, moves }
        } else {
            self.advance(request_ms)?;
            self.next_request += 1;
            let served = self.request(trip)?;
            Step::Request {
                at_ms: request_ms,
                trip,
                served,
            }
        };
        Ok(Some(step))
    }

    fn advance(&mut self, to_ms: i64) -> Result<(), BacktestError> {
        if to_ms < self.now_ms {
            return Err(BacktestError::Solver(format!(
                "simulation time would go back from {} to {to_ms}",
                self.now_ms
            )));
        }
        self.now_ms = to_ms;
        Ok(())
    }

    fn schedule(&mut self, at_ms: i64, vehicle: usize, zone: usize, arrival: bool) {
        self.seq += 1;
        self.pending.push(Reverse(Pending {
            at_ms,
            seq: self.seq,
            vehicle,
            zone,
            arrival,
        }));
    }

    fn request(&mut self, trip: usize) -> Result<Option<Service>, BacktestError> {
        let t = self.trips[trip];
        let p = t.pickup_zone;
        self.window_requests[p] += 1;
        let hour = ((t.pickup_ms - self.first_hour_ms) / HOUR_MS) as usize;
        self.report.hours[hour].requests += 1;
        let source = if !self.idle[p].is_empty() {
            Some((p, 0.0))
        } else {
            self.near[p]
                .iter()
                .find(|&&(_, z)| !self.idle[z].is_empty())
                .map(|&(d, z)| (z, d * self.config.detour_factor))
        };
        let Some((from_zone, km)) = source else {
            self.report.unmet += 1;
            self.report.hours[hour].unmet += 1;
            return Ok(None);
        };
        if std::mem::replace(&mut self.served[trip], true) {
            return Err(BacktestError::Solver(format!("trip {trip} served twice")));
        }
        let vehicle = self.idle[from_zone].pop_front().expect("not empty");
        self.report.served += 1;
        self.report.hours[hour].served += 1;
        if from_zone == p {
            self.report.served_in_zone += 1;
        } else {
            self.report.served_from_nearby += 1;
        }
        self.report.empty_km_to_pickups += km;
        self.report.revenue += self.fares[trip];
        self.schedule(t.dropoff_ms, vehicle, t.dropoff_zone, false);
        Ok(Some(Service {
            vehicle,
            from_zone,
            km,
        }))
    }

    /// The window `[end - window, end)` closes: the rebalancer plans, and as
    /// many of its moves as there are idle vehicles are driven.
    fn rebalance(&mut self, end_ms: i64) -> Result<Vec<(usize, usize, usize)>, BacktestError> {
        let n = self.zones.len();
        // Soon idle: trips ending in the zone within the next window, and
        // every move under way to it.
        let mut soon = vec![0i64; n];
        for Reverse(p) in &self.pending {
            if p.arrival || p.at_ms < end_ms + self.window_ms {
                soon[p.zone] += 1;
            }
        }
        let rows = (0..n)
            .filter_map(|z| {
                let (requests, idle) = (self.window_requests[z], self.idle[z].len() as i64);
                (requests != 0 || idle != 0 || soon[z] != 0).then_some(ZoneWindow {
                    zone: z as u64,
                    requests,
                    idle,
                    soon_idle: soon[z],
                    unserved: (requests - idle).max(0),
                })
            })
            .collect();
        let window = ClosedWindow {
            start_ms: end_ms - self.window_ms,
            end_ms,
            zones: rows,
            vehicles: Vec::new(),
        };
        self.window_requests.iter_mut().for_each(|r| *r = 0);
        let c = self.continuous.as_mut().expect("continuous mode");
        let plan = c
            .rebalancer
            .on_window(&window, &c.map)
            .map_err(|e| BacktestError::Solver(e.to_string()))?;
        self.report.rebalancer_windows += 1;
        let mut moves = Vec::new();
        for m in &plan.moves {
            let (Some(&from), Some(&to)) = (c.by_id.get(&m.from_zone), c.by_id.get(&m.to_zone))
            else {
                return Err(BacktestError::Solver(format!(
                    "a move between unknown zones {} -> {}",
                    m.from_zone, m.to_zone
                )));
            };
            for _ in 0..m.vehicles {
                let Some(vehicle) = self.idle[from].pop_front() else {
                    break;
                };
                moves.push((vehicle, from, to));
            }
        }
        for &(vehicle, from, to) in &moves {
            let road_km = km(self.zones, from, to) * self.config.detour_factor;
            let travel_ms = (road_km / self.config.speed_kmh * HOUR_MS as f64).round() as i64;
            self.report.repositioning_km += road_km;
            self.report.vehicles_moved += 1;
            self.schedule(end_ms + travel_ms, vehicle, to, true);
        }
        Ok(moves)
    }

    /// The report (requests not yet processed count as neither).
    pub fn finish(mut self) -> Report {
        let r = &mut self.report;
        r.cost = (r.empty_km_to_pickups + r.repositioning_km) * self.config.cost_per_km;
        r.served_pct = if r.trips == 0 {
            0.0
        } else {
            100.0 * r.served as f64 / r.trips as f64
        };
        self.report
    }
}

/// Straight-line km between two zones' centres.
fn km(zones: &[ZoneInfo], a: usize, b: usize) -> f64 {
    haversine_km(zones[a].lat, zones[a].lon, zones[b].lat, zones[b].lon)
}

/// Runs one simulation to the last request; `progress(done, total)` hears
/// about requests processed now and then (and at the end).
pub fn simulate(
    trips: &[Trip],
    fares: &[f64],
    zones: &[ZoneInfo],
    config: BacktestConfig,
    mode: Mode,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, BacktestError> {
    let mut sim = Simulator::new(trips, fares, zones, config, mode)?;
    let every = (trips.len() / 200).max(1);
    let mut told = 0;
    while sim.step()?.is_some() {
        let (done, total) = sim.progress();
        if done >= told + every {
            told = done;
            progress(done, total);
        }
    }
    let (done, total) = sim.progress();
    progress(done, total);
    Ok(sim.finish())
}

/// The same trips without and with the continuous rebalancer.
pub fn compare(
    trips: &[Trip],
    fares: &[f64],
    zones: &[ZoneInfo],
    config: BacktestConfig,
    progress: &mut dyn FnMut(Mode, usize, usize),
) -> Result<Comparison, BacktestError> {
    let mut run = |mode| {
        simulate(trips, fares, zones, config, mode, &mut |done, total| {
            progress(mode, done, total)
        })
    };
    let without = run(Mode::NoRebalancing)?;
    let with = run(Mode::Continuous)?;
    let extra_served = with.served as i64 - without.served as i64;
    let extra_revenue = with.revenue - without.revenue;
    let move_cost = with.repositioning_km * config.cost_per_km;
    let extra_cost = with.cost - without.cost;
    let roi = (move_cost > 0.0).then(|| (extra_revenue - move_cost) / move_cost);
    let points = with.served_pct - without.served_pct;
    let verdict = match extra_served.cmp(&0) {
        std::cmp::Ordering::Greater => format!(
            "rebalancing served {extra_served} more trips ({points:+.2} points) worth {extra_revenue:.2} \
             in fares for {move_cost:.2} of moves ({} vehicle moves, {:.1} km): {}",
            with.vehicles_moved,
            with.repositioning_km,
            if extra_revenue > move_cost {
                "it paid for itself"
            } else {
                "it did not pay for itself"
            }
        ),
        std::cmp::Ordering::Equal => format!(
            "rebalancing served no more trips; its {} vehicle moves cost {move_cost:.2}",
            with.vehicles_moved
        ),
        std::cmp::Ordering::Less => format!(
            "rebalancing served {} fewer trips ({points:+.2} points) and its {} vehicle moves cost \
             {move_cost:.2}: it made things worse on this data",
            -extra_served, with.vehicles_moved
        ),
    };
    Ok(Comparison {
        config,
        without,
        with,
        extra_served,
        extra_revenue,
        move_cost,
        extra_cost,
        roi,
        verdict,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::nyc::read_trips_with_fares;

    fn nyc() -> (Vec<ZoneInfo>, Vec<Trip>, Vec<f64>) {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/nyc");
        let zones = CentroidZones::from_file(&data.join("zones.csv"), DEFAULT_ZONE_MAX_KM)
            .unwrap()
            .zones()
            .to_vec();
        let (trips, fares, _) =
            read_trips_with_fares(&data.join("trips_2019_03_sample.csv"), &zones).unwrap();
        (zones, trips, fares)
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Where {
        Idle(usize),
        /// On a trip ending at (time, zone).
        Busy(i64, usize),
        Travelling(usize),
    }

    /// Runs a simulation step by step against an independent model of where
    /// every vehicle is, checking the invariants after every event, and
    /// returns its report.
    fn run_checked(
        trips: &[Trip],
        fares: &[f64],
        zones: &[ZoneInfo],
        config: BacktestConfig,
        mode: Mode,
    ) -> Report {
        let mut sim = Simulator::new(trips, fares, zones, config, mode).unwrap();
        let fleet = config.fleet_size;
        // The initial fleet: every vehicle exactly once, each zone within one
        // vehicle of its share of pickups, none where nobody is picked up.
        let mut model = vec![None; fleet];
        for (z, queue) in sim.idle.iter().enumerate() {
            for &v in queue {
                assert!(model[v].is_none(), "vehicle {v} placed twice");
                model[v] = Some(Where::Idle(z));
            }
        }
        let mut model: Vec<Where> = model.into_iter().map(|w| w.unwrap()).collect();
        for (z, queue) in sim.idle.iter().enumerate() {
            let pickups = trips.iter().filter(|t| t.pickup_zone == z).count();
            let share = fleet as f64 * pickups as f64 / trips.len() as f64;
            assert!((queue.len() as f64 - share).abs() < 1.0, "zone {z}");
            assert!(pickups > 0 || queue.is_empty());
        }
        let idle_in = |model: &[Where], z: usize| model.contains(&Where::Idle(z));
        let (mut requested, mut served) = (vec![0u32; trips.len()], vec![0u32; trips.len()]);
        let (mut revenue, mut pickup_km, mut moved_km, mut moved) = (0.0, 0.0, 0.0, 0u64);
        let mut last_ms = i64::MIN;
        while let Some(step) = sim.step().unwrap() {
            // Time never decreases.
            assert!(step.at_ms() >= last_ms, "{step:?} after {last_ms}");
            assert_eq!(sim.now_ms(), step.at_ms());
            last_ms = step.at_ms();
            match step {
                Step::Request {
                    at_ms,
                    trip,
                    served: s,
                } => {
                    let t = trips[trip];
                    assert_eq!(at_ms, t.pickup_ms);
                    requested[trip] += 1;
                    let p = t.pickup_zone;
                    // The rule, recomputed from the model: the pickup zone,
                    // else the nearest zone with an idle vehicle within reach.
                    let expected = if idle_in(&model, p) {
                        Some(p)
                    } else {
                        (0..zones.len())
                            .filter(|&z| z != p && idle_in(&model, z))
                            .map(|z| (km(zones, p, z), z))
                            .filter(|&(d, _)| d <= config.reach_km)
                            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                            .map(|(_, z)| z)
                    };
                    assert_eq!(s.map(|s| s.from_zone), expected, "trip {trip}");
                    if let Some(s) = s {
                        served[trip] += 1;
                        assert_eq!(model[s.vehicle], Where::Idle(s.from_zone));
                        let d = km(zones, p, s.from_zone);
                        assert!(d <= config.reach_km);
                        assert!((s.km - d * config.detour_factor).abs() < 1e-9);
                        model[s.vehicle] = Where::Busy(t.dropoff_ms, t.dropoff_zone);
                        revenue += fares[trip];
                        pickup_km += s.km;
                    }
                }
                Step::Free {
                    at_ms,
                    vehicle,
                    zone,
                    arrival,
                } => {
                    let was = model[vehicle];
                    if arrival {
                        assert_eq!(was, Where::Travelling(zone));
                    } else {
                        assert_eq!(was, Where::Busy(at_ms, zone));
                    }
                    model[vehicle] = Where::Idle(zone);
                }
                Step::Window { at_ms, moves } => {
                    assert_eq!(mode, Mode::Continuous);
                    assert_eq!(at_ms % (i64::from(config.window_minutes) * 60_000), 0);
                    for (v, from, to) in moves {
                        assert_ne!(from, to);
                        assert_eq!(model[v], Where::Idle(from), "vehicle {v} moved twice");
                        model[v] = Where::Travelling(to);
                        moved_km += km(zones, from, to) * config.detour_factor;
                        moved += 1;
                    }
                }
            }
            // Vehicle conservation, and the simulator agrees with the model.
            let c = sim.census();
            assert_eq!(c.idle + c.busy + c.travelling, fleet);
            let count = |f: fn(&Where) -> bool| model.iter().filter(|w| f(w)).count();
            assert_eq!(c.idle, count(|w| matches!(w, Where::Idle(_))));
            assert_eq!(c.busy, count(|w| matches!(w, Where::Busy(..))));
            assert_eq!(c.travelling, count(|w| matches!(w, Where::Travelling(_))));
            for (z, queue) in sim.idle.iter().enumerate() {
                assert!(queue.iter().all(|&v| model[v] == Where::Idle(z)));
            }
        }
        let report = sim.finish();
        // Every request processed once; none served twice.
        assert!(requested.iter().all(|&r| r == 1));
        assert!(served.iter().all(|&s| s <= 1));
        let n_served = served.iter().filter(|&&s| s == 1).count() as u64;
        assert_eq!(report.served, n_served);
        assert_eq!(report.served + report.unmet, trips.len() as u64);
        assert_eq!(
            report.served_in_zone + report.served_from_nearby,
            report.served
        );
        assert!((0.0..=100.0).contains(&report.served_pct));
        assert!((report.revenue - revenue).abs() < 1e-6);
        assert!((report.empty_km_to_pickups - pickup_km).abs() < 1e-6);
        assert!((report.repositioning_km - moved_km).abs() < 1e-6);
        assert_eq!(report.vehicles_moved, moved);
        let all_km = report.empty_km_to_pickups + report.repositioning_km;
        assert!((report.cost - all_km * config.cost_per_km).abs() < 1e-6);
        let sum = |f: fn(&HourStats) -> u64| report.hours.iter().map(f).sum::<u64>();
        assert_eq!(sum(|h| h.requests), trips.len() as u64);
        assert_eq!(sum(|h| h.served), report.served);
        assert_eq!(sum(|h| h.unmet), report.unmet);
        assert!(report
            .hours
            .windows(2)
            .all(|w| w[1].start_ms == w[0].start_ms + HOUR_MS));
        if mode == Mode::NoRebalancing {
            assert_eq!((report.vehicles_moved, report.rebalancer_windows), (0, 0));
        }
        report
    }

    #[test]
    fn the_nyc_trips_keep_every_invariant_in_both_modes() {
        let (zones, trips, fares) = nyc();
        for fleet in [7, 40] {
            let config = BacktestConfig::new(fleet);
            let without = run_checked(&trips, &fares, &zones, config, Mode::NoRebalancing);
            let with = run_checked(&trips, &fares, &zones, config, Mode::Continuous);
            assert!(without.served > 0 && without.unmet > 0, "{without:?}");
            // Hourly windows over the month: the rebalancer ran every hour.
            assert!(
                with.rebalancer_windows > 24 * 30,
                "{}",
                with.rebalancer_windows
            );
        }
    }

    #[test]
    fn the_same_input_gives_the_same_report() {
        let (zones, trips, fares) = nyc();
        let config = BacktestConfig::new(15);
        let a = compare(&trips, &fares, &zones, config, &mut |_, _, _| {}).unwrap();
        let b = compare(&trips, &fares, &zones, config, &mut |_, _, _| {}).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(a.without.trips, trips.len() as u64);
        assert_eq!(
            a.extra_served,
            a.with.served as i64 - a.without.served as i64
        );
    }

    /// Zones on the meridian -73.98: `km` north of 40.70.
    fn line(kms: &[f64]) -> Vec<ZoneInfo> {
        kms.iter()
            .enumerate()
            .map(|(i, &k)| ZoneInfo {
                id: format!("z{i}"),
                name: format!("z{i}"),
                lat: 40.70 + k / (6371.0088 * std::f64::consts::PI / 180.0),
                lon: -73.98,
            })
            .collect()
    }

    const T0: i64 = 1_551_657_600_000; // 2019-03-04 00:00, on an hour
    const MIN: i64 = 60_000;

    fn trip(pickup_min: i64, minutes: i64, from: usize, to: usize) -> Trip {
        Trip {
            pickup_ms: T0 + pickup_min * MIN,
            dropoff_ms: T0 + (pickup_min + minutes) * MIN,
            pickup_zone: from,
            dropoff_zone: to,
        }
    }

    #[test]
    fn nothing_is_served_beyond_reach_and_the_nearest_vehicle_goes() {
        // a at 0 km, b at 3 km, c at 4.5 km (1.5 km from b).
        let zones = line(&[0.0, 3.0, 4.5]);
        assert!((km(&zones, 0, 1) - 3.0).abs() < 1e-6);
        // Three pickups in a, one in b (going to a): a fleet of one starts in a.
        let trips = vec![
            trip(0, 10, 0, 0),
            trip(20, 10, 1, 0),
            trip(30, 5, 0, 0),
            trip(40, 5, 0, 0),
        ];
        let fares = vec![10.0, 20.0, 30.0, 40.0];
        let config = BacktestConfig::new(1);
        let r = run_checked(&trips, &fares, &zones, config, Mode::NoRebalancing);
        // b's request sees the only vehicle idle 3 km away: beyond 2 km, lost.
        assert_eq!((r.served, r.unmet, r.served_from_nearby), (3, 1, 0));
        assert_eq!((r.revenue, r.empty_km_to_pickups), (80.0, 0.0));
        // With a 3.5 km reach it drives 3 x 1.3 km to fetch it.
        let far = BacktestConfig {
            reach_km: 3.5,
            ..config
        };
        let r = run_checked(&trips, &fares, &zones, far, Mode::NoRebalancing);
        assert_eq!((r.served, r.unmet, r.served_from_nearby), (4, 0, 1));
        assert!((r.empty_km_to_pickups - 3.9).abs() < 1e-6);
        assert!((r.cost - 3.9 * Costs::DESIGN_EXAMPLE.per_km).abs() < 1e-6);
        // Vehicles in a (3 km away) and c (1.5 km away): c's serves b.
        let trips = vec![
            trip(0, 10, 1, 1),
            trip(20, 5, 0, 0),
            trip(25, 5, 0, 0),
            trip(30, 5, 2, 2),
            trip(35, 5, 2, 2),
        ];
        let fares = vec![1.0; 5];
        let wide = BacktestConfig {
            reach_km: 5.0,
            ..BacktestConfig::new(2)
        };
        let mut sim = Simulator::new(&trips, &fares, &zones, wide, Mode::NoRebalancing).unwrap();
        assert_eq!(sim.idle[0].len() + sim.idle[2].len(), 2);
        assert!(!sim.idle[0].is_empty() && !sim.idle[2].is_empty());
        match sim.step().unwrap() {
            Some(Step::Request {
                served: Some(s), ..
            }) => {
                assert_eq!(s.from_zone, 2);
                assert!((s.km - 1.5 * 1.3).abs() < 1e-6);
            }
            other => panic!("{other:?}"),
        }
        run_checked(&trips, &fares, &zones, wide, Mode::NoRebalancing);
    }

    #[test]
    fn rebalancing_brings_vehicles_to_demand_beyond_reach() {
        // Demand is in b, 5.5 km from a; every trip goes b -> a, so without
        // moves the fleet (two vehicles, starting in b where all pickups
        // are) strands in a after the first hour.
        let zones = line(&[0.0, 5.5]);
        let mut trips = vec![trip(5, 10, 1, 0), trip(10, 10, 1, 0)];
        for h in 1..=5 {
            trips.push(trip(h * 60 + 30, 10, 1, 0));
            trips.push(trip(h * 60 + 40, 10, 1, 0));
        }
        let fares = vec![10.0; trips.len()];
        let config = BacktestConfig::new(2);
        let without = run_checked(&trips, &fares, &zones, config, Mode::NoRebalancing);
        assert_eq!((without.served, without.unmet), (2, 10));
        let with = run_checked(&trips, &fares, &zones, config, Mode::Continuous);
        // Each hour's two requests in b (demand 1 or more expected, target
        // >= 2 at a 90% service level) make the rebalancer send both idle
        // vehicles back from a: 7.15 road km, 21 minutes, cheaper than the
        // unmet penalty. They are in b by :30 and serve both requests.
        assert_eq!((with.served, with.unmet), (12, 0));
        assert_eq!(with.vehicles_moved, 10);
        assert!((with.repositioning_km - 10.0 * 5.5 * 1.3).abs() < 1e-6);
        let c = compare(&trips, &fares, &zones, config, &mut |_, _, _| {}).unwrap();
        assert_eq!(c.extra_served, 10);
        assert!((c.extra_revenue - 100.0).abs() < 1e-9);
        let move_cost = 10.0 * 5.5 * 1.3 * 0.6;
        assert!((c.move_cost - move_cost).abs() < 1e-6);
        assert!((c.roi.unwrap() - (100.0 - move_cost) / move_cost).abs() < 1e-9);
        assert!(c.verdict.contains("paid for itself"), "{}", c.verdict);
    }

    #[test]
    fn bad_settings_and_input_are_errors_not_panics() {
        let zones = line(&[0.0, 1.0]);
        let trips = vec![trip(0, 10, 0, 1)];
        let new = |trips: &[Trip], fares: &[f64], config| {
            Simulator::new(trips, fares, &zones, config, Mode::Continuous).map(|_| ())
        };
        let ok = BacktestConfig::new(1);
        assert!(new(&trips, &[1.0], ok).is_ok());
        for bad in [
            BacktestConfig::new(0),
            BacktestConfig {
                speed_kmh: 0.0,
                ..ok
            },
            BacktestConfig {
                reach_km: f64::NAN,
                ..ok
            },
            BacktestConfig {
                window_minutes: 0,
                ..ok
            },
            BacktestConfig {
                detour_factor: 0.5,
                ..ok
            },
        ] {
            assert!(matches!(
                new(&trips, &[1.0], bad),
                Err(BacktestError::Invalid(_))
            ));
        }
        assert!(matches!(new(&[], &[], ok), Err(BacktestError::Invalid(_))));
        assert!(matches!(
            new(&trips, &[], ok),
            Err(BacktestError::Invalid(_))
        ));
        let outside = vec![trip(0, 10, 0, 2)];
        assert!(matches!(
            new(&outside, &[1.0], ok),
            Err(BacktestError::Invalid(_))
        ));
    }
}
