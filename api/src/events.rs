//! Event sourcing: every state change of runs, recommendations and
//! rebalancing operations is an event in `domain_events`, written by
//! database triggers in the same transaction as the change. So no code path,
//! the API's or the pipeline's, can change state without its event. An event
//! carries the row's whole new state (or none, for a deletion).
//! [`Store::replay_events`] rebuilds the state from the events alone and
//! compares it with the tables (`fleet-optimization replay-events`).
//!
//! The triggers and the table are created per database by [`Store::migrate`]:
//! trigger syntax, and auto-incrementing keys, are not portable.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::store::{Backend, Store, StoreError};

/// The tables whose rows are event-sourced: (table, aggregate name, columns).
pub const SOURCED: &[(&str, &str, &[&str])] = &[
    (
        "optimization_runs",
        "run",
        &[
            "id",
            "fleet_id",
            "name",
            "mode",
            "status",
            "spec",
            "error",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "optimization_recommendations",
        "recommendation",
        &[
            "id",
            "run_id",
            "fleet_id",
            "from_zone",
            "to_zone",
            "vehicles",
            "km",
            "cost",
            "benefit_per_vehicle",
            "explanation",
            "status",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "fleet_rebalancing",
        "rebalancing",
        &[
            "id",
            "fleet_id",
            "run_id",
            "status",
            "moves",
            "recommendation_ids",
            "created_at",
            "updated_at",
        ],
    ),
];

/// A row's state as JSON text, the same way in the trigger and in a query
/// (`row` is `NEW` in a trigger, a table alias in a query).
fn state_json(backend: Backend, columns: &[&str], row: &str) -> String {
    match backend {
        Backend::Sqlite => {
            let pairs: Vec<String> = columns
                .iter()
                .map(|c| format!("'{c}', {row}.{c}"))
                .collect();
            format!("json_object({})", pairs.join(", "))
        }
        Backend::Postgres => {
            let pairs: Vec<String> = columns
                .iter()
                .map(|c| format!("'{c}', {row}.{c}"))
                .collect();
            format!("jsonb_build_object({})::text", pairs.join(", "))
        }
    }
}

/// The statements creating the event table and the triggers (idempotent).
fn statements(backend: Backend) -> Vec<String> {
    let mut out = Vec::new();
    match backend {
        Backend::Sqlite => {
            out.push(
                "CREATE TABLE IF NOT EXISTS domain_events (\
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, at BIGINT NOT NULL, aggregate TEXT NOT NULL, \
                 aggregate_id TEXT NOT NULL, fleet_id TEXT, kind TEXT NOT NULL, state TEXT)"
                    .to_owned(),
            );
            let now = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";
            for (table, aggregate, columns) in SOURCED {
                for (op, kind, row) in [
                    ("INSERT", "created", "NEW"),
                    ("UPDATE", "changed", "NEW"),
                    ("DELETE", "deleted", "OLD"),
                ] {
                    let state = if op == "DELETE" {
                        "NULL".to_owned()
                    } else {
                        state_json(backend, columns, row)
                    };
                    out.push(format!(
                        "CREATE TRIGGER IF NOT EXISTS {table}_{kind}_event AFTER {op} ON {table} BEGIN \
                         INSERT INTO domain_events (at, aggregate, aggregate_id, fleet_id, kind, state) \
                         VALUES ({now}, '{aggregate}', {row}.id, {row}.fleet_id, '{kind}', {state}); END"
                    ));
                }
            }
            for op in ["UPDATE", "DELETE"] {
                out.push(format!(
                    "CREATE TRIGGER IF NOT EXISTS domain_events_no_{op} BEFORE {op} ON domain_events \
                     BEGIN SELECT RAISE(ABORT, 'domain_events is append-only'); END"
                ));
            }
        }
        Backend::Postgres => {
            out.push("SELECT pg_advisory_xact_lock(7212300542)".to_owned());
            out.push(
                "CREATE TABLE IF NOT EXISTS domain_events (\
                 seq BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, aggregate TEXT NOT NULL, \
                 aggregate_id TEXT NOT NULL, fleet_id TEXT, kind TEXT NOT NULL, state TEXT)"
                    .to_owned(),
            );
            for (table, aggregate, columns) in SOURCED {
                let function = format!("{table}_event");
                let state = state_json(backend, columns, "NEW");
                out.push(format!(
                    "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     DECLARE now_ms BIGINT := (extract(epoch from clock_timestamp()) * 1000)::bigint; \
                     BEGIN \
                       IF TG_OP = 'DELETE' THEN \
                         INSERT INTO domain_events (at, aggregate, aggregate_id, fleet_id, kind, state) \
                         VALUES (now_ms, '{aggregate}', OLD.id, OLD.fleet_id, 'deleted', NULL); \
                         RETURN OLD; \
                       END IF; \
                       INSERT INTO domain_events (at, aggregate, aggregate_id, fleet_id, kind, state) \
                       VALUES (now_ms, '{aggregate}', NEW.id, NEW.fleet_id, \
                               CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'changed' END, {state}); \
                       RETURN NEW; \
                     END $$"
                ));
                out.push(format!(
                    "CREATE OR REPLACE TRIGGER {table}_events AFTER INSERT OR UPDATE OR DELETE ON {table} \
                     FOR EACH ROW EXECUTE FUNCTION {function}()"
                ));
            }
            out.push(
                "CREATE OR REPLACE FUNCTION domain_events_append_only() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'domain_events is append-only'; END $$"
                    .to_owned(),
            );
            out.push(
                "CREATE OR REPLACE TRIGGER domain_events_no_change BEFORE UPDATE OR DELETE ON domain_events \
                 FOR EACH ROW EXECUTE FUNCTION domain_events_append_only()"
                    .to_owned(),
            );
        }
    }
    out
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DomainEvent {
    pub seq: i64,
    /// ms since the epoch.
    pub at: i64,
    /// run | recommendation | rebalancing
    pub aggregate: String,
    pub aggregate_id: String,
    pub fleet_id: Option<String>,
    /// created | changed | deleted
    pub kind: String,
    /// The row's state after the change (none for a deletion).
    pub state: Option<serde_json::Value>,
}

/// What replaying the events found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplayReport {
    pub events: usize,
    /// Aggregate name -> live rows rebuilt from the events.
    pub rebuilt: BTreeMap<String, usize>,
    /// (aggregate, id) where the rebuilt state differs from the table's.
    pub mismatches: Vec<(String, String)>,
}

impl ReplayReport {
    pub fn matches(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl Store {
    /// Creates the event table and triggers (idempotent; part of [`Store::migrate`]).
    /// On a database that has rows but no events yet (it predates them),
    /// each row's current state is recorded first as its `created` event.
    pub(crate) async fn make_event_log(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for statement in statements(self.backend()) {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
        }
        // Whether any event exists (not a count: this runs at every start).
        let empty = sqlx::query("SELECT seq FROM domain_events LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .is_none();
        if empty {
            for (table, aggregate, columns) in SOURCED {
                let sql = format!(
                    "INSERT INTO domain_events (at, aggregate, aggregate_id, fleet_id, kind, state) \
                     SELECT updated_at, '{aggregate}', t.id, t.fleet_id, 'created', {} FROM {table} t ORDER BY t.created_at, t.id",
                    state_json(self.backend(), columns, "t")
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Events after `seq`, in order, at most `limit`.
    pub async fn events_after(
        &self,
        seq: i64,
        limit: usize,
    ) -> Result<Vec<DomainEvent>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        events_after(&mut conn, seq, limit).await
    }

    /// Events after `seq` recorded before `settled_before` (ms), in order, at
    /// most `limit`: what may be published (a younger event's transaction
    /// may still be open, and a lower `seq` could still appear before it).
    pub async fn events_to_publish(
        &self,
        seq: i64,
        settled_before: i64,
        limit: usize,
    ) -> Result<Vec<DomainEvent>, StoreError> {
        let mut events = self.events_after(seq, limit).await?;
        if let Some(young) = events.iter().position(|e| e.at >= settled_before) {
            events.truncate(young);
        }
        Ok(events)
    }

    /// Rebuilds every run, recommendation and rebalancing operation from the
    /// events alone and compares them with the tables, in one snapshot (a
    /// repeatable-read transaction), so writes going on meanwhile do not count.
    pub async fn replay_events(&self) -> Result<ReplayReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        let mut rebuilt: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();
        let (mut seq, mut events) = (0i64, 0usize);
        loop {
            let batch = events_after(&mut tx, seq, 10_000).await?;
            let Some(last) = batch.last() else { break };
            seq = last.seq;
            events += batch.len();
            for e in batch {
                let key = (e.aggregate, e.aggregate_id);
                match e.state {
                    Some(state) => rebuilt.insert(key, state),
                    None => rebuilt.remove(&key),
                };
            }
        }
        let mut stored: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();
        for (table, aggregate, columns) in SOURCED {
            let sql = format!(
                "SELECT id, {} AS state FROM {table} t",
                state_json(self.backend(), columns, "t")
            );
            for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut *tx)
                .await?
            {
                let state: String = row.try_get("state")?;
                stored.insert(
                    ((*aggregate).to_owned(), row.try_get("id")?),
                    serde_json::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
        }
        tx.commit().await?;
        let mut mismatches: Vec<(String, String)> = rebuilt
            .iter()
            .filter(|(k, v)| stored.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        mismatches.extend(stored.keys().filter(|k| !rebuilt.contains_key(*k)).cloned());
        mismatches.sort();
        mismatches.dedup();
        let mut counts = BTreeMap::new();
        for (aggregate, _) in rebuilt.keys() {
            *counts.entry(aggregate.clone()).or_insert(0) += 1;
        }
        Ok(ReplayReport {
            events,
            rebuilt: counts,
            mismatches,
        })
    }
}

async fn events_after(
    conn: &mut sqlx::AnyConnection,
    seq: i64,
    limit: usize,
) -> Result<Vec<DomainEvent>, StoreError> {
    {
        let rows = sqlx::query(
            "SELECT seq, at, aggregate, aggregate_id, fleet_id, kind, state FROM domain_events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit as i64)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let state: Option<String> = r.try_get("state")?;
                Ok(DomainEvent {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    aggregate: r.try_get("aggregate")?,
                    aggregate_id: r.try_get("aggregate_id")?,
                    fleet_id: r.try_get("fleet_id")?,
                    kind: r.try_get("kind")?,
                    state: state
                        .map(|s| serde_json::from_str(&s))
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }
}
