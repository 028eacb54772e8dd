//! Entry points: solve a problem exactly, keep re-solving it as zones change
//! (warm start), and trace its Pareto front.

use crate::formulation::{formulate, Formulation};
use crate::model::{InvalidProblem, Problem, MAX_VEHICLES};
use crate::network::Network;
use crate::plan::{read_plan, Objectives, Plan};
use crate::simplex::{FlowStatus, NetworkSimplex};

/// Why no plan was produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SolveError {
    /// The input is wrong; the field is named.
    Invalid(InvalidProblem),
    /// The solver failed. The "nobody moves" plan is always feasible, so this
    /// signals a bug, never bad input.
    Internal(String),
}

impl std::fmt::Display for SolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SolveError::Invalid(e) => write!(f, "invalid problem: {e}"),
            SolveError::Internal(e) => write!(f, "solver failure (please report): {e}"),
        }
    }
}

impl std::error::Error for SolveError {}

impl From<InvalidProblem> for SolveError {
    fn from(e: InvalidProblem) -> Self {
        SolveError::Invalid(e)
    }
}

/// Size of the solved network and the work done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SolveStats {
    pub nodes: usize,
    pub arcs: usize,
    /// Simplex pivots of the cold solve.
    pub iterations: u64,
    /// Dual simplex pivots of the last warm re-solve (0 for a cold solve).
    pub warm_pivots: u64,
    /// The warm repair gave up and the re-solve was done cold.
    pub warm_fallback: bool,
}

/// An optimal plan with its solve statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Solved {
    pub plan: Plan,
    pub stats: SolveStats,
}

/// Solves `problem` to optimality from scratch.
///
/// ```
/// use fleet_engine::model::{Costs, Problem, Travel, Zone};
/// use fleet_engine::optimize::optimize;
/// let zone = |id: &str, lat, idle, target| Zone { id: id.into(), lat, lon: -73.98, idle, target, min_vehicles: 0 };
/// let problem = Problem {
///     zones: vec![zone("a", 40.75, 6, 2), zone("b", 40.76, 0, 3)],
///     travel: Travel::Haversine { detour_factor: 1.3 },
///     costs: Costs { per_km: 0.6, unmet_penalty: 15.0, coverage_penalty: 5.0 },
///     max_move_km: None, neighbours: None, horizon: None,
/// };
/// let solved = optimize(&problem).unwrap();
/// assert_eq!(solved.plan.moves.len(), 1);
/// assert_eq!(solved.plan.moves[0].vehicles, 3);
/// assert_eq!(solved.plan.objectives.unmet, 0);
/// ```
pub fn optimize(problem: &Problem) -> Result<Solved, SolveError> {
    solve_reporting_in(problem, problem)
}

/// Solves `solved` cold and reports the plan in `reported`'s costs (the
/// same zones and arcs; only costs may differ).
fn solve_reporting_in(solved: &Problem, reported: &Problem) -> Result<Solved, SolveError> {
    solved.validate()?;
    let f = formulate(solved);
    let (flow, _, iterations) = cold_solve(&f)?;
    Ok(Solved {
        plan: read_plan(reported, &f, &flow),
        stats: SolveStats {
            nodes: f.network.node_count(),
            arcs: f.network.arc_count(),
            iterations,
            warm_pivots: 0,
            warm_fallback: false,
        },
    })
}

/// An optimal plan among those whose moves cost at most a budget.
#[derive(Debug, Clone, PartialEq)]
pub struct WithinBudget {
    pub solved: Solved,
    /// The weight on driving cost that brought the plan within budget
    /// (1 when the unconstrained optimum already fits).
    pub km_weight: f64,
    /// Cold solves spent.
    pub solves: u32,
}

