//! Persistence of runs, results and recommendations in PostgreSQL or SQLite.
//!
//! One code path for both: sqlx's `Any` driver picks the backend from the
//! URL (`postgres://…` or `sqlite://…`), the migrations in `migrations/` use
//! only portable types, and every statement uses numbered `$n` parameters,
//! which both databases understand. Status changes are compare-and-set
//! updates (`… WHERE status = $old`), so two writers can never both move a
//! run out of the same state.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{install_default_drivers, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::cache::{runs_scope, Cache};
use crate::rebalancing::{PlannedMove, Rebalancing, RebalancingStatus};
use crate::run::{Run, RunMode, RunStatus};

/// The columns [`read_run`] reads, in one place (a macro so that `concat!`
/// keeps the statements static, as sqlx requires).
/// A page of `table` in creation order after the cursor `($3, $4)`,
/// filtered by `fleet` (`fleet_id = $1`, a plain equality so PostgreSQL uses
/// the `(fleet_id, created_at, id)` index, or `$1 = $1` for all fleets) and
/// by status `$2` (empty: any), at most `$5` rows.
macro_rules! page_query {
    ($columns:expr, $table:literal, $fleet:literal) => {
        concat!(
            "SELECT ",
            $columns,
            " FROM ",
            $table,
            " WHERE ",
            $fleet,
            " AND ($2 = '' OR status = $2) AND (created_at > $3 OR (created_at = $3 AND id > $4)) \
             ORDER BY created_at, id LIMIT $5"
        )
    };
}

macro_rules! rebalancing_columns {
    () => {
        "id, fleet_id, run_id, status, moves, recommendation_ids, created_at, updated_at"
    };
}

macro_rules! run_columns {
    () => {
        "id, fleet_id, name, mode, status, spec, error, created_at, updated_at"
    };
}

/// Why a store operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// No such row.
    NotFound,
    /// The run is not in a state that allows the change.
    Conflict { from: RunStatus, to: RunStatus },
    /// A state change another resource's state forbids (e.g. a recommendation
    /// already accepted, an operation already completed).
    Refused(String),
    /// The database failed or is unreachable.
    Database(sqlx::Error),
    /// Applying the migrations failed.
    Migration(sqlx::migrate::MigrateError),
    /// A stored row could not be read back (e.g. written by a newer version).
    Corrupt(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound => write!(f, "not found"),
            StoreError::Refused(why) => write!(f, "{why}"),
            StoreError::Conflict { from, to } => {
                write!(f, "a {} run cannot become {}", from.as_str(), to.as_str())
            }
            StoreError::Database(e) => write!(
                f,
                "database error: {e}; check DATABASE_URL and that the database is up"
            ),
            StoreError::Migration(e) => write!(f, "migration failed: {e}"),
            StoreError::Corrupt(e) => write!(f, "stored data unreadable: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            e => StoreError::Database(e),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A new, unique, URL-safe id: time-ordered, with a process-local counter
/// and scrambled bits (time, pid, address) so ids from several processes do
/// not collide.
pub fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Mix the address of a stack value (ASLR) and the pid for cross-process entropy.
    let local = 0u8;
    let salt = (&local as *const u8 as u64) ^ ((std::process::id() as u64) << 32);
    let mixed = (nanos as u64 ^ salt.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ count;
    // Milliseconds, then the counter: ids sort in creation order within a
    // process (recommendations are listed in id order).
    format!(
        "{:012x}{:06x}{:010x}",
        (nanos / 1_000_000) as u64 & 0xffff_ffff_ffff,
        count & 0xff_ffff,
        mixed & 0xff_ffff_ffff
    )
}

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// What a new run is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub fleet_id: String,
    pub name: String,
    pub mode: RunMode,
    pub spec: serde_json::Value,
}

/// A move recommended by a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Recommendation {
    pub id: String,
    pub run_id: String,
    pub fleet_id: String,
    pub from_zone: String,
    pub to_zone: String,
    pub vehicles: i64,
    pub km: f64,
    pub cost: f64,
    pub benefit_per_vehicle: f64,
    pub explanation: String,
    pub status: String,
    pub created_at: i64,
}

