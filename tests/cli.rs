//! The `fleet-optimization` binary end to end: problem files, DIMACS files,
//! invalid input and exit codes (DESIGN.md sections 2.1, 2.2 and 6), and the
//! NYC problem built from the bundled real data.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs the binary with `args`, feeding `stdin`.
fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleet-optimization"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    // The binary may exit before reading everything (e.g. usage errors).
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs and expects exit code `code` with a JSON answer on stdout.
fn json_answer(args: &[&str], stdin: &str, code: i32) -> Value {
    let out = run(args, stdin);
    assert_eq!(out.status.code(), Some(code), "stderr: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn solve_json(problem: &Value) -> Value {
    json_answer(&["solve", "--input", "-"], &problem.to_string(), 0)
}

fn example(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(&format!("examples/{name}"))).unwrap())
        .unwrap()
}

fn vehicles_after(answer: &Value, id: &str) -> u64 {
    answer["zones_after"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["id"] == id)
        .unwrap_or_else(|| panic!("zone {id} missing"))["vehicles"]
        .as_u64()
        .unwrap()
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-6
}

/// Midtown (161) to JFK (132): haversine 21.2427 km x 1.3 detour.
const MIDTOWN_JFK_KM: f64 = 27.615_032_712;

#[test]
fn design_example_keeps_vehicles_because_jfk_is_too_far() {
    // 161 lacks 9 vehicles but holds 3 >= its floor of 2; 132 has 17 spare.
    // The move is 27.6 km: beyond max_move_km 25, and even without the limit
    // a vehicle costs 0.6 x 27.6 = 16.57 > the 15 it saves. So nobody moves.
    let answer = json_answer(&["solve", "--input", "examples/problem.json"], "", 0);
    assert_eq!(answer["status"], "optimal");
    assert_eq!(answer["moves"], json!([]));
    assert_eq!(answer["objectives"]["unmet"], 9);
    assert_eq!(answer["objectives"]["coverage_gaps"], 0);
    assert!(close(&answer["objective"], 9.0 * 15.0));
    assert!(close(&answer["objectives"]["served_ratio"], 11.0 / 20.0));
    assert_eq!(vehicles_after(&answer, "161"), 3);
    assert_eq!(vehicles_after(&answer, "132"), 25);
    assert!(answer["stats"]["solve_ms"].as_f64().unwrap() >= 0.0);
    assert!(answer["stats"]["arcs"].as_u64().unwrap() > 0);

    let mut no_limit = example("problem.json");
    no_limit.as_object_mut().unwrap().remove("max_move_km");
    assert_eq!(solve_json(&no_limit)["moves"], json!([]));
}