/// Solves `problem` so that the plan's move cost stays within `budget`.
///
/// A budget is a side constraint that breaks the network structure, so it is
/// handled by its Lagrangian: driving cost is weighted by the smallest
/// `km_weight >= 1` (found by doubling, then bisection) at which the optimum
/// fits. The result is exact for the weighted problem and is always within
/// budget; against the budget-constrained optimum it can leave money unspent
/// when the budget falls between two corners of the km/service Pareto front
/// (the Lagrangian duality gap). The plan is reported in `problem`'s own costs.
///
/// ```
/// use fleet_engine::model::{Costs, Problem, Travel, Zone};
/// use fleet_engine::optimize::{optimize, optimize_within_budget};
/// let zone = |id: &str, lat, idle, target| Zone { id: id.into(), lat, lon: -73.98, idle, target, min_vehicles: 0 };
/// let problem = Problem {
///     zones: vec![zone("a", 40.75, 6, 2), zone("b", 40.76, 0, 2), zone("c", 40.80, 0, 2)],
///     travel: Travel::Haversine { detour_factor: 1.3 },
///     costs: Costs { per_km: 0.6, unmet_penalty: 15.0, coverage_penalty: 5.0 },
///     max_move_km: None, neighbours: None, horizon: None,
/// };
/// let free = optimize(&problem).unwrap().plan;
/// let budget = free.objectives.move_cost / 2.0;
/// let tight = optimize_within_budget(&problem, budget).unwrap();
/// assert!(tight.solved.plan.objectives.move_cost <= budget);
/// assert!(tight.km_weight > 1.0);
/// ```
pub fn optimize_within_budget(problem: &Problem, budget: f64) -> Result<WithinBudget, SolveError> {
    if !(budget.is_finite() && budget >= 0.0) {
        return Err(InvalidProblem {
            field: "constraints.budget".into(),
            message: "must be a finite number >= 0".into(),
        }
        .into());
    }
    let fits = |s: &Solved| s.plan.objectives.move_cost <= budget * (1.0 + 1e-9) + 1e-9;
    let mut solves = 1;
    let solved = optimize(problem)?;
    if fits(&solved) {
        return Ok(WithinBudget {
            solved,
            km_weight: 1.0,
            solves,
        });
    }
    // Bracket: `lo` over budget, `hi` within it. Past a weight of 2^40 only
    // moves worth more than 10^12 per km survive: then nobody moves.
    let (mut lo, mut hi) = (1.0f64, 2.0f64);
    let mut best = loop {
        solves += 1;
        let s = optimize_weighted(problem, hi)?;
        if fits(&s) {
            break s;
        }
        lo = hi;
        hi *= 2.0;
        if hi > 2f64.powi(40) {
            let mut none = problem.clone();
            none.max_move_km = Some(-1.0);
            let s = optimize(&none)?;
            return Ok(WithinBudget {
                solved: Solved {
                    plan: do_nothing(problem)?,
                    stats: s.stats,
                },
                km_weight: f64::INFINITY,
                solves: solves + 1,
            });
        }
    };
    while hi / lo > 1.0 + 1e-4 {
        let mid = (lo * hi).sqrt();
        solves += 1;
        let s = optimize_weighted(problem, mid)?;
        if fits(&s) {
            hi = mid;
            best = s;
        } else {
            lo = mid;
        }
    }
    Ok(WithinBudget {
        solved: best,
        km_weight: hi,
        solves,
    })
}

/// Solves `problem` with driving cost weighted by `km_weight`, reporting the
/// plan (objective, move costs, explanations) in `problem`'s own costs.
fn optimize_weighted(problem: &Problem, km_weight: f64) -> Result<Solved, SolveError> {
    let mut weighted = problem.clone();
    weighted.costs.per_km *= km_weight;
    solve_reporting_in(&weighted, problem)
}

/// The plan in which nobody moves: the baseline that the benefit of an
/// optimal plan (cost reduction, service gained) is measured against.
pub fn do_nothing(problem: &Problem) -> Result<Plan, SolveError> {
    problem.validate()?;
    let f = formulate(problem);
    Ok(read_plan(problem, &f, &f.basis.flow))
}

fn cold_solve(f: &Formulation) -> Result<(Vec<i64>, Vec<i64>, u64), SolveError> {
    let sol = f.solve();
    match sol.status {
        FlowStatus::Optimal => Ok((sol.flow, sol.potential, sol.iterations)),
        other => Err(SolveError::Internal(format!("simplex ended {other:?}"))),
    }
}

/// A problem kept solved while its zones change: after each streaming window
/// call [`Rebalancer::set_zone`] for the zones that changed, then
/// [`Rebalancer::resolve`], which repairs the previous optimum instead of
/// starting over and returns the same optimal objective a cold solve would.
#[derive(Debug, Clone)]
pub struct Rebalancer {
    problem: Problem,
    formulation: Formulation,
    simplex: NetworkSimplex,
    cold_iterations: u64,
    /// Effort of the last cold solve: the warm repair's budget is a share of it.
    cold_work: u64,
    warm_budget_share: f64,
}

impl Rebalancer {
    /// Solves `problem` cold and keeps the result for warm re-solves.
    pub fn new(problem: Problem) -> Result<Self, SolveError> {
        problem.validate()?;
        let formulation = formulate(&problem);
        let simplex = Self::solve_cold(&formulation)?;
        Ok(Rebalancer {
            problem,
            cold_iterations: simplex.iterations(),
            cold_work: simplex.work(),
            warm_budget_share: 0.1,
            formulation,
            simplex,
        })
    }

