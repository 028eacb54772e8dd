//! Dependency faults: the service runs on its own PostgreSQL, Redis,
//! Kafka-API broker and ClickHouse servers (started here, on free ports, so
//! they can be stopped without disturbing other tests), and each is stopped
//! and restarted in turn while telemetry flows (the test broker keeps its
//! log in memory, so it comes back empty: the service must read the
//! re-created topic as a new log). Throughout, the service
//! never exits; `/health` names what is down and says the pipeline is
//! retrying; afterwards it catches up, and what it stored is exactly what an
//! uninterrupted in-process run computes: every window once, every
//! recommendation once, and every window in ClickHouse once.
//!
//! Needs `initdb`/`pg_ctl` (Debian's postgresql), `redis-server`, and the
//! project's scripts for the broker and ClickHouse (which install them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::Value;

const KEY: &str = "faults-test-admin-key-0123456789";

/// Runs `cmd` (as the postgres user when we are root: initdb refuses root).
fn as_postgres(program: &Path, args: &[&str]) -> std::process::Output {
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A PostgreSQL cluster of our own in a temporary folder.
struct Postgres {
    dir: PathBuf,
    port: u16,
}

fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (Debian package postgresql)")
        .map(|e| e.unwrap().path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions.pop().unwrap()
}

impl Postgres {
    fn init(dir: PathBuf, port: u16) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        let data = dir.join("data");
        as_postgres(
            &pg_bin("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let pg = Postgres { dir, port };
        pg.start();
        pg
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        as_postgres(
            &pg_bin("pg_ctl"),
            &[
                "-D",
                self.dir.join("data").to_str().unwrap(),
                "-o",
                &options,
                "-l",
                self.dir.join("log").to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    fn stop(&self) {
        as_postgres(
            &pg_bin("pg_ctl"),
            &[
                "-D",
                self.dir.join("data").to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pg_ctl"))
            .args([
                "-D",
                self.dir.join("data").to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server of our own (keeps nothing on disk).
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start(&mut self) {
        self.child = Some(
            Command::new("redis-server")
                .args([
                    "--port",
                    &self.port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (Debian package redis-server)"),
        );
        wait_listening(self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The broker or ClickHouse, through the project's own script.
struct Scripted {
    script: &'static str,
    env: Vec<(&'static str, String)>,
}

impl Scripted {
    fn run(&self, arg: &str) {
        let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(self.script))
            .arg(arg)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} {arg}: {}",
            self.script,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn start(&self) {
        self.run("start")
    }
    fn stop(&self) {
        self.run("stop")
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(self.script))
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
    }
}

/// The service process, killed if the test fails before stopping it (a
/// failed run would otherwise leave it running).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `/health`: (HTTP status, document).
fn health(port: u16) -> (u16, Value) {
    http(port, "/health")
}

/// GET `path` with the admin key: (HTTP status, document).
fn http(port: u16, path: &str) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-o", "-", "-w", "\n%{http_code}", "-H"])
        .arg(format!("x-api-key: {KEY}"))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Polls `/health` until `pred` holds for its document (at most `secs`).
fn until_health(port: u16, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, doc) = health(port);
        if pred(&doc) {
            return doc;
        }
        assert!(Instant::now() < deadline, "{what}: last /health {doc}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of the Prometheus counter `name` (0 when absent).
fn metric(port: u16, name: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-s", "-m", "20"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn dependency(doc: &Value, name: &str) -> String {
    doc["dependencies"][name].as_str().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dependency_stopped_and_restarted_in_turn_loses_nothing() {
    let events = nyc_events(7);
    let expected = reference(&events).await;
    let name = unique("faults");
    let tmp = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&tmp).unwrap();

    // Our own servers.
    let pg = Postgres::init(tmp.join("pg"), free_port());
    let database = fresh_database(&pg.url(), "fleet").await;
    let mut redis = Redis {
        port: free_port(),
        child: None,
    };
    redis.start();
    let kafka_port = free_port();
    let broker = Scripted {
        script: "scripts/kafka-broker.sh",
        env: vec![("KAFKA_PORT", kafka_port.to_string())],
    };
    broker.start();
    let brokers = format!("127.0.0.1:{kafka_port}");
    let ch_port = free_port();
    let clickhouse = Scripted {
        script: "scripts/clickhouse-server.sh",
        env: vec![
            ("CLICKHOUSE_HTTP_PORT", ch_port.to_string()),
            ("CLICKHOUSE_TCP_PORT", free_port().to_string()),
            (
                "CLICKHOUSE_DATA_DIR",
                tmp.join("clickhouse").display().to_string(),
            ),
        ],
    };
    clickhouse.start();
    let topics = fresh_topics(&brokers, &name).await;

    let port = free_port();
    let mut service = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_fleet-optimization"))
            .args(["serve", "--port", &port.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DATABASE_URL", &database)
            .env("REDIS_ADDR", format!("127.0.0.1:{}", redis.port))
            .env("KAFKA_BROKERS", &brokers)
            .env("KAFKA_TOPIC_PREFIX", &name)
            .env("KAFKA_GROUP_ID", format!("{name}-service"))
            .env("CLICKHOUSE_ADDR", format!("http://127.0.0.1:{ch_port}"))
            .env("DATA_DIR", &tmp)
            .env("WINDOW_SECONDS", "3600")
            .env("ALLOWED_LATENESS_SECONDS", "60")
            .env("ADMIN_API_KEY", KEY)
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(tmp.join("service.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let alive = |service: &mut KillOnDrop| {
        assert!(
            service.0.try_wait().unwrap().is_none(),
            "the service exited; its log is in {}",
            tmp.display()
        )
    };
    until_health(port, 60, "service up", |d| d["status"] == "ok");

    // Messages produced while the broker is down wait in the producer (in
    // order: one request in flight). Not idempotent: the test broker forgets
    // producer ids when it restarts, and such a producer would time out.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .set("message.timeout.ms", "300000")
        .create()
        .unwrap();
    let pool = sqlx::AnyPool::connect(&database).await.unwrap();
    // Windows ending 3 h before a chunk's last event can close once the
    // chunk is in (every partition has delivered events past them).
    let closable = |last_ts: i64| {
        expected
            .iter()
            .filter(|w| w.end_ms <= last_ts - 3 * HOUR)
            .count()
    };
    let chunks: Vec<&[fleet_pipeline::event::Event]> =
        events.chunks(events.len().div_ceil(6)).collect();
    let mut timeline = Vec::new();
    let started = Instant::now();
    let mut mark = |what: &str| {
        eprintln!("{:>6.1} s  {what}", started.elapsed().as_secs_f64());
        timeline.push((started.elapsed().as_secs_f64(), what.to_owned()));
    };

    // Waits until the service stored `n` windows (it may be mid-outage).
    async fn stored_at_least(pool: &sqlx::AnyPool, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(rows) = sqlx::query("SELECT window_end FROM pipeline_windows")
                .fetch_all(pool)
                .await
            {
                if rows.len() >= n {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {n} windows after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    // 1. All up.
    send(&producer, &topics.telemetry, chunks[0]).await;
    stored_at_least(&pool, closable(chunks[0].last().unwrap().ts_ms), 60).await;
    mark("all up: windows flowing");

    // 2. PostgreSQL down: the window writes fail and are retried.
    pg.stop();
    mark("PostgreSQL stopped");
    send(&producer, &topics.telemetry, chunks[1]).await;
    let doc = until_health(port, 60, "database down, pipeline retrying", |d| {
        dependency(d, "database") == "down" && dependency(d, "pipeline") == "retrying"
    });
    let (status, _) = health(port);
    assert_eq!(status, 503, "{doc}");
    let (status, problem) = http(port, "/api/v1/fleet-optimization/runs?fleet_id=nyc");
    assert_eq!(status, 503, "a read without its database: {problem}");
    assert!(problem["detail"].is_string(), "{problem}");
    alive(&mut service);
    pg.start();
    mark("PostgreSQL restarted");
    stored_at_least(&pool, closable(chunks[1].last().unwrap().ts_ms), 60).await;
    until_health(port, 60, "healthy after PostgreSQL", |d| {
        d["status"] == "ok"
    });
    mark("caught up after PostgreSQL");

    // 3. Redis down: reads fall back to the database, windows keep coming.
    redis.stop();
    mark("Redis stopped");
    until_health(port, 30, "redis down", |d| dependency(d, "redis") == "down");
    send(&producer, &topics.telemetry, chunks[2]).await;
    stored_at_least(&pool, closable(chunks[2].last().unwrap().ts_ms), 60).await;
    let (status, runs) = http(port, "/api/v1/fleet-optimization/runs?fleet_id=nyc");
    assert_eq!(status, 200, "{runs}");
    alive(&mut service);
    redis.start();
    mark("Redis restarted (windows kept coming while it was down)");
    until_health(port, 60, "healthy after Redis", |d| d["status"] == "ok");

    // 4. ClickHouse down: analytics writes fail and are retried.
    clickhouse.stop();
    mark("ClickHouse stopped");
    send(&producer, &topics.telemetry, chunks[3]).await;
    until_health(port, 60, "clickhouse down, pipeline retrying", |d| {
        dependency(d, "clickhouse") == "down" && dependency(d, "pipeline") == "retrying"
    });
    alive(&mut service);
    clickhouse.start();
    mark("ClickHouse restarted");
    stored_at_least(&pool, closable(chunks[3].last().unwrap().ts_ms), 90).await;
    until_health(port, 60, "healthy after ClickHouse", |d| {
        d["status"] == "ok"
    });
    mark("caught up after ClickHouse");

    // 5. The broker stopped and restarted. The test broker keeps its log in
    // memory: it comes back empty, without the topics or the group's
    // offsets (a Kafka broker keeps them on disk), and numbers messages from
    // 0 again. What was sent before the stop has been read by then (the
    // broker would lose the rest); the service must read the re-created
    // topic as a new log, not skip its low offsets as already read.
    send(&producer, &topics.telemetry, chunks[4]).await;
    let sent: usize = chunks[..5].iter().map(|c| c.len()).sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(port, "pipeline_messages_total") - metric(port, "pipeline_redelivered_total")
        < sent as f64
    {
        assert!(
            Instant::now() < deadline,
            "the service did not read all sent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stored_at_least(&pool, closable(chunks[4].last().unwrap().ts_ms), 60).await;
    broker.stop();
    mark("broker stopped");
    until_health(port, 30, "kafka down", |d| dependency(d, "kafka") == "down");
    tokio::time::sleep(Duration::from_secs(5)).await; // an outage, not a blip
    alive(&mut service);
    broker.start();
    fresh_topics(&brokers, &name).await;
    mark("broker restarted empty, topics re-created");
    until_health(port, 60, "healthy after the broker", |d| {
        d["status"] == "ok"
    });

    // 6. The rest, and the heartbeats that close the last windows.
    send(&producer, &topics.telemetry, chunks[5]).await;
    send_heartbeats(&producer, &topics.telemetry, events.last().unwrap()).await;
    let counters = || {
        format!(
            "read {} messages ({} redelivered), {} log restarts",
            metric(port, "pipeline_messages_total"),
            metric(port, "pipeline_redelivered_total"),
            metric(port, "pipeline_log_restarts_total")
        )
    };
    mark(&format!("the rest sent; {}", counters()));
    stored_at_least(&pool, expected.len(), 90).await;
    mark(&counters());
    mark("all windows stored");
    assert!(
        metric(port, "pipeline_log_restarts_total") >= 1.0,
        "the re-created topic was read as a new log"
    );
    alive(&mut service);
    terminate(service.0.id());
    assert!(service.0.wait().unwrap().success());

    let got = stored(&pool).await;
    assert_same(&got, &expected);
    // ClickHouse holds every window once (inserts carry dedup tokens).
    let out = Command::new("curl")
        .args(["-sf", "--data-binary"])
        .arg("SELECT count(), uniqExact(window_end) FROM solves WHERE fleet_id = 'nyc' FORMAT TSV")
        .arg(format!("http://127.0.0.1:{ch_port}/"))
        .output()
        .unwrap();
    let counts = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        counts,
        format!("{n}\t{n}", n = expected.len()),
        "ClickHouse solves rows"
    );
    eprintln!(
        "{} windows, each once, {} recommendations, none proposed twice; timeline: {timeline:?}",
        got.windows.len(),
        got.recommendations
    );
    drop(pool);
    drop(pg); // stopped while its data directory still exists
    let _ = std::fs::remove_dir_all(&tmp);
}