/// A page of a list, with the cursor of the next page if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The service's database.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// Told about every run write, so cached run lists go stale.
    cache: Option<Cache>,
    /// Counts the pipeline windows this process stored: the dashboard's
    /// event stream wakes on it instead of polling the database.
    pub(crate) windows_saved: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite://path`; a missing SQLite
    /// file is created).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        // SQLite allows one writer: a single connection serialises writes
        // instead of failing them with "database is locked".
        let max = if backend == Backend::Sqlite { 1 } else { 10 };
        // Fail in seconds, not sqlx's default 30 s, when the database is unreachable.
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(&url)
            .await?;
        Ok(Store {
            pool,
            backend,
            cache: None,
            windows_saved: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// Reports every write to a run to `cache` (bumping the generations of
    /// [`runs_scope`]), here where every such write happens, so a cached run
    /// list is never older than the last write that finished.
    pub fn with_cache(mut self, cache: Cache) -> Self {
        self.cache = Some(cache);
        self
    }

    pub(crate) async fn runs_changed(&self, fleet_id: &str) {
        if let Some(cache) = &self.cache {
            let fleet = runs_scope(Some(fleet_id));
            cache.bump_all(&[&fleet, &runs_scope(None)]).await;
        }
    }

    /// The connection pool, for SQL outside the store (tests, tooling).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the migrations in `migrations/` that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations")
            .run(&self.pool)
            .await
            .map_err(StoreError::Migration)?;
        self.make_audit_log_append_only().await?;
        self.make_event_log().await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn create_run(&self, new: NewRun) -> Result<Run, StoreError> {
        let now = now_ms();
        let run = Run {
            id: new_id(),
            fleet_id: new.fleet_id,
            name: new.name,
            mode: new.mode,
            status: RunStatus::Pending,
            spec: new.spec,
            error: None,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO optimization_runs (id, fleet_id, name, mode, status, spec, error, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)",
        )
        .bind(&run.id)
        .bind(&run.fleet_id)
        .bind(&run.name)
        .bind(run.mode.as_str())
        .bind(run.status.as_str())
        .bind(run.spec.to_string())
        .bind(run.created_at)
        .bind(run.updated_at)
        .execute(&self.pool)
        .await?;
        self.runs_changed(&run.fleet_id).await;
        Ok(run)
    }

    pub async fn get_run(&self, id: &str) -> Result<Run, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM optimization_runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        read_run(&row)
    }

    /// Runs in creation order, optionally of one fleet and/or status, at most
    /// `limit` per page; `cursor` continues after a previous page.
    pub async fn list_runs(
        &self,
        fleet_id: Option<&str>,
        status: Option<RunStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Run>, StoreError> {
        let sql = match fleet_id {
            Some(_) => page_query!(run_columns!(), "optimization_runs", "fleet_id = $1"),
            None => page_query!(run_columns!(), "optimization_runs", "$1 = $1"),
        };
        let status = status.map_or("", RunStatus::as_str);
        let rows = self
            .fetch_page(sql, fleet_id, status, limit, cursor)
            .await?;
        let items = rows.iter().map(read_run).collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit, |r| (r.created_at, r.id.clone())))
    }

    /// Moves run `id` to `next` if its current status allows it; `error`
    /// records why a run failed.
    pub async fn transition(
        &self,
        id: &str,
        next: RunStatus,
        error: Option<&str>,
    ) -> Result<Run, StoreError> {
        let current = self.get_run(id).await?;
        if !current.status.can_become(next) {
            return Err(StoreError::Conflict {
                from: current.status,
                to: next,
            });
        }
        let changed = sqlx::query(
            "UPDATE optimization_runs SET status = $1, error = $2, updated_at = $3 WHERE id = $4 AND status = $5",
        )
        .bind(next.as_str())
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(current.status.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            // Someone else changed it between our read and write.
            let now = self.get_run(id).await?;
            return Err(StoreError::Conflict {
                from: now.status,
                to: next,
            });
        }
        self.runs_changed(&current.fleet_id).await;
        self.get_run(id).await
    }

    /// Changes a pending run's name and spec; a run that has started (or
    /// ended) cannot be edited.
    pub async fn edit_pending_run(
        &self,
        id: &str,
        name: &str,
        spec: &serde_json::Value,
    ) -> Result<Run, StoreError> {
        let changed = sqlx::query(
            "UPDATE optimization_runs SET name = $1, spec = $2, updated_at = $3 WHERE id = $4 AND status = 'pending'",
        )
        .bind(name)
        .bind(spec.to_string())
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            let run = self.get_run(id).await?;
            return Err(StoreError::Refused(format!(
                "a {} run cannot be edited",
                run.status.as_str()
            )));
        }
        let run = self.get_run(id).await?;
        self.runs_changed(&run.fleet_id).await;
        Ok(run)
    }

    /// Removes a run with its result and recommendations.
    pub async fn delete_run(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for statement in [
            "DELETE FROM optimization_recommendations WHERE run_id = $1",
            "DELETE FROM optimization_results WHERE run_id = $1",
        ] {
            sqlx::query(statement).bind(id).execute(&mut *tx).await?;
        }
        let gone = sqlx::query("DELETE FROM optimization_runs WHERE id = $1 RETURNING fleet_id")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(gone) = gone else {
            return Err(StoreError::NotFound);
        };
        tx.commit().await?;
        self.runs_changed(&gone.try_get::<String, _>("fleet_id")?)
            .await;
        Ok(())
    }

    /// Stores a run's result (its solve report) and recommendations at once.
    pub async fn save_outcome(
        &self,
        run_id: &str,
        objective: f64,
        report: &serde_json::Value,
        recommendations: &[Recommendation],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO optimization_results (run_id, objective, report, created_at) VALUES ($1, $2, $3, $4)")
            .bind(run_id)
            .bind(objective)
            .bind(report.to_string())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        for r in recommendations {
            insert_recommendation(&mut tx, r).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A run's stored result: objective and report.
    pub async fn get_result(&self, run_id: &str) -> Result<(f64, serde_json::Value), StoreError> {
        let row =
            sqlx::query("SELECT objective, report FROM optimization_results WHERE run_id = $1")
                .bind(run_id)
                .fetch_one(&self.pool)
                .await?;
        let report: String = row.try_get("report")?;
        let report =
            serde_json::from_str(&report).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok((row.try_get("objective")?, report))
    }

    /// Moves recommendations `ids` of run `run_id` from `proposed` to
    /// `status` (`rejected` or `expired`), all or none.
    pub async fn decide_recommendations(
        &self,
        run_id: &str,
        ids: &[String],
        status: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            let changed = sqlx::query(
                "UPDATE optimization_recommendations SET status = $1, updated_at = $2 \
                 WHERE id = $3 AND run_id = $4 AND status = 'proposed'",
            )
            .bind(status)
            .bind(now_ms())
            .bind(id)
            .bind(run_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                return Err(StoreError::Refused(format!(
                    "recommendation {id} of this run is not proposed"
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// A run's recommendations, in the order they were stored.
    pub async fn list_recommendations(
        &self,
        run_id: &str,
    ) -> Result<Vec<Recommendation>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, run_id, fleet_id, from_zone, to_zone, vehicles, km, cost, benefit_per_vehicle, \
             explanation, status, created_at FROM optimization_recommendations WHERE run_id = $1 ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Recommendation {
                    id: r.try_get("id")?,
                    run_id: r.try_get("run_id")?,
                    fleet_id: r.try_get("fleet_id")?,
                    from_zone: r.try_get("from_zone")?,
                    to_zone: r.try_get("to_zone")?,
                    vehicles: r.try_get("vehicles")?,
                    km: r.try_get("km")?,
                    cost: r.try_get("cost")?,
                    benefit_per_vehicle: r.try_get("benefit_per_vehicle")?,
                    explanation: r.try_get("explanation")?,
                    status: r.try_get("status")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}

/// Stores one recommendation; one with the same id already there is kept
/// (so a replayed write is a no-op). Returns whether it was new.
pub(crate) async fn insert_recommendation(
    conn: &mut sqlx::AnyConnection,
    r: &Recommendation,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO optimization_recommendations (id, run_id, fleet_id, from_zone, to_zone, vehicles, km, \
         cost, benefit_per_vehicle, explanation, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&r.id)
    .bind(&r.run_id)
    .bind(&r.fleet_id)
    .bind(&r.from_zone)
    .bind(&r.to_zone)
    .bind(r.vehicles)
    .bind(r.km)
    .bind(r.cost)
    .bind(r.benefit_per_vehicle)
    .bind(&r.explanation)
    .bind(&r.status)
    .bind(r.created_at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

impl Store {
    /// Creates a planned operation; also returns the runs whose
    /// recommendations it accepted. With `recommendation_ids`, their moves
    /// are taken and each recommendation goes from `proposed` to `accepted`
    /// (all or none: one already taken, or of another fleet, refuses the
    /// whole operation); otherwise `moves` are used as given.
    pub async fn create_rebalancing(
        &self,
        fleet_id: &str,
        run_id: Option<&str>,
        recommendation_ids: &[String],
        moves: Vec<PlannedMove>,
    ) -> Result<(Rebalancing, Vec<String>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut moves = moves;
        let mut runs: Vec<String> = Vec::new();
        let now = now_ms();
        for id in recommendation_ids {
            let row = sqlx::query(
                "SELECT run_id, fleet_id, from_zone, to_zone, vehicles, status FROM optimization_recommendations WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::Refused(format!("no recommendation {id}")))?;
            let (rec_fleet, rec_run): (String, String) =
                (row.try_get("fleet_id")?, row.try_get("run_id")?);
            if rec_fleet != fleet_id || run_id.is_some_and(|r| r != rec_run) {
                return Err(StoreError::Refused(format!("no recommendation {id}")));
            }
            let taken = sqlx::query(
                "UPDATE optimization_recommendations SET status = 'accepted', updated_at = $1 WHERE id = $2 AND status = 'proposed'",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if taken == 0 {
                let status: String = row.try_get("status")?;
                return Err(StoreError::Refused(format!(
                    "recommendation {id} is already {status}"
                )));
            }
            if !runs.contains(&rec_run) {
                runs.push(rec_run.clone());
            }
            let vehicles: i64 = row.try_get("vehicles")?;
            moves.push(PlannedMove {
                from: row.try_get("from_zone")?,
                to: row.try_get("to_zone")?,
                vehicles: vehicles.clamp(0, u32::MAX as i64) as u32,
            });
        }
        let op = Rebalancing {
            id: new_id(),
            fleet_id: fleet_id.to_owned(),
            run_id: run_id.map(str::to_owned),
            status: RebalancingStatus::Planned,
            moves,
            recommendation_ids: recommendation_ids.to_vec(),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO fleet_rebalancing (id, fleet_id, run_id, status, moves, recommendation_ids, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&op.id)
        .bind(&op.fleet_id)
        .bind(op.run_id.as_deref())
        .bind(op.status.as_str())
        .bind(json_text(&op.moves)?)
        .bind(json_text(&op.recommendation_ids)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((op, runs))
    }

    pub async fn get_rebalancing(&self, id: &str) -> Result<Rebalancing, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            rebalancing_columns!(),
            " FROM fleet_rebalancing WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        read_rebalancing(&row)
    }

    /// Operations in creation order, optionally of one fleet and/or status.
    pub async fn list_rebalancing(
        &self,
        fleet_id: Option<&str>,
        status: Option<RebalancingStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Rebalancing>, StoreError> {
        let sql = match fleet_id {
            Some(_) => page_query!(rebalancing_columns!(), "fleet_rebalancing", "fleet_id = $1"),
            None => page_query!(rebalancing_columns!(), "fleet_rebalancing", "$1 = $1"),
        };
        let status = status.map_or("", RebalancingStatus::as_str);
        let rows = self
            .fetch_page(sql, fleet_id, status, limit, cursor)
            .await?;
        let items = rows
            .iter()
            .map(read_rebalancing)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit, |r| (r.created_at, r.id.clone())))
    }

    /// Moves an operation to `next` if its current status allows it.
    pub async fn transition_rebalancing(
        &self,
        id: &str,
        next: RebalancingStatus,
    ) -> Result<Rebalancing, StoreError> {
        let current = self.get_rebalancing(id).await?;
        let refused = |from: RebalancingStatus| {
            StoreError::Refused(format!(
                "a {} operation cannot become {}",
                from.as_str(),
                next.as_str()
            ))
        };
        if !current.status.can_become(next) {
            return Err(refused(current.status));
        }
        let changed = sqlx::query("UPDATE fleet_rebalancing SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4")
            .bind(next.as_str())
            .bind(now_ms())
            .bind(id)
            .bind(current.status.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(refused(self.get_rebalancing(id).await?.status));
        }
        self.get_rebalancing(id).await
    }

    pub async fn delete_rebalancing(&self, id: &str) -> Result<(), StoreError> {
        let gone = sqlx::query("DELETE FROM fleet_rebalancing WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

/// One time-series point.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MetricPoint {
    pub name: String,
    pub value: f64,
    pub fleet_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    #[schema(value_type = Object)]
    pub labels: serde_json::Map<String, serde_json::Value>,
}

/// Points of one metric aggregated over a time bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MetricBucket {
    pub name: String,
    /// Start of the bucket, ms since the epoch.
    pub start: i64,
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
}

/// Which points a metrics query covers (`None` = no restriction).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricFilter {
    pub name: Option<String>,
    pub fleet_id: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Store {
    /// Stores `points`, all or none (one transaction).
    pub async fn insert_metrics(&self, points: &[MetricPoint]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for point in points {
            sqlx::query("INSERT INTO optimization_metrics (id, name, value, fleet_id, ts, labels) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(new_id())
                .bind(&point.name)
                .bind(point.value)
                .bind(point.fleet_id.as_deref())
                .bind(point.ts)
                .bind(json_text(&point.labels)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Points matching `filter` in time order, at most `limit`.
    pub async fn query_metrics(
        &self,
        filter: &MetricFilter,
        limit: usize,
    ) -> Result<Vec<MetricPoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, value, fleet_id, ts, labels FROM optimization_metrics \
             WHERE ($1 = '' OR name = $1) AND ($2 = '' OR fleet_id = $2) AND ts >= $3 AND ts < $4 \
             ORDER BY ts, id LIMIT $5",
        )
        .bind(filter.name.as_deref().unwrap_or(""))
        .bind(filter.fleet_id.as_deref().unwrap_or(""))
        .bind(filter.from.unwrap_or(i64::MIN))
        .bind(filter.to.unwrap_or(i64::MAX))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let labels: String = r.try_get("labels")?;
                Ok(MetricPoint {
                    name: r.try_get("name")?,
                    value: r.try_get("value")?,
                    fleet_id: r.try_get("fleet_id")?,
                    ts: r.try_get("ts")?,
                    labels: serde_json::from_str(&labels)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    /// Count, sum, min, max and mean per metric and `bucket_ms`-long bucket
    /// (buckets aligned to the epoch), in time order.
    pub async fn aggregate_metrics(
        &self,
        filter: &MetricFilter,
        bucket_ms: i64,
    ) -> Result<Vec<MetricBucket>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, (ts - ((ts % $5) + $5) % $5) AS start, COUNT(*) AS n, SUM(value) AS total, \
                    MIN(value) AS low, MAX(value) AS high \
             FROM optimization_metrics \
             WHERE ($1 = '' OR name = $1) AND ($2 = '' OR fleet_id = $2) AND ts >= $3 AND ts < $4 \
             GROUP BY name, start ORDER BY start, name",
        )
        .bind(filter.name.as_deref().unwrap_or(""))
        .bind(filter.fleet_id.as_deref().unwrap_or(""))
        .bind(filter.from.unwrap_or(i64::MIN))
        .bind(filter.to.unwrap_or(i64::MAX))
        .bind(bucket_ms.max(1))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let (count, sum): (i64, f64) = (r.try_get("n")?, r.try_get("total")?);
                Ok(MetricBucket {
                    name: r.try_get("name")?,
                    start: r.try_get("start")?,
                    count,
                    sum,
                    min: r.try_get("low")?,
                    max: r.try_get("high")?,
                    avg: if count == 0 { 0.0 } else { sum / count as f64 },
                })
            })
            .collect()
    }
}

impl Store {
    /// Runs a [`page_query!`] statement: one row more than `limit`, after
    /// `cursor` (unknown cursors are [`StoreError::NotFound`]).
    async fn fetch_page(
        &self,
        sql: &'static str,
        fleet_id: Option<&str>,
        status: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let (after_time, after_id) = after(cursor)?;
        Ok(sqlx::query(sql)
            .bind(fleet_id.unwrap_or(""))
            .bind(status)
            .bind(after_time)
            .bind(after_id)
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?)
    }
}

/// Cuts `items` (fetched with one extra row) to `limit` and makes the
/// cursor of the next page from the last row's `(created_at, id)`.
pub(crate) fn page<T>(
    mut items: Vec<T>,
    limit: usize,
    key: impl Fn(&T) -> (i64, String),
) -> Page<T> {
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        let (time, id) = key(&items[limit - 1]);
        format!("{time}.{id}")
    });
    Page { items, next_cursor }
}

fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn read_rebalancing(row: &AnyRow) -> Result<Rebalancing, StoreError> {
    let status: String = row.try_get("status")?;
    let moves: String = row.try_get("moves")?;
    let ids: String = row.try_get("recommendation_ids")?;
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    Ok(Rebalancing {
        id: row.try_get("id")?,
        fleet_id: row.try_get("fleet_id")?,
        run_id: row.try_get("run_id")?,
        status: RebalancingStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        moves: serde_json::from_str(&moves).map_err(corrupt)?,
        recommendation_ids: serde_json::from_str(&ids).map_err(corrupt)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn read_run(row: &AnyRow) -> Result<Run, StoreError> {
    let corrupt = |what: &str, value: &str| StoreError::Corrupt(format!("{what} {value:?}"));
    let mode: String = row.try_get("mode")?;
    let status: String = row.try_get("status")?;
    let spec: String = row.try_get("spec")?;
    Ok(Run {
        id: row.try_get("id")?,
        fleet_id: row.try_get("fleet_id")?,
        name: row.try_get("name")?,
        mode: RunMode::parse(&mode).ok_or_else(|| corrupt("mode", &mode))?,
        status: RunStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        spec: serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `created_at.id` of the last row of the previous page.
/// Where a page starts: after `cursor`'s `(time, id)`, or at the beginning.
/// An unknown cursor is [`StoreError::NotFound`].
pub(crate) fn after(cursor: Option<&str>) -> Result<(i64, String), StoreError> {
    match cursor {
        Some(c) => parse_cursor(c).ok_or(StoreError::NotFound),
        None => Ok((i64::MIN, String::new())),
    }
}

fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (time, id) = cursor.split_once('.')?;
    Some((time.parse().ok()?, id.to_owned()))
}
