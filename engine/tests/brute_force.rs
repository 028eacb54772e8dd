//! The optimizer against exhaustive enumeration of every feasible plan on
//! small random instances — an independent reference that shares nothing
//! with the network formulation but the integer cost rounding.

use fleet_engine::formulation::{move_cost, COST_SCALE};
use fleet_engine::model::{Costs, Problem, Travel, Zone};
use fleet_engine::optimize::{optimize, optimize_within_budget, Rebalancer};
use fleet_engine::plan::Plan;
use fleet_engine::synthetic::Rng;
use ndarray::Array2;
use proptest::prelude::*;

/// Integer penalty of a zone ending with `a` vehicles.
fn penalty(p: &Problem, i: usize, a: i64) -> i64 {
    let z = &p.zones[i];
    let unmet = (p.costs.unmet_penalty * COST_SCALE).round() as i64;
    let floor =
        ((p.costs.unmet_penalty + p.costs.coverage_penalty) * COST_SCALE).round() as i64 - unmet;
    unmet * (z.target as i64 - a).max(0) + floor * (z.min_vehicles as i64 - a).max(0)
}

/// Minimum integer objective over all move matrices x with
/// `sum_j x_ij <= idle_i`, using `cost[i][j]` (None = move not allowed).
fn brute_force(p: &Problem, cost: &[Vec<Option<i64>>]) -> i64 {
    brute_force_within(p, cost, i64::MAX)
}

/// The same among plans whose moves cost at most `max_spent`.
fn brute_force_within(p: &Problem, cost: &[Vec<Option<i64>>], max_spent: i64) -> i64 {
    let n = p.zones.len();
    let mut after: Vec<i64> = p.zones.iter().map(|z| z.idle as i64).collect();
    fn origin(
        p: &Problem,
        cost: &[Vec<Option<i64>>],
        i: usize,
        after: &mut Vec<i64>,
        spent: i64,
        best: &mut i64,
        max_spent: i64,
    ) {
        let n = p.zones.len();
        if spent > max_spent {
            return;
        }
        if i == n {
            let total = spent + (0..n).map(|k| penalty(p, k, after[k])).sum::<i64>();
            *best = (*best).min(total);
            return;
        }
        dest(
            p,
            cost,
            i,
            0,
            p.zones[i].idle as i64,
            after,
            spent,
            best,
            max_spent,
        );
    }
    #[allow(clippy::too_many_arguments)]
    fn dest(
        p: &Problem,
        cost: &[Vec<Option<i64>>],
        i: usize,
        j: usize,
        left: i64,
        after: &mut Vec<i64>,
        spent: i64,
        best: &mut i64,
        max_spent: i64,
    ) {
        if j == p.zones.len() {
            origin(p, cost, i + 1, after, spent, best, max_spent);
            return;
        }
        let Some(c) = cost[i][j].filter(|_| i != j) else {
            dest(p, cost, i, j + 1, left, after, spent, best, max_spent);
            return;
        };
        for x in 0..=left {
            after[i] -= x;
            after[j] += x;
            dest(
                p,
                cost,
                i,
                j + 1,
                left - x,
                after,
                spent + x * c,
                best,
                max_spent,
            );
            after[i] += x;
            after[j] -= x;
        }
    }
    let mut best = i64::MAX;
    origin(p, cost, 0, &mut after, 0, &mut best, max_spent);
    let _ = n;
    best
}

/// Integer cost of the plan's moves alone.
fn plan_spend(plan: &Plan, cost: &[Vec<Option<i64>>]) -> i64 {
    plan.moves
        .iter()
        .map(|m| cost[m.from][m.to].unwrap() * m.vehicles as i64)
        .sum()
}

/// The plan's integer objective, recomputed from its moves (not from the solver).
fn plan_cost(p: &Problem, plan: &Plan, cost: &[Vec<Option<i64>>]) -> i64 {
    let mut after: Vec<i64> = p.zones.iter().map(|z| z.idle as i64).collect();
    let mut total = 0;
    let mut sent = vec![0i64; p.zones.len()];
    for m in &plan.moves {
        let c = cost[m.from][m.to].expect("plan uses a move that is not allowed");
        total += c * m.vehicles as i64;
        after[m.from] -= m.vehicles as i64;
        after[m.to] += m.vehicles as i64;
        sent[m.from] += m.vehicles as i64;
    }
    for (i, z) in p.zones.iter().enumerate() {
        assert!(sent[i] <= z.idle as i64, "zone {i} sends more than it has");
        assert_eq!(
            after[i],
            plan.vehicles_after[[i, 0]] as i64,
            "zone {i} count disagrees"
        );
    }
    total
        + (0..p.zones.len())
            .map(|i| penalty(p, i, after[i]))
            .sum::<i64>()
}

