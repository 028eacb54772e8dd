//! The rebalancing problem (DESIGN.md section 2): zones with idle vehicles,
//! targets and coverage floors, travel distances and costs.

use ndarray::Array2;

use crate::geo::haversine_km;

/// One zone of the city.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub id: String,
    pub lat: f64,
    pub lon: f64,
    /// Idle vehicles in the zone now (`s_i`).
    pub idle: u32,
    /// Vehicles wanted after moving (`t_i`), e.g. from the demand forecast.
    pub target: u32,
    /// Coverage floor (`m_i <= t_i`): below it the zone counts as a coverage gap.
    pub min_vehicles: u32,
}

/// How distances between zones are obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum Travel {
    /// Great-circle distance times a detour factor (road km per straight km).
    Haversine { detour_factor: f64 },
    /// Explicit km, `matrix[[from, to]]`, in zone order.
    Matrix(Array2<f64>),
}

/// Money per unit of each objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    /// Cost of driving one empty km.
    pub per_km: f64,
    /// Cost per vehicle short of a zone's target.
    pub unmet_penalty: f64,
    /// Extra cost per vehicle short of a zone's coverage floor.
    pub coverage_penalty: f64,
}

impl Costs {
    /// The costs of DESIGN.md's example problem: 0.6 per empty km, 15 per
    /// vehicle short of target, 5 more per vehicle short of the floor.
    pub const DESIGN_EXAMPLE: Costs = Costs {
        per_km: 0.6,
        unmet_penalty: 15.0,
        coverage_penalty: 5.0,
    };
}

/// A planning horizon of several periods (time-expanded network).
///
/// A move leaving zone `i` at the start of period `p` is in place by the end
/// of period `p + ceil(travel_minutes / period_minutes) - 1`, and counts for
/// that period's target and every later one it stays for.
#[derive(Debug, Clone, PartialEq)]
pub struct Horizon {
    pub period_minutes: f64,
    /// Average empty-driving speed, turning km into minutes.
    pub speed_kmh: f64,
    /// Target per zone (rows) and period (columns).
    pub targets: Array2<u32>,
    /// Coverage floor per zone and period.
    pub min_vehicles: Array2<u32>,
    /// Vehicles becoming idle in a zone at the start of a period (e.g. trips
    /// ending there), in addition to `Zone::idle` at period 0.
    pub arrivals: Array2<u32>,
}

impl Horizon {
    pub fn periods(&self) -> usize {
        self.targets.ncols()
    }
}

/// A rebalancing problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub zones: Vec<Zone>,
    pub travel: Travel,
    pub costs: Costs,
    /// Moves longer than this are not allowed (per hop on a neighbour graph).
    pub max_move_km: Option<f64>,
    /// Restrict moves to the `k` nearest zones and let vehicles route through
    /// intermediate zones (transshipment): the scalable form for thousands of zones.
    pub neighbours: Option<usize>,
    /// Several periods instead of one.
    pub horizon: Option<Horizon>,
}

/// A problem that cannot be solved as given; `field` names the offending
/// input using the problem file's names (e.g. `zones[3].min_vehicles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidProblem {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for InvalidProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidProblem {}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidProblem {
    InvalidProblem {
        field: field.into(),
        message: message.into(),
    }
}

/// Largest number of vehicles in one zone; keeps all cost sums far from overflow.
pub const MAX_VEHICLES: u32 = 1_000_000;

impl Problem {
    pub fn periods(&self) -> usize {
        self.horizon.as_ref().map_or(1, Horizon::periods)
    }

    /// Road km from zone `from` to zone `to`.
    pub fn distance_km(&self, from: usize, to: usize) -> f64 {
        match &self.travel {
            Travel::Haversine { detour_factor } => {
                let (a, b) = (&self.zones[from], &self.zones[to]);
                haversine_km(a.lat, a.lon, b.lat, b.lon) * detour_factor
            }
            Travel::Matrix(m) => m[[from, to]],
        }
    }

    /// Target of zone `i` in period `p`.
    pub fn target(&self, i: usize, p: usize) -> u32 {
        self.horizon
            .as_ref()
            .map_or(self.zones[i].target, |h| h.targets[[i, p]])
    }

    /// Coverage floor of zone `i` in period `p`.
    pub fn floor(&self, i: usize, p: usize) -> u32 {
        self.horizon
            .as_ref()
            .map_or(self.zones[i].min_vehicles, |h| h.min_vehicles[[i, p]])
    }

