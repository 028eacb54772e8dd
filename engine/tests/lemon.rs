//! The engine against LEMON's network simplex (C++, an independent
//! implementation) on large random instances: identical optimal cost every
//! time, cold and warm.

use fleet_engine::dimacs;
use fleet_engine::formulation::formulate;
use fleet_engine::network::{Network, UNBOUNDED};
use fleet_engine::optimize::Rebalancer;
use fleet_engine::simplex::{solve, FlowStatus};
use fleet_engine::synthetic::{perturb, random_city, CitySpec, Rng};

fn assert_same_optimum(net: &Network, ours: i128, what: &str) {
    let (lemon, _) = lemon_reference::solve(net);
    assert_eq!(
        ours, lemon as i128,
        "{what}: engine {ours} vs LEMON {lemon}"
    );
}

#[test]
fn rebalancing_networks_cold_and_warm() {
    for (zones, k, seed) in [
        (300, None, 1),
        (800, None, 2),
        (2000, Some(8), 3),
        (3000, Some(16), 4),
        (1500, Some(4), 5),
    ] {
        let spec = CitySpec::benchmark(zones, k, seed);
        let problem = random_city(&spec);
        let f = formulate(&problem);
        let sol = f.solve();
        assert_eq!(sol.status, FlowStatus::Optimal);
        f.network.check_flow(&sol.flow).unwrap();
        assert_same_optimum(&f.network, sol.cost, &format!("cold {zones} zones k={k:?}"));

        // Pure repair, and the default that may fall back to a cold solve.
        for share in [f64::INFINITY, 0.5] {
            let mut reb = Rebalancer::new(problem.clone())
                .unwrap()
                .with_warm_budget(share);
            assert_eq!(reb.flow_cost(), sol.cost);
            let mut rng = Rng::new(seed * 7919);
            for round in 0..5 {
                for (zone, idle, target, floor) in
                    perturb(reb.problem(), &spec, 0.01 * (round + 1) as f64, &mut rng)
                {
                    reb.set_zone(zone, idle, target, floor).unwrap();
                }
                reb.resolve().unwrap();
                assert_same_optimum(
                    reb.network(),
                    reb.flow_cost(),
                    &format!("warm round {round}, {zones} zones, budget {share}"),
                );
            }
        }
    }
}

/// General networks (not from our formulation), solved from the artificial basis.
#[test]
fn random_general_networks() {
    let mut rng = Rng::new(42);
    for case in 0..60 {
        let n = 2 + rng.below(300) as usize;
        let m = n + rng.below(6 * n as u64) as usize;
        let mut net = Network::with_nodes(n);
        // A spanning path of wide arcs keeps every instance feasible.
        for v in 1..n {
            net.add_arc(v - 1, v, UNBOUNDED, 100 + rng.below(100) as i64);
            net.add_arc(v, v - 1, UNBOUNDED, 100 + rng.below(100) as i64);
        }
        for _ in 0..m {
            let (a, b) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
            if a != b {
                net.add_arc(a, b, rng.below(20) as i64, rng.below(200) as i64 - 20);
            }
        }
        for _ in 0..n / 2 {
            let (a, b) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
            let amount = rng.below(30) as i64;
            net.supply[a] += amount;
            net.supply[b] -= amount;
        }
        // Negative costs on capacitated arcs only: no unbounded cycles.
        let sol = solve(&net);
        assert_eq!(sol.status, FlowStatus::Optimal, "case {case}");
        net.check_flow(&sol.flow).unwrap();
        assert_same_optimum(&net, sol.cost, &format!("general case {case}"));
        // The same network through DIMACS text gives the same optimum.
        let parsed = dimacs::parse(&dimacs::write(&net)).unwrap();
        assert_eq!(solve(&parsed.network).cost, sol.cost);
    }
}

/// Regression: targets dropping to zero shrink arcs that sit at their upper
/// bound (or in the tree) to capacity 0. An early warm start let such a tree
/// arc leave "at lower bound" although it had left through its upper bound,
/// broke dual feasibility and cycled forever; these cases reproduce that
/// (checked by reintroducing the bug: the test then never finishes).
#[test]
fn warm_start_when_targets_drop_to_zero() {
    let zone = |id: &str, lat: f64, idle, target, min_vehicles| fleet_engine::model::Zone {
        id: id.into(),
        lat,
        lon: -73.98,
        idle,
        target,
        min_vehicles,
    };
    let problem = |zones| fleet_engine::model::Problem {
        zones,
        travel: fleet_engine::model::Travel::Haversine { detour_factor: 1.3 },
        costs: fleet_engine::model::Costs::DESIGN_EXAMPLE,
        max_move_km: None,
        neighbours: None,
        horizon: None,
    };
    let cases = [
        (problem(vec![zone("a", 40.75, 2, 2, 1)]), (0, 2, 0, 0)),
        (
            problem(vec![zone("a", 40.75, 3, 3, 3), zone("b", 40.76, 0, 2, 2)]),
            (0, 3, 0, 0),
        ),
        (
            problem(vec![zone("a", 40.75, 1, 3, 1), zone("b", 40.76, 4, 1, 0)]),
            (1, 4, 0, 0),
        ),
    ];
    // Two random cases that hung (seeds 1 and 24 of a small random family).
    let random = (1u64..25).filter(|s| [1, 24].contains(s)).map(|seed| {
        let mut rng = Rng::new(seed);
        let n = 1 + rng.below(4) as usize;
        let zones = (0..n)
            .map(|i| {
                let t = rng.below(4) as u32;
                fleet_engine::model::Zone {
                    id: format!("z{i}"),
                    lat: 40.7 + rng.unit() * 0.1,
                    lon: -74.0 + rng.unit() * 0.1,
                    idle: rng.below(4) as u32,
                    target: t,
                    min_vehicles: rng.below(t as u64 + 1) as u32,
                }
            })
            .collect();
        let mut p = problem(zones);
        p.costs = fleet_engine::model::Costs {
            per_km: 0.5,
            unmet_penalty: rng.below(20) as f64,
            coverage_penalty: rng.below(10) as f64,
        };
        let z = rng.below(n as u64) as usize;
        let t = rng.below(4) as u32;
        let (idle, floor) = (rng.below(4) as u32, rng.below(t as u64 + 1) as u32);
        (p, (z, idle, t, floor))
    });
    for (p, (z, idle, target, floor)) in cases.into_iter().chain(random) {
        let mut reb = Rebalancer::new(p).unwrap().with_warm_budget(f64::INFINITY);
        reb.set_zone(z, idle, target, floor).unwrap();
        reb.resolve().unwrap();
        assert_same_optimum(reb.network(), reb.flow_cost(), "target dropped to zero");
    }
}
