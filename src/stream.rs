//! Wiring of the streaming pipeline into the service: configuration from
//! the environment (DESIGN.md section 7), the store sink (the pipeline's
//! [`Sink`] over the API's store and cache), and the task that runs it.

use std::path::PathBuf;
use std::sync::Arc;

use fleet_api::cache::{recommendations_key, results_key, run_key, Cache};
use fleet_api::store::Store;
use fleet_api::telemetry::{self, Level};
use fleet_api::windows::{DeadLetterRow, StreamMove, StreamWindow, WindowSaved};
use fleet_pipeline::health::{Backoff, Change, Health};
use fleet_pipeline::kafka::{ensure_topics, KafkaSink, KafkaSource, Topics, DEFAULT_GROUP};
use fleet_pipeline::nyc::{read_trips, trip_events};
use fleet_pipeline::rebalance::RebalanceConfig;
use fleet_pipeline::runner::{Pipeline, PipelineStats, DEFAULT_BATCH};
use fleet_pipeline::sink::{DeadLetter, FleetCheckpoint, Sink, WindowOutput};
use fleet_pipeline::source::{BoxFuture, ReplaySource, Source};
use fleet_pipeline::window::WindowConfig;
use fleet_pipeline::zones::{CentroidZones, H3Zones, ZoneMap, DEFAULT_ZONE_MAX_KM};
use serde_json::json;

/// Where telemetry comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Telemetry {
    /// `KAFKA_BROKERS`: the `fleet.telemetry` topic (under
    /// `KAFKA_TOPIC_PREFIX.` when set), consumer group `KAFKA_GROUP_ID`
    /// (default `fleet-optimization`).
    Kafka {
        brokers: String,
        topics: Topics,
        group: String,
    },
    /// The bundled NYC trips replayed in process at `speedup` x real time.
    Replay { trips: PathBuf, speedup: f64 },
}

/// The pipeline's configuration.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub telemetry: Telemetry,
    pub zones: Arc<dyn ZoneMap>,
    /// The zone file, when zones come from one (the replay joins trips to it).
    pub zone_file: Option<Arc<CentroidZones>>,
    pub window: WindowConfig,
    /// `CLICKHOUSE_ADDR`: windows also go to ClickHouse.
    pub clickhouse: Option<String>,
    /// Without ClickHouse, analytics rows go to Parquet files here
    /// (`$DATA_DIR/analytics`).
    pub analytics_dir: PathBuf,
}

fn env_f64(name: &str, default: f64) -> Result<f64, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("{name}={v:?} is not a non-negative number")),
        _ => Ok(default),
    }
}

impl StreamConfig {
    /// Reads `ZONES_FILE` (default `data/nyc/zones.csv`) or `H3_RESOLUTION`,
    /// `ZONE_MAX_KM`, `WINDOW_SECONDS` (300), `WINDOW_SLIDE_SECONDS` (= the
    /// window: tumbling), `ALLOWED_LATENESS_SECONDS` (30), `KAFKA_BROKERS`,
    /// else `TRIPS_FILE` and `REPLAY_SPEEDUP` (600); `CLICKHOUSE_ADDR`, else
    /// Parquet under `DATA_DIR`.
    pub fn from_env() -> Result<Self, String> {
        let (zones, zone_file): (Arc<dyn ZoneMap>, _) = match std::env::var("H3_RESOLUTION") {
            Ok(r) if !r.is_empty() => {
                let r: u8 = r
                    .parse()
                    .map_err(|_| format!("H3_RESOLUTION={r:?} is not a number 0-15"))?;
                (Arc::new(H3Zones::new(r)?), None)
            }
            _ => {
                let path =
                    std::env::var("ZONES_FILE").unwrap_or_else(|_| "data/nyc/zones.csv".into());
                let file = Arc::new(CentroidZones::from_file(
                    &PathBuf::from(path),
                    env_f64("ZONE_MAX_KM", DEFAULT_ZONE_MAX_KM)?,
                )?);
                (file.clone() as Arc<dyn ZoneMap>, Some(file))
            }
        };
        let size = env_f64("WINDOW_SECONDS", 300.0)?;
        let window = WindowConfig {
            size_ms: (size * 1000.0) as i64,
            slide_ms: (env_f64("WINDOW_SLIDE_SECONDS", size)? * 1000.0) as i64,
            allowed_lateness_ms: (env_f64("ALLOWED_LATENESS_SECONDS", 30.0)? * 1000.0) as i64,
        };
        window.validate()?;
        let telemetry = match std::env::var("KAFKA_BROKERS") {
            Ok(b) if !b.is_empty() => Telemetry::Kafka {
                brokers: b,
                topics: topics_from_env(),
                group: std::env::var("KAFKA_GROUP_ID")
                    .ok()
                    .filter(|g| !g.is_empty())
                    .unwrap_or_else(|| DEFAULT_GROUP.into()),
            },
            _ => Telemetry::Replay {
                trips: std::env::var("TRIPS_FILE")
                    .unwrap_or_else(|_| "data/nyc/trips_2019_03_sample.csv".into())
                    .into(),
                speedup: env_f64("REPLAY_SPEEDUP", 600.0)?,
            },
        };
        if matches!(telemetry, Telemetry::Replay { .. }) && zone_file.is_none() {
            return Err("the embedded NYC replay needs a zone file: unset H3_RESOLUTION or set KAFKA_BROKERS".into());
        }
        Ok(StreamConfig {
            telemetry,
            zones,
            zone_file,
            window,
            clickhouse: std::env::var("CLICKHOUSE_ADDR")
                .ok()
                .filter(|a| !a.is_empty()),
            analytics_dir: PathBuf::from(
                std::env::var("DATA_DIR").unwrap_or_else(|_| "data".into()),
            )
            .join("analytics"),
        })
    }
}

