//! How an operator steers one run (DESIGN.md section 4): objective weights,
//! constraints and a planning horizon, applied on top of a problem file.

use serde::{Deserialize, Serialize};

use crate::model::InvalidProblem;
use crate::problem_file::{HorizonSpec, ProblemFile};

/// Relative weights of the three objectives; each multiplies the problem's
/// money per unit of that objective. `1` everywhere leaves the problem as
/// written; `service: 2` makes an unmet target twice as expensive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ObjectiveWeights {
    /// Weight of driving cost (`costs.per_km`).
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub cost: f64,
    /// Weight of unmet targets (`costs.unmet_penalty`).
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub service: f64,
    /// Weight of coverage shortfall (`costs.coverage_penalty`).
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub coverage: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for ObjectiveWeights {
    fn default() -> Self {
        ObjectiveWeights {
            cost: 1.0,
            service: 1.0,
            coverage: 1.0,
        }
    }
}

/// Limits a plan must respect.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Longest move in km; the stricter of this and the problem's own limit applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub max_move_km: Option<f64>,
    /// Most money the plan's moves may cost in total (see
    /// [`crate::optimize::optimize_within_budget`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub budget: Option<f64>,
    /// Coverage floor: vehicles every zone should keep (never above the
    /// zone's target); raises, never lowers, a zone's own floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_coverage: Option<u32>,
}

/// The planning horizon of a run: replaces the problem's own horizon (a
/// zone's single `target` then holds for every period).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HorizonSettings {
    /// Periods planned, 1 to [`crate::problem_file::MAX_PERIODS`] (1000).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub periods: usize,
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0))]
    pub period_minutes: f64,
    /// Driving speed for move durations; default the problem's, else 30 km/h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0))]
    pub speed_kmh: Option<f64>,
}

/// Everything a run adds to its problem.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    #[serde(default)]
    pub objectives: ObjectiveWeights,
    #[serde(default)]
    pub constraints: Constraints,
    #[serde(default)]
    pub horizon: Option<HorizonSettings>,
}

const DEFAULT_SPEED_KMH: f64 = 30.0;

fn invalid(field: &str, message: &str) -> InvalidProblem {
    InvalidProblem {
        field: field.into(),
        message: message.into(),
    }
}

fn non_negative(field: &str, v: f64) -> Result<(), InvalidProblem> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(field, "must be a finite number >= 0"))
    }
}

impl RunSettings {
    /// Checks the settings alone; the field names are those of the run.
    pub fn validate(&self) -> Result<(), InvalidProblem> {
        let w = &self.objectives;
        non_negative("objectives.cost", w.cost)?;
        non_negative("objectives.service", w.service)?;
        non_negative("objectives.coverage", w.coverage)?;
        let c = &self.constraints;
        if let Some(km) = c.max_move_km {
            non_negative("constraints.max_move_km", km)?;
        }
        if let Some(b) = c.budget {
            non_negative("constraints.budget", b)?;
        }
        if let Some(h) = &self.horizon {
            if h.periods == 0 {
                return Err(invalid("horizon.periods", "must be at least 1"));
            }
            if !(h.period_minutes.is_finite() && h.period_minutes > 0.0) {
                return Err(invalid("horizon.period_minutes", "must be > 0"));
            }
            if let Some(s) = h.speed_kmh {
                if !(s.is_finite() && s > 0.0) {
                    return Err(invalid("horizon.speed_kmh", "must be > 0"));
                }
            }
        }
        Ok(())
    }

    /// `file` as this run sees it. The budget is not part of the problem: it
    /// is honoured by the solve ([`crate::optimize::optimize_within_budget`]).
    pub fn apply(&self, file: &ProblemFile) -> Result<ProblemFile, InvalidProblem> {
        self.validate()?;
        let mut f = file.clone();
        let w = &self.objectives;
        f.costs.per_km *= w.cost;
        f.costs.unmet_penalty *= w.service;
        f.costs.coverage_penalty *= w.coverage;
        if let Some(km) = self.constraints.max_move_km {
            f.max_move_km = Some(f.max_move_km.map_or(km, |own| own.min(km)));
        }
        if let Some(h) = &self.horizon {
            f.horizon = Some(HorizonSpec {
                periods: h.periods,
                period_minutes: h.period_minutes,
                speed_kmh: h
                    .speed_kmh
                    .or(file.horizon.map(|own| own.speed_kmh))
                    .unwrap_or(DEFAULT_SPEED_KMH),
            });
        }
        if let Some(floor) = self.constraints.min_coverage {
            for z in &mut f.zones {
                let target = z
                    .target
                    .or_else(|| z.targets.as_ref().and_then(|t| t.iter().min().copied()))
                    .unwrap_or(0);
                z.min_vehicles = z.min_vehicles.max(floor.min(target));
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::optimize;

    fn file() -> ProblemFile {
        let mut f: ProblemFile =
            serde_json::from_str(include_str!("../../examples/problem.json")).unwrap();
        // Cheap, unlimited driving: the example then has a move to make.
        f.max_move_km = None;
        f.costs.per_km = 0.1;
        f
    }

    #[test]
    fn default_settings_leave_the_problem_unchanged() {
        let f = file();
        assert_eq!(RunSettings::default().apply(&f).unwrap(), f);
    }

    #[test]
    fn weights_scale_costs_and_a_zero_service_weight_stops_all_moves() {
        let f = file();
        let settings = RunSettings {
            objectives: ObjectiveWeights {
                cost: 2.0,
                service: 0.0,
                coverage: 0.0,
            },
            ..Default::default()
        };
        let g = settings.apply(&f).unwrap();
        assert_eq!(g.costs.per_km, 2.0 * f.costs.per_km);
        assert_eq!(g.costs.unmet_penalty, 0.0);
        let (base, _) = f.into_problem().unwrap();
        let (weighted, _) = g.into_problem().unwrap();
        assert!(!optimize(&base).unwrap().plan.moves.is_empty());
        assert!(optimize(&weighted).unwrap().plan.moves.is_empty());
    }

    #[test]
    fn constraints_tighten_and_horizon_replaces() {
        let mut f = file();
        f.max_move_km = Some(3.0);
        let settings = RunSettings {
            constraints: Constraints {
                max_move_km: Some(5.0),
                budget: None,
                min_coverage: Some(1),
            },
            horizon: Some(HorizonSettings {
                periods: 3,
                period_minutes: 15.0,
                speed_kmh: None,
            }),
            ..Default::default()
        };
        let g = settings.apply(&f).unwrap();
        assert_eq!(g.max_move_km, Some(3.0), "the stricter limit applies");
        let h = g.horizon.unwrap();
        assert_eq!((h.periods, h.speed_kmh), (3, DEFAULT_SPEED_KMH));
        for (a, b) in f.zones.iter().zip(&g.zones) {
            let target = a.target.unwrap_or(0);
            assert_eq!(b.min_vehicles, a.min_vehicles.max(1.min(target)));
        }
        let (p, _) = g.into_problem().unwrap();
        assert_eq!(p.horizon.unwrap().targets.ncols(), 3);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let mut s = RunSettings::default();
        s.objectives.service = f64::NAN;
        assert_eq!(s.apply(&file()).unwrap_err().field, "objectives.service");
        let mut s = RunSettings::default();
        s.constraints.budget = Some(-1.0);
        assert_eq!(s.validate().unwrap_err().field, "constraints.budget");
        let s: Result<RunSettings, _> =
            serde_json::from_str(r#"{"objectives":{"cost":1,"speed":2}}"#);
        assert!(s.is_err(), "unknown fields are rejected");
    }
}
