//! Pipeline benchmarks (`make bench-pipeline`), printed as tables for the
//! README. Run in release (`cargo bench --bench pipeline`).
//!
//! 1. Embedded, one core: events/s through decode + zone assignment (the
//!    `zone_of` UDF in the window SQL) + window aggregation, next to decode
//!    alone in the same run.
//! 2. Through the broker (KAFKA_BROKERS, default 127.0.0.1:9092; skipped
//!    if none answers): the pipeline's end-to-end events/s next to a bare
//!    rdkafka consumer reading the same topic in the same run.
//! 3. Latency from window close to its recommendations persisted (SQLite
//!    and, if reachable, PostgreSQL), p50/p99, at the 260 NYC zones and at
//!    5000 synthetic zones.

#[path = "../src/stream.rs"]
#[allow(dead_code)]
mod stream;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_api::cache::Cache;
use fleet_api::store::Store;
use fleet_pipeline::event::{decode_ref, Event};
use fleet_pipeline::kafka::{ensure_topics, producer, reachable, send_all, KafkaSource, Topics};
use fleet_pipeline::nyc::{read_trips, Generator, Trip};
use fleet_pipeline::rebalance::RebalanceConfig;
use fleet_pipeline::runner::{Pipeline, DEFAULT_BATCH};
use fleet_pipeline::sink::{DeadLetter, Sink, WindowOutput};
use fleet_pipeline::source::{BoxFuture, Committer, Message, ReplaySource, Source};
use fleet_pipeline::window::{WindowConfig, WindowOperator};
use fleet_pipeline::zones::{CentroidZones, ZoneInfo, ZoneMap, DEFAULT_ZONE_MAX_KM};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::ClientConfig;

const NOW: i64 = 4_000_000_000_000;

fn nyc() -> (Arc<CentroidZones>, Vec<Trip>) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nyc");
    let zones =
        Arc::new(CentroidZones::from_file(&data.join("zones.csv"), DEFAULT_ZONE_MAX_KM).unwrap());
    let (trips, _) = read_trips(&data.join("trips_2019_03_sample.csv"), zones.zones()).unwrap();
    (zones, trips)
}

/// `n` zones spread over a 40 km square around Manhattan, with random trips.
fn synthetic(n: usize) -> (Arc<CentroidZones>, Vec<Trip>) {
    let mut rng = fleet_engine::synthetic::Rng::new(11);
    let zones: Vec<ZoneInfo> = (0..n)
        .map(|i| ZoneInfo {
            id: format!("s{i}"),
            name: format!("s{i}"),
            lat: 40.58 + rng.unit() * 0.36,
            lon: -74.20 + rng.unit() * 0.47,
        })
        .collect();
    let trips = (0..50_000)
        .map(|k| Trip {
            pickup_ms: 1_551_657_600_000 + k * 50_000,
            dropoff_ms: 1_551_657_600_000 + k * 50_000 + 600_000,
            pickup_zone: rng.below(n as u64) as usize,
            dropoff_zone: rng.below(n as u64) as usize,
        })
        .collect();
    (Arc::new(CentroidZones::new(zones, 3.0).unwrap()), trips)
}

fn generate(
    zones: &CentroidZones,
    trips: &[Trip],
    n: usize,
    vehicles: usize,
    per_hour: f64,
) -> Vec<Event> {
    let mut g = Generator::new(
        trips.to_vec(),
        zones.zones().to_vec(),
        "bench",
        vehicles,
        trips[0].pickup_ms,
        per_hour,
        5,
    )
    .unwrap();
    (0..n).map(|_| g.next_event()).collect()
}

/// CPU seconds so far: this process (user + system) and the whole machine
/// (busy, all cores), from /proc (Linux; `None` elsewhere). Clock ticks of
/// 10 ms: good to a few percent over phases of half a second and more.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    process: f64,
    machine_busy: f64,
}

fn cpu_now() -> Option<Cpu> {
    const TICK: f64 = 0.01; // USER_HZ = 100 on Linux
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime, stime are 14, 15.
    let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
    let process =
        (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) * TICK;
    let all = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<f64> = all
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = cpu.get(3)? + cpu.get(4)?;
    Some(Cpu {
        process,
        machine_busy: (cpu.iter().sum::<f64>() - idle) * TICK,
    })
}