    /// How much of a cold solve's effort a warm repair may spend before
    /// [`Rebalancer::resolve`] solves cold instead (default 0.1;
    /// `f64::INFINITY`: always repair, e.g. to test the repair itself).
    pub fn with_warm_budget(mut self, share_of_cold: f64) -> Self {
        self.warm_budget_share = share_of_cold;
        self
    }

    fn solve_cold(f: &Formulation) -> Result<NetworkSimplex, SolveError> {
        let mut simplex = NetworkSimplex::new(
            &f.network,
            f.basis.clone(),
            f.priority,
            f.network.arc_count(),
        )
        .map_err(SolveError::Internal)?;
        match simplex.run() {
            FlowStatus::Optimal => {}
            other => return Err(SolveError::Internal(format!("simplex ended {other:?}"))),
        }
        simplex.prepare_reoptimize();
        Ok(simplex)
    }

    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The network being kept optimal (e.g. to hand to a reference solver).
    pub fn network(&self) -> &Network {
        &self.formulation.network
    }

    /// Changes zone `zone`'s idle count, target and floor (the latter two for
    /// every period). Takes effect at the next [`Rebalancer::resolve`].
    pub fn set_zone(
        &mut self,
        zone: usize,
        idle: u32,
        target: u32,
        min_vehicles: u32,
    ) -> Result<(), InvalidProblem> {
        let field = |name: &str| format!("zones[{zone}].{name}");
        if zone >= self.problem.zones.len() {
            return Err(InvalidProblem {
                field: "zone".into(),
                message: format!("no zone {zone}; there are {}", self.problem.zones.len()),
            });
        }
        if idle > MAX_VEHICLES || target > MAX_VEHICLES {
            return Err(InvalidProblem {
                field: field("idle"),
                message: format!("must be at most {MAX_VEHICLES}"),
            });
        }
        if min_vehicles > target {
            return Err(InvalidProblem {
                field: field("min_vehicles"),
                message: "must not exceed target".into(),
            });
        }
        let layout = self.formulation.layout;
        let old_idle = self.problem.zones[zone].idle as i64;
        let z = &mut self.problem.zones[zone];
        (z.idle, z.target, z.min_vehicles) = (idle, target, min_vehicles);
        if let Some(h) = &mut self.problem.horizon {
            h.targets.row_mut(zone).fill(target);
            h.min_vehicles.row_mut(zone).fill(min_vehicles);
        }
        let change = idle as i64 - old_idle;
        for (node, change) in [
            (layout.start_node(zone, 0), change),
            (self.formulation.sink, -change),
        ] {
            let supply = self.formulation.network.supply[node] + change;
            self.formulation.network.supply[node] = supply;
            self.simplex.set_supply(node, supply);
        }
        for p in 0..layout.periods() {
            let a = layout.penalty_arc(zone, p);
            for (arc, cap) in [
                (a, min_vehicles as i64),
                (a + 1, (target - min_vehicles) as i64),
            ] {
                self.formulation.network.capacity[arc] = cap;
                self.simplex.set_capacity(arc, cap);
            }
        }
        Ok(())
    }

    /// Re-optimises after [`Rebalancer::set_zone`] calls: repairs the kept
    /// optimum (dual simplex), or, when the repair has cost half of what the
    /// last cold solve did without finishing, solves the changed problem
    /// cold instead, so a re-solve never costs much more than a cold one.
    pub fn resolve(&mut self) -> Result<Solved, SolveError> {
        let before = self.simplex.iterations();
        let budget = (self.cold_work as f64 * self.warm_budget_share).min(u64::MAX as f64) as u64;
        let warm_pivots = match self.simplex.reoptimize(budget) {
            Some(FlowStatus::Optimal) => Some(self.simplex.iterations() - before),
            Some(other) => {
                return Err(SolveError::Internal(format!(
                    "warm re-solve ended {other:?}"
                )))
            }
            None => {
                self.formulation.rebase(&self.problem);
                self.simplex = Self::solve_cold(&self.formulation)?;
                self.cold_iterations = self.simplex.iterations();
                self.cold_work = self.simplex.work();
                None
            }
        };
        Ok(Solved {
            plan: read_plan(&self.problem, &self.formulation, &self.simplex.flow()),
            stats: SolveStats {
                nodes: self.network().node_count(),
                arcs: self.network().arc_count(),
                iterations: self.cold_iterations,
                warm_pivots: warm_pivots.unwrap_or(0),
                warm_fallback: warm_pivots.is_none(),
            },
        })
    }

