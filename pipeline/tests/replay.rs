//! The whole pipeline on the bundled real NYC trips, in process: windows
//! account for every event exactly once, bad messages become dead letters,
//! and a restart from the last checkpoint and committed offset continues
//! exactly where an uninterrupted run would be.

use std::path::Path;
use std::sync::Arc;

use fleet_pipeline::event::{Event, EventKind};
use fleet_pipeline::nyc::{read_trips, trip_events};
use fleet_pipeline::rebalance::RebalanceConfig;
use fleet_pipeline::runner::Pipeline;
use fleet_pipeline::sink::{MemorySink, Sink};
use fleet_pipeline::source::ReplaySource;
use fleet_pipeline::window::WindowConfig;
use fleet_pipeline::zones::{CentroidZones, ZoneMap, DEFAULT_ZONE_MAX_KM};

fn data(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/nyc")
        .join(file)
}

/// The first `days` days of the bundled trips as telemetry.
fn nyc_events(days: i64) -> (Arc<CentroidZones>, Vec<Event>) {
    let zones =
        Arc::new(CentroidZones::from_file(&data("zones.csv"), DEFAULT_ZONE_MAX_KM).unwrap());
    let (trips, _) = read_trips(&data("trips_2019_03_sample.csv"), zones.zones()).unwrap();
    let start = trips[0].pickup_ms;
    let trips: Vec<_> = trips
        .into_iter()
        .filter(|t| t.pickup_ms < start + days * 86_400_000)
        .collect();
    let events = trip_events(&trips, zones.zones(), "nyc");
    (zones, events)
}

const HOUR: i64 = 3_600_000;

fn pipeline(zones: Arc<CentroidZones>, sink: &MemorySink) -> Pipeline {
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(sink.clone())];
    Pipeline::new(
        WindowConfig::tumbling(HOUR, 60_000),
        RebalanceConfig::default(),
        zones as Arc<dyn ZoneMap>,
        sinks,
    )
    .unwrap()
}

#[tokio::test]
async fn every_request_is_counted_once_and_bad_messages_are_dead_letters() {
    let (zones, events) = nyc_events(4);
    let mut payloads: Vec<Vec<u8>> = events.iter().map(|e| e.to_json().into_bytes()).collect();
    // Bad input mixed in: each must become a dead letter, nothing else.
    let bad: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"{\"type\":\"vehicle\"}".to_vec(),
        vec![0xff; 10],
        events[0]
            .to_json()
            .replace("\"lat\":", "\"lat\":1000,\"x\":")
            .into_bytes(),
    ];
    for (i, b) in bad.iter().enumerate() {
        payloads.insert(100 * (i + 1), b.clone());
    }
    let sink = MemorySink::default();
    let mut p = pipeline(zones, &sink);
    let source = ReplaySource::from_payloads(payloads);
    let commits = source.commits();
    let stats = p
        .run(Box::new(source), 500, std::future::pending())
        .await
        .unwrap();
    let got = sink.collected();
    assert_eq!(stats.dead_letters, bad.len() as u64);
    assert_eq!(got.dead_letters.len(), bad.len());
    assert!(got.dead_letters.iter().all(|d| !d.reason.is_empty()));
    // Contiguous hourly windows, each once.
    let windows = &got.windows;
    assert!(windows.len() >= 90, "{}", windows.len());
    assert!(windows
        .windows(2)
        .all(|w| w[1].window.end_ms - w[0].window.end_ms == HOUR));
    // Every request in a closed window is counted exactly once.
    let closed_until = windows.last().unwrap().window.end_ms;
    let requests = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Request { .. }) && e.ts_ms < closed_until)
        .count() as i64;
    let counted: i64 = windows
        .iter()
        .flat_map(|w| &w.window.zones)
        .map(|z| z.requests)
        .sum();
    assert_eq!(counted, requests);
    assert_eq!(stats.late, 0);
    // The plans recommend moves, and only changes are emitted.
    let emitted: usize = windows.iter().map(|w| w.plan.changed.len()).sum();
    let planned: usize = windows.iter().map(|w| w.plan.moves.len()).sum();
    assert!(emitted > 0 && emitted <= planned, "{emitted} {planned}");
    // Everything before the open window was committed, nothing in it.
    let first_open = payloads_offset_of_first_open(&events, &bad, closed_until);
    assert_eq!(commits.offset(), first_open);
}

