//! Per-zone short-term demand forecasts and the vehicle targets they imply.
//!
//! [`fit`] learns a seasonal exponential-smoothing model from a (zones × periods)
//! history of trip-request counts; [`DemandModel::forecast`] projects it forward;
//! [`targets`] turns one period's expected demand into per-zone vehicle counts
//! that cover Poisson demand with a chosen probability.
//!
//! ```
//! use fleet_engine::forecast::{fit, targets, ForecastConfig};
//! use ndarray::array;
//!
//! // Zone 0 alternates 10 and 2 requests (season of 2 periods); zone 1 is idle.
//! let history = array![
//!     [10.0, 2.0, 10.0, 2.0, 10.0, 2.0],
//!     [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
//! ];
//! let cfg = ForecastConfig { season_length: 2, ..ForecastConfig::default() };
//! let model = fit(history.view(), &cfg).unwrap();
//! let next = model.forecast(2); // shape (zones, horizon) = (2, 2)
//! assert!((next[[0, 0]] - 10.0).abs() < 0.5 && (next[[0, 1]] - 2.0).abs() < 0.5);
//! assert_eq!(next[[1, 0]], 0.0);
//! // Vehicles to hold next period so demand is covered 90% of the time.
//! assert_eq!(targets(next.column(0), 0.9).unwrap(), vec![14, 0]);
//! ```

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use std::fmt;

/// Largest accepted demand count per zone and period; bounds every intermediate so it stays finite.
pub const MAX_DEMAND: f64 = 1e12;
/// Divisors at or below this are treated as zero.
const EPS: f64 = 1e-9;

/// Why a forecast or target computation was rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum ForecastError {
    /// The history has no zones or no periods.
    EmptyHistory,
    /// A history entry is NaN, infinite, negative or above [`MAX_DEMAND`].
    InvalidDemand {
        zone: usize,
        period: usize,
        value: f64,
    },
    /// A [`ForecastConfig`] field is out of range.
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    /// The service level is not strictly between 0 and 1.
    InvalidServiceLevel(f64),
    /// An expected demand given to [`targets`] is NaN, infinite or negative.
    InvalidExpectedDemand { zone: usize, value: f64 },
}

impl fmt::Display for ForecastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyHistory => write!(f, "demand history has no zones or no periods"),
            Self::InvalidDemand { zone, period, value } => write!(
                f,
                "demand {value} at zone {zone}, period {period} is not a finite count in [0, {MAX_DEMAND:e}]"
            ),
            Self::InvalidConfig { field, reason } => write!(f, "forecast config `{field}` {reason}"),
            Self::InvalidServiceLevel(level) => {
                write!(f, "service level {level} must be strictly between 0 and 1")
            }
            Self::InvalidExpectedDemand { zone, value } => {
                write!(f, "expected demand {value} of zone {zone} is not finite and non-negative")
            }
        }
    }
}

impl std::error::Error for ForecastError {}

/// Smoothing and shrinkage settings for [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastConfig {
    /// Periods per season, e.g. 96 for a day of 15-minute periods.
    pub season_length: usize,
    /// Level smoothing weight in (0, 1]; larger reacts faster to level shifts.
    pub alpha: f64,
    /// Seasonal smoothing weight in [0, 1]; 0 keeps the initial seasonal profile.
    pub gamma: f64,
    /// Pseudo-trips, spread along the fleet-wide seasonal profile, added to every estimate of a
    /// zone's seasonal profile; zones with few trips thereby follow the fleet profile. Finite, >= 0.
    pub prior_weight: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            season_length: 24,
            alpha: 0.3,
            gamma: 0.1,
            prior_weight: 4.0,
        }
    }
}