    /// Cost of the current flow in integer units (for exact comparisons).
    pub fn flow_cost(&self) -> i128 {
        self.simplex.cost()
    }
}

/// One point of the Pareto front.
#[derive(Debug, Clone, PartialEq)]
pub struct ParetoPoint {
    /// Multiplier of `per_km` under which this plan is optimal.
    pub km_weight: f64,
    pub objectives: Objectives,
}

/// The trade-off between empty km and service (unmet demand and coverage
/// shortfall), as the exact supported Pareto front.
///
/// Every point minimises `w * per_km * km + service penalty` for some weight
/// `w` and is solved exactly. Weights are not sampled blindly: starting from
/// the two ends (no moves at all; every useful move with km almost free),
/// each gap between neighbouring points is probed at the one weight where
/// both cost the same (Aneja-Nair / NISE dichotomic search). A probe that
/// beats both is a new corner of the front and splits the gap; otherwise the
/// gap is an edge of the front and is closed. So, within `points` solves,
/// no supported point between two found ones can be missed. Points are
/// returned non-dominated and sorted by increasing km.
pub fn pareto_front(problem: &Problem, points: usize) -> Result<Vec<ParetoPoint>, SolveError> {
    problem.validate()?;
    let budget = points.clamp(3, 101);
    let c = &problem.costs;
    let service = |o: &Objectives| {
        c.unmet_penalty * o.unmet as f64 + c.coverage_penalty * o.coverage_shortfall as f64
    };
    let solve_at = |w: f64| -> Result<ParetoPoint, SolveError> {
        let mut p = problem.clone();
        if w.is_finite() {
            p.costs.per_km *= w;
        } else {
            p.max_move_km = Some(-1.0); // no move is short enough
        }
        let f = formulate(&p);
        let (flow, _, _) = cold_solve(&f)?;
        let mut objectives = read_plan(&p, &f, &flow).objectives;
        objectives.move_cost = problem.costs.per_km * objectives.empty_km;
        Ok(ParetoPoint {
            km_weight: w,
            objectives,
        })
    };
    // Ends: no moves (infinite weight) and the best service (weight 1/50:
    // driving is cheap enough that every move with any service gain is made,
    // while km still count in whole cost units). The problem's own weight
    // is a third start: at weight 1/50 the rounding of km to cost units can
    // leave a few km on the table that the weight-1 optimum does not.
    let mut front = vec![solve_at(f64::INFINITY)?, solve_at(1.0)?, solve_at(0.02)?];
    let mut solves = 3;
    let mut open = vec![(0usize, 1usize), (1, 2)];
    let per_km = c.per_km.max(1e-12);
    // Widest gap first, so a small budget still spreads over the whole front.
    let gap = |front: &[ParetoPoint], (l, r): (usize, usize)| {
        let (a, b) = (&front[l].objectives, &front[r].objectives);
        (b.empty_km - a.empty_km) * (service(a) - service(b))
    };
    while solves < budget && !open.is_empty() {
        let widest = (0..open.len())
            .max_by(|&i, &j| gap(&front, open[i]).total_cmp(&gap(&front, open[j])))
            .unwrap_or(0);
        let (left, right) = open.swap_remove(widest);
        let (a, b) = (front[left].objectives, front[right].objectives);
        let (dkm, dservice) = (b.empty_km - a.empty_km, service(&a) - service(&b));
        if dkm <= 1e-9 || dservice <= 1e-9 {
            continue;
        }
        // The weight at which a and b cost the same.
        let w = dservice / (per_km * dkm);
        let probe = solve_at(w)?;
        solves += 1;
        let cost = |o: &Objectives| w * per_km * o.empty_km + service(o);
        if cost(&probe.objectives) < cost(&a) - 1e-6 {
            front.push(probe);
            let new = front.len() - 1;
            open.push((new, right));
            open.push((left, new));
        }
    }
    // Weighted optima are non-dominated up to ties; drop the ties.
    front.sort_by(|a, b| a.objectives.empty_km.total_cmp(&b.objectives.empty_km));
    let mut kept: Vec<ParetoPoint> = Vec::new();
    for p in front {
        let o = &p.objectives;
        let beaten = kept.iter().any(|q| {
            let q = &q.objectives;
            q.empty_km <= o.empty_km + 1e-9
                && q.unmet <= o.unmet
                && q.coverage_shortfall <= o.coverage_shortfall
        });
        if !beaten {
            kept.push(p);
        }
    }
    Ok(kept)
}
