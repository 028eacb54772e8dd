//! Persistence of the streaming pipeline: each closed window exactly once
//! (per fleet and window end), the recommendations it emits under the
//! fleet's continuous run, that run's live result, and dead letters.
//!
//! A fleet's continuous run is its newest run with `mode: continuous`:
//! - none yet: one is created, `running`, at the first window;
//! - `running`: windows feed it (recommendations, live result);
//! - otherwise (cancelled): the fleet is paused; windows are still recorded,
//!   nothing is recommended, until a new continuous run is created.

use serde_json::{json, Value};
use sqlx::Row;

use crate::run::{RunMode, RunStatus};
use crate::store::{insert_recommendation, new_id, now_ms, Recommendation, Store, StoreError};

/// A recommended move of a window (new or changed since the previous one).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMove {
    pub from_zone: String,
    pub to_zone: String,
    pub vehicles: i64,
    pub km: f64,
    pub cost: f64,
    pub benefit_per_vehicle: f64,
    pub explanation: String,
}

/// A closed window's outcome, as the pipeline hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamWindow {
    pub fleet_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub objective: f64,
    /// Zones, the whole plan and solve statistics (stored and served as the
    /// continuous run's result).
    pub report: Value,
    pub changed: Vec<StreamMove>,
    /// (from, to) of moves the plan dropped.
    pub withdrawn: Vec<(String, String)>,
    /// The pipeline's state after this window (opaque here).
    pub checkpoint: Value,
}

/// What [`Store::save_window`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowSaved {
    /// Stored now; `run_id` is the continuous run it fed (None: paused).
    Saved {
        run_id: Option<String>,
        recommendations: usize,
    },
    /// This fleet's window was stored before (a replay): nothing changed.
    AlreadySaved,
}

/// A message that failed decoding or validation.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRow {
    /// `source:partition:offset` when the position is known.
    pub id: String,
    pub source: String,
    pub reason: String,
    pub payload: String,
    pub received_at: i64,
}

/// Largest payload kept per dead letter.
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 4096;

/// A stable id for the recommendation of `m` in `fleet`'s window ending at
/// `end_ms` (FNV-1a), so a replayed window cannot store it twice.
fn recommendation_id(fleet: &str, end_ms: i64, m: &StreamMove) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [fleet, &end_ms.to_string(), &m.from_zone, &m.to_zone] {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("w{h:016x}")
}

