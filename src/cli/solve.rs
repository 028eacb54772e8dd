//! `fleet-optimization solve`: a rebalancing problem file (DESIGN.md 2.1) or a
//! raw DIMACS min-cost-flow file (DESIGN.md 2.2) in, an optimal answer as
//! JSON out.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use fleet_engine::dimacs;
use fleet_engine::network::UNBOUNDED;
use fleet_engine::optimize::{optimize, pareto_front, SolveError};
use fleet_engine::problem_file::{report, DimacsReport, ProblemFile, StatsReport, Status};
use fleet_engine::simplex::{self, FlowStatus};

use super::{print_json, read_input, Failure};

/// Input formats of `solve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A rebalancing problem file (zones, travel, costs).
    Json,
    /// A DIMACS min-cost-flow file (`p min`, `n`, `a` lines).
    Dimacs,
}

/// Solve a rebalancing problem exactly and print the plan as JSON.
///
/// JSON input (DESIGN.md 2.1): zones with idle vehicles, targets and coverage
/// floors, travel distances and costs. The answer holds the optimal moves,
/// each objective, the vehicles per zone after moving, the Pareto front of
/// empty km against unmet demand, and solve statistics.
///
/// DIMACS input (`--format dimacs`): a raw min-cost-flow instance; the answer
/// holds the optimal cost, statistics and, with `--flows`, every arc's flow.
///
/// Invalid input prints `{"status":"invalid","error":{"field":..,"message":..}}`
/// and exits with code 2.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fleet-optimization solve --input examples/problem.json\n  \
    fleet-optimization solve --format dimacs --input examples/small.min --flows\n  \
    cat problem.json | fleet-optimization solve --input -"
)]
pub struct SolveArgs {
    /// Input file; `-` reads standard input.
    #[arg(long, short, value_name = "FILE")]
    pub input: PathBuf,
    /// Input format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// DIMACS only: also print the optimal flow of every arc, in file order.
    #[arg(long)]
    pub flows: bool,
}

pub fn run(args: &SolveArgs) -> Result<(), Failure> {
    match args.format {
        Format::Json => {
            if args.flows {
                return Err(Failure::Usage(
                    "--flows applies to `--format dimacs` only".into(),
                ));
            }
            solve_problem(&read_input(&args.input, "problem file")?)
        }
        Format::Dimacs => solve_dimacs(&read_input(&args.input, "DIMACS file")?, args.flows),
    }
}

/// Parses a problem file; errors name the field path, e.g. `zones[1].idle`.
pub fn parse_problem(text: &str) -> Result<ProblemFile, Failure> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = match serde_path_to_error::deserialize::<_, ProblemFile>(&mut de) {
        Ok(file) => de.end().map(|()| file).map_err(|e| (".".to_owned(), e)),
        Err(e) => Err((e.path().to_string(), e.into_inner())),
    };
    parsed.map_err(|(path, inner)| {
        let message = inner.to_string();
        // serde names missing and unknown fields only in the message: add the
        // field to the path (`costs`, `zones[0].min_vehicle`).
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), named) {
            ("." | "?", Some(name)) => name.to_owned(),
            ("." | "?", None) => "input".to_owned(),
            (path, Some(name)) if !path.ends_with(name) => format!("{path}.{name}"),
            (path, _) => path.to_owned(),
        };
        let mut failure = Failure::invalid(field, message, "problem file");
        if inner.is_syntax() || inner.is_eof() {
            let start = text.trim_start();
            if let (Failure::Invalid { hint, .. }, true) = (
                &mut failure,
                start.starts_with("p min") || start.starts_with('c'),
            ) {
                hint.push_str(" (this looks like DIMACS: add `--format dimacs`)");
            }
        }
        failure
    })
}

