//! The problem file of DESIGN.md section 2.1 and the solve output of sections
//! 2.1 and 2.2, as plain serde types with stable field names.
//!
//! The command line (`fleet-optimization solve`) and the HTTP API read a
//! [`ProblemFile`] from JSON, turn it into a checked [`Problem`] with
//! [`ProblemFile::into_problem`], solve it, and print a [`SolveReport`] built
//! by [`report`] (or an [`ErrorReport`] when the input is invalid). Raw
//! DIMACS solves answer with a [`DimacsReport`].
//!
//! ```json
//! {
//!   "zones": [
//!     {"id": "161", "lat": 40.7580, "lon": -73.9776, "idle": 3, "target": 12, "min_vehicles": 2},
//!     {"id": "132", "lat": 40.6413, "lon": -73.7781, "idle": 25, "target": 8}
//!   ],
//!   "travel": {"metric": "haversine", "detour_factor": 1.3},
//!   "costs": {"per_km": 0.6, "unmet_penalty": 15.0, "coverage_penalty": 5.0},
//!   "max_move_km": 25.0,
//!   "pareto_points": 9
//! }
//! ```
//!
//! Multi-period planning adds `"horizon": {"period_minutes": 15, "speed_kmh": 25,
//! "periods": P}` and, per zone, optional arrays of `P` values: `targets`,
//! `min_per_period` and `arrivals` (vehicles becoming idle in the zone at the
//! start of each period). Absent arrays mean the zone's `target` and
//! `min_vehicles` in every period and no arrivals.
//!
//! Unknown fields are rejected everywhere in the problem file (a typo such as
//! `max_move` must not silently drop a limit); the serde error names the
//! field. This module does no IO and does not depend on a JSON library: the
//! caller parses (ideally with a path-tracking deserializer, so that type
//! errors name e.g. `zones[1].idle`).

use ndarray::Array2;
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{Costs, Horizon, InvalidProblem, Problem, Travel, Zone};
use crate::optimize::{ParetoPoint, Solved};
use crate::plan::Objectives;

/// Pareto points swept when the file does not say (`pareto_points`).
pub const DEFAULT_PARETO_POINTS: usize = 9;
/// Most Pareto sweep points a file may ask for.
pub const MAX_PARETO_POINTS: usize = 101;
/// Most periods of a horizon.
pub const MAX_PERIODS: usize = 1000;
/// Most candidate moves (`zones² x periods`) of a problem without
/// `neighbours`; beyond this the complete move graph would take gigabytes and
/// the sparse neighbour graph is required.
pub const MAX_COMPLETE_MOVES: u64 = 25_000_000;

fn default_pareto_points() -> usize {
    DEFAULT_PARETO_POINTS
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// A rebalancing problem as written in a problem file (DESIGN.md 2.1).
/// The bounds in its OpenAPI schema are the ones `into_problem` enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProblemFile {
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub zones: Vec<ZoneSpec>,
    pub travel: TravelSpec,
    pub costs: CostsSpec,
    /// Longest allowed move in km; absent = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub max_move_km: Option<f64>,
    /// Restrict moves to the `k` nearest zones (sparse transshipment graph).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub neighbours: Option<usize>,
    /// Weights swept for the Pareto front (0 = no front). Default 9.
    #[serde(default = "default_pareto_points")]
    #[cfg_attr(feature = "openapi", schema(maximum = 101))] // MAX_PARETO_POINTS
    pub pareto_points: usize,
    /// Several periods instead of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<HorizonSpec>,
}

/// One zone of a problem file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    /// Zone id, unique; a JSON number is accepted and kept as its decimal text.
    #[serde(deserialize_with = "zone_id")]
    #[cfg_attr(feature = "openapi", schema(schema_with = zone_id_schema))]
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(minimum = -90.0, maximum = 90.0))]
    pub lat: f64,
    #[cfg_attr(feature = "openapi", schema(minimum = -180.0, maximum = 180.0))]
    pub lon: f64,
    /// Idle vehicles in the zone now.
    #[cfg_attr(feature = "openapi", schema(maximum = 1_000_000))] // model::MAX_VEHICLES
    pub idle: u32,
    /// Vehicles wanted after moving. Required, except in a horizon whose
    /// `targets` are given (then it defaults to the first period's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 1_000_000))]
    pub target: Option<u32>,
    /// Coverage floor (`<= target`); default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cfg_attr(feature = "openapi", schema(maximum = 1_000_000))]
    pub min_vehicles: u32,
    /// Horizon only: the target of each period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<u32>>,
    /// Horizon only: the coverage floor of each period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_per_period: Option<Vec<u32>>,
    /// Horizon only: vehicles becoming idle in the zone at the start of each
    /// period (for period 0 in addition to `idle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<Vec<u32>>,
}

