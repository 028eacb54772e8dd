//! The Redis cache when Redis fails: against a private, real redis-server
//! (started here so it can be paused and stopped without disturbing other
//! tests). An invalidation that fails is owed and paid before the cache is
//! read again; a stopped Redis costs cache hits, never errors or stale data.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleet_api::cache::Cache;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server on `port` keeping nothing on disk; killed on drop.
struct RedisServer(Child);

impl RedisServer {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer(child)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn raw(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await
}

#[tokio::test]
async fn a_failed_invalidation_is_paid_before_the_cache_is_read_again() {
    let port = free_port();
    let _server = RedisServer::start(port);
    let cache = Cache::redis(&format!("127.0.0.1:{port}")).await.unwrap();
    cache.set("k", "old").await;
    assert_eq!(cache.get("k").await.as_deref(), Some("old"));
    let generation = cache.generation("scope").await.unwrap();

    // Writes are refused for 3 s while reads still answer: the DEL and the
    // generation bump time out, but the stale entry is still in Redis.
    raw(port, &["CLIENT", "PAUSE", "3000", "WRITE"])
        .await
        .unwrap();
    let paused = Instant::now();
    cache.invalidate(&["k".to_owned()]).await;
    cache.bump("scope").await;
    assert!(
        paused.elapsed() < Duration::from_secs(2),
        "a stalled Redis held up the caller"
    );
    let still_there = raw(port, &["GET", "k"]).await.unwrap();
    assert_eq!(still_there, redis::Value::BulkString(b"old".to_vec()));
    // While the invalidation is owed, the cache is not used: no stale read.
    assert_eq!(cache.get("k").await, None);
    assert_eq!(cache.generation("scope").await, None);

    // Once Redis takes writes again, the next read pays what is owed first.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(g) = cache.generation("scope").await {
            // At least once: a timed-out attempt may still run when the
            // pause ends (a bump more only skips a generation, never reuses one).
            assert!(g > generation, "the owed bump was not made");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the owed invalidation was never paid"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(raw(port, &["GET", "k"]).await.unwrap(), redis::Value::Nil);
    assert_eq!(cache.get("k").await, None);
    cache.set("k", "new").await;
    assert_eq!(cache.get("k").await.as_deref(), Some("new"));
}

#[tokio::test]
async fn a_stopped_redis_costs_hits_not_errors_and_is_used_again_after_restart() {
    let port = free_port();
    let server = RedisServer::start(port);
    let cache = Cache::redis(&format!("127.0.0.1:{port}")).await.unwrap();
    cache.set("k", "v").await;
    assert!(cache.ping().await);
    drop(server);

    let down = Instant::now();
    assert!(!cache.ping().await);
    assert_eq!(cache.get("k").await, None);
    cache.set("k", "v2").await; // dropped, not an error
    cache.invalidate(&["k".to_owned()]).await; // owed
    assert!(
        down.elapsed() < Duration::from_secs(5),
        "a stopped Redis held up callers"
    );

    let _server = RedisServer::start(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cache.ping().await {
        assert!(Instant::now() < deadline, "the cache never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cache.set("k", "v3").await;
    assert_eq!(cache.get("k").await.as_deref(), Some("v3"));
}