impl ForecastConfig {
    /// Checks every field's range, naming the first bad field.
    pub fn validate(&self) -> Result<(), ForecastError> {
        let bad = |field, reason| Err(ForecastError::InvalidConfig { field, reason });
        if self.season_length == 0 {
            return bad("season_length", "must be at least 1");
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return bad("alpha", "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return bad("gamma", "must be in [0, 1]");
        }
        if !(self.prior_weight.is_finite() && self.prior_weight >= 0.0) {
            return bad("prior_weight", "must be finite and non-negative");
        }
        Ok(())
    }
}

/// A fitted per-zone model: smoothed level times a seasonal index per phase.
///
/// Holt-Winters without trend, with an additive (smoothed) level and a *multiplicative* season.
/// Multiplicative because demand counts scale: a busy zone's rush hour adds many more trips than
/// a quiet zone's, and a product of non-negative level and index can never forecast negative
/// demand, whereas an additive season would need clamping for sparse zones.
#[derive(Debug, Clone, PartialEq)]
pub struct DemandModel {
    level: Array1<f64>,
    /// Shape (zones, season_length).
    season: Array2<f64>,
    /// Phase of the first period after the history.
    next_phase: usize,
}

/// Fits a [`DemandModel`] to `history` of shape (zones, periods), oldest period first.
///
/// Seasonal indices start from the whole history, each zone's shrunk toward the fleet-wide
/// profile by `prior_weight` pseudo-trips; one smoothing pass then tracks level and season.
pub fn fit(history: ArrayView2<f64>, cfg: &ForecastConfig) -> Result<DemandModel, ForecastError> {
    cfg.validate()?;
    let (zones, periods) = history.dim();
    if zones == 0 || periods == 0 {
        return Err(ForecastError::EmptyHistory);
    }
    let is_count = |v: &f64| v.is_finite() && (0.0..=MAX_DEMAND).contains(v);
    if let Some(((zone, period), &value)) = history.indexed_iter().find(|(_, v)| !is_count(v)) {
        return Err(ForecastError::InvalidDemand {
            zone,
            period,
            value,
        });
    }
    let (len, w) = (cfg.season_length, cfg.prior_weight);
    // Observations per phase (identical for every zone); 0 when history is shorter than a season.
    let obs: Vec<f64> = (0..len)
        .map(|p| periods.saturating_sub(p).div_ceil(len) as f64)
        .collect();
    let mut phase_totals = Array2::<f64>::zeros((zones, len));
    for ((z, t), &y) in history.indexed_iter() {
        phase_totals[[z, t % len]] += y;
    }
    // Fleet index: mean demand at a phase over mean demand overall (1 = average phase).
    let fleet_total = phase_totals.sum();
    let fleet_index: Vec<f64> = (0..len)
        .map(|p| match obs[p] > 0.0 && fleet_total > 0.0 {
            true => phase_totals.column(p).sum() / fleet_total * (periods as f64 / obs[p]),
            false => 1.0, // no information: neutral
        })
        .collect();
    let mut season = Array2::<f64>::zeros((zones, len));
    let mut level = Array1::<f64>::zeros(zones);
    for (z, row) in history.outer_iter().enumerate() {
        // Initial index = (observed + pseudo trips) / (trips expected under a flat profile + pseudo).
        let zone_total = row.sum();
        for p in 0..len {
            let denom = obs[p] * zone_total / periods as f64 + w;
            season[[z, p]] = match denom > EPS {
                true => (phase_totals[[z, p]] + w * fleet_index[p]) / denom,
                false => fleet_index[p],
            };
        }
        let warmup = periods.min(len);
        let warmup_index: f64 = (0..warmup).map(|p| season[[z, p]]).sum();
        let mut lvl = match warmup_index > EPS {
            true => row.iter().take(warmup).sum::<f64>() / warmup_index,
            false => 0.0,
        };
        // One observation spans ~1/gamma of the smoothing window, so it gets that share of the prior.
        let pseudo = w * cfg.gamma;
        for (t, &y) in row.iter().enumerate() {
            let p = t % len;
            let index = season[[z, p]];
            if index > EPS {
                lvl = cfg.alpha * y / index + (1.0 - cfg.alpha) * lvl;
            }
            if cfg.gamma > 0.0 && lvl + pseudo > EPS {
                let ratio = (y + pseudo * fleet_index[p]) / (lvl + pseudo);
                season[[z, p]] = cfg.gamma * ratio + (1.0 - cfg.gamma) * index;
            }
        }
        level[z] = lvl;
    }
    Ok(DemandModel {
        level,
        season,
        next_phase: periods % len,
    })
}

impl DemandModel {
    /// Number of zones the model was fitted on.
    pub fn zones(&self) -> usize {
        self.level.len()
    }

