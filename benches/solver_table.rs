//! Side-by-side solve times of this engine and LEMON's network simplex on the
//! same networks, printed as a table (run: `make bench-solver` or
//! `cargo bench --bench solver_table`). Each row is the median of several
//! runs; both solvers see identical networks and must agree on the optimum.

use std::time::{Duration, Instant};

use fleet_engine::formulation::{formulate, Formulation};
use fleet_engine::optimize::Rebalancer;
use fleet_engine::synthetic::{perturb, random_city, CitySpec, Rng};
use lemon_reference::LemonInput;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn cold(f: &Formulation) -> (i128, u64) {
    let sol = f.solve();
    (sol.cost, sol.iterations)
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test` this runs once per
    // row as a smoke test (still checking the optimum against LEMON).
    let args: Vec<String> = std::env::args().collect();
    let repeats = if !args.iter().any(|a| a == "--bench") {
        1
    } else if args.iter().any(|a| a == "--quick") {
        3
    } else {
        7
    };
    println!(
        "| instance | nodes | arcs | engine cold ms | LEMON ms | engine / LEMON | pivots \
         | repair 1% ms | repair / cold | resolve 1% ms | resolve / cold | fell back |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rows: [(&str, usize, Option<usize>); 4] = [
        ("100 zones dense", 100, None),
        ("1000 zones dense", 1000, None),
        ("1000 zones kNN16", 1000, Some(16)),
        ("10000 zones kNN16", 10000, Some(16)),
    ];
    for (name, zones, k) in rows {
        let (mut ours, mut theirs, mut warm, mut resolve) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut fallbacks = 0;
        let mut pivots = 0;
        let mut size = (0, 0);
        for seed in 0..repeats as u64 {
            let spec = CitySpec::benchmark(zones, k, 1000 + seed);
            let problem = random_city(&spec);
            let f = formulate(&problem);
            size = (f.network.node_count(), f.network.arc_count());
            let lemon = LemonInput::new(&f.network);

            let t = Instant::now();
            let (cost, iterations) = cold(&f);
            ours.push(t.elapsed());
            pivots = iterations;

            let t = Instant::now();
            let (lemon_cost, _) = lemon.solve();
            theirs.push(t.elapsed());
            assert_eq!(
                cost, lemon_cost as i128,
                "{name}: optimum differs from LEMON"
            );

            // Warm: change 1% of zones (as one streaming window would) and re-solve.
            // Warm: change 1% of zones (as one streaming window would) and
            // re-solve, once repairing no matter what and once with the
            // default budget that falls back to a cold solve.
            for (share, times) in [(f64::INFINITY, &mut warm), (0.1, &mut resolve)] {
                let mut reb = Rebalancer::new(problem.clone())
                    .unwrap()
                    .with_warm_budget(share);
                let mut rng = Rng::new(seed);
                for (zone, idle, target, floor) in perturb(reb.problem(), &spec, 0.01, &mut rng) {
                    reb.set_zone(zone, idle, target, floor).unwrap();
                }
                let t = Instant::now();
                let solved = reb.resolve().unwrap();
                times.push(t.elapsed());
                fallbacks += solved.stats.warm_fallback as usize;
                let (check, _) = LemonInput::new(reb.network()).solve();
                assert_eq!(
                    reb.flow_cost(),
                    check as i128,
                    "{name}: warm optimum differs from LEMON"
                );
            }
        }
        let (o, l, w, r) = (median(ours), median(theirs), median(warm), median(resolve));
        println!(
            "| {name} | {} | {} | {:.2} | {:.2} | {:.2}x | {} | {:.3} | {:.3}x | {:.3} | {:.3}x | {fallbacks}/{repeats} |",
            size.0,
            size.1,
            ms(o),
            ms(l),
            ms(o) / ms(l),
            pivots,
            ms(w),
            ms(w) / ms(o),
            ms(r),
            ms(r) / ms(o),
        );
    }
}