    /// Vehicles that become available in zone `i` at the start of period `p`.
    pub fn available(&self, i: usize, p: usize) -> u32 {
        let later = self.horizon.as_ref().map_or(0, |h| h.arrivals[[i, p]]);
        if p == 0 {
            self.zones[i].idle.saturating_add(later)
        } else {
            later
        }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), InvalidProblem> {
        let n = self.zones.len();
        if n == 0 {
            return Err(invalid("zones", "at least one zone is required"));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, z) in self.zones.iter().enumerate() {
            let f = |name: &str| format!("zones[{i}].{name}");
            if z.id.is_empty() {
                return Err(invalid(f("id"), "must not be empty"));
            }
            if !ids.insert(z.id.as_str()) {
                return Err(invalid(f("id"), format!("duplicate zone id {:?}", z.id)));
            }
            if !(z.lat.is_finite() && (-90.0..=90.0).contains(&z.lat)) {
                return Err(invalid(f("lat"), "must be a latitude in [-90, 90]"));
            }
            if !(z.lon.is_finite() && (-180.0..=180.0).contains(&z.lon)) {
                return Err(invalid(f("lon"), "must be a longitude in [-180, 180]"));
            }
            for (name, v) in [
                ("idle", z.idle),
                ("target", z.target),
                ("min_vehicles", z.min_vehicles),
            ] {
                if v > MAX_VEHICLES {
                    return Err(invalid(f(name), format!("must be at most {MAX_VEHICLES}")));
                }
            }
            if z.min_vehicles > z.target {
                return Err(invalid(f("min_vehicles"), "must not exceed target"));
            }
        }
        match &self.travel {
            Travel::Haversine { detour_factor } => {
                if !(detour_factor.is_finite() && *detour_factor >= 1.0 && *detour_factor <= 10.0) {
                    return Err(invalid(
                        "travel.detour_factor",
                        "must be a number in [1, 10]",
                    ));
                }
            }
            Travel::Matrix(m) => {
                if m.nrows() != n || m.ncols() != n {
                    return Err(invalid(
                        "travel.matrix_km",
                        format!(
                            "must be {n} x {n} (one row and column per zone), got {} x {}",
                            m.nrows(),
                            m.ncols()
                        ),
                    ));
                }
                if let Some(((r, c), _)) = m
                    .indexed_iter()
                    .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
                {
                    return Err(invalid(
                        format!("travel.matrix_km[{r}][{c}]"),
                        "must be a finite, non-negative km value",
                    ));
                }
            }
        }
        let c = &self.costs;
        for (name, v) in [
            ("costs.per_km", c.per_km),
            ("costs.unmet_penalty", c.unmet_penalty),
            ("costs.coverage_penalty", c.coverage_penalty),
        ] {
            if !(v.is_finite() && (0.0..=1e6).contains(&v)) {
                return Err(invalid(name, "must be a finite number in [0, 1000000]"));
            }
        }
        if let Some(km) = self.max_move_km {
            if !(km.is_finite() && km >= 0.0) {
                return Err(invalid(
                    "max_move_km",
                    "must be a non-negative number of km",
                ));
            }
        }
        if let Some(k) = self.neighbours {
            if k == 0 {
                return Err(invalid("neighbours", "must be at least 1"));
            }
        }
        if let Some(h) = &self.horizon {
            if !(h.period_minutes.is_finite() && h.period_minutes > 0.0) {
                return Err(invalid(
                    "horizon.period_minutes",
                    "must be a positive number",
                ));
            }
            if !(h.speed_kmh.is_finite() && h.speed_kmh > 0.0) {
                return Err(invalid("horizon.speed_kmh", "must be a positive number"));
            }
            let p = h.targets.ncols();
            if p == 0 || p > 1000 {
                return Err(invalid("horizon.periods", "must be between 1 and 1000"));
            }
            for (name, a) in [
                ("targets", &h.targets),
                ("min_vehicles", &h.min_vehicles),
                ("arrivals", &h.arrivals),
            ] {
                if a.dim() != (n, p) {
                    return Err(invalid(
                        format!("horizon.{name}"),
                        format!("must have {n} zones x {p} periods"),
                    ));
                }
                if let Some(((i, q), _)) = a.indexed_iter().find(|(_, v)| **v > MAX_VEHICLES) {
                    return Err(invalid(
                        format!("zones[{i}].{name}[{q}]"),
                        format!("must be at most {MAX_VEHICLES}"),
                    ));
                }
            }
            if let Some(((i, q), _)) = h
                .min_vehicles
                .indexed_iter()
                .find(|((i, q), m)| **m > h.targets[[*i, *q]])
            {
                return Err(invalid(
                    format!("zones[{i}].min_vehicles[{q}]"),
                    "must not exceed that period's target",
                ));
            }
        }
        let total: u64 = (0..n)
            .flat_map(|i| (0..self.periods()).map(move |p| (i, p)))
            .map(|(i, p)| self.available(i, p) as u64)
            .sum();
        if total > 100 * MAX_VEHICLES as u64 {
            return Err(invalid("zones", "more than 100 million vehicles in total"));
        }
        Ok(())
    }
}
