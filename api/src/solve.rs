//! Running the engine for a run: the run's spec (typed), the problem it
//! describes, and the solve that turns it into a report and recommendations.
//! Synchronous and CPU-bound: callers run it on a blocking worker.

use std::time::Instant;

use fleet_engine::model::Problem;
use fleet_engine::optimize::{do_nothing, optimize_within_budget, pareto_front, WithinBudget};
use fleet_engine::problem_file::{report, ProblemFile};
use fleet_engine::run_settings::{Constraints, HorizonSettings, ObjectiveWeights, RunSettings};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::store::{new_id, now_ms, Recommendation};

/// What a run solves, as stored with it: weights, limits and horizon on top
/// of an inline problem (DESIGN.md 2.1). Absent parts keep the problem's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    #[serde(default)]
    pub objectives: Option<ObjectiveWeights>,
    #[serde(default)]
    pub constraints: Option<Constraints>,
    #[serde(default)]
    pub horizon: Option<HorizonSettings>,
    /// The problem file; required until live zone state is available.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub problem: Option<Value>,
}

/// A spec that cannot be solved: the field (as the client wrote it) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A spec made ready to solve.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub problem: Problem,
    pub pareto_points: usize,
    pub settings: RunSettings,
}

impl RunSpec {
    /// The settings part, defaults filled in.
    pub fn settings(&self) -> RunSettings {
        RunSettings {
            objectives: self.objectives.unwrap_or_default(),
            constraints: self.constraints.unwrap_or_default(),
            horizon: self.horizon,
        }
    }

    /// `self` with the parts `other` gives replaced.
    pub fn overridden_by(&self, other: &RunSpec) -> RunSpec {
        RunSpec {
            objectives: other.objectives.or(self.objectives),
            constraints: other.constraints.or(self.constraints),
            horizon: other.horizon.or(self.horizon),
            problem: other.problem.clone().or_else(|| self.problem.clone()),
        }
    }

    /// Checks everything and builds the problem to solve.
    pub fn prepare(&self) -> Result<Prepared, SpecError> {
        let Some(doc) = &self.problem else {
            return Err(SpecError {
                field: "problem".into(),
                message: "an inline `problem` (DESIGN.md 2.1) is required until live zone state is available".into(),
            });
        };
        let file: ProblemFile = serde_json::from_value(doc.clone()).map_err(|e| SpecError {
            field: "problem".into(),
            message: e.to_string(),
        })?;
        let settings = self.settings();
        let file = settings.apply(&file).map_err(|e| SpecError {
            field: e.field,
            message: e.message,
        })?;
        let (problem, pareto_points) = file.into_problem().map_err(|e| SpecError {
            field: format!("problem.{}", e.field),
            message: e.message,
        })?;
        Ok(Prepared {
            problem,
            pareto_points,
            settings,
        })
    }
}

/// What a solve produced: the report document, the recommendations and the
/// run's measurements (metric name, value).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub objective: f64,
    pub report: Value,
    pub recommendations: Vec<Recommendation>,
    pub measured: Vec<(&'static str, f64)>,
}