impl ZoneSpec {
    /// A single-period zone.
    pub fn new(
        id: impl Into<String>,
        lat: f64,
        lon: f64,
        idle: u32,
        target: u32,
        min_vehicles: u32,
    ) -> Self {
        ZoneSpec {
            id: id.into(),
            lat,
            lon,
            idle,
            target: Some(target),
            min_vehicles,
            targets: None,
            min_per_period: None,
            arrivals: None,
        }
    }
}

/// A zone id's schema: a non-empty string or an integer.
#[cfg(feature = "openapi")]
fn zone_id_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Integer))
        .into()
}

/// Accepts `"161"` or `161` as a zone id.
fn zone_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Id;
    impl serde::de::Visitor<'_> for Id {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a zone id (string or integer)")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(Id)
}

/// How distances are obtained: `{"metric": "haversine", "detour_factor": f}`
/// (great-circle km times `f`, default 1) or `{"matrix_km": [[...]]}` (n x n,
/// row = from, in `zones` order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TravelSpec {
    /// `haversine`, the only metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^haversine$"))]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1.0, maximum = 10.0))]
    pub detour_factor: Option<f64>,
    /// n x n km, row = from, in `zones` order; values >= 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_km: Option<Vec<Vec<f64>>>,
}

impl TravelSpec {
    /// Haversine distances times `detour_factor`.
    pub fn haversine(detour_factor: f64) -> Self {
        TravelSpec {
            metric: Some("haversine".into()),
            detour_factor: Some(detour_factor),
            matrix_km: None,
        }
    }
}

/// Money per unit of each objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CostsSpec {
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 1e6))]
    pub per_km: f64,
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 1e6))]
    pub unmet_penalty: f64,
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 1e6))]
    pub coverage_penalty: f64,
}

impl From<Costs> for CostsSpec {
    fn from(c: Costs) -> Self {
        CostsSpec {
            per_km: c.per_km,
            unmet_penalty: c.unmet_penalty,
            coverage_penalty: c.coverage_penalty,
        }
    }
}

/// A multi-period horizon: `periods` periods of `period_minutes`; a move of
/// `d` km takes `ceil(d / speed_kmh * 60 / period_minutes)` periods.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HorizonSpec {
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0))]
    pub period_minutes: f64,
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0))]
    pub speed_kmh: f64,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))] // MAX_PERIODS
    pub periods: usize,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidProblem {
    InvalidProblem {
        field: field.into(),
        message: message.into(),
    }
}