fn random_problem(seed: u64, n: usize, matrix: bool, max_move: bool) -> Problem {
    let mut rng = Rng::new(seed);
    let zones = (0..n)
        .map(|i| {
            let target = rng.below(4) as u32;
            Zone {
                id: format!("z{i}"),
                lat: 40.7 + rng.unit() * 0.1,
                lon: -74.0 + rng.unit() * 0.1,
                idle: rng.below(4) as u32,
                target,
                min_vehicles: rng.below(target as u64 + 1) as u32,
            }
        })
        .collect();
    // A random matrix need not satisfy the triangle inequality: exactly the
    // case where a network with transshipment would differ from the model.
    let travel = if matrix {
        Travel::Matrix(Array2::from_shape_fn((n, n), |(i, j)| {
            if i == j {
                0.0
            } else {
                (rng.unit() * 30.0).round()
            }
        }))
    } else {
        Travel::Haversine {
            detour_factor: 1.0 + rng.unit(),
        }
    };
    Problem {
        zones,
        travel,
        costs: Costs {
            per_km: 0.1 + rng.unit(),
            unmet_penalty: rng.below(20) as f64,
            coverage_penalty: rng.below(10) as f64,
        },
        max_move_km: max_move.then(|| rng.unit() * 10.0),
        neighbours: None,
        horizon: None,
    }
}