    /// Expected demand, shape (zones, horizon), for the `horizon` periods right after the history.
    /// Every value is finite and non-negative.
    pub fn forecast(&self, horizon: usize) -> Array2<f64> {
        let len = self.season.ncols();
        Array2::from_shape_fn((self.zones(), horizon), |(z, h)| {
            self.level[z] * self.season[[z, (self.next_phase + h) % len]]
        })
    }
}

/// Per zone, the smallest `k` with P(Poisson(expected) <= k) >= `service_level`: the vehicles
/// to hold so that the zone's demand is covered with that probability. Expected 0 gives 0.
///
/// `service_level` must lie in (0, 1); expected demands must be finite and non-negative.
/// Means of `u32::MAX` or more saturate to `u32::MAX`.
pub fn targets(expected: ArrayView1<f64>, service_level: f64) -> Result<Vec<u32>, ForecastError> {
    if !(service_level > 0.0 && service_level < 1.0) {
        return Err(ForecastError::InvalidServiceLevel(service_level));
    }
    expected
        .iter()
        .enumerate()
        .map(|(zone, &mean)| match mean.is_finite() && mean >= 0.0 {
            true => Ok(poisson_quantile(mean, service_level)),
            false => Err(ForecastError::InvalidExpectedDemand { zone, value: mean }),
        })
        .collect()
}

/// Poisson probabilities relative to the mode's (mode term = 1), so neither `exp(-mean)` nor a
/// factorial is ever formed: no underflow or overflow at any mean, and no normal approximation
/// is needed. Terms below `NEGLIGIBLE` (relative) are dropped; about 18 standard deviations
/// are summed, O(sqrt(mean)) work.
fn poisson_quantile(mean: f64, level: f64) -> u32 {
    const NEGLIGIBLE: f64 = 1e-20;
    if mean <= 0.0 {
        return 0;
    }
    if mean >= u32::MAX as f64 {
        return u32::MAX;
    }
    let mode = mean.floor();
    let (mut lo, mut lo_term) = (mode, 1.0);
    while lo > 0.0 && lo_term * lo / mean >= NEGLIGIBLE {
        (lo, lo_term) = (lo - 1.0, lo_term * lo / mean);
    }
    // (k, relative P(k)) upward from `lo`. Both passes below add the same terms in the same
    // order, so the running sum ends exactly at `total` and the search always finds its k.
    let terms = || {
        std::iter::successors(Some((lo, lo_term)), move |&(k, term)| {
            let next = term * mean / (k + 1.0);
            (k < mode || next >= NEGLIGIBLE).then_some((k + 1.0, next))
        })
    };
    let total = terms().fold(0.0, |sum, (_, term)| sum + term);
    let mut cumulative = 0.0;
    let found = terms().find(|&(_, term)| {
        cumulative += term;
        cumulative >= level * total
    });
    found.map_or(u32::MAX, |(k, _)| k as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array};

    fn cfg(season_length: usize) -> ForecastConfig {
        ForecastConfig {
            season_length,
            ..Default::default()
        }
    }

    fn quantile(mean: f64, level: f64) -> u32 {
        targets(array![mean].view(), level).unwrap()[0]
    }

    /// Zone rows alternating 10 (even periods) and 2 (odd periods).
    fn ten_two(zones: usize, periods: usize) -> Array2<f64> {
        Array::from_shape_fn((zones, periods), |(_, t)| [10.0, 2.0][t % 2])
    }

    #[test]
    fn module_example_logic() {
        let history = array![[10.0, 2.0, 10.0, 2.0, 10.0, 2.0], [0.0; 6]];
        let next = fit(history.view(), &cfg(2)).unwrap().forecast(2);
        assert_eq!(next.dim(), (2, 2));
        assert!((next[[0, 0]] - 10.0).abs() < 0.5 && (next[[0, 1]] - 2.0).abs() < 0.5);
        assert_eq!(next[[1, 0]], 0.0);
        assert_eq!(targets(next.column(0), 0.9).unwrap(), vec![14, 0]);
    }

    #[test]
    fn seasonal_pattern_keeps_phase_after_even_and_odd_histories() {
        for periods in [8, 9] {
            let model = fit(ten_two(1, periods).view(), &cfg(2)).unwrap();
            assert_eq!(model.zones(), 1);
            let got = model.forecast(4);
            let want = Array::from_shape_fn((1, 4), |(_, h)| [10.0, 2.0][(periods + h) % 2]);
            assert!(
                (&got - &want).iter().all(|d| d.abs() < 1e-6),
                "periods {periods}: {got}"
            );
        }
    }

    #[test]
    fn constant_series_forecasts_the_constant() {
        let f = fit(Array2::from_elem((3, 30), 7.0).view(), &cfg(24)).unwrap();
        assert!(f.forecast(30).iter().all(|&v| (v - 7.0).abs() < 1e-9));
    }

    #[test]
    fn level_shift_moves_forecast_toward_new_level() {
        let after_step = |steps: usize| {
            let history =
                Array::from_shape_fn((1, 40 + steps), |(_, t)| [5.0, 10.0][(t >= 40) as usize]);
            fit(history.view(), &cfg(1)).unwrap().forecast(1)[[0, 0]]
        };
        let (one, three, six) = (after_step(1), after_step(3), after_step(6));
        assert!(
            5.0 < one && one < three && three < six && six < 10.0,
            "{one} {three} {six}"
        );
    }

    #[test]
    fn all_zero_zones_forecast_zero_never_nan() {
        let mut history = Array2::<f64>::zeros((2, 10));
        let f = fit(history.view(), &cfg(4)).unwrap().forecast(8);
        assert!(f.iter().all(|&v| v == 0.0));
        history.row_mut(0).fill(3.0); // zone 1 stays idle beside a busy zone
        let f = fit(history.view(), &cfg(4)).unwrap().forecast(8);
        assert!(f.row(1).iter().all(|&v| v == 0.0) && f.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn sparse_zone_follows_fleet_profile_unless_prior_is_zero() {
        // The busy zone peaks in even periods; the sparse zone's single trip is in an odd one.
        let mut history = ten_two(2, 48);
        history.row_mut(1).fill(0.0);
        history[[1, 41]] = 1.0;
        let even_over_odd = |prior_weight| {
            let cfg = ForecastConfig {
                prior_weight,
                ..cfg(2)
            };
            let f = fit(history.view(), &cfg).unwrap().forecast(2);
            assert!(f.iter().all(|&v| v.is_finite() && v >= 0.0));
            f[[1, 0]] / f[[1, 1]]
        };
        assert!(
            even_over_odd(4.0) > 1.5,
            "shrunk toward the fleet's 5:1 peak"
        );
        assert!(even_over_odd(0.0) < 1.0, "raw profile peaks in odd periods");
    }

    #[test]
    fn bad_inputs_give_the_right_error() {
        for shape in [(0, 4), (3, 0)] {
            let empty = Array2::<f64>::zeros(shape);
            assert_eq!(fit(empty.view(), &cfg(2)), Err(ForecastError::EmptyHistory));
        }
        let ok = Array2::from_elem((2, 4), 1.0);
        for bad in [f64::NAN, f64::INFINITY, -1.0, 2e12] {
            let mut history = ok.clone();
            history[[1, 2]] = bad;
            let err = fit(history.view(), &cfg(2)).unwrap_err();
            let expected = ForecastError::InvalidDemand {
                zone: 1,
                period: 2,
                value: bad,
            };
            assert!(format!("{err:?}") == format!("{expected:?}"), "{err}"); // NaN != NaN
        }
        type Breaker = fn(&mut ForecastConfig);
        let breakers: [(Breaker, &str); 4] = [
            (|c| c.season_length = 0, "season_length"),
            (|c| c.alpha = 0.0, "alpha"),
            (|c| c.gamma = f64::NAN, "gamma"),
            (|c| c.prior_weight = -1.0, "prior_weight"),
        ];
        for (breaker, name) in breakers {
            let mut c = ForecastConfig::default();
            breaker(&mut c);
            let err = fit(ok.view(), &c).unwrap_err();
            assert!(matches!(err, ForecastError::InvalidConfig { field, .. } if field == name));
        }
        for level in [0.0, 1.0, f64::NAN] {
            let err = targets(array![1.0].view(), level).unwrap_err();
            assert!(matches!(err, ForecastError::InvalidServiceLevel(_)));
        }
        let err = targets(array![1.0, -2.0].view(), 0.5).unwrap_err();
        assert_eq!(
            err,
            ForecastError::InvalidExpectedDemand {
                zone: 1,
                value: -2.0
            }
        );
        assert!(err.to_string().contains("zone 1"));
    }

    #[test]
    fn poisson_targets_match_hand_values_and_direct_cdf() {
        // Poisson(5): P(<=7) = 0.867, P(<=8) = 0.932. Poisson(1): P(<=0) = 0.368, P(<=1) = 0.736.
        assert_eq!(
            (quantile(5.0, 0.9), quantile(0.0, 0.9), quantile(1.0, 0.5)),
            (8, 0, 1)
        );
        for mean in [0.01f64, 0.7, 3.0, 12.5, 40.0] {
            for level in [0.05, 0.5, 0.8, 0.95, 0.999] {
                // The direct CDF is accurate enough for these small means.
                let (mut k, mut term, mut cdf) = (0, (-mean).exp(), (-mean).exp());
                while cdf < level {
                    k += 1;
                    term *= mean / k as f64;
                    cdf += term;
                }
                assert_eq!(quantile(mean, level), k, "mean {mean} level {level}");
            }
        }
    }

    #[test]
    fn poisson_targets_are_monotone_and_sane_for_large_means() {
        let means = Array::from_shape_fn(200, |i| i as f64 * 0.37);
        let rows: Vec<_> = [0.1, 0.5, 0.9, 0.99]
            .map(|l| targets(means.view(), l).unwrap())
            .into();
        assert!(
            rows.iter().all(|r| r.windows(2).all(|w| w[0] <= w[1])),
            "monotone in mean"
        );
        let by_level = rows
            .windows(2)
            .all(|p| p[0].iter().zip(&p[1]).all(|(a, b)| a <= b));
        assert!(by_level, "monotone in service level");
        for (level, z) in [(0.5, 0.0), (0.95, 1.6449), (0.999, 3.0902)] {
            let k = quantile(10_000.0, level) as f64; // normal approximation: mean + z sqrt(mean)
            assert!(
                (k - (10_000.0 + z * 100.0)).abs() <= 3.0,
                "level {level}: {k}"
            );
        }
        assert_eq!(quantile(1e10, 0.9), u32::MAX);
        assert!(quantile(1e9, 0.9) > 1_000_000_000);
    }
}
