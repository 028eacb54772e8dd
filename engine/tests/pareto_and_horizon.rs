//! Pareto fronts are exact and non-dominated; multi-period plans follow the
//! time-expanded semantics and match LEMON on the same network.

use fleet_engine::formulation::formulate;
use fleet_engine::model::{Costs, Horizon, Problem, Travel, Zone};
use fleet_engine::optimize::{optimize, pareto_front};
use fleet_engine::synthetic::{random_city, CitySpec, Rng};
use ndarray::Array2;

#[test]
fn pareto_points_are_exact_and_non_dominated() {
    let problem = random_city(&CitySpec::benchmark(120, None, 9));
    let front = pareto_front(&problem, 9).unwrap();
    assert!(
        front.len() >= 3,
        "a 120-zone city has a real trade-off, got {front:?}"
    );
    for pair in front.windows(2) {
        let (a, b) = (&pair[0].objectives, &pair[1].objectives);
        // Sorted by km: more km must buy strictly less shortfall.
        assert!(b.empty_km > a.empty_km);
        assert!(
            b.unmet < a.unmet || b.coverage_shortfall < a.coverage_shortfall,
            "{a:?} then {b:?}"
        );
    }
    for point in &front {
        // Each point is the exact optimum of its weighted problem.
        let mut weighted = problem.clone();
        if point.km_weight.is_finite() {
            weighted.costs.per_km *= point.km_weight;
            let cold = optimize(&weighted).unwrap().plan.objectives;
            assert!(
                (cold.empty_km - point.objectives.empty_km).abs() < 1e-6
                    || cold.unmet == point.objectives.unmet
            );
            assert_eq!(
                cold.unmet + cold.coverage_shortfall,
                point.objectives.unmet + point.objectives.coverage_shortfall
            );
        }
    }
    // The ends: no moves at all, and (nearly) everything served.
    assert_eq!(front[0].objectives.empty_km, 0.0);
    let served = optimize(&problem).unwrap().plan.objectives;
    assert!(front.last().unwrap().objectives.unmet <= served.unmet);
}

fn zone(id: &str, lon: f64, idle: u32) -> Zone {
    Zone {
        id: id.into(),
        lat: 40.75,
        lon,
        idle,
        target: 0,
        min_vehicles: 0,
    }
}

/// Two zones 9.9 km apart at 20 km/h with 15-minute periods: a move takes two
/// periods, so it cannot help period 0 and counts from the end of period 1.
#[test]
fn moves_arrive_after_their_travel_time() {
    let km_per_deg_lon = 111.195 * 40.75f64.to_radians().cos();
    let horizon = Horizon {
        period_minutes: 15.0,
        speed_kmh: 20.0,
        targets: Array2::from_shape_vec((2, 3), vec![0, 0, 0, 1, 1, 1]).unwrap(),
        min_vehicles: Array2::zeros((2, 3)),
        arrivals: Array2::zeros((2, 3)),
    };
    let problem = Problem {
        zones: vec![
            zone("a", -73.98, 1),
            zone("b", -73.98 + 9.9 / km_per_deg_lon, 0),
        ],
        travel: Travel::Haversine { detour_factor: 1.0 },
        costs: Costs {
            per_km: 0.1,
            unmet_penalty: 10.0,
            coverage_penalty: 0.0,
        },
        max_move_km: None,
        neighbours: None,
        horizon: Some(horizon),
    };
    let plan = optimize(&problem).unwrap().plan;
    assert_eq!(plan.moves.len(), 1);
    let m = &plan.moves[0];
    assert_eq!(
        (m.from, m.to, m.vehicles, m.depart_period, m.arrive_period),
        (0, 1, 1, 0, 1)
    );
    // Zone b is short in period 0 only; the vehicle is there for periods 1 and 2.
    assert_eq!(plan.vehicles_after.row(1).to_vec(), vec![0, 1, 1]);
    assert_eq!(plan.objectives.unmet, 1);
}

