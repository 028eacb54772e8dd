//! The ClickHouse sink and the dashboard queries against a real ClickHouse
//! server (`CLICKHOUSE_ADDR`, default http://127.0.0.1:8123;
//! `scripts/clickhouse-server.sh` starts one, `make test` does so first):
//! the NYC replay's windows are written, written again (as after a restart)
//! without being counted twice, and every panel's query answers what the
//! windows themselves say.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use fleet_pipeline::analytics::{MetricRow, OutcomeRow, PANELS};
use fleet_pipeline::clickhouse_sink::{client, insert, ClickHouseSink};
use fleet_pipeline::nyc::{read_trips, trip_events};
use fleet_pipeline::rebalance::RebalanceConfig;
use fleet_pipeline::runner::Pipeline;
use fleet_pipeline::sink::{MemorySink, Sink, WindowOutput};
use fleet_pipeline::source::ReplaySource;
use fleet_pipeline::window::WindowConfig;
use fleet_pipeline::zones::{CentroidZones, ZoneMap, DEFAULT_ZONE_MAX_KM};
use serde_json::Value;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn addr() -> String {
    std::env::var("CLICKHOUSE_ADDR").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// The NYC replay's windows (one fleet, hourly windows), collected in memory.
async fn nyc_windows(zones: &Arc<CentroidZones>) -> Vec<WindowOutput> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (trips, _) = read_trips(
        &root.join("data/nyc/trips_2019_03_sample.csv"),
        zones.zones(),
    )
    .unwrap();
    // The first ten days: enough windows for every panel, quick in a debug build.
    let start = trips.iter().map(|t| t.pickup_ms).min().unwrap();
    let trips: Vec<_> = trips
        .into_iter()
        .filter(|t| t.pickup_ms < start + 10 * DAY)
        .collect();
    let events = trip_events(&trips, zones.zones(), "nyc");
    let memory = MemorySink::default();
    let mut pipeline = Pipeline::new(
        WindowConfig::tumbling(HOUR, 60_000),
        RebalanceConfig::default(),
        zones.clone() as Arc<dyn ZoneMap>,
        vec![Box::new(memory.clone())],
    )
    .unwrap();
    pipeline
        .run(
            Box::new(ReplaySource::new(&events, None)),
            4096,
            std::future::pending(),
        )
        .await
        .unwrap();
    memory.collected().windows
}