/// Offset (in the mixed stream) of the first event not in a closed window.
fn payloads_offset_of_first_open(events: &[Event], bad: &[Vec<u8>], closed_until: i64) -> usize {
    let first = events.iter().position(|e| e.ts_ms >= closed_until).unwrap();
    first
        + (0..bad.len())
            .filter(|i| 100 * (i + 1) <= first + i)
            .count()
}

#[tokio::test]
async fn a_restart_from_checkpoint_and_committed_offset_continues_exactly() {
    let (zones, events) = nyc_events(3);
    // Reference: one uninterrupted run.
    let reference = MemorySink::default();
    let mut p = pipeline(zones.clone(), &reference);
    p.run(
        Box::new(ReplaySource::new(&events, None)),
        256,
        std::future::pending(),
    )
    .await
    .unwrap();
    let reference = reference.collected().windows;

    // First life: stops a third of the way in.
    let cut = events.len() / 3;
    let first = MemorySink::default();
    let mut p = pipeline(zones.clone(), &first);
    let source = ReplaySource::new(&events[..cut], None);
    let commits = source.commits();
    p.run(Box::new(source), 256, std::future::pending())
        .await
        .unwrap();
    let committed = commits.offset();
    let first = first.collected().windows;
    let checkpoint = first.last().unwrap().checkpoint.clone();
    assert!(
        committed < cut,
        "events of the open window stay uncommitted"
    );

    // Second life: from the committed offset, resuming the checkpoint.
    let second = MemorySink::default();
    let mut p = pipeline(zones, &second);
    p.resume_fleet("nyc", checkpoint);
    let source = ReplaySource::new(&events[committed..], None);
    p.run(Box::new(source), 256, std::future::pending())
        .await
        .unwrap();
    let second = second.collected().windows;

    let mut both = first.clone();
    both.extend(second);
    assert_eq!(both.len(), reference.len(), "no window lost or repeated");
    for (a, b) in both.iter().zip(&reference) {
        assert_eq!(a.window, b.window, "window {}", a.window.end_ms);
        // Equal optima; tied plans may differ in float rounding.
        let moved: u32 = a.plan.moves.iter().map(|m| m.vehicles).sum();
        assert!((a.plan.objective - b.plan.objective).abs() <= 1e-3 * (moved as f64 + 1.0));
    }
}

