//! The pipeline against a real Kafka-API broker (`KAFKA_BROKERS`, default
//! 127.0.0.1:9092; `scripts/kafka-broker.sh` starts one, `make test` does
//! so first): telemetry produced to 4 partitions comes out as the same
//! windows as an in-process run, recommendations arrive on their topic, and
//! a service restart resumes from the committed offsets and the last
//! checkpoint with no window lost and no recommendation repeated.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleet_pipeline::kafka::{ensure_topics, producer, send_all, KafkaSink, KafkaSource, Topics};
use fleet_pipeline::nyc::{read_trips, trip_events};
use fleet_pipeline::rebalance::RebalanceConfig;
use fleet_pipeline::runner::Pipeline;
use fleet_pipeline::sink::{MemorySink, Sink};
use fleet_pipeline::source::ReplaySource;
use fleet_pipeline::window::WindowConfig;
use fleet_pipeline::zones::{CentroidZones, ZoneMap, DEFAULT_ZONE_MAX_KM};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

const HOUR: i64 = 3_600_000;

fn pipeline(zones: &Arc<CentroidZones>, sinks: Vec<Box<dyn Sink>>) -> Pipeline {
    Pipeline::new(
        WindowConfig::tumbling(HOUR, 60_000),
        RebalanceConfig::default(),
        zones.clone() as Arc<dyn ZoneMap>,
        sinks,
    )
    .unwrap()
}

/// Resolves once `sink` holds at least `n` windows (checked whenever the
/// pipeline loop polls it, i.e. between batches).
/// Small fetches per partition: the partitions arrive interleaved, so event
/// time (the slowest partition's) advances a few windows at a time and the
/// first life can stop in the middle. With whole-partition fetches, one
/// partition may be read entirely before the next, and every window then
/// closes in one batch.
const INTERLEAVED: &[(&str, &str)] = &[("max.partition.fetch.bytes", "8192")];

