//! Crash safety: the service (`fleet-optimization serve`, PostgreSQL, the
//! real Kafka-API broker) is killed with SIGKILL ten times at random moments
//! while telemetry flows in. After the last restart has caught up, every
//! window is stored exactly once, with the objective an uninterrupted
//! in-process run computes, and every recommendation exactly once: the
//! same moves as that run, none repeated, none lost.
//!
//! Needs the broker (`KAFKA_BROKERS`, default 127.0.0.1:9092;
//! `scripts/kafka-broker.sh`) and PostgreSQL (`TEST_DATABASE_URL`, default
//! the local `test` database; a fresh database is created next to it).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const KILLS: usize = 10;

struct Service {
    database: String,
    brokers: String,
    prefix: String,
    data_dir: std::path::PathBuf,
    port: u16,
}

impl Service {
    /// Starts a life, its log (stderr) going to `log`.
    fn start(&self, log: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_fleet-optimization"))
            .args(["serve", "--port", &self.port.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DATABASE_URL", &self.database)
            .env("KAFKA_BROKERS", &self.brokers)
            .env("KAFKA_TOPIC_PREFIX", &self.prefix)
            .env("KAFKA_GROUP_ID", format!("{}-service", self.prefix))
            .env("DATA_DIR", &self.data_dir)
            .env("WINDOW_SECONDS", "3600")
            .env("ALLOWED_LATENESS_SECONDS", "60")
            .env("ADMIN_API_KEY", "crash-test-admin-key-0123456789")
            .env("LOG_LEVEL", "warn")
            .env_remove("REDIS_ADDR")
            .env_remove("CLICKHOUSE_ADDR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.data_dir.join(log)).unwrap())
            .spawn()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_kill_9s_while_telemetry_flows_lose_and_repeat_nothing() {
    let events = nyc_events(7);
    let expected = reference(&events).await;
    assert!(expected.len() > 150);

    let prefix = unique("crash");
    let brokers = brokers();
    let topics = fresh_topics(&brokers, &prefix).await;
    let data_dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&data_dir).unwrap();
    let service = Service {
        database: fresh_database(&postgres_url(), &prefix).await,
        brokers: brokers.clone(),
        prefix,
        data_dir: data_dir.clone(),
        port: free_port(),
    };

    // Telemetry flows for most of the kill phase (spread over ~90 s), then
    // the heartbeats that let event time pass the last window.
    let telemetry = topics.telemetry.clone();
    let producing = tokio::spawn(async move {
        let producer = fleet_pipeline::kafka::producer(&brokers).unwrap();
        let chunks = events.chunks(20).count() as u32;
        let every = Duration::from_secs(90) / chunks;
        for chunk in events.chunks(20) {
            send(&producer, &telemetry, chunk).await;
            tokio::time::sleep(every).await;
        }
        send_heartbeats(&producer, &telemetry, events.last().unwrap()).await;
    });

    // Ten lives. A restarted member gets its partitions only once the group
    // has dropped the killed one (the 10 s session timeout), so each life
    // waits until it has stored a window (at most 30 s), then is killed
    // with SIGKILL a random 0-1 s later (seeded: the same moments every
    // run), in the middle of consuming and writing windows.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&service.database).await.unwrap();
    let count = || async {
        // (0 before the first life has created the tables)
        sqlx::query("SELECT window_end FROM pipeline_windows")
            .fetch_all(&pool)
            .await
            .map_or(0, |rows| rows.len())
    };
    let mut rng = fleet_engine::synthetic::Rng::new(42);
    let mut lives = Vec::new();
    for n in 0..KILLS {
        let before = count().await;
        let mut child = service.start(&format!("life-{n}.log"));
        let born = Instant::now();
        while count().await == before
            && before < expected.len()
            && born.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let life = Duration::from_millis(rng.next_u64() % 1000);
        tokio::time::sleep(life).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        lives.push((born.elapsed().as_millis(), before, count().await));
    }
    producing.await.unwrap();
    eprintln!("lives (ms, windows stored before, after): {lives:?}");
    // The kills came while windows were being written, not before.
    let progressed = lives
        .iter()
        .filter(|(_, before, after)| after > before)
        .count();
    assert!(progressed >= 5, "too few lives stored windows: {lives:?}");

    // The last life catches up, then stops cleanly.
    let mut child = service.start("last-life.log");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let windows = stored(&pool).await.windows;
        if windows.len() >= expected.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caught up to {} of {} windows",
            windows.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    terminate(child.id());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{status}; the log is {}",
        data_dir.join("last-life.log").display()
    );

    let got = stored(&pool).await;
    assert_same(&got, &expected);
    eprintln!(
        "{} windows, each exactly once, and {} recommendations, none proposed twice, after {KILLS} kills",
        got.windows.len(),
        got.recommendations
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}