#[test]
fn design_example_fills_a_coverage_gap_from_jfk() {
    // With 161 below its floor (1 < 2) the first vehicle saves 15 + 5 = 20 >
    // 16.57: exactly one moves 132 -> 161, the second would save only 15.
    let mut problem = example("problem.json");
    problem["zones"][0]["idle"] = json!(1);
    problem.as_object_mut().unwrap().remove("max_move_km");
    let answer = solve_json(&problem);
    let moves = answer["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "{moves:?}");
    let m = &moves[0];
    assert_eq!(
        (&m["from"], &m["to"], &m["vehicles"]),
        (&json!("132"), &json!("161"), &json!(1))
    );
    assert!((m["km"].as_f64().unwrap() - MIDTOWN_JFK_KM).abs() < 1e-6);
    assert!(close(&m["cost"], 0.6 * m["km"].as_f64().unwrap()));
    assert!(m["why"]["reason"].as_str().unwrap().contains("132"));
    assert_eq!(m["why"]["destination_deficit"], 11);
    assert_eq!(vehicles_after(&answer, "161"), 2);
    assert_eq!(vehicles_after(&answer, "132"), 24);
    assert_eq!(answer["objectives"]["unmet"], 10);
    assert_eq!(answer["objectives"]["coverage_gaps"], 0);
    assert!(close(
        &answer["objective"],
        0.6 * m["km"].as_f64().unwrap() + 10.0 * 15.0
    ));

    // With the 25 km limit back, the gap stays open.
    problem["max_move_km"] = json!(25.0);
    let answer = solve_json(&problem);
    assert_eq!(answer["moves"], json!([]));
    assert_eq!(answer["objectives"]["coverage_gaps"], 1);
    assert_eq!(answer["objectives"]["coverage_shortfall"], 1);
}

#[test]
fn matrix_problem_has_the_hand_computed_optimum() {
    // depot -> north is 10 km (6 per vehicle < 15): fill north's 4. depot ->
    // south is 30 km (18 per vehicle): only the vehicle lifting south to its
    // floor (saves 15 + 5 = 20) pays. 70 km, 42 of driving, 3 unmet: 87.
    let answer = json_answer(&["solve", "--input", "examples/matrix.json"], "", 0);
    assert!(close(&answer["objective"], 87.0), "{answer}");
    assert!(close(&answer["objectives"]["empty_km"], 70.0));
    assert_eq!(answer["objectives"]["unmet"], 3);
    let mut moves: Vec<(String, String, u64)> = answer["moves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap().into(),
                m["to"].as_str().unwrap().into(),
                m["vehicles"].as_u64().unwrap(),
            )
        })
        .collect();
    moves.sort();
    assert_eq!(
        moves,
        vec![
            ("depot".into(), "north".into(), 4),
            ("depot".into(), "south".into(), 1)
        ]
    );
    assert_eq!(
        [
            vehicles_after(&answer, "depot"),
            vehicles_after(&answer, "north"),
            vehicles_after(&answer, "south")
        ],
        [5, 4, 2]
    );
    // The front runs from "nobody moves" to "everything covered".
    let front = answer["pareto"].as_array().unwrap();
    assert_eq!(front.first().unwrap()["empty_km"], 0.0);
    assert_eq!(front.last().unwrap()["unmet"], 0);
}

#[test]
fn manhattan_and_horizon_examples_solve() {
    let answer = json_answer(&["solve", "--input", "examples/manhattan.json"], "", 0);
    assert_eq!(answer["objectives"]["unmet"], 0);
    assert!(answer["moves"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["km"].as_f64().unwrap() <= 15.0));
    assert!(answer["pareto"].as_array().unwrap().len() >= 2);

    let answer = json_answer(&["solve", "--input", "examples/horizon.json"], "", 0);
    assert_eq!(answer["status"], "optimal");
    for zone in answer["zones_after"].as_array().unwrap() {
        let per_period = zone["vehicles_per_period"].as_array().unwrap();
        assert_eq!(per_period.len(), 4);
        assert_eq!(per_period[0], zone["vehicles"]);
    }
    assert!(answer["moves"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["arrive_period"].as_u64() < Some(4)));
}

/// A valid two-zone problem to break one field at a time.
fn base() -> Value {
    json!({
        "zones": [
            {"id": "a", "lat": 40.75, "lon": -73.98, "idle": 5, "target": 1},
            {"id": "b", "lat": 40.76, "lon": -73.97, "idle": 0, "target": 3, "min_vehicles": 1}
        ],
        "travel": {"metric": "haversine", "detour_factor": 1.3},
        "costs": {"per_km": 0.6, "unmet_penalty": 15.0, "coverage_penalty": 5.0}
    })
}

/// A change to a problem.
type Edit = Box<dyn Fn(&mut Value)>;