fn solve_problem(text: &str) -> Result<(), Failure> {
    let file = parse_problem(text)?;
    let (problem, pareto_points) = file
        .into_problem()
        .map_err(|e| Failure::invalid(e.field, e.message, "problem"))?;
    let fail = |e: SolveError| match e {
        SolveError::Invalid(e) => Failure::invalid(e.field, e.message, "problem"),
        SolveError::Internal(e) => Failure::Other(format!("{}", SolveError::Internal(e))),
    };
    let start = Instant::now();
    let solved = optimize(&problem).map_err(fail)?;
    let solve_ms = start.elapsed().as_secs_f64() * 1e3;
    let front = match pareto_points {
        0 => Vec::new(),
        k => pareto_front(&problem, k).map_err(fail)?,
    };
    print_json(&report(&problem, &solved, &front, solve_ms))
}

/// Largest DIMACS node count accepted: nodes are allocated up front, so a
/// tiny file could otherwise ask for more memory than any machine has.
pub const MAX_DIMACS_NODES: u64 = 50_000_000;

/// Bound on `|cost| x (nodes + 2)` of a DIMACS network, so that the
/// solver's node potentials cannot overflow `i64`.
const COST_RANGE: u64 = 1 << 60;

/// The `p min NODES ARCS` line's node count if it exceeds [`MAX_DIMACS_NODES`].
fn too_many_nodes(text: &str) -> Option<(usize, u64)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let mut tokens = line.split_ascii_whitespace();
        match (tokens.next(), tokens.next(), tokens.next()) {
            (Some("p"), Some("min"), Some(nodes)) => nodes
                .parse::<u64>()
                .ok()
                .filter(|&n| n > MAX_DIMACS_NODES)
                .map(|n| (i + 1, n)),
            _ => None,
        }
    })
}