/// Runs panel `name` with `params`; its rows as JSON objects.
async fn panel(ch: &clickhouse::Client, name: &str, params: &[(&str, Value)]) -> Vec<Value> {
    let sql = PANELS.iter().find(|(n, _)| *n == name).unwrap().1;
    let mut query = ch.query(sql.trim().trim_end_matches(';'));
    for (k, v) in params {
        query = query.param(k, v);
    }
    let bytes = query
        .fetch_bytes("JSONEachRow")
        .unwrap()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("panel {name}: {e}"));
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn num(v: &Value) -> f64 {
    // ClickHouse quotes 64-bit integers in JSON by default.
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[tokio::test]
async fn windows_land_once_and_every_panel_answers_what_the_windows_say() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let zones = Arc::new(
        CentroidZones::from_file(&root.join("data/nyc/zones.csv"), DEFAULT_ZONE_MAX_KM).unwrap(),
    );
    let windows = nyc_windows(&zones).await;
    assert!(windows.len() > 100, "{} windows", windows.len());
    assert!(windows
        .iter()
        .any(|o| o.window.zones.iter().any(|z| z.unserved > 0)));

    // A database of its own, so runs and other tests do not mix.
    let db = format!("fleet_test_{}", std::process::id());
    let admin = client(&addr());
    admin
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await
        .unwrap();
    admin
        .query(&format!("CREATE DATABASE {db}"))
        .execute()
        .await
        .unwrap();
    let ch = client(&addr()).with_database(&db);
    let mut sink = ClickHouseSink::connect(ch.clone(), zones.clone() as Arc<dyn ZoneMap>)
        .await
        .unwrap();
    // Connecting again (a restart) applies the DDL again: harmless.
    ClickHouseSink::connect(ch.clone(), zones.clone() as Arc<dyn ZoneMap>)
        .await
        .unwrap();
    for out in &windows {
        sink.write_window(out).await.unwrap();
    }
    // A restart replays some windows: written again, counted once.
    for out in windows.iter().take(20) {
        sink.write_window(out).await.unwrap();
    }
    let rows: Vec<Value> = {
        let bytes = ch
            .query("SELECT count() AS n FROM solves")
            .fetch_bytes("JSONEachRow")
            .unwrap()
            .collect()
            .await
            .unwrap();
        vec![serde_json::from_slice(bytes.trim_ascii()).unwrap()]
    };
    assert_eq!(num(&rows[0]["n"]) as usize, windows.len());

    // What the windows say, computed here from the windows themselves.
    let fleet = "nyc";
    let since = windows[0].window.start_ms;
    let hour = |ms: i64| ms.div_euclid(HOUR) * HOUR;
    let mut per_hour: BTreeMap<i64, (u64, f64, f64, u64, f64, f64)> = BTreeMap::new();
    for out in &windows {
        let e =
            per_hour
                .entry(hour(out.window.end_ms))
                .or_insert((0, 0.0, 0.0, 0, f64::INFINITY, 0.0));
        e.0 += 1;
        e.1 += out.plan.solve_ms;
        e.2 += out.plan.empty_km;
        e.3 += out.plan.unmet;
        e.4 = e.4.min(out.plan.solve_ms);
        e.5 = e.5.max(out.plan.solve_ms);
    }
    let since_param = Value::String(fleet_engine_time(since));
    let params = [
        ("fleet", Value::from(fleet)),
        ("since", since_param.clone()),
    ];

    // Both sides round to 3 decimals on their own: a value at a rounding
    // boundary may round apart by one unit, plus floating-point noise
    // (a clean-clone CI run once failed the plain 1e-3 bound).
    const ROUNDED: f64 = 1e-3 + 1e-9;
    let latency = panel(&ch, "solve_latency", &params).await;
    assert_eq!(latency.len(), per_hour.len());
    for (row, (h, (n, sum_ms, _, _, lo, hi))) in latency.iter().zip(&per_hour) {
        assert_eq!(row["hour"], fleet_engine_time(*h).replace(".000", ""));
        assert_eq!(num(&row["windows"]) as u64, *n);
        assert!((num(&row["mean_ms"]) - round(sum_ms / *n as f64, 3)).abs() <= ROUNDED);
        let p99 = num(&row["p99_ms"]);
        assert!(p99 >= round(*lo, 3) - 1e-3 && p99 <= round(*hi, 3) + 1e-3);
    }

    let empty = panel(&ch, "empty_km", &params).await;
    assert_eq!(empty.len(), per_hour.len());
    for (row, (_, (_, _, km, unmet, _, _))) in empty.iter().zip(&per_hour) {
        assert!((num(&row["empty_km"]) - round(*km, 3)).abs() <= ROUNDED);
        assert_eq!(num(&row["unmet"]) as u64, *unmet);
    }

    let mut by_zone: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for out in &windows {
        for z in &out.window.zones {
            let id = zones.describe(z.zone).unwrap().id;
            let e = by_zone.entry(id).or_default();
            e.0 += z.requests as u64;
            e.1 += z.unserved as u64;
        }
    }
    let mut expected: Vec<(String, u64, u64)> = by_zone
        .into_iter()
        .filter(|(_, (_, u))| *u > 0)
        .map(|(z, (r, u))| (z, r, u))
        .collect();
    expected.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    expected.truncate(10);
    assert!(!expected.is_empty());
    let mut top_params = params.to_vec();
    top_params.push(("top", Value::from(10)));
    let top = panel(&ch, "unserved_by_zone", &top_params).await;
    let got: Vec<(String, u64, u64)> = top
        .iter()
        .map(|r| {
            (
                r["zone"].as_str().unwrap().to_owned(),
                num(&r["requests"]) as u64,
                num(&r["unserved"]) as u64,
            )
        })
        .collect();
    assert_eq!(got, expected);

    // Outcomes and metric points arrive from the API side; written directly here.
    let recommended: u64 = windows.iter().map(|o| o.plan.changed.len() as u64).sum();
    assert!(recommended > 0);
    let first_day = windows
        .iter()
        .find(|o| !o.plan.changed.is_empty())
        .unwrap()
        .window
        .end_ms
        .div_euclid(DAY)
        * DAY;
    let outcomes: Vec<OutcomeRow> = ["accepted", "accepted", "rejected", "expired"]
        .iter()
        .enumerate()
        .map(|(k, status)| OutcomeRow {
            fleet_id: fleet.into(),
            recommendation_id: format!("rec-{k}"),
            run_id: "run".into(),
            status: (*status).into(),
            at: first_day + HOUR,
        })
        .collect();
    insert(&ch, "recommendation_outcomes", "test-outcomes", &outcomes)
        .await
        .unwrap();
    let adoption = panel(&ch, "recommendation_adoption", &params).await;
    let total: u64 = adoption.iter().map(|r| num(&r["recommended"]) as u64).sum();
    assert_eq!(total, recommended);
    let day = adoption
        .iter()
        .find(|r| {
            r["day"]
                .as_str()
                .unwrap()
                .starts_with(&fleet_engine_time(first_day)[..10])
        })
        .unwrap();
    assert_eq!(num(&day["accepted"]) as u64, 2);
    assert_eq!(num(&day["rejected"]) as u64, 1);
    assert_eq!(num(&day["expired"]) as u64, 1);
    let on_day = num(&day["recommended"]);
    assert!((num(&day["adoption_pct"]) - round(200.0 / on_day.max(1.0), 1)).abs() <= 0.05);

    let metrics: Vec<MetricRow> = [(0, 10.0), (1, 30.0), (2, 20.0)]
        .iter()
        .map(|(k, v)| MetricRow {
            name: "cost_reduction_pct".into(),
            fleet_id: fleet.into(),
            ts: first_day + k * HOUR,
            value: *v,
        })
        .chain(std::iter::once(MetricRow {
            name: "not_a_seed_metric".into(),
            fleet_id: fleet.into(),
            ts: first_day,
            value: 1.0,
        }))
        .collect();
    insert(&ch, "metrics", "test-metrics", &metrics)
        .await
        .unwrap();
    let seed = panel(&ch, "seed_metrics", &params).await;
    assert_eq!(seed.len(), 1, "{seed:?}");
    assert_eq!(seed[0]["name"], "cost_reduction_pct");
    assert_eq!(num(&seed[0]["points"]) as u64, 3);
    assert_eq!(num(&seed[0]["mean"]), 20.0);
    assert_eq!(num(&seed[0]["latest"]), 20.0);

    admin
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await
        .unwrap();
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC), as ClickHouse prints DateTime64(3).
fn fleet_engine_time(ms: i64) -> String {
    fleet_engine::time::format_rfc3339(ms)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}