fn expect_invalid(input: &str, field: &str) {
    let out = run(&["solve", "--input", "-"], input);
    assert_eq!(out.status.code(), Some(2), "{input}: {}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(answer["status"], "invalid", "{input}");
    assert_eq!(answer["error"]["field"], field, "{input}: {answer}");
    assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    let hint = stderr(&out);
    assert_eq!(hint.trim_end().lines().count(), 1, "one-line hint: {hint}");
    assert!(hint.contains(field), "{hint}");
}

#[test]
fn invalid_problems_name_the_field_and_exit_2() {
    assert_eq!(solve_json(&base())["status"], "optimal");
    let cases: Vec<(&str, Edit)> = vec![
        (
            "zones[1].idle",
            Box::new(|p| p["zones"][1]["idle"] = json!(-3)),
        ),
        (
            "zones[0].target",
            Box::new(|p| p["zones"][0]["target"] = json!(2.5)),
        ),
        (
            "zones[1].lat",
            Box::new(|p| p["zones"][1]["lat"] = json!("40.7")),
        ),
        (
            "zones[0].lat",
            Box::new(|p| p["zones"][0]["lat"] = json!(91.0)),
        ),
        (
            "zones[1].min_vehicles",
            Box::new(|p| p["zones"][1]["min_vehicles"] = json!(4)),
        ),
        (
            "zones[1].id",
            Box::new(|p| p["zones"][1]["id"] = json!("a")),
        ),
        (
            "zones[0].target",
            Box::new(|p| drop(p["zones"][0].as_object_mut().unwrap().remove("target"))),
        ),
        (
            "zones[0].min_vehicle",
            Box::new(|p| p["zones"][0]["min_vehicle"] = json!(1)),
        ),
        ("max_move", Box::new(|p| p["max_move"] = json!(3.0))),
        ("zones", Box::new(|p| p["zones"] = json!([]))),
        (
            "costs",
            Box::new(|p| drop(p.as_object_mut().unwrap().remove("costs"))),
        ),
        (
            "costs.per_km",
            Box::new(|p| p["costs"]["per_km"] = json!(-1)),
        ),
        (
            "travel.detour_factor",
            Box::new(|p| p["travel"]["detour_factor"] = json!(0.5)),
        ),
        (
            "travel.metric",
            Box::new(|p| p["travel"]["metric"] = json!("manhattan")),
        ),
        (
            "travel.matrix_km",
            Box::new(|p| p["travel"] = json!({"matrix_km": [[0, 1], [1]]})),
        ),
        (
            "travel.matrix_km",
            Box::new(|p| p["travel"] = json!({"matrix_km": [[0, 1], [1, 0], [2, 2]]})),
        ),
        (
            "travel.matrix_km[0][1]",
            Box::new(|p| p["travel"] = json!({"matrix_km": [[0, -1], [1, 0]]})),
        ),
        ("neighbours", Box::new(|p| p["neighbours"] = json!(0))),
        (
            "pareto_points",
            Box::new(|p| p["pareto_points"] = json!(1000)),
        ),
        (
            "zones[0].targets",
            Box::new(|p| p["zones"][0]["targets"] = json!([1, 2])),
        ),
        (
            "horizon.periods",
            Box::new(|p| {
                p["horizon"] = json!({"period_minutes": 15, "speed_kmh": 25, "periods": 0})
            }),
        ),
        (
            "zones[1].arrivals",
            Box::new(|p| {
                p["horizon"] = json!({"period_minutes": 15, "speed_kmh": 25, "periods": 3});
                p["zones"][1]["arrivals"] = json!([1, 2]);
            }),
        ),
    ];
    for (field, edit) in cases {
        let mut p = base();
        edit(&mut p);
        expect_invalid(&p.to_string(), field);
    }
    let text = base().to_string();
    expect_invalid(&text.replace("40.75", "NaN"), "zones[0].lat");
    expect_invalid(&text[..text.len() - 1], "input"); // malformed: unterminated
    expect_invalid("", "input");
    expect_invalid(&format!("{text} {{}}"), "input"); // trailing data
    expect_invalid("p min 2 0\n", "input"); // DIMACS without --format dimacs
    let out = run(&["solve", "--input", "-"], "p min 2 0\n");
    assert!(stderr(&out).contains("--format dimacs"));
}

#[test]
fn dimacs_files_solve_to_the_known_optimum() {
    // small.min: 2 units 1-3-4 (cost 3 each) and 2 units 1-2-3-4 (4 each).
    let answer = json_answer(
        &[
            "solve",
            "--format",
            "dimacs",
            "--input",
            "examples/small.min",
            "--flows",
        ],
        "",
        0,
    );
    assert_eq!(answer["status"], "optimal");
    assert_eq!(answer["cost"], 14);
    assert_eq!(answer["flows"], json!([2, 2, 2, 0, 4]));
    assert_eq!(
        (&answer["stats"]["nodes"], &answer["stats"]["arcs"]),
        (&json!(4), &json!(5))
    );
    assert!(answer["stats"]["solve_ms"].as_f64().is_some());

    // lower_bounds.min forces 1 unit over 2->4: cost and flows of the
    // original arcs (lower bounds included).
    let answer = json_answer(
        &[
            "solve",
            "--format",
            "dimacs",
            "--input",
            "examples/lower_bounds.min",
            "--flows",
        ],
        "",
        0,
    );
    assert_eq!(answer["cost"], 15);
    assert_eq!(answer["flows"], json!([2, 2, 1, 1, 3]));

    // Without --flows there are none; from stdin works the same.
    let text = std::fs::read_to_string(repo("examples/small.min")).unwrap();
    let answer = json_answer(&["solve", "--format", "dimacs", "--input", "-"], &text, 0);
    assert_eq!(answer["cost"], 14);
    assert!(answer.get("flows").is_none());

    // A negative cost with a lower bound: the offset counts. 3 units forced
    // over the -2 arc, 2 more sent via the cheaper +1 arc.
    let text = "p min 2 2\nn 1 5\nn 2 -5\na 1 2 3 3 -2\na 1 2 0 9 1\n";
    let answer = json_answer(
        &["solve", "--format", "dimacs", "--input", "-", "--flows"],
        text,
        0,
    );
    assert_eq!(answer["cost"], -6 + 2);
    assert_eq!(answer["flows"], json!([3, 2]));
}

#[test]
fn dimacs_flows_have_one_entry_per_arc() {
    // A chain of 30 nodes with a parallel shortcut for every pair.
    let n = 30;
    let mut text = format!("p min {n} {}\nn 1 7\nn {n} -7\n", 2 * (n - 1));
    for v in 1..n {
        text += &format!("a {v} {} 0 5 1\na {v} {} 0 100 3\n", v + 1, v + 1);
    }
    let answer = json_answer(
        &["solve", "--format", "dimacs", "--input", "-", "--flows"],
        &text,
        0,
    );
    assert_eq!(answer["flows"].as_array().unwrap().len(), 2 * (n - 1));
    assert_eq!(answer["cost"], (n as i64 - 1) * (5 + 2 * 3));
}

#[test]
fn infeasible_dimacs_is_an_answer_not_an_error() {
    let answer = json_answer(
        &["solve", "--format", "dimacs", "--input", "-", "--flows"],
        "p min 2 1\nn 1 3\nn 2 -3\na 1 2 0 2 1\n",
        0,
    );
    assert_eq!(answer["status"], "infeasible");
    assert!(answer.get("cost").is_none() && answer.get("flows").is_none());
    let answer = json_answer(
        &["solve", "--format", "dimacs", "--input", "-"],
        "p min 2 2\na 1 2 0 9223372036854775807 -1\na 2 1 0 9223372036854775807 0\n",
        0,
    );
    assert_eq!(answer["status"], "unbounded");
}

#[test]
fn malformed_dimacs_names_the_line_and_exits_2() {
    for (text, line) in [
        ("c fine\np min 2 1\na 1 3 0 1 1\n", "line 3"),
        ("p min 2 1\nn 1 x\n", "line 2"),
        ("p min 2 2\na 1 2 0 1 1\n", "line 2"),
        ("a 1 2 0 1 1\n", "line 1"),
        ("p min 4000000000 0\n", "line 1"),
        (
            "p min 2 0\nn 1 9223372036854775807\nn 2 -9223372036854775807\n",
            "node 1",
        ),
        ("p min 2 1\na 1 2 0 1 9223372036854775807\n", "arc 1"),
    ] {
        let out = run(&["solve", "--format", "dimacs", "--input", "-"], text);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", stderr(&out));
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(answer["status"], "invalid");
        assert_eq!(answer["error"]["field"], line, "{text}: {answer}");
        assert!(stderr(&out).contains(line));
    }
}

#[test]
fn usage_errors_and_missing_files() {
    let out = run(&["solve", "--input", "no/such/problem.json"], "");
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("no/such/problem.json") && message.contains("no such file"),
        "{message}"
    );
    assert!(message.contains("--input -"), "{message}");
    assert!(out.stdout.is_empty());

    let out = run(&[], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("solve") && stderr(&out).contains("nyc-problem"));

    let out = run(
        &["solve", "--input", "examples/problem.json", "--flows"],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--format dimacs"));

    let out = run(&["solve", "--input", "-"], "\u{0}\u{fffd}");
    assert_eq!(out.status.code(), Some(2));

    let out = run(&["nyc-problem", "--date", "2019-02-30"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["nyc-problem", "--date", "2019-06-01"], "");
    assert_eq!(out.status.code(), Some(2), "no trips that day");
    let out = run(&["nyc-problem", "--trips", "no/such.csv"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no/such.csv"));
}

#[test]
fn nyc_problem_from_real_data_solves_with_a_pareto_front() {
    let out = run(
        &[
            "nyc-problem",
            "--trips",
            "data/nyc/trips_2019_03_sample.csv",
            "--zones",
            "data/nyc/taxi_zone_centroids.csv",
            "--hour",
            "18",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("zones"));
    let problem: Value = serde_json::from_slice(&out.stdout).unwrap();
    let zones = problem["zones"].as_array().unwrap();
    assert!(zones.len() > 100, "{} zones", zones.len());
    let total = |key: &str| {
        zones
            .iter()
            .map(|z| z[key].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert!(total("idle") > 100 && total("target") > 100);
    for z in zones {
        let t = z["target"].as_u64().unwrap();
        assert!(t + z["idle"].as_u64().unwrap() > 0);
        assert_eq!(z["min_vehicles"].as_u64().unwrap_or(0), u64::from(t >= 2));
    }

    let answer = json_answer(&["solve", "--input", "-"], &problem.to_string(), 0);
    assert_eq!(answer["status"], "optimal");
    assert_eq!(answer["zones_after"].as_array().unwrap().len(), zones.len());
    let front = answer["pareto"].as_array().unwrap();
    assert!(front.len() >= 2, "{front:?}");
    for pair in front.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a["empty_km"].as_f64() < b["empty_km"].as_f64(),
            "km increases: {pair:?}"
        );
        assert!(
            a["unmet"].as_u64() > b["unmet"].as_u64(),
            "unmet decreases: {pair:?}"
        );
    }
    // The optimum is on the front.
    let best = &answer["objectives"];
    assert!(front.iter().any(|p| p["unmet"] == best["unmet"]
        && close(&p["empty_km"], best["empty_km"].as_f64().unwrap())));
}

/// `backtest` on the bundled NYC trips: both simulations account for every
/// trip, and the chart is written.
#[test]
fn backtest_on_the_nyc_trips_accounts_for_every_trip() {
    let dir = std::env::temp_dir().join(format!("fleet-backtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let chart = dir.join("chart.html");
    let answer = json_answer(
        &[
            "backtest",
            "--trips",
            "data/nyc/trips_2019_03_sample.csv",
            "--zones",
            "data/nyc/zones.csv",
            "--fleet-size",
            "8",
            "--chart",
            chart.to_str().unwrap(),
        ],
        "",
        0,
    );
    let trips = answer["without"]["trips"].as_u64().unwrap();
    assert!(trips > 6000, "{trips}");
    for mode in ["without", "with"] {
        let r = &answer[mode];
        assert_eq!(r["trips"].as_u64(), Some(trips));
        let (served, unmet) = (r["served"].as_u64().unwrap(), r["unmet"].as_u64().unwrap());
        assert_eq!(served + unmet, trips, "{mode}");
        let pct = r["served_pct"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&pct), "{mode}: {pct}");
        assert!((pct - 100.0 * served as f64 / trips as f64).abs() < 1e-9);
        let hourly: u64 = r["hours"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["served"].as_u64().unwrap())
            .sum();
        assert_eq!(hourly, served, "{mode}");
    }
    assert_eq!(answer["without"]["repositioning_km"].as_f64(), Some(0.0));
    let extra =
        answer["with"]["served"].as_i64().unwrap() - answer["without"]["served"].as_i64().unwrap();
    assert_eq!(answer["extra_served"].as_i64(), Some(extra));
    assert!(answer["verdict"].as_str().is_some_and(|v| !v.is_empty()));
    let html = std::fs::read_to_string(&chart).unwrap();
    assert!(html.contains("<svg") && html.contains("</html>"));
    // A `.svg` name gets the served-% panel alone, a standalone SVG.
    let svg = dir.join("chart.svg");
    let out = run(
        &[
            "backtest",
            "--fleet-size",
            "8",
            "--json",
            dir.join("a.json").to_str().unwrap(),
            "--chart",
            svg.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<svg xmlns=")
            && svg.ends_with("</svg>")
            && svg.contains("Served % per day")
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // Bad arguments: exit 2 with a message, never a panic; a missing file is 1.
    let out = run(&["backtest", "--fleet-size", "0"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("fleet size"), "{}", stderr(&out));
    let out = run(
        &[
            "backtest",
            "--fleet-size",
            "5",
            "--zones",
            "data/nyc/taxi_zone_centroids.csv",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown zone file format"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &["backtest", "--fleet-size", "5", "--trips", "no/such.csv"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no/such.csv"));
    assert!(out.stdout.is_empty());
}

/// `serve` with nothing configured: SQLite under DATA_DIR, migrated at
/// start, answering on PORT, with an admin API key generated and printed
/// once (never logged); SIGTERM stops it cleanly.
#[test]
fn serve_runs_embedded_and_stops_on_sigterm() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    let dir = std::env::temp_dir().join(format!("fleet-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_fleet-optimization"))
            .args(["serve", "--port", &port.to_string()])
            .env_remove("DATABASE_URL")
            .env_remove("ADMIN_API_KEY")
            .env_remove("JWT_SECRET")
            .env_remove("JWT_PUBLIC_KEY_FILE")
            .env("DATA_DIR", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let get = |path: &str, key: Option<&str>| -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        let key = key.map_or(String::new(), |k| format!("X-API-Key: {k}\r\n"));
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{key}Connection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let wait_healthy = || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(answer) = get("/health", None) {
                break answer;
            }
            assert!(Instant::now() < deadline, "serve never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let stop = |mut child: std::process::Child| -> (String, String) {
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_string(&mut out).unwrap();
        }
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "exit {status:?}: {err}");
        (out, err)
    };

    // First start with no credentials configured: an admin key is made and
    // printed once on stdout (read before the health check: it comes first).
    let mut child = start();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let key = loop {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0,
            "serve printed no admin key"
        );
        if let Some(key) = line.trim().strip_prefix("fo_") {
            break format!("fo_{key}");
        }
    };
    let health = wait_healthy();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"database\":\"ok\""), "{health}");
    assert!(dir.join("fleet-optimization.db").exists());
    let refused = get("/api/v1/fleet-optimization/runs", None).unwrap();
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let wrong = get(
        "/api/v1/fleet-optimization/runs",
        Some("fo_wrong-key-marker-5551234"),
    )
    .unwrap();
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let list = get("/api/v1/fleet-optimization/runs", Some(&key)).unwrap();
    assert!(
        list.starts_with("HTTP/1.1 200") && list.contains("\"items\":[]"),
        "{list}"
    );
    // SIGTERM: graceful shutdown, exit code 0. The key is in no log line.
    drop(stdout);
    let (_, stderr) = stop(child);
    assert!(
        stderr.contains("\"status\":401"),
        "requests are logged: {stderr}"
    );
    assert!(!stderr.contains(&key[3..]), "the key was logged");
    assert!(
        !stderr.contains("key-marker-5551234"),
        "a presented key was logged"
    );

    // A restart keeps the stored key and prints none.
    let child = start();
    assert!(wait_healthy().starts_with("HTTP/1.1 200"));
    let list = get("/api/v1/fleet-optimization/runs", Some(&key)).unwrap();
    assert!(list.starts_with("HTTP/1.1 200"), "{list}");
    let (out, err) = stop(child);
    assert!(!out.contains("fo_"), "a second key was printed: {out}");
    assert!(!err.contains(&key[3..]), "the key was logged");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `migrate` creates the embedded database and applies the schema; running
/// it again is harmless.
#[test]
fn migrate_applies_the_schema_to_the_embedded_database() {
    let dir = std::env::temp_dir().join(format!("fleet-migrate-{}", std::process::id()));
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_fleet-optimization"))
            .arg("migrate")
            .env_remove("DATABASE_URL")
            .env("DATA_DIR", &dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = std::fs::read(dir.join("fleet-optimization.db")).unwrap();
    // SQLite files start with this header; the schema names our tables.
    assert!(db.starts_with(b"SQLite format 3\0"));
    let text = String::from_utf8_lossy(&db);
    for table in [
        "optimization_runs",
        "optimization_results",
        "optimization_recommendations",
        "fleet_rebalancing",
        "optimization_metrics",
    ] {
        assert!(text.contains(table), "{table} missing");
    }
    // A bad DATABASE_URL is a clear failure (exit 1), not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_fleet-optimization"))
        .arg("migrate")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open the database"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad security settings stop `serve` at once with exit code 2 and a
/// message naming the setting, before anything listens.
#[test]
fn serve_refuses_bad_security_settings() {
    let dir = std::env::temp_dir().join(format!("fleet-badsec-{}", std::process::id()));
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[("TLS_CERT_FILE", "/nonexistent/cert.pem")],
            "TLS_KEY_FILE",
        ),
        (
            &[
                ("TLS_CERT_FILE", "/nonexistent/cert.pem"),
                ("TLS_KEY_FILE", "/nonexistent/key.pem"),
            ],
            "TLS_CERT_FILE /nonexistent/cert.pem",
        ),
        (&[("JWT_SECRET", "short")], "at least 32 bytes"),
        (
            &[
                ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
                ("JWT_PUBLIC_KEY_FILE", "/nonexistent/key.pem"),
            ],
            "not both",
        ),
        (
            &[("RATE_LIMIT_PER_SECOND", "lots")],
            "RATE_LIMIT_PER_SECOND",
        ),
        (&[("ADMIN_API_KEY", "short")], "at least 16 characters"),
    ];
    for (env, says) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fleet-optimization"));
        command
            .args(["serve", "--port", "0", "--pipeline", "off"])
            .env_remove("DATABASE_URL")
            .env("DATA_DIR", &dir);
        for var in [
            "TLS_CERT_FILE",
            "TLS_KEY_FILE",
            "JWT_SECRET",
            "JWT_PUBLIC_KEY_FILE",
            "ADMIN_API_KEY",
            "RATE_LIMIT_PER_SECOND",
        ] {
            command.env_remove(var);
        }
        let out = command.envs(env.iter().copied()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(says), "{env:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
