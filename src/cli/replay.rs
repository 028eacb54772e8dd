//! `fleet-optimization replay`: telemetry from the bundled NYC trips (or a
//! generator drawing from their zone-to-zone and time-of-day distribution),
//! either through the pipeline in process (printing what came out) or onto
//! Kafka's `fleet.telemetry` (`--to-kafka`, for load and integration).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use fleet_pipeline::event::Event;
use fleet_pipeline::kafka::{ensure_topics, producer, send_all};
use fleet_pipeline::nyc::{read_trips, trip_events, Generator};
use fleet_pipeline::rebalance::RebalanceConfig;
use fleet_pipeline::runner::Pipeline;
use fleet_pipeline::sink::{MemorySink, Sink};
use fleet_pipeline::source::ReplaySource;
use fleet_pipeline::window::WindowConfig;
use fleet_pipeline::zones::{CentroidZones, ZoneMap, DEFAULT_ZONE_MAX_KM};
use serde_json::json;

use super::{print_json, Failure};

/// Replay trips as telemetry: through the pipeline in process (default;
/// prints windows, recommendations and throughput as JSON) or to Kafka.
#[derive(Debug, Args)]
#[command(after_help = "Examples (from the repository root):\n  \
    fleet-optimization replay --window-seconds 3600\n  \
    KAFKA_BROKERS=127.0.0.1:9092 fleet-optimization replay --to-kafka --generate 1000000 --rate 50000")]
pub struct ReplayArgs {
    /// Trips CSV (TLC columns pickup, dropoff, pickup_zone, dropoff_zone).
    #[arg(long, default_value = "data/nyc/trips_2019_03_sample.csv")]
    pub trips: PathBuf,
    /// Zone file (zone_id,name,lat,lon); trips join it by zone name.
    #[arg(long, default_value = "data/nyc/zones.csv")]
    pub zones: PathBuf,
    /// Fleet id of the events.
    #[arg(long, default_value = "nyc")]
    pub fleet: String,
    /// Instead of the trips themselves, this many synthetic events drawn
    /// from their distribution.
    #[arg(long)]
    pub generate: Option<u64>,
    /// Synthetic fleet size (with --generate).
    #[arg(long, default_value_t = 2000)]
    pub vehicles: usize,
    /// Event-time density of generated events, per hour of event time.
    #[arg(long, default_value_t = 360_000.0)]
    pub events_per_hour: f64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Send to KAFKA_BROKERS (topic fleet.telemetry, key = vehicle or request id).
    #[arg(long)]
    pub to_kafka: bool,
    /// With --to-kafka: messages per second (0 = as fast as the broker takes them).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// In process: window length in seconds of event time.
    #[arg(long, default_value_t = 300)]
    pub window_seconds: u32,
}

fn events(args: &ReplayArgs, zones: &CentroidZones) -> Result<Vec<Event>, Failure> {
    let (trips, counts) = read_trips(&args.trips, zones.zones()).map_err(Failure::Other)?;
    if trips.is_empty() {
        return Err(Failure::Usage(format!(
            "no usable trip in {} ({counts:?}); check that its zone names match {}",
            args.trips.display(),
            args.zones.display()
        )));
    }
    match args.generate {
        None => Ok(trip_events(&trips, zones.zones(), &args.fleet)),
        Some(n) => {
            let start = trips[0].pickup_ms;
            let mut g = Generator::new(
                trips,
                zones.zones().to_vec(),
                &args.fleet,
                args.vehicles,
                start,
                args.events_per_hour,
                args.seed,
            )
            .map_err(Failure::Usage)?;
            Ok((0..n).map(|_| g.next_event()).collect())
        }
    }
}

pub fn run(args: &ReplayArgs) -> Result<(), Failure> {
    let zones = Arc::new(
        CentroidZones::from_file(&args.zones, DEFAULT_ZONE_MAX_KM).map_err(Failure::Other)?,
    );
    let events = events(args, &zones)?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        if args.to_kafka {
            to_kafka(args, &events).await
        } else {
            in_process(args, zones, &events).await
        }
    })
}

async fn to_kafka(args: &ReplayArgs, events: &[Event]) -> Result<(), Failure> {
    let brokers = std::env::var("KAFKA_BROKERS")
        .map_err(|_| Failure::Usage("--to-kafka needs KAFKA_BROKERS (host:port,...)".into()))?;
    let topics = crate::stream::topics_from_env();
    ensure_topics(&brokers, &topics.all(), 4)
        .await
        .map_err(Failure::Other)?;
    let producer = producer(&brokers).map_err(Failure::Other)?;
    let start = Instant::now();
    // Chunks of 10 ms worth of messages at the requested rate.
    let chunk = if args.rate > 0.0 {
        ((args.rate / 100.0).ceil() as usize).max(1)
    } else {
        10_000
    };
    let mut sent = 0usize;
    for part in events.chunks(chunk) {
        let messages: Vec<(String, Vec<u8>)> = part
            .iter()
            .map(|e| (e.id.clone(), e.to_json().into_bytes()))
            .collect();
        send_all(&producer, &topics.telemetry, &messages)
            .await
            .map_err(Failure::Other)?;
        sent += part.len();
        if args.rate > 0.0 {
            let due = start + std::time::Duration::from_secs_f64(sent as f64 / args.rate);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    print_json(
        &json!({"topic": topics.telemetry, "sent": sent, "seconds": seconds,
                       "messages_per_second": sent as f64 / seconds}),
    )
}

async fn in_process(
    args: &ReplayArgs,
    zones: Arc<CentroidZones>,
    events: &[Event],
) -> Result<(), Failure> {
    let sink = MemorySink::default();
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(sink.clone())];
    let window = WindowConfig::tumbling(i64::from(args.window_seconds) * 1000, 30_000);
    let mut pipeline = Pipeline::new(
        window,
        RebalanceConfig::default(),
        zones as Arc<dyn ZoneMap>,
        sinks,
    )
    .map_err(Failure::Usage)?;
    let start = Instant::now();
    let stats = pipeline
        .run(
            Box::new(ReplaySource::new(events, None)),
            8192,
            std::future::pending(),
        )
        .await
        .map_err(Failure::Other)?;
    let seconds = start.elapsed().as_secs_f64();
    let out = sink.collected();
    let solve: Vec<f64> = out.windows.iter().map(|w| w.plan.solve_ms).collect();
    let last = out.windows.last();
    print_json(&json!({
        "stats": stats,
        "seconds": seconds,
        "events_per_second": stats.events as f64 / seconds,
        "mean_solve_ms": solve.iter().sum::<f64>() / solve.len().max(1) as f64,
        "last_window": last.map(|w| json!({
            "end": fleet_engine::time::format_rfc3339(w.window.end_ms),
            "objective": w.plan.objective,
            "unmet": w.plan.unmet,
            "moves": w.plan.moves,
        })),
    }))
}