/// The Kafka topics: the standard names, under `KAFKA_TOPIC_PREFIX.` when
/// set (several deployments, or tests, sharing one broker).
pub fn topics_from_env() -> Topics {
    Topics::named(
        std::env::var("KAFKA_TOPIC_PREFIX")
            .ok()
            .filter(|p| !p.is_empty())
            .as_deref(),
    )
}

/// The pipeline's sink over the service's store and cache.
pub struct StoreSink {
    pub store: Store,
    pub cache: Cache,
    /// Names dead letters' ids: `source:partition:offset`.
    pub source: String,
}

/// The store's view of a window's outcome.
pub fn stream_window(out: &WindowOutput) -> Result<StreamWindow, String> {
    let plan = &out.plan;
    Ok(StreamWindow {
        fleet_id: out.fleet_id.clone(),
        start_ms: out.window.start_ms,
        end_ms: out.window.end_ms,
        objective: plan.objective,
        report: json!({
            "window_start": fleet_engine::time::format_rfc3339(out.window.start_ms),
            "window_end": fleet_engine::time::format_rfc3339(out.window.end_ms),
            "objective": plan.objective,
            "objectives": {"unmet": plan.unmet, "empty_km": plan.empty_km},
            "moves": plan.moves,
            "zones": out.window.zones,
            "zone_balance": plan.balance,
            "stats": {"zones": plan.zones, "solve_ms": plan.solve_ms, "warm_pivots": plan.warm_pivots,
                      "warm_fallback": plan.warm_fallback},
        }),
        changed: plan
            .changed
            .iter()
            .map(|m| StreamMove {
                from_zone: m.from_zone.clone(),
                to_zone: m.to_zone.clone(),
                vehicles: m.vehicles.into(),
                km: m.km,
                cost: m.cost,
                benefit_per_vehicle: m.benefit_per_vehicle,
                explanation: m.explanation.clone(),
            })
            .collect(),
        withdrawn: plan.withdrawn.clone(),
        checkpoint: serde_json::to_value(&out.checkpoint).map_err(|e| e.to_string())?,
    })
}

impl Sink for StoreSink {
    fn name(&self) -> &'static str {
        "store"
    }

    fn write_window<'a>(&'a mut self, out: &'a WindowOutput) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let saved = self
                .store
                .save_window(&stream_window(out)?)
                .await
                .map_err(|e| e.to_string())?;
            if let WindowSaved::Saved {
                run_id: Some(run_id),
                recommendations,
            } = saved
            {
                self.cache
                    .invalidate(&[
                        run_key(&run_id),
                        results_key(&run_id),
                        recommendations_key(&run_id),
                    ])
                    .await;
                telemetry::record_window(recommendations, out.closed_at.elapsed().as_secs_f64());
            }
            Ok(())
        })
    }

    fn write_dead_letters<'a>(
        &'a mut self,
        letters: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let rows: Vec<DeadLetterRow> = letters
                .iter()
                .map(|l| DeadLetterRow {
                    id: l.position.map_or_else(fleet_api::store::new_id, |p| {
                        format!("{}:{}:{}", self.source, p.partition, p.offset)
                    }),
                    source: self.source.clone(),
                    reason: l.reason.clone(),
                    payload: String::from_utf8_lossy(&l.payload).into_owned(),
                    received_at: l.received_ms,
                })
                .collect();
            self.store
                .insert_dead_letters(&rows)
                .await
                .map_err(|e| e.to_string())?;
            telemetry::record_dead_letters(rows.len());
            Ok(())
        })
    }
}