async fn windows_reach(sink: MemorySink, n: usize) {
    std::future::poll_fn(|cx| {
        if sink.0.lock().unwrap().windows.len() >= n {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_through_the_broker_survives_a_restart_exactly() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/nyc");
    let zones =
        Arc::new(CentroidZones::from_file(&data.join("zones.csv"), DEFAULT_ZONE_MAX_KM).unwrap());
    let (trips, _) = read_trips(&data.join("trips_2019_03_sample.csv"), zones.zones()).unwrap();
    let start = trips[0].pickup_ms;
    let trips: Vec<_> = trips
        .into_iter()
        .filter(|t| t.pickup_ms < start + 3 * 86_400_000)
        .collect();
    let events = trip_events(&trips, zones.zones(), "nyc");

    // The reference: the same events in process.
    let reference = MemorySink::default();
    let mut p = pipeline(&zones, vec![Box::new(reference.clone())]);
    p.run(
        Box::new(ReplaySource::new(&events, None)),
        256,
        std::future::pending(),
    )
    .await
    .unwrap();
    let reference = reference.collected().windows;
    assert!(reference.len() > 40);

    // Fresh topics (4 partitions), telemetry keyed by vehicle/request id.
    let prefix = format!(
        "t{}",
        fleet_engine::time::format_rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
        )
        .replace([':', '.', '-'], "")
    );
    let topics = Topics::prefixed(&prefix);
    let brokers = brokers();
    ensure_topics(&brokers, &topics.all(), 4)
        .await
        .unwrap_or_else(|e| panic!("{e} (start one with scripts/kafka-broker.sh)"));
    let messages: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (e.id.clone(), e.to_json().into_bytes()))
        .collect();
    let producer = producer(&brokers).unwrap();
    send_all(&producer, &topics.telemetry, &messages)
        .await
        .unwrap();
    // And three messages that are not events.
    let bad = vec![
        ("x".to_string(), b"{oops".to_vec()),
        ("y".into(), vec![0xff, 0xfe]),
        ("z".into(), b"{}".to_vec()),
    ];
    send_all(&producer, &topics.telemetry, &bad).await.unwrap();
    // Event time on every partition must pass the last window's end for it
    // to close (per-partition watermarks): a last vehicle report, two hours
    // after the data, on each partition.
    let last = events.last().unwrap().clone();
    for partition in 0..4 {
        let mut beat = last.clone();
        beat.ts_ms += 2 * HOUR;
        beat.id = format!("heartbeat-{partition}");
        producer
            .send(
                FutureRecord::to(&topics.telemetry)
                    .partition(partition)
                    .key(&beat.id)
                    .payload(&beat.to_json()),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let group = format!("{prefix}-service");
    // First life: stops after a third of the windows.
    let first = MemorySink::default();
    let mut p = pipeline(
        &zones,
        vec![
            Box::new(first.clone()),
            Box::new(KafkaSink::new(&brokers, topics.clone()).unwrap()),
        ],
    );
    let source =
        KafkaSource::with_options(&brokers, &group, &topics.telemetry, INTERLEAVED).unwrap();
    let third = reference.len() / 3;
    let stats = tokio::time::timeout(
        Duration::from_secs(60),
        p.run(Box::new(source), 100, windows_reach(first.clone(), third)),
    )
    .await
    .expect("first life made no progress in 60 s")
    .unwrap();
    let first = first.collected();
    assert!(
        first.windows.len() < reference.len(),
        "the first life stopped too late to test a restart"
    );
    let checkpoint = first.windows.last().unwrap().checkpoint.clone();

    // Second life: same group, from the committed offsets and the checkpoint.
    let second = MemorySink::default();
    let mut p = pipeline(
        &zones,
        vec![
            Box::new(second.clone()),
            Box::new(KafkaSink::new(&brokers, topics.clone()).unwrap()),
        ],
    );
    p.resume_fleet("nyc", checkpoint);
    let source =
        KafkaSource::with_options(&brokers, &group, &topics.telemetry, INTERLEAVED).unwrap();
    let rest = reference.len() - first.windows.len();
    tokio::time::timeout(
        Duration::from_secs(60),
        p.run(Box::new(source), 500, windows_reach(second.clone(), rest)),
    )
    .await
    .expect("second life made no progress in 60 s")
    .unwrap();
    let second = second.collected();

    // Every window exactly once, equal to the in-process run.
    let all: Vec<_> = first.windows.iter().chain(&second.windows).collect();
    assert!(all.len() >= reference.len());
    let all = &all[..reference.len()];
    assert!(all
        .windows(2)
        .all(|w| w[1].window.end_ms - w[0].window.end_ms == HOUR));
    for (i, (a, b)) in all.iter().zip(&reference).enumerate() {
        assert_eq!(a.window, b.window);
        // Equal optima; plans tied in the solver's integer cost units may
        // differ in float rounding (< 0.001 per vehicle moved).
        let moved: u32 = a.plan.moves.iter().map(|m| m.vehicles).sum();
        assert!(
            (a.plan.objective - b.plan.objective).abs() <= 1e-3 * (moved as f64 + 1.0),
            "window {i} (first life has {}): {} vs {}",
            first.windows.len(),
            a.plan.objective,
            b.plan.objective
        );
    }
    // The bad messages are dead letters (in whichever life read them).
    // Dead letters behind an uncommitted event are read again after the
    // restart (sinks store them idempotently, by position): count positions.
    let mut dead: Vec<_> = first
        .dead_letters
        .iter()
        .chain(&second.dead_letters)
        .map(|d| d.position)
        .collect();
    dead.sort();
    dead.dedup();
    assert_eq!(dead.len(), 3, "first life stats {stats:?}");

    // Recommendations: exactly the changed moves of all windows, none twice.
    let expected: usize = first
        .windows
        .iter()
        .chain(&second.windows)
        .map(|w| w.plan.changed.len())
        .sum();
    assert!(expected > 0);
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{prefix}-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&[&topics.recommendations]).unwrap();
    let mut got = Vec::new();
    while got.len() < expected {
        let m = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("recommendations missing")
            .unwrap();
        assert_eq!(m.key(), Some(b"nyc".as_slice()));
        let doc: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        got.push((
            doc["window_end"].as_str().unwrap().to_owned(),
            doc["from_zone"].clone(),
            doc["to_zone"].clone(),
        ));
    }
    // Nothing beyond them arrives.
    assert!(tokio::time::timeout(Duration::from_secs(2), reader.recv())
        .await
        .is_err());
    let mut unique = got.clone();
    unique.sort_by_key(|k| format!("{k:?}"));
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "a recommendation was sent twice");
}

/// A broker restarted without its data (the test broker keeps its log in
/// memory; a Kafka broker whose disk was lost, or a topic re-created, is
/// alike) numbers the new messages from 0 again. The source marks the
/// first message of each partition's new log, so the pipeline does not take
/// the new messages for redeliveries of the old ones, and every one is
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_without_its_data_is_read_as_a_new_log() {
    use fleet_pipeline::source::{Position, Source};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = |arg: &str| {
        let out = std::process::Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-broker.sh"),
        )
        .arg(arg)
        .env("KAFKA_PORT", port.to_string())
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    struct Stop<F: Fn(&str)>(F);
    impl<F: Fn(&str)> Drop for Stop<F> {
        fn drop(&mut self) {
            (self.0)("stop")
        }
    }
    script("start");
    let broker = Stop(script);
    let brokers = format!("127.0.0.1:{port}");
    let topic = "restart.telemetry";
    ensure_topics(&brokers, &[topic], 4).await.unwrap();
    // Not idempotent: the restarted broker forgets producer ids.
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    let messages = |tag: &str, n: usize| -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| (format!("k{i}"), format!("{tag}-{i}").into_bytes()))
            .collect()
    };
    let mut source = KafkaSource::new(&brokers, "restart-group", topic).unwrap();
    let committer = source.committer();
    async fn read(source: &mut KafkaSource, n: usize) -> Vec<fleet_pipeline::source::Message> {
        let mut got = Vec::new();
        while got.len() < n {
            let batch = tokio::time::timeout(Duration::from_secs(60), source.next_batch(1000))
                .await
                .expect("messages within 60 s")
                .unwrap()
                .unwrap();
            got.extend(batch);
        }
        got
    }

    send_all(&producer, topic, &messages("old", 200))
        .await
        .unwrap();
    let old = read(&mut source, 200).await;
    assert!(old.iter().all(|m| !m.log_restarted));
    let mut next: Vec<Position> = Vec::new();
    for m in &old {
        let p = m.position.unwrap();
        match next.iter_mut().find(|n| n.partition == p.partition) {
            Some(n) => n.offset = n.offset.max(p.offset + 1),
            None => next.push(Position {
                partition: p.partition,
                offset: p.offset + 1,
            }),
        }
    }
    // As the pipeline commits: asynchronously.
    committer.commit(&next).await.unwrap();
    // Until the source has read the commit back from the broker.
    next.sort();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut held = source.read_committed().await.unwrap_or_default();
        held.sort();
        if held == next {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "committed {held:?}, want {next:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    (broker.0)("stop");
    (broker.0)("start");
    ensure_topics(&brokers, &[topic], 4).await.unwrap();
    send_all(&producer, topic, &messages("new", 40))
        .await
        .unwrap();
    let new = read(&mut source, 40).await;
    let mut payloads: Vec<String> = new
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    payloads.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("new-{i}")).collect();
    want.sort();
    assert_eq!(payloads, want);
    // The first message of each partition's new log, and only it, is marked.
    for p in 0..4 {
        let marked: Vec<bool> = new
            .iter()
            .filter(|m| m.position.unwrap().partition == p)
            .map(|m| m.log_restarted)
            .collect();
        if !marked.is_empty() {
            assert!(
                marked[0] && marked[1..].iter().all(|m| !m),
                "partition {p}: {marked:?}"
            );
        }
    }
}
