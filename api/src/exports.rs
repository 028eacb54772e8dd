//! What the analytics store (ClickHouse or Parquet, written by the binary)
//! is fed from the database besides the pipeline's windows: metric points
//! and recommendation outcomes, read in batches after a per-stream cursor
//! that is stored once a batch has been shipped (at least once; the
//! analytics side drops repeated batches).
//!
//! Rows are read only once they are [`SETTLE_MS`] old: ids and times come
//! from the writers' clocks, and a transaction still open when the cursor
//! passes its rows would otherwise be skipped.

use sqlx::Row;

use crate::store::{Store, StoreError};

/// How old a row must be before it is shipped.
pub const SETTLE_MS: i64 = 30_000;

/// A position in a stream: the (time, id) of the last row shipped.
pub type Cursor = (i64, String);

/// A metric point to ship (`at` is the time its id was made).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricExport {
    pub id: String,
    pub name: String,
    pub fleet_id: String,
    pub ts: i64,
    pub value: f64,
}

/// A recommendation that reached a final status.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeExport {
    pub id: String,
    pub run_id: String,
    pub fleet_id: String,
    pub status: String,
    pub at: i64,
}

/// The ms time an id was made (its first 12 hex digits, see
/// [`crate::store::new_id`]); 0 for ids made elsewhere.
fn id_time(id: &str) -> i64 {
    id.get(..12)
        .and_then(|h| i64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

impl Store {
    /// Where `stream` was shipped up to (the start if never).
    pub async fn export_cursor(&self, stream: &str) -> Result<Cursor, StoreError> {
        let row = sqlx::query("SELECT at, id FROM analytics_exports WHERE stream = $1")
            .bind(stream)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => (r.try_get("at")?, r.try_get("id")?),
            None => (i64::MIN, String::new()),
        })
    }

    /// Records that `stream` was shipped up to `cursor`.
    pub async fn set_export_cursor(&self, stream: &str, cursor: &Cursor) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO analytics_exports (stream, at, id) VALUES ($1, $2, $3) \
             ON CONFLICT (stream) DO UPDATE SET at = excluded.at, id = excluded.id",
        )
        .bind(stream)
        .bind(cursor.0)
        .bind(&cursor.1)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Metric points after `cursor` in id order (ids sort by creation time)
    /// made before `settled_before` (ms; the caller passes now -
    /// [`SETTLE_MS`]), at most `limit`; and the cursor of the last one.
    pub async fn metrics_after(
        &self,
        cursor: &Cursor,
        settled_before: i64,
        limit: usize,
    ) -> Result<(Vec<MetricExport>, Option<Cursor>), StoreError> {
        let settled = format!("{:012x}", settled_before.max(0));
        let rows = sqlx::query(
            "SELECT id, name, fleet_id, ts, value FROM optimization_metrics \
             WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3",
        )
        .bind(&cursor.1)
        .bind(settled)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let points = rows
            .iter()
            .map(|r| {
                Ok(MetricExport {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    fleet_id: r
                        .try_get::<Option<String>, _>("fleet_id")?
                        .unwrap_or_default(),
                    ts: r.try_get("ts")?,
                    value: r.try_get("value")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next = points.last().map(|p| (id_time(&p.id), p.id.clone()));
        Ok((points, next))
    }

    /// Recommendations that became accepted, rejected or expired after
    /// `cursor` (by update time, then id) and before `settled_before`, at
    /// most `limit`; and the cursor of the last one.
    pub async fn outcomes_after(
        &self,
        cursor: &Cursor,
        settled_before: i64,
        limit: usize,
    ) -> Result<(Vec<OutcomeExport>, Option<Cursor>), StoreError> {
        let rows = sqlx::query(
            "SELECT id, run_id, fleet_id, status, updated_at FROM optimization_recommendations \
             WHERE status <> 'proposed' AND (updated_at > $1 OR (updated_at = $1 AND id > $2)) \
               AND updated_at < $3 \
             ORDER BY updated_at, id LIMIT $4",
        )
        .bind(cursor.0)
        .bind(&cursor.1)
        .bind(settled_before)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let outcomes = rows
            .iter()
            .map(|r| {
                Ok(OutcomeExport {
                    id: r.try_get("id")?,
                    run_id: r.try_get("run_id")?,
                    fleet_id: r.try_get("fleet_id")?,
                    status: r.try_get("status")?,
                    at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next = outcomes.last().map(|o| (o.at, o.id.clone()));
        Ok((outcomes, next))
    }
}
