//! What the service-level test files share: NYC telemetry, the reference
//! (an uninterrupted in-process run), fresh databases, the broker, and
//! reading back what the service stored.
#![allow(dead_code)] // each test file uses a part

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fleet_pipeline::event::Event;
use fleet_pipeline::kafka::{ensure_topics, Topics};
use fleet_pipeline::nyc::{read_trips, trip_events};
use fleet_pipeline::rebalance::RebalanceConfig;
use fleet_pipeline::runner::Pipeline;
use fleet_pipeline::sink::MemorySink;
use fleet_pipeline::source::ReplaySource;
use fleet_pipeline::window::WindowConfig;
use fleet_pipeline::zones::{CentroidZones, ZoneMap, DEFAULT_ZONE_MAX_KM};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Row;

pub const HOUR: i64 = 3_600_000;

/// The windows the service tests run with (`WINDOW_SECONDS=3600`,
/// `ALLOWED_LATENESS_SECONDS=60`).
pub const WINDOW: WindowConfig = WindowConfig {
    size_ms: HOUR,
    slide_ms: HOUR,
    allowed_lateness_ms: 60_000,
};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A name no other run of the tests uses (topics, groups, databases).
pub fn unique(prefix: &str) -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{stamp}")
}

/// The NYC trips of the first `days` days as telemetry of fleet `nyc`.
pub fn nyc_events(days: i64) -> Vec<Event> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nyc");
    let zones =
        Arc::new(CentroidZones::from_file(&data.join("zones.csv"), DEFAULT_ZONE_MAX_KM).unwrap());
    let (trips, _) = read_trips(&data.join("trips_2019_03_sample.csv"), zones.zones()).unwrap();
    let start = trips[0].pickup_ms;
    let trips: Vec<_> = trips
        .into_iter()
        .filter(|t| t.pickup_ms < start + days * 86_400_000)
        .collect();
    trip_events(&trips, zones.zones(), "nyc")
}

/// One stored (or reference) window: its end, objective and vehicles moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub end_ms: i64,
    pub objective: f64,
    pub moved: u64,
}

/// What an uninterrupted in-process run of `events` and then their
/// [`heartbeats`] closes.
pub async fn reference(events: &[Event]) -> Vec<Window> {
    let mut events = events.to_vec();
    events.extend(heartbeats(events.last().unwrap()));
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nyc");
    let zones =
        Arc::new(CentroidZones::from_file(&data.join("zones.csv"), DEFAULT_ZONE_MAX_KM).unwrap());
    let sink = MemorySink::default();
    let mut p = Pipeline::new(
        WINDOW,
        RebalanceConfig::default(),
        zones as Arc<dyn ZoneMap>,
        vec![Box::new(sink.clone())],
    )
    .unwrap();
    p.run(
        Box::new(ReplaySource::new(&events, None)),
        256,
        std::future::pending(),
    )
    .await
    .unwrap();
    sink.collected()
        .windows
        .iter()
        .map(|w| Window {
            end_ms: w.window.end_ms,
            objective: w.plan.objective,
            moved: w.plan.moves.iter().map(|m| u64::from(m.vehicles)).sum(),
        })
        .collect()
}

/// What the service stored for fleet `nyc`.
#[derive(Debug)]
pub struct Stored {
    /// By end.
    pub windows: Vec<Window>,
    pub recommendations: usize,
    /// Moves proposed (not yet expired or decided) more than once.
    pub proposed_twice: Vec<String>,
    /// The proposed moves, and the last window's plan, as `from>to xN` (sorted).
    pub proposed: Vec<String>,
    pub last_plan: Vec<String>,
}