fn solve_dimacs(text: &str, with_flows: bool) -> Result<(), Failure> {
    if let Some((line, nodes)) = too_many_nodes(text) {
        return Err(Failure::invalid(
            format!("line {line}"),
            format!("{nodes} nodes exceed the limit of {MAX_DIMACS_NODES}"),
            "DIMACS file",
        ));
    }
    let parsed = dimacs::parse(text)
        .map_err(|e| Failure::invalid(format!("line {}", e.line), e.message, "DIMACS file"))?;
    // The solver's artificial start carries each supply on an arc of
    // capacity UNBOUNDED; larger supplies are beyond its range.
    if let Some((v, s)) = (parsed.network.supply.iter().enumerate())
        .find(|(_, s)| s.unsigned_abs() > UNBOUNDED as u64)
    {
        return Err(Failure::invalid(
            format!("node {}", v + 1),
            format!(
                "supply {s} (after removing lower bounds) exceeds the solver's limit of {UNBOUNDED} in absolute value"
            ),
            "DIMACS file",
        ));
    }
    // Node potentials are sums of costs along tree paths (plus the artificial
    // start's cost, about `max|cost| x nodes`): keep them far inside 64 bits.
    let net = &parsed.network;
    let cost_limit = COST_RANGE / (net.node_count() as u64 + 2);
    if let Some((k, c)) =
        (net.cost.iter().enumerate()).find(|(_, c)| c.unsigned_abs() >= cost_limit)
    {
        return Err(Failure::invalid(
            format!("arc {}", k + 1),
            format!(
                "cost {c} is too large for {} nodes: |cost| x (nodes + 2) must stay below 2^60",
                net.node_count()
            ),
            "DIMACS file",
        ));
    }
    let start = Instant::now();
    let sol = simplex::solve(&parsed.network);
    let solve_ms = start.elapsed().as_secs_f64() * 1e3;
    let status = match sol.status {
        FlowStatus::Optimal => Status::Optimal,
        FlowStatus::Infeasible => Status::Infeasible,
        FlowStatus::Unbounded => Status::Unbounded,
    };
    let optimal = status == Status::Optimal;
    print_json(&DimacsReport {
        status,
        cost: optimal.then(|| parsed.original_cost(sol.cost)),
        stats: StatsReport {
            solve_ms,
            nodes: parsed.network.node_count(),
            arcs: parsed.network.arc_count(),
            iterations: sol.iterations,
        },
        flows: (optimal && with_flows).then(|| parsed.original_flow(&sol.flow)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(text: &str) -> String {
        match parse_problem(text) {
            Err(Failure::Invalid { report, .. }) => report.error.field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parse_errors_name_the_field() {
        let zone = r#"{"id": "a", "lat": 40.7, "lon": -73.9, "idle": 1, "target": 1}"#;
        let rest = r#""travel": {"metric": "haversine"}, "costs": {"per_km": 1, "unmet_penalty": 1, "coverage_penalty": 1}"#;
        assert_eq!(
            field(&format!(r#"{{"zones": [{zone}], {rest}, "max_move": 3}}"#)),
            "max_move"
        );
        assert_eq!(
            field(&format!(
                r#"{{"zones": [{zone}], "travel": {{"metric": "haversine"}}}}"#
            )),
            "costs"
        );
        let typo =
            r#"{"id": "a", "lat": 40.7, "lon": -73.9, "idle": 1, "target": 1, "min_vehicle": 1}"#;
        assert_eq!(
            field(&format!(r#"{{"zones": [{zone}, {typo}], {rest}}}"#)),
            "zones[1].min_vehicle"
        );
        let neg = r#"{"id": "a", "lat": 40.7, "lon": -73.9, "idle": -3, "target": 1}"#;
        assert_eq!(
            field(&format!(r#"{{"zones": [{zone}, {neg}], {rest}}}"#)),
            "zones[1].idle"
        );
        assert_eq!(field("{"), "input");
        assert_eq!(
            field(&format!(r#"{{"zones": [{zone}], {rest}}} x"#)),
            "input"
        );
    }

    #[test]
    fn huge_node_counts_are_caught_before_allocation() {
        assert_eq!(
            too_many_nodes("c x\np min 4000000000 0\n"),
            Some((2, 4_000_000_000))
        );
        assert_eq!(too_many_nodes("p min 4 0\n"), None);
    }

    /// Deterministic mutations of a valid problem file (every truncation,
    /// every token replaced by hostile values) go through parsing,
    /// validation and the solver: each ends in a solution or an invalid-input
    /// error naming a field, never a panic.
    #[test]
    fn mutated_problem_files_never_panic() {
        let valid = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/manhattan.json"
        ))
        .unwrap();
        let hostile = [
            "-1",
            "0",
            "1e308",
            "-1e308",
            "4294967296",
            "18446744073709551616",
            "\"x\"",
            "null",
            "[]",
            "{}",
            "true",
            "1.5",
            "NaN",
            "\"\\u0000\"",
            "[[1,2],[3]]",
        ];
        let mut inputs: Vec<String> = (0..valid.len())
            .step_by(3)
            .map(|cut| valid[..cut].to_owned())
            .collect();
        let tokens: Vec<(usize, usize)> = valid
            .char_indices()
            .filter(|(_, c)| c.is_ascii_digit() || *c == '"')
            .map(|(i, _)| i)
            .filter(|&i| {
                i == 0
                    || !valid.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && valid.as_bytes()[i - 1] != b'.'
            })
            .map(|start| {
                let rest = &valid[start..];
                let len = if let Some(inside) = rest.strip_prefix('"') {
                    inside.find('"').map_or(rest.len(), |e| e + 2)
                } else {
                    rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
                        .unwrap_or(rest.len())
                };
                (start, start + len)
            })
            .collect();
        for &(a, b) in &tokens {
            for h in hostile {
                inputs.push(format!("{}{}{}", &valid[..a], h, &valid[b..]));
            }
        }
        let mut solved = 0;
        for text in &inputs {
            let outcome = std::panic::catch_unwind(|| {
                let file = parse_problem(text).map_err(|_| ())?;
                let (problem, points) = file
                    .into_problem()
                    .map_err(|e| assert!(!e.field.is_empty()))?;
                optimize(&problem).map_err(|_| ())?;
                pareto_front(&problem, points.min(3)).map_err(|_| ())?;
                Ok::<(), ()>(())
            });
            assert!(outcome.is_ok(), "panicked on input:\n{text}");
            solved += outcome.unwrap().is_ok() as usize;
        }
        assert!(inputs.len() > 500, "only {} mutations", inputs.len());
        assert!(solved > 0, "no mutation was still a valid problem");
    }
}