/// Builds the source and sinks, resumes every fleet from its checkpoint and
/// runs the pipeline until `stop` resolves or the source ends. Failing
/// writes are retried (reported to `health`); an error here means the
/// pipeline could not start or its source failed for good.
pub async fn run(
    config: &StreamConfig,
    store: Store,
    cache: Cache,
    health: Health,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let (source, mut sinks, name): (Box<dyn Source>, Vec<Box<dyn Sink>>, &str) =
        match &config.telemetry {
            Telemetry::Kafka {
                brokers,
                topics,
                group,
            } => {
                ensure_topics(brokers, &topics.all(), 4).await?;
                (
                    Box::new(
                        KafkaSource::new(brokers, group, &topics.telemetry)?
                            .with_health(health.clone()),
                    ),
                    vec![Box::new(KafkaSink::new(brokers, topics.clone())?)],
                    "kafka",
                )
            }
            Telemetry::Replay { trips, speedup } => {
                let zones = config
                    .zone_file
                    .as_ref()
                    .ok_or("the NYC replay needs a zone file")?;
                let (trips, _) = read_trips(trips, zones.zones())?;
                let events = trip_events(&trips, zones.zones(), "nyc");
                let speedup = (*speedup > 0.0).then_some(*speedup);
                (
                    Box::new(ReplaySource::new(&events, speedup)),
                    Vec::new(),
                    "replay",
                )
            }
        };
    sinks.insert(
        0,
        Box::new(StoreSink {
            store: store.clone(),
            cache,
            source: name.to_owned(),
        }),
    );
    // Analytics: ClickHouse when configured, else Parquet files (embedded).
    match &config.clickhouse {
        Some(addr) => {
            let client = fleet_pipeline::clickhouse_sink::client(addr);
            sinks.push(Box::new(
                fleet_pipeline::clickhouse_sink::ClickHouseSink::connect(
                    client,
                    config.zones.clone(),
                )
                .await?,
            ));
        }
        None => sinks.push(Box::new(fleet_pipeline::parquet_sink::ParquetSink::new(
            &config.analytics_dir,
            config.zones.clone(),
        )?)),
    }
    let mut pipeline = Pipeline::new(
        config.window,
        RebalanceConfig::default(),
        config.zones.clone(),
        sinks,
    )?
    .with_health(health.clone())
    .with_progress(record_progress());
    for (fleet, end, state) in store.checkpoints().await.map_err(|e| e.to_string())? {
        match serde_json::from_value::<FleetCheckpoint>(state) {
            Ok(c) => pipeline.resume_fleet(&fleet, c),
            Err(e) => telemetry::log(
                Level::Warn,
                "checkpoint unreadable; the fleet starts afresh",
                json!({"fleet_id": fleet, "window_end": end, "error": e.to_string()}),
            ),
        }
    }
    health.recovered(PIPELINE_COMPONENT);
    telemetry::log(Level::Info, "pipeline started", json!({"source": name}));
    let stats = pipeline.run(source, DEFAULT_BATCH, stop).await?;
    telemetry::log(
        Level::Info,
        "pipeline stopped",
        serde_json::to_value(stats).unwrap_or_default(),
    );
    Ok(())
}

/// Feeds a pipeline's counters into the service's metrics (as increments:
/// a restarted pipeline counts from 0 again) and logs a partition log that
/// started over: the events of the old log still in open windows are then
/// only in memory.
fn record_progress() -> impl FnMut(&PipelineStats) + Send + 'static {
    let mut last = PipelineStats::default();
    move |now| {
        telemetry::record_consumed(
            now.messages.saturating_sub(last.messages),
            now.redelivered.saturating_sub(last.redelivered),
            now.log_restarts.saturating_sub(last.log_restarts),
        );
        if now.log_restarts > last.log_restarts {
            telemetry::log(
                Level::Warn,
                "a telemetry partition's log started over (the broker lost its data, or the topic was re-created); reading it as new messages",
                json!({"log_restarts": now.log_restarts}),
            );
        }
        last = *now;
    }
}

