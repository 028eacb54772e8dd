use fleet_engine::optimize::Rebalancer;
use fleet_engine::synthetic::{perturb, random_city, CitySpec, Rng};
use std::time::Instant;
fn main() {
    let zones: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10000);
    let mode = std::env::args().nth(2).unwrap_or_default();
    let k = if zones == 1000 || zones == 100 {
        None
    } else {
        Some(16)
    };
    let (mut tw, mut tp) = (0.0, 0);
    for seed in 0..3 {
        let spec = CitySpec::benchmark(zones, k, 1000 + seed);
        let p = random_city(&spec);
        let mut reb = Rebalancer::new(p.clone()).unwrap();
        let mut rng = Rng::new(seed);
        for (zone, idle, target, floor) in perturb(&p, &spec, 0.01, &mut rng) {
            let z = &p.zones[zone];
            match mode.as_str() {
                "idle" => reb.set_zone(zone, idle, z.target, z.min_vehicles).unwrap(),
                "target" => reb.set_zone(zone, z.idle, target, floor).unwrap(),
                _ => reb.set_zone(zone, idle, target, floor).unwrap(),
            }
        }
        let t = Instant::now();
        let s = reb.resolve().unwrap();
        tw += t.elapsed().as_secs_f64();
        tp += s.stats.warm_pivots;
    }
    eprintln!("{zones} {mode}: warm {:.1}ms pivots {tp}", tw * 1e3);
}