impl ProblemFile {
    /// Checks the file's shapes (matrix n x n, per-period arrays of
    /// `horizon.periods` values, ...), builds the [`Problem`] and runs
    /// [`Problem::validate`]. Returns the problem and the number of Pareto
    /// sweep points (0 = no front). Errors name the field as written in the
    /// file, e.g. `zones[1].targets`.
    pub fn into_problem(self) -> Result<(Problem, usize), InvalidProblem> {
        let n = self.zones.len();
        if n == 0 {
            return Err(invalid("zones", "at least one zone is required"));
        }
        if self.pareto_points > MAX_PARETO_POINTS {
            return Err(invalid(
                "pareto_points",
                format!("must be at most {MAX_PARETO_POINTS}"),
            ));
        }
        let travel = self.travel.into_travel(n)?;
        let periods = match &self.horizon {
            None => 1,
            Some(h) if (1..=MAX_PERIODS).contains(&h.periods) => h.periods,
            Some(_) => {
                return Err(invalid(
                    "horizon.periods",
                    format!("must be between 1 and {MAX_PERIODS}"),
                ))
            }
        };
        if self.neighbours.is_none()
            && (n as u64)
                .saturating_mul(n as u64)
                .saturating_mul(periods as u64)
                > MAX_COMPLETE_MOVES
        {
            return Err(invalid(
                "neighbours",
                format!(
                    "{n} zones x {periods} period(s) without `neighbours` means more than {MAX_COMPLETE_MOVES} candidate \
                     moves; set `neighbours` (e.g. 10) to move along the nearest zones only"
                ),
            ));
        }

        let mut zones = Vec::with_capacity(n);
        let mut horizon = self.horizon.map(|h| Horizon {
            period_minutes: h.period_minutes,
            speed_kmh: h.speed_kmh,
            targets: Array2::zeros((n, periods)),
            min_vehicles: Array2::zeros((n, periods)),
            arrivals: Array2::zeros((n, periods)),
        });
        for (i, z) in self.zones.into_iter().enumerate() {
            let field = |name: &str| format!("zones[{i}].{name}");
            let per_period = [
                ("targets", &z.targets),
                ("min_per_period", &z.min_per_period),
                ("arrivals", &z.arrivals),
            ];
            let (target, min_vehicles) = match &mut horizon {
                None => {
                    if let Some((name, _)) = per_period.iter().find(|(_, v)| v.is_some()) {
                        return Err(invalid(field(name), "per-period values need a `horizon`"));
                    }
                    let Some(target) = z.target else {
                        return Err(invalid(
                            field("target"),
                            "missing: every zone needs a target",
                        ));
                    };
                    (target, z.min_vehicles)
                }
                Some(h) => z.fill_horizon(i, periods, h)?,
            };
            zones.push(Zone {
                id: z.id,
                lat: z.lat,
                lon: z.lon,
                idle: z.idle,
                target,
                min_vehicles,
            });
        }
        let c = self.costs;
        let problem = Problem {
            zones,
            travel,
            costs: Costs {
                per_km: c.per_km,
                unmet_penalty: c.unmet_penalty,
                coverage_penalty: c.coverage_penalty,
            },
            max_move_km: self.max_move_km,
            // More neighbours than other zones means all of them (and keeps
            // the neighbour search from sizing buffers by an absurd k).
            neighbours: self.neighbours.map(|k| k.min((n - 1).max(1))),
            horizon,
        };
        problem.validate()?;
        Ok((problem, self.pareto_points))
    }
}

impl TravelSpec {
    fn into_travel(self, n: usize) -> Result<Travel, InvalidProblem> {
        match (self.metric, self.matrix_km) {
            (Some(_), Some(_)) => Err(invalid("travel", "give either `metric` or `matrix_km`, not both")),
            (Some(metric), None) if metric == "haversine" => Ok(Travel::Haversine {
                detour_factor: self.detour_factor.unwrap_or(1.0),
            }),
            (Some(metric), None) => Err(invalid(
                "travel.metric",
                format!("unknown metric {metric:?}; expected \"haversine\" (or give `matrix_km`)"),
            )),
            (None, Some(_)) if self.detour_factor.is_some() => Err(invalid(
                "travel.detour_factor",
                "applies to `\"metric\": \"haversine\"` only, not to `matrix_km`",
            )),
            (None, Some(rows)) => {
                if rows.len() != n {
                    return Err(invalid(
                        "travel.matrix_km",
                        format!("must be {n} x {n} (one row and column per zone), got {} rows", rows.len()),
                    ));
                }
                if let Some((r, row)) = rows.iter().enumerate().find(|(_, row)| row.len() != n) {
                    return Err(invalid(
                        "travel.matrix_km",
                        format!("must be {n} x {n} (one row and column per zone), row {r} has {} values", row.len()),
                    ));
                }
                let flat: Vec<f64> = rows.into_iter().flatten().collect();
                let m = Array2::from_shape_vec((n, n), flat).map_err(|e| invalid("travel.matrix_km", e.to_string()))?;
                Ok(Travel::Matrix(m))
            }
            (None, None) => Err(invalid(
                "travel",
                "expected {\"metric\": \"haversine\", \"detour_factor\": 1.3} or {\"matrix_km\": [[...]]}",
            )),
        }
    }
}