/// Vehicles that become idle later (arrivals) can serve later periods.
#[test]
fn later_arrivals_count_from_their_period() {
    let mut arrivals = Array2::zeros((1, 3));
    arrivals[[0, 2]] = 2;
    let problem = Problem {
        zones: vec![zone("a", -73.98, 0)],
        travel: Travel::Haversine { detour_factor: 1.3 },
        costs: Costs::DESIGN_EXAMPLE,
        max_move_km: None,
        neighbours: None,
        horizon: Some(Horizon {
            period_minutes: 15.0,
            speed_kmh: 25.0,
            targets: Array2::from_elem((1, 3), 2),
            min_vehicles: Array2::from_elem((1, 3), 1),
            arrivals,
        }),
    };
    let plan = optimize(&problem).unwrap().plan;
    assert_eq!(plan.vehicles_after.row(0).to_vec(), vec![0, 0, 2]);
    assert_eq!(plan.objectives.unmet, 4);
    assert_eq!(plan.objectives.coverage_gaps, 2);
}

#[test]
fn multi_period_networks_match_lemon() {
    let mut rng = Rng::new(77);
    for seed in 0..6 {
        let mut problem = random_city(&CitySpec::benchmark(
            150,
            if seed % 2 == 0 { None } else { Some(8) },
            seed,
        ));
        let (n, periods) = (problem.zones.len(), 4);
        let targets = Array2::from_shape_fn((n, periods), |_| rng.poisson(5.0));
        let min_vehicles = targets.mapv(|t| t / 3);
        let arrivals =
            Array2::from_shape_fn(
                (n, periods),
                |(_, p)| if p == 0 { 0 } else { rng.poisson(1.0) },
            );
        problem.horizon = Some(Horizon {
            period_minutes: 10.0,
            speed_kmh: 25.0,
            targets,
            min_vehicles,
            arrivals,
        });
        let f = formulate(&problem);
        let sol = f.solve();
        f.network.check_flow(&sol.flow).unwrap();
        let (lemon, _) = lemon_reference::solve(&f.network);
        assert_eq!(sol.cost, lemon as i128, "seed {seed}");
        let plan = optimize(&problem).unwrap().plan;
        // Every vehicle is somewhere or on the way at the end: conservation.
        let total: u32 = (0..n)
            .map(|i| (0..periods).map(|p| problem.available(i, p)).sum::<u32>())
            .sum();
        assert_eq!(plan.vehicles_after.column(periods - 1).sum(), total);
    }
}

/// With enough budget the front is complete: between any two neighbouring
/// points no weight finds a plan better than both (no supported point missed).
#[test]
fn pareto_front_misses_no_supported_point() {
    let problem = random_city(&CitySpec::benchmark(60, None, 21));
    let front = pareto_front(&problem, 101).unwrap();
    let c = problem.costs;
    let service = |o: &fleet_engine::plan::Objectives| {
        c.unmet_penalty * o.unmet as f64 + c.coverage_penalty * o.coverage_shortfall as f64
    };
    for pair in front.windows(2) {
        let (a, b) = (&pair[0].objectives, &pair[1].objectives);
        let w = (service(a) - service(b)) / (c.per_km * (b.empty_km - a.empty_km));
        let mut weighted = problem.clone();
        weighted.costs.per_km *= w;
        let probe = optimize(&weighted).unwrap().plan.objectives;
        let cost = |o: &fleet_engine::plan::Objectives| w * c.per_km * o.empty_km + service(o);
        // 1e-3 per move: the cost rounding of the integral solve.
        assert!(
            cost(&probe) >= cost(a).min(cost(b)) - 1e-3 * 200.0,
            "missed a point between {a:?} and {b:?}: {probe:?}"
        );
    }
}

/// The do-nothing baseline moves nobody and is never better than the optimum.
#[test]
fn do_nothing_is_the_no_move_baseline() {
    let problem = random_city(&CitySpec::benchmark(80, None, 5));
    let base = fleet_engine::optimize::do_nothing(&problem).unwrap();
    assert!(base.moves.is_empty());
    assert_eq!(base.objectives.empty_km, 0.0);
    for (i, z) in problem.zones.iter().enumerate() {
        assert_eq!(base.vehicles_after[[i, 0]], z.idle);
    }
    let best = optimize(&problem).unwrap().plan;
    assert!(best.objective <= base.objective + 1e-9);
    assert!(best.objectives.served_ratio >= base.objectives.served_ratio);
}
