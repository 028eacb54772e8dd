//! A cache for hot reads: Redis when `REDIS_ADDR` is set, an in-process
//! map otherwise. Values are JSON text with a time to live; writers
//! invalidate the keys they make stale. A cache failure is never an error
//! for the caller: reads fall through to the database. An invalidation
//! that fails (Redis down or unreachable) is owed: it is retried before the
//! cache is read again, and until it succeeds reads skip the cache, so an
//! outage never leaves a stale entry to be served afterwards.

use std::collections::{BTreeSet, HashMap};
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
    Redis(RedisCache),
}

/// Redis, and the invalidations it still owes.
#[derive(Clone)]
pub struct RedisCache {
    manager: ConnectionManager,
    owed: Arc<Mutex<Owed>>,
}

/// Invalidations that failed: keys to delete, generation scopes to bump.
#[derive(Default)]
struct Owed {
    keys: BTreeSet<String>,
    scopes: BTreeSet<String>,
}

/// How long one Redis command or connection attempt may take: a cache that
/// does not answer must not hold up a request (reads then use the database).
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

impl RedisCache {
    fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    fn owed(&self) -> std::sync::MutexGuard<'_, Owed> {
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pays what is owed; true when nothing is owed any more (the cache
    /// may be used).
    async fn settle(&self) -> bool {
        let (keys, scopes) = {
            let owed = self.owed();
            if owed.keys.is_empty() && owed.scopes.is_empty() {
                return true;
            }
            (
                owed.keys.iter().cloned().collect::<Vec<_>>(),
                owed.scopes.iter().cloned().collect::<Vec<_>>(),
            )
        };
        let mut pipe = redis::pipe();
        if !keys.is_empty() {
            pipe.del(&keys).ignore();
        }
        for scope in &scopes {
            pipe.incr(generation_key(scope), 1).ignore();
        }
        if pipe.query_async::<()>(&mut self.conn()).await.is_err() {
            return false;
        }
        let mut owed = self.owed();
        for key in &keys {
            owed.keys.remove(key);
        }
        for scope in &scopes {
            owed.scopes.remove(scope);
        }
        owed.keys.is_empty() && owed.scopes.is_empty()
    }
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
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(REDIS_TIMEOUT);
        let manager = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| {
                format!(
                "cannot reach Redis: {e}; check REDIS_ADDR or unset it for the in-process cache"
            )
            })?;
        Ok(Cache::Redis(RedisCache {
            manager,
            owed: Arc::default(),
        }))
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
            Cache::Redis(r) => redis::cmd("PING")
                .query_async::<String>(&mut r.conn())
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
            Cache::Redis(r) => {
                if !r.settle().await {
                    return None;
                }
                r.conn().get::<_, Option<String>>(key).await.ok().flatten()
            }
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
            Cache::Redis(r) => {
                if r.settle().await {
                    let _: Result<(), _> = r.conn().set_ex(key, value, TTL.as_secs()).await;
                }
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
            Cache::Redis(r) => {
                if keys.is_empty() {
                    return;
                }
                let deleted: Result<usize, _> = r.conn().del(keys).await;
                if deleted.is_err() {
                    r.owed().keys.extend(keys.iter().cloned());
                }
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
            Cache::Redis(r) => {
                if !r.settle().await {
                    return None;
                }
                r.conn()
                    .get::<_, Option<u64>>(generation_key(scope))
                    .await
                    .ok()
                    .map(|g| g.unwrap_or(0))
            }
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
            Cache::Redis(r) => {
                let mut pipe = redis::pipe();
                for scope in scopes {
                    pipe.incr(generation_key(scope), 1).ignore();
                }
                let bumped: Result<(), _> = pipe.query_async(&mut r.conn()).await;
                if bumped.is_err() {
                    r.owed()
                        .scopes
                        .extend(scopes.iter().map(|s| (*s).to_owned()));
                }
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