/// Outcome of a solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// An optimal solution was found.
    Optimal,
    /// No solution satisfies the constraints (DIMACS only: a rebalancing
    /// problem always has the "nobody moves" plan).
    Infeasible,
    /// The cost can decrease without bound (DIMACS only).
    Unbounded,
    /// The input is wrong; see [`ErrorReport::error`].
    Invalid,
}

/// The objectives of DESIGN.md section 2, reported separately.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObjectivesReport {
    /// Empty km driven by all moves.
    pub empty_km: f64,
    /// `per_km * empty_km`.
    pub move_cost: f64,
    /// Vehicles short of target, summed over zones (and periods).
    pub unmet: u64,
    /// Zones (zone-periods) ending below their coverage floor.
    pub coverage_gaps: u64,
    /// Vehicles short of the coverage floor, summed over zones (and periods).
    pub coverage_shortfall: u64,
    /// Share of the targets met, in [0, 1].
    pub served_ratio: f64,
}

/// `x` with a negative zero made positive (an empty float sum is `-0.0`).
fn unsigned_zero(x: f64) -> f64 {
    x + 0.0
}

impl From<&Objectives> for ObjectivesReport {
    fn from(o: &Objectives) -> Self {
        ObjectivesReport {
            empty_km: unsigned_zero(o.empty_km),
            move_cost: unsigned_zero(o.move_cost),
            unmet: o.unmet,
            coverage_gaps: o.coverage_gaps,
            coverage_shortfall: o.coverage_shortfall,
            served_ratio: o.served_ratio,
        }
    }
}

/// Why a move is recommended, in numbers an operator can check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhyReport {
    /// Idle vehicles at the origin beyond its target before moving.
    pub source_surplus: i64,
    /// Vehicles the destination lacks to reach its target before moving.
    pub destination_deficit: i64,
    /// Penalty avoided minus penalty incurred minus driving cost, per vehicle.
    pub benefit_per_vehicle: f64,
    /// The same in words.
    pub reason: String,
}

/// `vehicles` vehicles drive from zone `from` to zone `to` (zone ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveReport {
    pub from: String,
    pub to: String,
    pub vehicles: u32,
    /// km per vehicle (the whole route on a neighbour graph).
    pub km: f64,
    /// Driving cost of all vehicles of the move.
    pub cost: f64,
    /// Period the vehicles leave in (0 for a single period).
    pub depart_period: usize,
    /// Period by whose end they have arrived.
    pub arrive_period: usize,
    pub why: WhyReport,
}

/// Vehicles a zone ends with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneAfter {
    pub id: String,
    /// Vehicles at the end of the first (for one period: the only) period.
    pub vehicles: u32,
    /// Horizons only: vehicles at the end of every period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicles_per_period: Option<Vec<u32>>,
}

/// One non-dominated point of the Pareto front.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParetoReport {
    /// Multiplier of `per_km` under which this plan is optimal; `null` for the
    /// no-move plan (an infinite weight).
    pub km_weight: Option<f64>,
    #[serde(flatten)]
    pub objectives: ObjectivesReport,
}

/// Size of the solved network and the work done.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Wall time of the optimal solve alone (no parsing, no Pareto sweep).
    pub solve_ms: f64,
    pub nodes: usize,
    pub arcs: usize,
    /// Simplex pivots.
    pub iterations: u64,
}

/// The answer to a rebalancing problem (DESIGN.md 2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolveReport {
    /// Always [`Status::Optimal`]: every valid problem has an optimum.
    pub status: Status,
    /// The minimised total: move cost plus penalties.
    pub objective: f64,
    pub objectives: ObjectivesReport,
    /// Moves with at least one vehicle.
    pub moves: Vec<MoveReport>,
    /// Every zone, in the problem's order.
    pub zones_after: Vec<ZoneAfter>,
    /// Non-dominated points by increasing `empty_km` (empty if not asked for).
    pub pareto: Vec<ParetoReport>,
    pub stats: StatsReport,
}