/// Component name of the pipeline as a whole in [`Health`] (failing while
/// it waits to restart).
pub const PIPELINE_COMPONENT: &str = "pipeline";

/// A [`Health`] that logs every failure and recovery as structured JSON.
pub fn logged_health() -> Health {
    Health::default().with_observer(|change| match change {
        Change::Failed {
            component,
            error,
            attempts,
            retry_in,
        } => telemetry::log(
            Level::Warn,
            "pipeline dependency failing; retrying",
            json!({"component": component, "error": error, "attempt": attempts,
                   "retry_in_ms": retry_in.as_millis() as u64}),
        ),
        Change::Recovered {
            component,
            attempts,
            after,
        } => telemetry::log(
            Level::Info,
            "pipeline dependency recovered",
            json!({"component": component, "failed_attempts": attempts,
                   "after_ms": after.as_millis() as u64}),
        ),
    })
}

/// Runs the pipeline until `stop` turns true, restarting it after a failure
/// (a source that failed for good, or a dependency down at start) with
/// [`Backoff`]: the restart resumes from the stored checkpoints and
/// committed offsets, exactly as after a crash. The API keeps serving
/// meanwhile; `/health` shows the pipeline as retrying.
pub async fn supervise(
    config: StreamConfig,
    store: Store,
    cache: Cache,
    health: Health,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut backoff = Backoff::default();
    loop {
        let started = std::time::Instant::now();
        let result = run(
            &config,
            store.clone(),
            cache.clone(),
            health.clone(),
            stopped(stop.clone()),
        )
        .await;
        let error = match result {
            Ok(()) => return, // stopped, or the source ended
            Err(e) if *stop.borrow() => {
                telemetry::log(
                    Level::Warn,
                    "pipeline stopped before its last write; it is replayed at the next start",
                    json!({"error": e}),
                );
                return;
            }
            Err(e) => e,
        };
        // A pipeline that ran a while before failing starts the backoff over.
        if started.elapsed() > Backoff::MAX * 6 {
            backoff.reset();
        }
        let wait = backoff.next_wait();
        health.failed(PIPELINE_COMPONENT, &error, wait);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(stop.clone()) => return,
        }
    }
}

// benches/pipeline.rs includes this file; built without the test harness
// there, the tests vanish and their imports look unused.
#[cfg(test)]
#[allow(unused_imports)]
mod tests {
    use super::*;
    use fleet_pipeline::sink::MemorySink;

    /// 100,000 malformed telemetry messages of ten kinds, deterministic.
    fn bad_corpus(valid: &[Vec<u8>]) -> Vec<(&'static str, Vec<u8>)> {
        let mut rng = fleet_engine::synthetic::Rng::new(7);
        let mut out = Vec::with_capacity(100_000);
        let template = String::from_utf8(valid[0].clone()).unwrap();
        let with = |from: &str, to: &str| template.replacen(from, to, 1).into_bytes();
        let lat = template.split("\"lat\":").nth(1).unwrap();
        let lat = &lat[..lat.find([',', '}']).unwrap()];
        let ts = template.split("\"ts\":\"").nth(1).unwrap();
        let ts = &ts[..ts.find('"').unwrap()];
        let lat_field = format!("\"lat\":{lat}");
        let ts_field = format!("\"ts\":\"{ts}\"");
        for k in 0..100_000usize {
            let pick = |n: usize| (k / 10) % n;
            let entry: (&'static str, Vec<u8>) = match k % 10 {
                0 => {
                    let v = &valid[k % valid.len()];
                    let cut = 1 + (rng.next_u64() as usize) % (v.len() - 2);
                    ("truncated", v[..cut].to_vec())
                }
                1 => (
                    "wrong type",
                    [
                        with(&lat_field, &format!("\"lat\":\"{lat}\"")),
                        with(&ts_field, "\"ts\":1551398400"),
                        with("\"fleet_id\":\"nyc\"", "\"fleet_id\":7"),
                    ][pick(3)]
                    .clone(),
                ),
                2 => (
                    "NaN or infinite",
                    [
                        with(&lat_field, "\"lat\":NaN"),
                        with(&lat_field, "\"lat\":1e999"),
                        with(&lat_field, "\"lat\":-Infinity"),
                    ][pick(3)]
                    .clone(),
                ),
                3 => (
                    "out of range",
                    with(
                        &lat_field,
                        &format!("\"lat\":{}", 90.001 + (k % 1000) as f64),
                    ),
                ),
                4 => (
                    "far future",
                    with(&ts_field, "\"ts\":\"2999-01-01T00:00:00Z\""),
                ),
                5 => (
                    "ancient",
                    with(&ts_field, "\"ts\":\"1970-01-01T00:00:00Z\""),
                ),
                // A few huge ones (each over the 64 KiB limit), then oversized ids.
                6 if k % 1000 == 6 => ("huge", vec![b' '; 70 * 1024]),
                6 => ("missing field", with("\"type\":", "\"kind\":")),
                7 => (
                    "invalid UTF-8",
                    [vec![0xff, 0xfe], b"{\"type\":\"\xc3\x28\"}".to_vec()][pick(2)].clone(),
                ),
                8 => (
                    "unknown value",
                    [
                        with("\"type\":\"", "\"type\":\"x"),
                        with(&ts_field, "\"ts\":\"soon\""),
                    ][pick(2)]
                    .clone(),
                ),
                _ => (
                    "not an object",
                    [&b""[..], b"[]", b"null", b"42", b"{}"][pick(5)].to_vec(),
                ),
            };
            out.push(entry);
        }
        out
    }