pub async fn stored(pool: &sqlx::AnyPool) -> Stored {
    let mut windows = Vec::new();
    let mut last_plan = Vec::new();
    for row in sqlx::query(
        "SELECT window_end, objective, report FROM pipeline_windows WHERE fleet_id = 'nyc' ORDER BY window_end",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    {
        let report: serde_json::Value = serde_json::from_str(&row.get::<String, _>(2)).unwrap();
        let moves = report["moves"].as_array().unwrap();
        last_plan = moves
            .iter()
            .map(|m| format!("{}>{} x{}", m["from_zone"].as_str().unwrap(), m["to_zone"].as_str().unwrap(), m["vehicles"]))
            .collect();
        windows.push(Window {
            end_ms: row.get(0),
            objective: row.get(1),
            moved: moves.iter().map(|m| m["vehicles"].as_u64().unwrap()).sum(),
        });
    }
    last_plan.sort();
    let recommendations: i64 =
        sqlx::query("SELECT COUNT(*) FROM optimization_recommendations WHERE fleet_id = 'nyc'")
            .fetch_one(pool)
            .await
            .unwrap()
            .get(0);
    let proposed_twice = sqlx::query(
        "SELECT from_zone, to_zone FROM optimization_recommendations \
         WHERE fleet_id = 'nyc' AND status = 'proposed' GROUP BY run_id, from_zone, to_zone HAVING COUNT(*) > 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| format!("{}>{}", row.get::<String, _>(0), row.get::<String, _>(1)))
    .collect();
    let mut proposed: Vec<String> = sqlx::query(
        "SELECT from_zone, to_zone, vehicles FROM optimization_recommendations \
         WHERE fleet_id = 'nyc' AND status = 'proposed'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| {
        format!(
            "{}>{} x{}",
            row.get::<String, _>(0),
            row.get::<String, _>(1),
            row.get::<i64, _>(2)
        )
    })
    .collect();
    proposed.sort();
    Stored {
        windows,
        recommendations: recommendations as usize,
        proposed_twice,
        proposed,
        last_plan,
    }
}

/// Asserts that the service stored exactly the reference's windows, each
/// once with an equal optimum, and its recommendations without repeats:
/// no move proposed twice, and what is proposed is the last window's plan.
///
/// Optima are compared as the pipeline's own restart test does: a restart
/// solves cold where the uninterrupted run repairs warm, and plans tied in
/// the solver's integer cost units may differ in float rounding (< 0.001
/// per vehicle moved), and so may the moves of such tied plans.
pub fn assert_same(stored: &Stored, reference: &[Window]) {
    let ends = |w: &[Window]| w.iter().map(|w| w.end_ms).collect::<Vec<_>>();
    assert_eq!(
        ends(&stored.windows),
        ends(reference),
        "stored windows differ"
    );
    for (got, want) in stored.windows.iter().zip(reference) {
        assert!(
            (got.objective - want.objective).abs()
                <= 1e-3 * (got.moved.max(want.moved) as f64 + 1.0),
            "window {}: objective {} != {}",
            got.end_ms,
            got.objective,
            want.objective
        );
    }
    assert!(
        stored.proposed_twice.is_empty(),
        "proposed twice: {:?}",
        stored.proposed_twice
    );
    assert_eq!(
        stored.proposed, stored.last_plan,
        "the proposals are not the last plan"
    );
}

/// The PostgreSQL server the tests use (`TEST_DATABASE_URL`, default the
/// local `test` database).
pub fn postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Creates database `name` on the server of `server_url` (a database URL)
/// and returns its URL.
pub async fn fresh_database(server_url: &str, name: &str) -> String {
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(server_url).await.unwrap();
    // `name` is the test's own identifier (letters and digits).
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric()));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (server, _) = server_url.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

/// The broker (`KAFKA_BROKERS`, default 127.0.0.1:9092).
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Fresh topics (4 partitions) under `prefix` on `brokers`.
pub async fn fresh_topics(brokers: &str, prefix: &str) -> Topics {
    let topics = Topics::prefixed(prefix);
    ensure_topics(brokers, &topics.all(), 4)
        .await
        .unwrap_or_else(|e| panic!("{e} (start one with scripts/kafka-broker.sh)"));
    topics
}

/// Sends `events` to `topic`, keyed by vehicle or request id, in order.
pub async fn send(producer: &FutureProducer, topic: &str, events: &[Event]) {
    for e in events {
        producer
            .send(
                FutureRecord::to(topic).key(&e.id).payload(&e.to_json()),
                Duration::from_secs(120),
            )
            .await
            .unwrap();
    }
}

/// One vehicle report per partition, two hours after `last`: event time on
/// every partition (the slowest one decides) passes every window of the
/// data, while they themselves fall in a window that stays open.
pub fn heartbeats(last: &Event) -> Vec<Event> {
    (0..4)
        .map(|partition| {
            let mut beat = last.clone();
            beat.ts_ms += 2 * HOUR;
            beat.id = format!("heartbeat-{partition}");
            beat
        })
        .collect()
}

/// Sends [`heartbeats`], heartbeat `p` to partition `p`.
pub async fn send_heartbeats(producer: &FutureProducer, topic: &str, last: &Event) {
    for (partition, beat) in heartbeats(last).iter().enumerate() {
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition as i32)
                    .key(&beat.id)
                    .payload(&beat.to_json()),
                Duration::from_secs(120),
            )
            .await
            .unwrap();
    }
}

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) {
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
}
