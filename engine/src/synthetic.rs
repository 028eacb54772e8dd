//! Reproducible synthetic problems: random zones in a square city with
//! Poisson idle and target counts. Used by benchmarks, reference tests and
//! load generators, so every comparison runs on the same instances.

use crate::model::{Costs, Problem, Travel, Zone};

/// SplitMix64: tiny, fast and good enough for test instances; seeded so
/// that every run of a benchmark sees the same problems.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Poisson-distributed count (Knuth's method; fine for small means).
    pub fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.unit();
        while p > limit {
            k += 1;
            p *= self.unit();
        }
        k
    }
}

/// Shape of a random city instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CitySpec {
    pub zones: usize,
    /// Side of the square city in km.
    pub side_km: f64,
    pub mean_idle: f64,
    pub mean_target: f64,
    /// Coverage floor as a fraction of each zone's target (rounded down).
    pub floor_share: f64,
    /// `Some(k)`: k-nearest-neighbour transshipment graph; `None`: dense.
    pub neighbours: Option<usize>,
    pub seed: u64,
}

impl CitySpec {
    /// The benchmark family of the engine issue: a 20 x 20 km city, idle and
    /// target ~ Poisson(5), floors at a third of the target.
    pub fn benchmark(zones: usize, neighbours: Option<usize>, seed: u64) -> Self {
        CitySpec {
            zones,
            side_km: 20.0,
            mean_idle: 5.0,
            mean_target: 5.0,
            floor_share: 1.0 / 3.0,
            neighbours,
            seed,
        }
    }
}

/// Builds a random problem around Midtown Manhattan with the given shape,
/// haversine distances with a 1.3 detour factor, and the design's example costs.
pub fn random_city(spec: &CitySpec) -> Problem {
    let mut rng = Rng::new(spec.seed);
    let (lat0, lon0) = (40.75_f64, -73.98_f64);
    let km_per_deg_lat = 111.195;
    let km_per_deg_lon = km_per_deg_lat * lat0.to_radians().cos();
    let zones = (0..spec.zones)
        .map(|i| {
            let x = (rng.unit() - 0.5) * spec.side_km;
            let y = (rng.unit() - 0.5) * spec.side_km;
            let target = rng.poisson(spec.mean_target);
            Zone {
                id: format!("z{i}"),
                lat: lat0 + y / km_per_deg_lat,
                lon: lon0 + x / km_per_deg_lon,
                idle: rng.poisson(spec.mean_idle),
                target,
                min_vehicles: (target as f64 * spec.floor_share).floor() as u32,
            }
        })
        .collect();
    Problem {
        zones,
        travel: Travel::Haversine { detour_factor: 1.3 },
        costs: Costs::DESIGN_EXAMPLE,
        max_move_km: None,
        neighbours: spec.neighbours,
        horizon: None,
    }
}

/// Changes `share` of the zones (at least one) to fresh Poisson idle and
/// target counts, as one streaming window would; returns
/// `(zone, idle, target, min_vehicles)` for each change.
pub fn perturb(
    problem: &Problem,
    spec: &CitySpec,
    share: f64,
    rng: &mut Rng,
) -> Vec<(usize, u32, u32, u32)> {
    let n = problem.zones.len();
    let count = ((n as f64 * share).round() as usize).max(1);
    (0..count)
        .map(|_| {
            let zone = rng.below(n as u64) as usize;
            let target = rng.poisson(spec.mean_target);
            let floor = (target as f64 * spec.floor_share).floor() as u32;
            (zone, rng.poisson(spec.mean_idle), target, floor)
        })
        .collect()
}