/// Builds the answer for `problem` from its optimal plan, its Pareto front
/// and the solve's wall time in milliseconds.
pub fn report(
    problem: &Problem,
    solved: &Solved,
    pareto: &[ParetoPoint],
    solve_ms: f64,
) -> SolveReport {
    let plan = &solved.plan;
    let id = |i: usize| problem.zones[i].id.clone();
    let horizon = problem.horizon.is_some();
    SolveReport {
        status: Status::Optimal,
        objective: plan.objective,
        objectives: ObjectivesReport::from(&plan.objectives),
        moves: plan
            .moves
            .iter()
            .map(|m| MoveReport {
                from: id(m.from),
                to: id(m.to),
                vehicles: m.vehicles,
                km: unsigned_zero(m.km),
                cost: unsigned_zero(m.cost),
                depart_period: m.depart_period,
                arrive_period: m.arrive_period,
                why: WhyReport {
                    source_surplus: m.why.source_surplus,
                    destination_deficit: m.why.destination_deficit,
                    benefit_per_vehicle: m.why.benefit_per_vehicle,
                    reason: m.why.reason.clone(),
                },
            })
            .collect(),
        zones_after: plan
            .vehicles_after
            .rows()
            .into_iter()
            .enumerate()
            .map(|(i, row)| ZoneAfter {
                id: id(i),
                vehicles: row.first().copied().unwrap_or(0),
                vehicles_per_period: horizon.then(|| row.to_vec()),
            })
            .collect(),
        pareto: pareto
            .iter()
            .map(|p| ParetoReport {
                km_weight: p.km_weight.is_finite().then_some(p.km_weight),
                objectives: ObjectivesReport::from(&p.objectives),
            })
            .collect(),
        stats: StatsReport {
            solve_ms,
            nodes: solved.stats.nodes,
            arcs: solved.stats.arcs,
            iterations: solved.stats.iterations,
        },
    }
}

/// The offending input: `field` as written in the input (e.g.
/// `zones[1].idle`, `travel.matrix_km`, or `line 7` for DIMACS files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The answer to invalid input: `{"status": "invalid", "error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// Always [`Status::Invalid`].
    pub status: Status,
    pub error: FieldError,
}

impl ErrorReport {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorReport {
            status: Status::Invalid,
            error: FieldError {
                field: field.into(),
                message: message.into(),
            },
        }
    }
}

impl From<InvalidProblem> for ErrorReport {
    fn from(e: InvalidProblem) -> Self {
        ErrorReport::invalid(e.field, e.message)
    }
}

/// The answer to a raw min-cost-flow (DIMACS) solve, DESIGN.md 2.2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimacsReport {
    pub status: Status,
    /// Optimal cost of the original problem (lower bounds included); only
    /// when optimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<i128>,
    pub stats: StatsReport,
    /// Optimal flow on every arc, in file order (only when asked for and optimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<Vec<i64>>,
}

