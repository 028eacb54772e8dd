//! A cache for hot reads: Redis when `REDIS_ADDR` is set, an in-process
//! map otherwise. Values are JSON text with a time to live; writers
//! invalidate the keys they make stale. A cache failure is never an error
//! for the caller: reads fall through to the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

/// How long an entry lives at most.
pub const TTL: Duration = Duration::from_secs(300);

/// Largest number of entries the in-process cache keeps.
const MEMORY_CAPACITY: usize = 10_000;

#[derive(Clone)]
pub enum Cache {
    Memory(Arc<MemoryCache>),
    Redis(ConnectionManager),
}

/// The in-process cache: entries with expiry, and generation counters that
/// never expire (see [`Cache::generation`]).
#[derive(Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, (String, Instant)>>,
    generations: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl Cache {
    /// The in-process cache.
    pub fn memory() -> Self {
        Cache::Memory(Arc::new(MemoryCache::default()))
    }

    /// Redis at `addr` (`redis://host:port` or `host:port`).
    pub async fn redis(addr: &str) -> Result<Self, String> {
        let url = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("redis://{addr}")
        };
        let client =
            redis::Client::open(url).map_err(|e| format!("REDIS_ADDR is not usable: {e}"))?;
        let manager = client.get_connection_manager().await.map_err(|e| {
            format!(
                "cannot reach Redis: {e}; check REDIS_ADDR or unset it for the in-process cache"
            )
        })?;
        Ok(Cache::Redis(manager))
    }

    /// `embedded` or `redis`, as `/health` reports it.
    pub fn kind(&self) -> &'static str {
        match self {
            Cache::Memory(_) => "embedded",
            Cache::Redis(_) => "redis",
        }
    }

    /// Whether the cache answers (the in-process one always does).
    pub async fn ping(&self) -> bool {
        match self {
            Cache::Memory(_) => true,
            Cache::Redis(m) => redis::cmd("PING")
                .query_async::<String>(&mut m.clone())
                .await
                .is_ok(),
        }
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        match self {
            Cache::Memory(mem) => {
                let map = mem.entries.lock().ok()?;
                let (value, expires) = map.get(key)?;
                (*expires > Instant::now()).then(|| value.clone())
            }
            Cache::Redis(m) => m.clone().get::<_, Option<String>>(key).await.ok().flatten(),
        }
    }

    pub async fn set(&self, key: &str, value: &str) {
        match self {
            Cache::Memory(mem) => {
                if let Ok(mut map) = mem.entries.lock() {
                    if map.len() >= MEMORY_CAPACITY {
                        let now = Instant::now();
                        map.retain(|_, (_, expires)| *expires > now);
                        if map.len() >= MEMORY_CAPACITY {
                            map.clear();
                        }
                    }
                    map.insert(key.to_owned(), (value.to_owned(), Instant::now() + TTL));
                }
            }
            Cache::Redis(m) => {
                let _: Result<(), _> = m.clone().set_ex(key, value, TTL.as_secs()).await;
            }
        }
    }

    pub async fn invalidate(&self, keys: &[String]) {
        match self {
            Cache::Memory(mem) => {
                if let Ok(mut map) = mem.entries.lock() {
                    for key in keys {
                        map.remove(key);
                    }
                }
            }
            Cache::Redis(m) => {
                let _: Result<usize, _> = m.clone().del(keys).await;
            }
        }
    }
}

impl Cache {
    /// The generation of `scope`: a counter that writers bump and readers
    /// put into their keys, so one bump makes every cached read of the scope
    /// unreachable (for reads whose keys cannot be listed, e.g. metric
    /// queries). Counters never expire, so a generation is never reused.
    /// `None` when Redis does not answer: then do not cache.
    pub async fn generation(&self, scope: &str) -> Option<u64> {
        match self {
            Cache::Memory(mem) => Some(*mem.generations.lock().ok()?.get(scope).unwrap_or(&0)),
            Cache::Redis(m) => m
                .clone()
                .get::<_, Option<u64>>(generation_key(scope))
                .await
                .ok()
                .map(|g| g.unwrap_or(0)),
        }
    }

    /// Makes every cached read of `scope` stale.
    pub async fn bump(&self, scope: &str) {
        self.bump_all(&[scope]).await
    }

    /// Makes every cached read of each of `scopes` stale (one round trip).
    pub async fn bump_all(&self, scopes: &[&str]) {
        match self {
            Cache::Memory(mem) => {
                if let Ok(mut g) = mem.generations.lock() {
                    for scope in scopes {
                        *g.entry((*scope).to_owned()).or_insert(0) += 1;
                    }
                }
            }
            Cache::Redis(m) => {
                let mut pipe = redis::pipe();
                for scope in scopes {
                    pipe.incr(generation_key(scope), 1).ignore();
                }
                let _: Result<(), _> = pipe.query_async(&mut m.clone()).await;
            }
        }
    }
}

fn generation_key(scope: &str) -> String {
    format!("fleet-optimization:generation:{scope}")
}

/// Scope of every cached metric query.
pub const METRICS_SCOPE: &str = "metrics";

/// Cache key of a metric query (its canonical form) at generation `generation`.
pub fn metrics_key(generation: u64, query: &str) -> String {
    format!("fleet-optimization:metrics:{generation}:{query}")
}

/// Scope of the cached run lists of `fleet_id` (or of all fleets): every
/// write to a run bumps both (see `Store::with_cache`).
pub fn runs_scope(fleet_id: Option<&str>) -> String {
    match fleet_id {
        Some(fleet) => format!("runs:fleet:{fleet}"),
        None => "runs".to_owned(),
    }
}

/// Cache key of one page of a run list (`query`: its canonical form).
pub fn runs_list_key(scope: &str, generation: u64, query: &str) -> String {
    format!("fleet-optimization:{scope}:{generation}:{query}")
}

/// Cache key of a (finished) run.
pub fn run_key(run_id: &str) -> String {
    format!("fleet-optimization:run:{run_id}")
}

/// Cache key of a run's result.
pub fn results_key(run_id: &str) -> String {
    format!("fleet-optimization:run:{run_id}:results")
}

/// Cache key of a run's recommendations.
pub fn recommendations_key(run_id: &str) -> String {
    format!("fleet-optimization:run:{run_id}:recommendations")
}