/// CPU per message between two snapshots (process us, machine cores busy).
fn cpu_use(from: Option<Cpu>, to: Option<Cpu>, messages: usize, seconds: f64) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!(
            "{:.2} us/msg, machine {:.0}% busy",
            (b.process - a.process) * 1e6 / messages as f64,
            100.0 * (b.machine_busy - a.machine_busy)
                / seconds
                / std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
        ),
        _ => "-".into(),
    }
}

/// Events/s of `f` over `rounds` runs: (median, best). This machine's speed
/// varies between runs, so both are reported.
fn rates(rounds: usize, n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut r: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            n as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    r.sort_by(f64::total_cmp);
    (r[r.len() / 2], r[r.len() - 1])
}

fn embedded(n: usize, rounds: usize) {
    let (zones, trips) = nyc();
    let payloads: Vec<Vec<u8>> = generate(&zones, &trips, n, 5000, 3_600_000.0)
        .iter()
        .map(|e| e.to_json().into_bytes())
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Decode alone.
    let decode_rates = rates(rounds, n, || {
        let ok = payloads
            .iter()
            .filter(|p| decode_ref(p, NOW).is_ok())
            .count();
        assert_eq!(ok, n);
    });
    // Decode + zone assignment + windows (60 s tumbling), as the runner
    // does: decode borrowing the payload, push, flush per batch.
    let mut windows = 0;
    let window_rates = rates(rounds, n, || {
        let mut op = WindowOperator::new(
            WindowConfig::tumbling(60_000, 5_000),
            zones.clone() as Arc<dyn ZoneMap>,
        )
        .unwrap();
        windows = 0;
        runtime.block_on(async {
            for chunk in payloads.chunks(16_384) {
                let mut newest = None;
                for p in chunk {
                    if let Ok(e) = decode_ref(p, NOW) {
                        newest = newest.max(Some(e.ts_ms));
                        op.push(&e);
                    }
                }
                windows += op.flush(newest).await.unwrap().len();
            }
        });
    });
    println!(
        "\n## Embedded, one core ({n} generated NYC events, 60 s windows: {windows} closed; {rounds} rounds)\n"
    );
    println!("| stage | events/s (median) | events/s (best) |\n|---|---|---|");
    println!(
        "| decode + validate only (borrowing ids, as the pipeline does) | {:.0} | {:.0} |",
        decode_rates.0, decode_rates.1
    );
    println!(
        "| decode + zone assignment + window aggregation (DataFusion SQL) | {:.0} | {:.0} |",
        window_rates.0, window_rates.1
    );
}

