//! Graceful shutdown of `fleet-optimization serve` (embedded SQLite, the
//! real Kafka-API broker): on SIGTERM a request already in flight is still
//! answered, the pipeline finishes its batch and commits its offsets
//! exactly up to the first event an open window still needs, and the
//! process exits 0.
//!
//! Needs the broker (`KAFKA_BROKERS`, default 127.0.0.1:9092;
//! `scripts/kafka-broker.sh`).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fleet_pipeline::event::decode;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::Row;

const KEY: &str = "shutdown-test-admin-key-0123456789";

/// Every message of `topic`'s partition `p` up to its end: (offset, event time).
fn partition_times(brokers: &str, topic: &str, p: i32) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks(topic, p, Duration::from_secs(10))
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, p, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < high {
        assert!(
            Instant::now() < deadline,
            "partition {p}: read {} of {high}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let ts = decode(m.payload().unwrap(), i64::MAX / 2).unwrap().ts_ms;
            out.push((m.offset(), ts));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_the_request_in_flight_commits_offsets_and_exits_0() {
    let events = nyc_events(2);
    let prefix = unique("shutdown");
    let brokers = brokers();
    let topics = fresh_topics(&brokers, &prefix).await;
    let kafka = fleet_pipeline::kafka::producer(&brokers).unwrap();
    send(&kafka, &topics.telemetry, &events).await;
    send_heartbeats(&kafka, &topics.telemetry, events.last().unwrap()).await;

    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let group = format!("{prefix}-service");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleet-optimization"))
        .args(["serve", "--port", &port.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATA_DIR", &dir)
        .env("KAFKA_BROKERS", &brokers)
        .env("KAFKA_TOPIC_PREFIX", &prefix)
        .env("KAFKA_GROUP_ID", &group)
        .env("WINDOW_SECONDS", "3600")
        .env("ADMIN_API_KEY", KEY)
        .env("LOG_LEVEL", "info")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_ADDR")
        .env_remove("CLICKHOUSE_ADDR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log, line by line, for the test to wait on.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let wait_for_log = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?} within 60 s"),
            }
        }
    };

    // Every window of the data is stored before the stop.
    let url = format!("sqlite://{}", dir.join("fleet-optimization.db").display());
    sqlx::any::install_default_drivers();
    let deadline = Instant::now() + Duration::from_secs(120);
    let expected_windows = {
        let first = events[0].ts_ms / HOUR;
        let last = events.last().unwrap().ts_ms / HOUR;
        (last - first + 1) as usize
    };
    loop {
        if let Ok(pool) = sqlx::AnyPool::connect(&url).await {
            if let Ok(row) = sqlx::query(
                "SELECT COUNT(*), MAX(window_end) FROM pipeline_windows WHERE fleet_id = 'nyc'",
            )
            .fetch_one(&pool)
            .await
            {
                let n: i64 = row.get(0);
                pool.close().await;
                if n as usize >= expected_windows {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "the windows were not all stored");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A request in flight: its head and half its body are sent...
    let body = serde_json::json!({
        "fleet_id": "nyc",
        "name": "in flight at shutdown",
        "problem": serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manhattan.json")
            )
            .unwrap()
        )
        .unwrap(),
    })
    .to_string();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "POST /api/v1/fleet-optimization/runs HTTP/1.1\r\nhost: localhost\r\n\
         content-type: application/json\r\nx-api-key: {KEY}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let (head, tail) = body.as_bytes().split_at(body.len() / 2);
    conn.write_all(head).unwrap();
    conn.flush().unwrap();
    // ...then SIGTERM; once the service says it is stopping, the rest.
    terminate(child.id());
    wait_for_log("shutting down");
    conn.write_all(tail).unwrap();
    let mut response = String::new();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201") || response.starts_with("HTTP/1.1 202"),
        "the request in flight was not answered: {response}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status}");

    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let closed_until: i64 =
        sqlx::query("SELECT MAX(window_end) FROM pipeline_windows WHERE fleet_id = 'nyc'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
    // Offsets: on every partition, committed exactly up to the first event
    // of the first open window (everything before it is in stored windows).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..4 {
        list.add_partition(&topics.telemetry, p);
    }
    let committed: BTreeMap<i32, Offset> = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    for p in 0..4 {
        let times = partition_times(&brokers, &topics.telemetry, p);
        let first_open = times
            .iter()
            .find(|(_, ts)| *ts >= closed_until)
            .map(|(offset, _)| *offset)
            .unwrap();
        assert_eq!(
            committed[&p],
            Offset::Offset(first_open),
            "partition {p}: committed {:?}, first event of an open window at {first_open}",
            committed[&p]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