/// Solves a prepared spec for run `run_id` of fleet `fleet_id`.
pub fn solve(prepared: &Prepared, run_id: &str, fleet_id: &str) -> Result<Outcome, String> {
    let problem = &prepared.problem;
    let budget = prepared
        .settings
        .constraints
        .budget
        .unwrap_or(f64::INFINITY);
    let start = Instant::now();
    let WithinBudget {
        solved,
        km_weight,
        solves,
    } = if budget.is_finite() {
        optimize_within_budget(problem, budget)
    } else {
        fleet_engine::optimize::optimize(problem).map(|solved| WithinBudget {
            solved,
            km_weight: 1.0,
            solves: 1,
        })
    }
    .map_err(|e| e.to_string())?;
    let solve_ms = start.elapsed().as_secs_f64() * 1e3;
    let front = if prepared.pareto_points == 0 {
        Vec::new()
    } else {
        pareto_front(problem, prepared.pareto_points).map_err(|e| e.to_string())?
    };
    let doc = report(problem, &solved, &front, solve_ms);
    // Benefit against moving nobody: cost reduction (% of the do-nothing
    // objective) and fleet efficiency (percentage points of targets met).
    let base = do_nothing(problem).map_err(|e| e.to_string())?;
    let plan = &solved.plan;
    let mut measured = vec![
        ("optimization_execution_time_ms", solve_ms),
        (
            "fleet_efficiency_improvement_pct",
            100.0 * (plan.objectives.served_ratio - base.objectives.served_ratio),
        ),
    ];
    if base.objective > 0.0 {
        measured.push((
            "cost_reduction_pct",
            100.0 * (base.objective - plan.objective) / base.objective,
        ));
    }
    let now = now_ms();
    let recommendations = doc
        .moves
        .iter()
        .map(|m| Recommendation {
            id: new_id(),
            run_id: run_id.to_owned(),
            fleet_id: fleet_id.to_owned(),
            from_zone: m.from.clone(),
            to_zone: m.to.clone(),
            vehicles: m.vehicles as i64,
            km: m.km,
            cost: m.cost,
            benefit_per_vehicle: m.why.benefit_per_vehicle,
            explanation: m.why.reason.clone(),
            status: "proposed".into(),
            created_at: now,
        })
        .collect();
    let mut value = serde_json::to_value(&doc).map_err(|e| e.to_string())?;
    value["settings"] = serde_json::to_value(prepared.settings).map_err(|e| e.to_string())?;
    if budget.is_finite() {
        // `km_weight` is null when even the cheapest move is over budget.
        value["budget"] = json!({
            "limit": budget,
            "spent": plan.objectives.move_cost,
            "km_weight": km_weight.is_finite().then_some(km_weight),
            "solves": solves,
        });
    }
    Ok(Outcome {
        objective: doc.objective,
        report: value,
        recommendations,
        measured,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: Value) -> RunSpec {
        let mut doc = json!({"problem": {
            "zones": [
                {"id": "a", "lat": 40.75, "lon": -73.98, "idle": 6, "target": 1},
                {"id": "b", "lat": 40.76, "lon": -73.98, "idle": 0, "target": 3},
                {"id": "c", "lat": 40.80, "lon": -73.98, "idle": 0, "target": 3}
            ],
            "travel": {"metric": "haversine", "detour_factor": 1.3},
            "costs": {"per_km": 0.6, "unmet_penalty": 15.0, "coverage_penalty": 5.0},
            "pareto_points": 0
        }});
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn a_budget_limits_what_the_moves_cost_and_is_reported() {
        let free = solve(&spec(json!({})).prepare().unwrap(), "r", "f").unwrap();
        let free_cost = free.report["objectives"]["move_cost"].as_f64().unwrap();
        assert!(free_cost > 0.0);
        let tight = spec(json!({"constraints": {"budget": free_cost / 2.0}}));
        let out = solve(&tight.prepare().unwrap(), "r", "f").unwrap();
        let spent = out.report["budget"]["spent"].as_f64().unwrap();
        assert!(
            spent <= free_cost / 2.0 + 1e-9,
            "{spent} > {}",
            free_cost / 2.0
        );
        assert!(out.objective >= free.objective);
        assert!(out.recommendations.len() <= free.recommendations.len());
    }

    #[test]
    fn errors_name_the_field_the_client_wrote() {
        let bad = spec(json!({"objectives": {"service": -1.0}}));
        assert_eq!(bad.prepare().unwrap_err().field, "objectives.service");
        let mut bad = spec(json!({}));
        bad.problem.as_mut().unwrap()["zones"][1]["idle"] = json!(-3);
        assert_eq!(bad.prepare().unwrap_err().field, "problem");
        let none = RunSpec::default();
        assert_eq!(none.prepare().unwrap_err().field, "problem");
    }

    #[test]
    fn overrides_replace_only_what_they_give() {
        let base = spec(json!({"objectives": {"cost": 2.0}}));
        let what_if = RunSpec {
            constraints: Some(Constraints {
                max_move_km: Some(1.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let merged = base.overridden_by(&what_if);
        assert_eq!(merged.objectives, base.objectives);
        assert_eq!(merged.constraints, what_if.constraints);
        assert_eq!(merged.problem, base.problem);
    }
}