impl ZoneSpec {
    /// Fills zone `i`'s row of a horizon from its per-period values (or its
    /// single values repeated); returns the zone's period-0 target and floor.
    fn fill_horizon(
        &self,
        i: usize,
        periods: usize,
        h: &mut Horizon,
    ) -> Result<(u32, u32), InvalidProblem> {
        let z = self;
        let field = |name: &str| format!("zones[{i}].{name}");
        let per_period = [
            ("targets", &z.targets),
            ("min_per_period", &z.min_per_period),
            ("arrivals", &z.arrivals),
        ];
        for (name, values) in per_period {
            if let Some(v) = values {
                if v.len() != periods {
                    return Err(invalid(
                        field(name),
                        format!("has {} values; horizon.periods is {periods}", v.len()),
                    ));
                }
            }
        }
        let target = match (z.target, &z.targets) {
            (Some(t), _) => t,
            (None, Some(ts)) => ts[0],
            (None, None) => {
                return Err(invalid(
                    field("target"),
                    "missing: give `target` or `targets`",
                ))
            }
        };
        for p in 0..periods {
            let t = z.targets.as_ref().map_or(target, |v| v[p]);
            let m = match &z.min_per_period {
                Some(v) if v[p] > t => {
                    return Err(invalid(
                        format!("zones[{i}].min_per_period[{p}]"),
                        format!("{} exceeds that period's target {t}", v[p]),
                    ))
                }
                Some(v) => v[p],
                None if z.min_vehicles > t => {
                    return Err(invalid(
                        field("min_vehicles"),
                        format!(
                            "{} exceeds the target {t} of period {p}; give `min_per_period`",
                            z.min_vehicles
                        ),
                    ))
                }
                None => z.min_vehicles,
            };
            h.targets[[i, p]] = t;
            h.min_vehicles[[i, p]] = m;
            h.arrivals[[i, p]] = z.arrivals.as_ref().map_or(0, |v| v[p]);
        }
        let min_vehicles = z
            .min_per_period
            .as_ref()
            .map_or(z.min_vehicles, |v| v[0])
            .min(target);
        Ok((target, min_vehicles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(zones: Vec<ZoneSpec>) -> ProblemFile {
        ProblemFile {
            zones,
            travel: TravelSpec::haversine(1.3),
            costs: Costs::DESIGN_EXAMPLE.into(),
            max_move_km: None,
            neighbours: None,
            pareto_points: DEFAULT_PARETO_POINTS,
            horizon: None,
        }
    }

    fn two_zones() -> Vec<ZoneSpec> {
        vec![
            ZoneSpec::new("161", 40.7580, -73.9776, 3, 12, 2),
            ZoneSpec::new("132", 40.6413, -73.7781, 25, 8, 0),
        ]
    }

    #[test]
    fn single_period_file_converts() {
        let (p, pareto) = file(two_zones()).into_problem().unwrap();
        assert_eq!(pareto, 9);
        assert_eq!(p.zones[0].target, 12);
        assert_eq!(p.zones[0].min_vehicles, 2);
        assert!(p.horizon.is_none());
        assert_eq!(p.travel, Travel::Haversine { detour_factor: 1.3 });
    }

    #[test]
    fn shape_errors_name_the_field() {
        let err = |f: ProblemFile| f.into_problem().unwrap_err().field;
        let mut f = file(two_zones());
        f.travel = TravelSpec {
            metric: None,
            detour_factor: None,
            matrix_km: Some(vec![vec![0.0, 1.0], vec![1.0]]),
        };
        assert_eq!(err(f), "travel.matrix_km");
        let mut f = file(two_zones());
        f.zones[1].targets = Some(vec![1, 2]);
        assert_eq!(err(f), "zones[1].targets");
        let mut f = file(two_zones());
        f.horizon = Some(HorizonSpec {
            period_minutes: 15.0,
            speed_kmh: 25.0,
            periods: 3,
        });
        f.zones[0].arrivals = Some(vec![1, 2]);
        assert_eq!(err(f), "zones[0].arrivals");
        let mut f = file(two_zones());
        f.zones[0].min_vehicles = 13;
        assert_eq!(err(f), "zones[0].min_vehicles");
        let mut f = file(vec![]);
        f.pareto_points = 1000;
        assert_eq!(err(f), "zones");
        let mut f = file(two_zones());
        f.travel.metric = Some("manhattan".into());
        assert_eq!(err(f), "travel.metric");
        let mut f = file(two_zones());
        f.zones[1].target = None;
        assert_eq!(err(f), "zones[1].target");
    }

    #[test]
    fn horizon_repeats_single_values_and_checks_per_period_floors() {
        let mut f = file(two_zones());
        f.horizon = Some(HorizonSpec {
            period_minutes: 15.0,
            speed_kmh: 25.0,
            periods: 3,
        });
        f.zones[1].targets = Some(vec![8, 9, 10]);
        f.zones[1].arrivals = Some(vec![0, 4, 0]);
        let (p, _) = f.clone().into_problem().unwrap();
        let h = p.horizon.as_ref().unwrap();
        assert_eq!(h.targets.row(0).to_vec(), vec![12, 12, 12]);
        assert_eq!(h.min_vehicles.row(0).to_vec(), vec![2, 2, 2]);
        assert_eq!(h.targets.row(1).to_vec(), vec![8, 9, 10]);
        assert_eq!(h.arrivals.row(1).to_vec(), vec![0, 4, 0]);
        f.zones[1].min_per_period = Some(vec![0, 10, 0]);
        assert_eq!(
            f.into_problem().unwrap_err().field,
            "zones[1].min_per_period[1]"
        );
    }

    #[test]
    fn huge_neighbour_counts_are_clamped() {
        let mut f = file(two_zones());
        f.neighbours = Some(usize::MAX);
        assert_eq!(f.into_problem().unwrap().0.neighbours, Some(1));
    }
}
