//! Criterion benchmarks of the engine next to LEMON's network simplex on the
//! same networks (run: `make bench` or `cargo bench --bench solver`).
//!
//! For each instance, group `<instance>` holds `engine` (cold solve from the
//! formulation's starting basis) and `lemon` (LEMON's graph build + solve,
//! its input arrays prepared outside the timing). Group `warm_1pct` times a
//! warm re-solve after 1% of the zones changed, as one streaming window
//! would. Sample sizes and measurement times are kept small (10 flat
//! samples) so the whole suite runs in about a minute and a half after the
//! build; `benches/solver_table.rs` prints the same comparison as one table.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use fleet_engine::formulation::formulate;
use fleet_engine::optimize::Rebalancer;
use fleet_engine::synthetic::{perturb, random_city, CitySpec, Rng};
use lemon_reference::LemonInput;

/// (criterion id, zones, k nearest neighbours or dense)
const INSTANCES: [(&str, usize, Option<usize>); 4] = [
    ("100_zones_dense", 100, None),
    ("1000_zones_dense", 1000, None),
    ("1000_zones_knn16", 1000, Some(16)),
    ("10000_zones_knn16", 10000, Some(16)),
];

const SEED: u64 = 1000;

fn spec(zones: usize, k: Option<usize>) -> CitySpec {
    CitySpec::benchmark(zones, k, SEED)
}

fn cold(c: &mut Criterion) {
    for (name, zones, k) in INSTANCES {
        let f = formulate(&random_city(&spec(zones, k)));
        let lemon = LemonInput::new(&f.network);
        let solve = || f.solve();

        // Both solvers must agree before their times mean anything.
        assert_eq!(
            solve().cost,
            lemon.solve().0 as i128,
            "{name}: optimum differs from LEMON"
        );

        let mut group = c.benchmark_group(name);
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        group.bench_function("engine", |b| b.iter(solve));
        group.bench_function("lemon", |b| b.iter(|| lemon.solve()));
        group.finish();
    }
}

fn warm(c: &mut Criterion) {
    let mut group = c.benchmark_group("warm_1pct");
    // Longer than the cold groups: a warm re-solve of the large instances
    // can take a few hundred ms, and 10 samples must fit without warnings.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8));
    for (name, zones, k) in INSTANCES {
        let spec = spec(zones, k);
        let reb = Rebalancer::new(random_city(&spec)).unwrap();
        let mut rng = Rng::new(SEED);
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut next = reb.clone();
                    for (zone, idle, target, floor) in
                        perturb(next.problem(), &spec, 0.01, &mut rng)
                    {
                        next.set_zone(zone, idle, target, floor).unwrap();
                    }
                    next
                },
                // Return the rebalancer so it is dropped outside the timing.
                |mut next| {
                    let solved = next.resolve().unwrap();
                    (next, solved)
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, cold, warm);
criterion_main!(benches);