fn direct_costs(p: &Problem) -> Vec<Vec<Option<i64>>> {
    let n = p.zones.len();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let d = p.distance_km(i, j);
                    p.max_move_km
                        .is_none_or(|m| d <= m)
                        .then(|| move_cost(p, d))
                })
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Dense direct moves: the optimum equals exhaustive search.
    #[test]
    fn direct_matches_exhaustive_search(seed: u64, n in 1usize..=4, matrix: bool, max_move: bool) {
        let p = random_problem(seed, n, matrix, max_move);
        let cost = direct_costs(&p);
        let plan = optimize(&p).unwrap().plan;
        prop_assert_eq!(plan_cost(&p, &plan, &cost), brute_force(&p, &cost));
    }

    /// A budget: the plan fits it, is the exact optimum of the weighted
    /// (Lagrangian) objective the solver was given, and is optimal among plans
    /// that spend no more than it does up to the rounding of weighted costs.
    #[test]
    fn budgeted_plan_is_optimal_for_its_own_spend(seed: u64, n in 2usize..=4, matrix: bool, share in 0.0f64..1.0) {
        let p = random_problem(seed, n, matrix, false);
        let cost = direct_costs(&p);
        let free = optimize(&p).unwrap().plan;
        let budget = free.objectives.move_cost * share;
        let within = optimize_within_budget(&p, budget).unwrap();
        let plan = within.solved.plan;
        prop_assert!(plan.objectives.move_cost <= budget + 1e-6);
        let spend = plan_spend(&plan, &cost);
        if within.km_weight.is_finite() {
            // Exact: the plan minimises penalties + weighted integer move costs.
            let mut weighted = p.clone();
            weighted.costs.per_km *= within.km_weight;
            let weighted_cost = direct_costs(&weighted);
            prop_assert_eq!(plan_cost(&p, &plan, &weighted_cost), brute_force(&p, &weighted_cost));
            // Weighted arc costs are rounded to integers after weighting, so
            // each differs from `w x` its unweighted integer cost by at most
            // (1 + w) / 2; over the two plans compared that is at most
            // (1 + w) / 2 per vehicle moved by either, i.e. <= (1 + w) * idle.
            let idle: i64 = p.zones.iter().map(|z| z.idle as i64).sum();
            let slack = ((1.0 + within.km_weight) * idle as f64).ceil() as i64;
            let best = brute_force_within(&p, &cost, spend);
            let got = plan_cost(&p, &plan, &cost);
            prop_assert!(got >= best && got <= best + slack, "plan {got}, best for its spend {best}, slack {slack}");
        } else {
            prop_assert!(plan.moves.is_empty());
        }
        // Never better than what the whole budget could buy (that would be an
        // accounting error).
        let limit = (budget * COST_SCALE).floor() as i64;
        prop_assert!(plan_cost(&p, &plan, &cost) >= brute_force_within(&p, &cost, limit.max(spend)));
    }

    /// Warm re-solve after changing zones equals exhaustive search on the changed problem.
    #[test]
    fn warm_resolve_matches_exhaustive_search(seed: u64, n in 1usize..=4, matrix: bool, changes in 1usize..4) {
        let p = random_problem(seed, n, matrix, false);
        // The repair itself (never falling back to a cold solve) ...
        let mut reb = Rebalancer::new(p.clone()).unwrap().with_warm_budget(f64::INFINITY);
        // ... and the default, which may fall back.
        let mut fallback = Rebalancer::new(p).unwrap().with_warm_budget(0.0);
        let mut rng = Rng::new(seed ^ 0xabcdef);
        for _ in 0..changes {
            let zone = rng.below(n as u64) as usize;
            let target = rng.below(4) as u32;
            let (idle, floor) = (rng.below(4) as u32, rng.below(target as u64 + 1) as u32);
            reb.set_zone(zone, idle, target, floor).unwrap();
            fallback.set_zone(zone, idle, target, floor).unwrap();
        }
        let plan = reb.resolve().unwrap().plan;
        let fell_back = fallback.resolve().unwrap();
        prop_assert_eq!(fallback.flow_cost(), reb.flow_cost());
        prop_assert!(fell_back.stats.warm_fallback || fell_back.stats.warm_pivots == 0);
        let p = reb.problem().clone();
        let cost = direct_costs(&p);
        prop_assert_eq!(plan_cost(&p, &plan, &cost), brute_force(&p, &cost));
        // And the warm flow's cost is the cold optimum of the same network.
        let cold = optimize(&p).unwrap().plan;
        prop_assert_eq!(plan_cost(&p, &cold, &cost), plan_cost(&p, &plan, &cost));
    }

    /// k-nearest-neighbour transshipment: routes cost the sum of their hops,
    /// so the reference is exhaustive search over direct moves priced at the
    /// shortest route in the neighbour graph (Floyd-Warshall).
    #[test]
    fn transshipment_matches_exhaustive_search_on_route_costs(seed: u64, n in 2usize..=5, k in 1usize..=2) {
        let mut p = random_problem(seed, n, false, false);
        p.neighbours = Some(k);
        let points: Vec<_> = p.zones.iter().map(|z| fleet_engine::geo::LatLon { lat: z.lat, lon: z.lon }).collect();
        let near = fleet_engine::geo::k_nearest_all(&points, k);
        let mut route: Vec<Vec<Option<i64>>> = vec![vec![None; n]; n];
        for (i, list) in near.iter().enumerate() {
            route[i][i] = Some(0);
            for &j in list {
                let c = move_cost(&p, p.distance_km(i, j));
                route[i][j] = Some(c);
                route[j][i] = Some(move_cost(&p, p.distance_km(j, i)));
            }
        }
        for via in 0..n {
            for i in 0..n {
                for j in 0..n {
                    if let (Some(a), Some(b)) = (route[i][via], route[via][j]) {
                        if route[i][j].is_none_or(|c| a + b < c) {
                            route[i][j] = Some(a + b);
                        }
                    }
                }
            }
        }
        // Arcs dearer than the largest possible gain are dropped by the
        // formulation; routes through them are never strictly better.
        let plan = optimize(&p).unwrap().plan;
        let mut after: Vec<i64> = p.zones.iter().map(|z| z.idle as i64).collect();
        let mut total = 0i64;
        for m in &plan.moves {
            // The route taken is a shortest one (up to per-hop rounding of km to cost units).
            let shortest = route[m.from][m.to].unwrap();
            let taken = p.costs.per_km * m.km * COST_SCALE;
            prop_assert!((taken - shortest as f64).abs() <= n as f64 * 0.5 + 1e-6, "route {} km is not shortest", m.km);
            total += shortest * m.vehicles as i64;
            after[m.from] -= m.vehicles as i64;
            after[m.to] += m.vehicles as i64;
        }
        total += (0..n).map(|i| penalty(&p, i, after[i])).sum::<i64>();
        prop_assert_eq!(total, brute_force(&p, &route));
    }
}