async fn broker() {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    if !reachable(&brokers, Duration::from_secs(3)).await {
        println!("\n## Through the broker: skipped, no broker at {brokers} (scripts/kafka-broker.sh starts one)");
        return;
    }
    let (zones, trips) = nyc();
    let n = 400_000;
    let events = generate(&zones, &trips, n, 5000, 3_600_000.0);
    let prefix = format!("bench{}", std::process::id());
    let topics = Topics::prefixed(&prefix);
    ensure_topics(&brokers, &topics.all(), 4).await.unwrap();
    let producer = producer(&brokers).unwrap();
    let messages: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (e.id.clone(), e.to_json().into_bytes()))
        .collect();
    for chunk in messages.chunks(20_000) {
        send_all(&producer, &topics.telemetry, chunk).await.unwrap();
    }
    let mut rows = Vec::new();
    for round in 0..3 {
        // Bare consumer: receive and count.
        let bare: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("{prefix}-bare-{round}"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        bare.subscribe(&[&topics.telemetry]).unwrap();
        let first = bare.recv().await.unwrap();
        drop(first);
        let (start, cpu0) = (Instant::now(), cpu_now());
        for _ in 1..n {
            bare.recv().await.unwrap();
        }
        let bare_secs = start.elapsed().as_secs_f64();
        let bare_rate = (n - 1) as f64 / bare_secs;
        let bare_cpu = cpu_use(cpu0, cpu_now(), n - 1, bare_secs);
        drop(bare);
        // The pipeline's source alone (batches into one buffer each, no
        // processing): what the pipeline could reach if processing were free.
        let mut source = KafkaSource::new(
            &brokers,
            &format!("{prefix}-source-{round}"),
            &topics.telemetry,
        )
        .unwrap();
        let mut read = source
            .next_batch(DEFAULT_BATCH)
            .await
            .unwrap()
            .map_or(0, |b| b.len());
        let start = Instant::now();
        let first = read;
        while read < n {
            read += source
                .next_batch(DEFAULT_BATCH)
                .await
                .unwrap()
                .map_or(0, |b| b.len());
        }
        let source_rate = (read - first) as f64 / start.elapsed().as_secs_f64();
        drop(source);
        // The pipeline: decode, zones, windows, re-solves, commits, with
        // its reader task fetching ahead (Pipeline::run).
        let source = KafkaSource::new(
            &brokers,
            &format!("{prefix}-pipe-{round}"),
            &topics.telemetry,
        )
        .unwrap();
        let started: Arc<Mutex<Option<Started>>> = Arc::new(Mutex::new(None));
        let source = Limited {
            inner: source,
            left: n,
            started: started.clone(),
        };
        let mut pipeline = Pipeline::new(
            WindowConfig::tumbling(60_000, 5_000),
            RebalanceConfig::default(),
            zones.clone() as Arc<dyn ZoneMap>,
            Vec::new(),
        )
        .unwrap();
        let stats = pipeline
            .run(Box::new(source), DEFAULT_BATCH, std::future::pending())
            .await
            .unwrap();
        let (first, cpu0) = started.lock().unwrap().unwrap();
        let elapsed = first.elapsed().as_secs_f64();
        let pipe_rate = stats.messages as f64 / elapsed;
        let pipe_cpu = cpu_use(cpu0, cpu_now(), stats.messages as usize, elapsed);
        rows.push((
            bare_rate,
            source_rate,
            pipe_rate,
            pipeline.stats().windows,
            bare_cpu,
            pipe_cpu,
        ));
    }
    println!("\n## Through the broker (tansu, 4 partitions, {n} messages, same topic, same run, 3 rounds)\n");
    println!("| round | bare rdkafka consumer msg/s | pipeline's source alone msg/s | pipeline events/s (decode, zones, windows, re-solve, commits) | source / bare | pipeline / bare | windows | CPU, bare | CPU, pipeline |\n|---|---|---|---|---|---|---|---|---|");
    for (i, (bare, source, pipe, w, bare_cpu, pipe_cpu)) in rows.iter().enumerate() {
        println!(
            "| {} | {bare:.0} | {source:.0} | {pipe:.0} | {:.0}% | {:.0}% | {w} | {bare_cpu} | {pipe_cpu} |",
            i + 1,
            100.0 * source / bare,
            100.0 * pipe / bare
        );
    }
}

/// A source that ends after `left` messages and notes when the first came.
struct Limited<S> {
    inner: S,
    left: usize,
    started: Arc<Mutex<Option<Started>>>,
}

/// When a [`Limited`] source's first batch came, and the CPU used by then.
type Started = (Instant, Option<Cpu>);

impl<S: Source> Source for Limited<S> {
    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Option<Vec<Message>>, String>> {
        Box::pin(async move {
            if self.left == 0 {
                return Ok(None);
            }
            let batch = self.inner.next_batch(max.min(self.left)).await?;
            self.started
                .lock()
                .unwrap()
                .get_or_insert_with(|| (Instant::now(), cpu_now()));
            self.left -= batch.as_ref().map_or(0, Vec::len);
            Ok(batch)
        })
    }
    fn committer(&self) -> Arc<dyn Committer> {
        self.inner.committer()
    }
    fn partitions(&self) -> Option<Vec<i32>> {
        self.inner.partitions()
    }
}

/// Wraps a sink and records, per window, close -> written.
struct Timed<S> {
    inner: S,
    latencies: Arc<Mutex<Vec<f64>>>,
}