impl Store {
    /// Stores a closed window and its effects in one transaction, once: a
    /// second call for the same fleet and window end changes nothing.
    pub async fn save_window(&self, w: &StreamWindow) -> Result<WindowSaved, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO pipeline_windows (fleet_id, window_end, window_start, run_id, objective, report, created_at) \
             VALUES ($1, $2, $3, NULL, $4, $5, $6) ON CONFLICT (fleet_id, window_end) DO NOTHING",
        )
        .bind(&w.fleet_id)
        .bind(w.end_ms)
        .bind(w.start_ms)
        .bind(w.objective)
        .bind(w.report.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(WindowSaved::AlreadySaved);
        }
        sqlx::query(
            "INSERT INTO pipeline_checkpoints (fleet_id, window_end, state) VALUES ($1, $2, $3) \
             ON CONFLICT (fleet_id) DO UPDATE SET window_end = excluded.window_end, state = excluded.state \
             WHERE pipeline_checkpoints.window_end < excluded.window_end",
        )
        .bind(&w.fleet_id)
        .bind(w.end_ms)
        .bind(w.checkpoint.to_string())
        .execute(&mut *tx)
        .await?;
        let latest = sqlx::query(
            "SELECT id, status FROM optimization_runs WHERE fleet_id = $1 AND mode = $2 \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(&w.fleet_id)
        .bind(RunMode::Continuous.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let run_id = match latest {
            None => {
                let id = new_id();
                sqlx::query(
                    "INSERT INTO optimization_runs (id, fleet_id, name, mode, status, spec, error, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $7)",
                )
                .bind(&id)
                .bind(&w.fleet_id)
                .bind(format!("continuous {}", w.fleet_id))
                .bind(RunMode::Continuous.as_str())
                .bind(RunStatus::Running.as_str())
                .bind(json!({"source": "pipeline"}).to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Some(id)
            }
            Some(row) => {
                let status: String = row.try_get("status")?;
                (status == RunStatus::Running.as_str())
                    .then(|| row.try_get("id"))
                    .transpose()?
            }
        };
        let Some(run_id) = run_id else {
            tx.commit().await?;
            self.windows_saved.send_modify(|n| *n += 1);
            return Ok(WindowSaved::Saved {
                run_id: None,
                recommendations: 0,
            });
        };
        // Moves the plan dropped or changed: their earlier proposals expire.
        let superseded = w.withdrawn.iter().cloned().chain(
            w.changed
                .iter()
                .map(|m| (m.from_zone.clone(), m.to_zone.clone())),
        );
        for (from, to) in superseded {
            sqlx::query(
                "UPDATE optimization_recommendations SET status = 'expired', updated_at = $1 \
                 WHERE run_id = $2 AND from_zone = $3 AND to_zone = $4 AND status = 'proposed'",
            )
            .bind(now)
            .bind(&run_id)
            .bind(&from)
            .bind(&to)
            .execute(&mut *tx)
            .await?;
        }
        let mut stored = 0;
        for m in &w.changed {
            let rec = Recommendation {
                id: recommendation_id(&w.fleet_id, w.end_ms, m),
                run_id: run_id.clone(),
                fleet_id: w.fleet_id.clone(),
                from_zone: m.from_zone.clone(),
                to_zone: m.to_zone.clone(),
                vehicles: m.vehicles,
                km: m.km,
                cost: m.cost,
                benefit_per_vehicle: m.benefit_per_vehicle,
                explanation: m.explanation.clone(),
                status: "proposed".into(),
                created_at: now,
            };
            stored += usize::from(insert_recommendation(&mut tx, &rec).await?);
        }
        sqlx::query(
            "INSERT INTO optimization_results (run_id, objective, report, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (run_id) DO UPDATE SET objective = excluded.objective, report = excluded.report, \
             created_at = excluded.created_at",
        )
        .bind(&run_id)
        .bind(w.objective)
        .bind(w.report.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE pipeline_windows SET run_id = $1 WHERE fleet_id = $2 AND window_end = $3",
        )
        .bind(&run_id)
        .bind(&w.fleet_id)
        .bind(w.end_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE optimization_runs SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.windows_saved.send_modify(|n| *n += 1);
        self.runs_changed(&w.fleet_id).await;
        Ok(WindowSaved::Saved {
            run_id: Some(run_id),
            recommendations: stored,
        })
    }

    /// Every fleet's newest checkpoint: (fleet, window end, state), where a
    /// restarted pipeline resumes.
    pub async fn checkpoints(&self) -> Result<Vec<(String, i64, Value)>, StoreError> {
        let rows = sqlx::query(
            "SELECT fleet_id, window_end, state FROM pipeline_checkpoints ORDER BY fleet_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok((
                    r.try_get("fleet_id")?,
                    r.try_get("window_end")?,
                    serde_json::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ))
            })
            .collect()
    }

    /// Window ends stored for `fleet_id`, oldest first.
    pub async fn window_ends(&self, fleet_id: &str) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT window_end FROM pipeline_windows WHERE fleet_id = $1 ORDER BY window_end",
        )
        .bind(fleet_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("window_end")?)).collect()
    }

    /// Stores dead letters; ones stored before (same id) are kept as they were.
    pub async fn insert_dead_letters(&self, letters: &[DeadLetterRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for l in letters {
            let mut end = l.payload.len().min(DEAD_LETTER_PAYLOAD_BYTES);
            while !l.payload.is_char_boundary(end) {
                end -= 1;
            }
            sqlx::query(
                "INSERT INTO dead_letters (id, source, reason, payload, received_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&l.id)
            .bind(&l.source)
            .bind(&l.reason)
            .bind(&l.payload[..end])
            .bind(l.received_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Dead letters stored, and the newest `limit` of them (id, reason).
    pub async fn dead_letters(
        &self,
        limit: i64,
    ) -> Result<(i64, Vec<(String, String)>), StoreError> {
        let count: i64 = sqlx::query("SELECT count(*) AS n FROM dead_letters")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let rows = sqlx::query(
            "SELECT id, reason FROM dead_letters ORDER BY received_at DESC, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let newest = rows
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("reason")?)))
            .collect::<Result<_, StoreError>>()?;
        Ok((count, newest))
    }
}