/// The embedded analytics: the replay's windows land in Parquet files (in
/// groups, the last one when the pipeline stops) and DataFusion reads back
/// exactly what the windows say.
#[tokio::test]
async fn analytics_rows_land_in_parquet_and_datafusion_reads_them_back() {
    use fleet_pipeline::parquet_sink::{analytics_context, ParquetSink};
    let (zones, events) = nyc_events(5);
    let dir = std::env::temp_dir().join(format!("fleet-parquet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let memory = MemorySink::default();
    let parquet = ParquetSink::new(&dir, zones.clone() as Arc<dyn ZoneMap>).unwrap();
    let mut pipeline = Pipeline::new(
        WindowConfig::tumbling(HOUR, 60_000),
        RebalanceConfig::default(),
        zones.clone() as Arc<dyn ZoneMap>,
        vec![Box::new(memory.clone()), Box::new(parquet)],
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
    let windows = memory.collected().windows;
    assert!(windows.len() > 64, "more than one group: {}", windows.len());
    let files = std::fs::read_dir(dir.join("solves")).unwrap().count();
    assert!(files >= 2, "{files} files");

    let ctx = analytics_context(&dir).await.unwrap();
    let query = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
        }
    };
    let solves = query("SELECT count(*) AS n, sum(unmet) AS unmet FROM solves").await;
    let unmet: u64 = windows.iter().map(|o| o.plan.unmet).sum();
    assert!(
        solves.contains(&format!("| {} ", windows.len())),
        "{solves}"
    );
    assert!(solves.contains(&format!("| {unmet} ")), "{solves}");
    let requests: i64 = windows
        .iter()
        .flat_map(|o| o.window.zones.iter().map(|z| z.requests))
        .sum();
    let zones_sum = query("SELECT sum(requests) AS r FROM zone_windows").await;
    assert!(zones_sum.contains(&format!("| {requests} ")), "{zones_sum}");
    let changed: usize = windows.iter().map(|o| o.plan.changed.len()).sum();
    let recs = query("SELECT count(*) AS n FROM recommendations").await;
    assert!(recs.contains(&format!("| {changed} ")), "{recs}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A consumer-group rebalance resumes a partition from its committed offset
/// although the events after it are already in the windows: delivered
/// again, they are skipped, and windows stay equal to a single delivery.
#[tokio::test]
async fn messages_delivered_again_after_a_rebalance_count_once() {
    use fleet_pipeline::source::{Message, Position};
    let (zones, events) = nyc_events(2);
    let messages: Vec<Message> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Message {
            payload: e.to_json().into_bytes().into(),
            position: Some(Position {
                partition: 0,
                offset: i as i64,
            }),
            log_restarted: false,
        })
        .collect();
    let run = |batches: Vec<Vec<Message>>| {
        let zones = zones.clone();
        async move {
            let sink = MemorySink::default();
            let mut p = pipeline(zones, &sink);
            for batch in batches {
                p.process(batch, Some(vec![0])).await.unwrap();
            }
            (sink.collected().windows, p.stats())
        }
    };
    let (once, _) = run(vec![messages.clone()]).await;
    // Two thirds, then from a third again (as from a committed offset) to the end.
    let (third, two_thirds) = (messages.len() / 3, 2 * messages.len() / 3);
    let (again, stats) = run(vec![
        messages[..two_thirds].to_vec(),
        messages[third..].to_vec(),
    ])
    .await;
    assert!(once.len() > 20);
    assert_eq!(stats.redelivered, (two_thirds - third) as u64);
    assert_eq!(once.len(), again.len());
    for (a, b) in once.iter().zip(&again) {
        assert_eq!(a.window, b.window);
    }
}

/// A broker that lost its log (restarted without its data, or the topic was
/// re-created) numbers new messages from 0 again. Flagged by the source,
/// they are read as new events, not skipped as redeliveries, and what is
/// committed afterwards are positions of the new log only.
#[tokio::test]
async fn a_log_that_starts_over_is_read_as_new_messages() {
    use fleet_pipeline::source::{Message, Position};
    let (zones, events) = nyc_events(2);
    let message = |e: &Event, offset: usize, log_restarted| Message {
        payload: e.to_json().into_bytes().into(),
        position: Some(Position {
            partition: 0,
            offset: offset as i64,
        }),
        log_restarted,
    };
    let all: Vec<Message> = events
        .iter()
        .enumerate()
        .map(|(i, e)| message(e, i, false))
        .collect();
    let once = {
        let sink = MemorySink::default();
        let mut p = pipeline(zones.clone(), &sink);
        p.process(all, Some(vec![0])).await.unwrap();
        sink.collected().windows
    };

    let half = 2 * events.len() / 3;
    let old: Vec<Message> = events[..half]
        .iter()
        .enumerate()
        .map(|(i, e)| message(e, i, false))
        .collect();
    let new: Vec<Message> = events[half..]
        .iter()
        .enumerate()
        .map(|(i, e)| message(e, i, i == 0))
        .collect();
    let new_len = new.len() as i64;
    let sink = MemorySink::default();
    let mut p = pipeline(zones, &sink);
    let before = p.process(old, Some(vec![0])).await.unwrap();
    assert!(
        before.iter().any(|c| c.offset > new_len),
        "the old log was committed past the new log's end: {before:?}"
    );
    let after = p.process(new, Some(vec![0])).await.unwrap();
    assert!(!after.is_empty(), "windows closed in the new log");
    assert!(
        after.iter().all(|c| c.offset <= new_len),
        "positions of the new log only: {after:?}"
    );
    let stats = p.stats();
    assert_eq!(stats.log_restarts, 1);
    assert_eq!(stats.redelivered, 0);
    assert_eq!(stats.events, events.len() as u64);
    let again = sink.collected().windows;
    assert!(once.len() > 20);
    assert_eq!(once.len(), again.len());
    for (a, b) in once.iter().zip(&again) {
        assert_eq!(a.window, b.window);
    }
}