impl<S: Sink> Sink for Timed<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn write_window<'a>(&'a mut self, out: &'a WindowOutput) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.inner.write_window(out).await?;
            self.latencies
                .lock()
                .unwrap()
                .push(out.closed_at.elapsed().as_secs_f64() * 1e3);
            Ok(())
        })
    }
    fn write_dead_letters<'a>(
        &'a mut self,
        letters: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), String>> {
        self.inner.write_dead_letters(letters)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn latency_case(
    label: &str,
    zones: Arc<CentroidZones>,
    trips: &[Trip],
    url: &str,
    vehicles: usize,
) -> String {
    let store = Store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    // Event time: 30 windows of 60 s, `vehicles` reporting about every 30 s.
    let per_hour = vehicles as f64 * 120.0 * 1.5;
    let events = generate(
        &zones,
        trips,
        (per_hour / 60.0 * 31.0) as usize,
        vehicles,
        per_hour,
    );
    let sink = stream::StoreSink {
        store,
        cache: Cache::memory(),
        source: "bench".into(),
    };
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(Timed {
        inner: sink,
        latencies: latencies.clone(),
    })];
    let fleet_events: Vec<Event> = events
        .into_iter()
        .map(|mut e| {
            e.fleet_id = format!("bench-{}-{}", label.replace(' ', "-"), std::process::id());
            e
        })
        .collect();
    let mut pipeline = Pipeline::new(
        WindowConfig::tumbling(60_000, 5_000),
        RebalanceConfig::default(),
        zones.clone() as Arc<dyn ZoneMap>,
        sinks,
    )
    .unwrap();
    pipeline
        .run(
            Box::new(ReplaySource::new(&fleet_events, None)),
            8192,
            std::future::pending(),
        )
        .await
        .unwrap();
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    format!(
        "| {label} | {} | {} | {:.1} | {:.1} |",
        zones.zones().len(),
        l.len(),
        percentile(&l, 0.5),
        percentile(&l, 0.99)
    )
}

async fn latency() {
    let (nyc_zones, nyc_trips) = nyc();
    let (big, big_trips) = synthetic(5000);
    let dir = std::env::temp_dir().join(format!("fleet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = format!("sqlite://{}", dir.join("bench.db").display());
    let pg = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pg_up = Store::connect(&pg).await.is_ok();
    println!("\n## Window close -> recommendations persisted (60 s windows, warm re-solve + diff + store)\n");
    println!("| store, zones | zones | windows | p50 ms | p99 ms |\n|---|---|---|---|---|");
    println!(
        "{}",
        latency_case("SQLite, NYC", nyc_zones.clone(), &nyc_trips, &sqlite, 3000).await
    );
    println!(
        "{}",
        latency_case(
            "SQLite, synthetic",
            big.clone(),
            &big_trips,
            &sqlite,
            20_000
        )
        .await
    );
    if pg_up {
        println!(
            "{}",
            latency_case("PostgreSQL, NYC", nyc_zones, &nyc_trips, &pg, 3000).await
        );
        println!(
            "{}",
            latency_case("PostgreSQL, synthetic", big, &big_trips, &pg, 20_000).await
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test` a small smoke run.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if !std::env::args().any(|a| a == "--bench") {
        embedded(20_000, 1);
        let (zones, trips) = nyc();
        let dir = std::env::temp_dir().join(format!("fleet-bench-smoke-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("smoke.db").display());
        println!(
            "{}",
            runtime.block_on(latency_case("SQLite, NYC", zones, &trips, &url, 200))
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    // `cargo bench --bench pipeline -- embedded` (or broker, latency) runs one part.
    let only: Vec<String> = std::env::args()
        .filter(|a| ["embedded", "broker", "latency"].contains(&a.as_str()))
        .collect();
    let part = |name: &str| only.is_empty() || only.iter().any(|a| a == name);
    if part("embedded") {
        embedded(1_000_000, 5);
    }
    if part("broker") {
        runtime.block_on(broker());
    }
    if part("latency") {
        runtime.block_on(latency());
    }
}
