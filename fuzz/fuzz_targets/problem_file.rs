//! Arbitrary bytes as a problem file (DESIGN.md 2.1,
//! `engine/src/problem_file.rs`), read the way `fleet-optimization solve`
//! reads it (`src/cli/solve.rs::parse_problem`: serde_json through
//! serde_path_to_error, then `ProblemFile::into_problem`) and the way the
//! HTTP API does (`api/src/solve.rs`: a `serde_json::Value` first).
//!
//! Checked beyond "no panic":
//! - both readings agree on every file the CLI accepts;
//! - `into_problem` either returns a problem `Problem::validate` accepts or an
//!   error naming a field of the file (`zones[1].targets`, `costs.per_km`...);
//! - a small valid problem (at most 30 zones x 8 periods) solves, and the plan
//!   conserves vehicles: every zone ends with its vehicles plus arrivals
//!   minus departures, nobody is lost or created; a tiny one also gets a
//!   Pareto front.
#![no_main]

use fleet_engine::optimize::{optimize, pareto_front};
use fleet_engine::problem_file::ProblemFile;
use libfuzzer_sys::fuzz_target;

/// Top-level fields of a problem file: every error names one of them.
const FIELDS: [&str; 7] = [
    "zones",
    "travel",
    "costs",
    "max_move_km",
    "neighbours",
    "pareto_points",
    "horizon",
];

/// As the CLI parses (`src/cli/solve.rs::parse_problem`).
fn parse_like_cli(text: &str) -> Option<ProblemFile> {
    let mut de = serde_json::Deserializer::from_str(text);
    let file = serde_path_to_error::deserialize::<_, ProblemFile>(&mut de).ok()?;
    de.end().ok()?;
    Some(file)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(file) = parse_like_cli(text) else {
        return;
    };
    // The API reads a JSON document first, then the file from it.
    let doc: serde_json::Value = serde_json::from_str(text).expect("the CLI read it");
    let via_value: ProblemFile =
        serde_json::from_value(doc).unwrap_or_else(|e| panic!("CLI reads it, API: {e}"));
    assert_eq!(via_value, file, "the CLI and the API read different files");

    let (problem, points) = match file.into_problem() {
        Ok(ok) => ok,
        Err(e) => {
            let top = e.field.split(['.', '[']).next().unwrap_or("");
            assert!(FIELDS.contains(&top), "error names no field: {e:?}");
            assert!(!e.message.trim().is_empty(), "empty message: {e:?}");
            return;
        }
    };
    problem
        .validate()
        .unwrap_or_else(|e| panic!("into_problem returned an invalid problem: {e:?}"));
    let (n, periods) = (problem.zones.len(), problem.periods());
    if n > 30 || periods > 8 {
        return;
    }
    let plan = optimize(&problem)
        .unwrap_or_else(|e| panic!("a valid problem does not solve: {e}"))
        .plan;
    assert!(plan.objective.is_finite(), "objective {}", plan.objective);
    assert_eq!(plan.vehicles_after.dim(), (n, periods));
    for m in &plan.moves {
        assert!(m.from < n && m.to < n && m.from != m.to, "{m:?}");
        assert!(m.vehicles > 0 && m.km.is_finite() && m.km >= 0.0, "{m:?}");
        assert!(
            m.depart_period <= m.arrive_period && m.arrive_period < periods,
            "{m:?}"
        );
    }
    // Conservation: at the end every vehicle is in some zone.
    let total: u64 = (0..n)
        .flat_map(|i| (0..periods).map(move |p| (i, p)))
        .map(|(i, p)| problem.available(i, p) as u64)
        .sum();
    let end: u64 = plan
        .vehicles_after
        .column(periods - 1)
        .iter()
        .map(|&v| v as u64)
        .sum();
    assert_eq!(end, total, "vehicles lost or created");
    if periods == 1 {
        // Per zone: idle + arriving - leaving.
        let mut net: Vec<i64> = problem.zones.iter().map(|z| z.idle as i64).collect();
        for m in &plan.moves {
            net[m.from] -= m.vehicles as i64;
            net[m.to] += m.vehicles as i64;
        }
        for (i, &v) in net.iter().enumerate() {
            assert_eq!(plan.vehicles_after[[i, 0]] as i64, v, "zone {i}");
        }
    }
    if n <= 8 && periods <= 2 && points > 0 {
        let front = pareto_front(&problem, points.min(3))
            .unwrap_or_else(|e| panic!("no Pareto front: {e}"));
        assert!(!front.is_empty());
    }
});
