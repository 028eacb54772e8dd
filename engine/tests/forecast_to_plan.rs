//! The streaming loop's engine half, end to end: demand history -> forecast
//! -> targets -> optimal moves, each move explained.

use fleet_engine::forecast::{fit, targets, ForecastConfig};
use fleet_engine::model::{Costs, Problem, Travel, Zone};
use fleet_engine::optimize::optimize;
use ndarray::Array2;

#[test]
fn forecast_targets_pull_vehicles_to_the_zone_about_to_get_busy() {
    // Three zones, hourly history over four days: zone "office" is busy at
    // 8-9h, "bar" at 22-23h, "park" never. The history ends at 7h, so the
    // next hour is the office's rush.
    let season = 24;
    let hours = 4 * season + 7;
    let history = Array2::from_shape_fn((3, hours), |(zone, t)| match (zone, t % season) {
        (0, 8) => 12.0,
        (1, 22) => 9.0,
        _ => 0.5,
    });
    let cfg = ForecastConfig {
        season_length: season,
        ..ForecastConfig::default()
    };
    let model = fit(history.view(), &cfg).unwrap();
    let next_hour = model.forecast(2).column(1).to_owned(); // 8h: one hour after the history's end at 7h
                                                            // Sparse zones are shrunk toward the fleet-wide profile (which peaks at
                                                            // 8h because of the office), so the quiet zones are not forecast at their
                                                            // raw 0.5; the office must still stand far above them.
    assert!(next_hour[0] > 6.0, "office rush forecast: {next_hour}");
    assert!(
        next_hour[0] > 2.5 * next_hour[1].max(next_hour[2]),
        "quiet zones: {next_hour}"
    );
    let wanted = targets(next_hour.view(), 0.9).unwrap();
    assert!(wanted[0] > wanted[1] && wanted[0] > wanted[2]);

    // Vehicles are idle where the night was busy; the plan moves them.
    let idle = [0, 20, 2];
    let lats = [40.755, 40.725, 40.780];
    let zones = ["office", "bar", "park"]
        .iter()
        .enumerate()
        .map(|(i, id)| Zone {
            id: id.to_string(),
            lat: lats[i],
            lon: -73.985,
            idle: idle[i],
            target: wanted[i],
            min_vehicles: wanted[i].min(1),
        })
        .collect();
    let problem = Problem {
        zones,
        travel: Travel::Haversine { detour_factor: 1.3 },
        costs: Costs::DESIGN_EXAMPLE,
        max_move_km: None,
        neighbours: None,
        horizon: None,
    };
    let plan = optimize(&problem).unwrap().plan;
    assert_eq!(
        plan.vehicles_after[[0, 0]],
        wanted[0],
        "the office reaches its forecast target"
    );
    let from_bar = plan
        .moves
        .iter()
        .find(|m| m.from == 1 && m.to == 0)
        .expect("bar -> office move");
    assert!(from_bar.why.source_surplus > 0 && from_bar.why.destination_deficit > 0);
    assert!(from_bar.why.benefit_per_vehicle > 0.0);
    assert!(
        from_bar.why.reason.contains("zone bar") && from_bar.why.reason.contains("zone office")
    );
}