    /// Bad input never crashes or stalls the pipeline, and every bad message
    /// is counted and kept in the real dead-letter store with its reason.
    #[tokio::test]
    async fn a_hundred_thousand_malformed_messages_all_reach_the_dead_letter_store() {
        let zones = Arc::new(
            CentroidZones::from_file("data/nyc/zones.csv".as_ref(), DEFAULT_ZONE_MAX_KM).unwrap(),
        );
        let (trips, _) =
            read_trips("data/nyc/trips_2019_03_sample.csv".as_ref(), zones.zones()).unwrap();
        let start = trips[0].pickup_ms;
        let trips: Vec<_> = trips
            .into_iter()
            .filter(|t| t.pickup_ms < start + 2 * 86_400_000)
            .collect();
        let valid: Vec<Vec<u8>> = trip_events(&trips, zones.zones(), "nyc")
            .iter()
            .map(|e| e.to_json().into_bytes())
            .collect();
        let bad = bad_corpus(&valid);
        assert_eq!(bad.len(), 100_000);
        // Mixed in among the valid stream.
        let mut payloads = Vec::with_capacity(valid.len() + bad.len());
        let per = bad.len() / valid.len() + 1;
        let mut bad_iter = bad.iter();
        for v in &valid {
            payloads.extend(bad_iter.by_ref().take(per).map(|(_, b)| b.clone()));
            payloads.push(v.clone());
        }
        payloads.extend(bad_iter.map(|(_, b)| b.clone()));

        let file = std::env::temp_dir().join(format!("fleet-bad-{}.db", std::process::id()));
        let store = Store::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let memory = MemorySink::default();
        let mut pipeline = Pipeline::new(
            WindowConfig::tumbling(3_600_000, 60_000),
            RebalanceConfig::default(),
            zones.clone() as Arc<dyn ZoneMap>,
            vec![
                Box::new(StoreSink {
                    store: store.clone(),
                    cache: Cache::memory(),
                    source: "corpus".into(),
                }),
                Box::new(memory.clone()),
            ],
        )
        .unwrap();
        let stats = pipeline
            .run(
                Box::new(ReplaySource::from_payloads(payloads)),
                DEFAULT_BATCH,
                std::future::pending(),
            )
            .await
            .unwrap();
        assert_eq!(stats.dead_letters, 100_000);
        let (stored, _) = store.dead_letters(1).await.unwrap();
        assert_eq!(stored, 100_000);
        // Every kind is there, each with a reason saying what is wrong.
        let got = memory.collected();
        assert_eq!(got.dead_letters.len(), 100_000);
        assert!(got.dead_letters.iter().all(|d| !d.reason.is_empty()));
        let reasons: std::collections::BTreeSet<&str> = got
            .dead_letters
            .iter()
            .map(|d| d.reason.split(':').next().unwrap())
            .collect();
        assert!(reasons.len() >= 6, "{reasons:?}");
        // The valid stream still went through: windows closed all along.
        assert!(got.windows.len() >= 40, "{}", got.windows.len());
        let _ = std::fs::remove_file(&file);
    }
}
