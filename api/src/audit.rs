//! The audit log: one append-only row per state-changing request (who, with
//! which role and credential, on which fleet, what, on which resource, and
//! the status answered). Written by [`crate::access`], read by admins
//! (`GET /audit`).

use sqlx::Row;

use crate::store::{after, new_id, now_ms, page, Backend, Page, Store, StoreError};

/// One audited request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// JWT `sub` or `key:<id>`; `-` when the request carried no valid credential.
    pub subject: String,
    pub role: Option<String>,
    /// `jwt`, `api_key` or `none`.
    pub credential: String,
    pub fleet_id: Option<String>,
    /// Method and route, e.g. `DELETE /api/v1/fleet-optimization/runs/{id}`.
    pub action: String,
    pub resource_id: Option<String>,
    /// The HTTP status answered.
    pub outcome: u16,
}

/// Which entries a query covers (`None` = no restriction).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub fleet_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Statements that make `audit_log` refuse UPDATE and DELETE, per database
/// (trigger syntax is not portable, so they are not in `migrations/`).
fn append_only_statements(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Sqlite => &[
            "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
            "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        ],
        Backend::Postgres => &[
            // Concurrent starts would race on CREATE OR REPLACE: serialise them.
            "SELECT pg_advisory_xact_lock(7212300541)",
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
            "CREATE OR REPLACE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
            "CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log \
             FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
        ],
    }
}

impl Store {
    /// Installs the append-only triggers (idempotent; part of [`Store::migrate`]).
    pub(crate) async fn make_audit_log_append_only(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for statement in append_only_statements(self.backend()) {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends `entry` (its `id` and `at` are set here).
    pub async fn record_audit(&self, mut entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        entry.id = new_id();
        entry.at = now_ms();
        sqlx::query(
            "INSERT INTO audit_log (id, at, subject, role, credential, fleet_id, action, resource_id, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&entry.id)
        .bind(entry.at)
        .bind(&entry.subject)
        .bind(entry.role.as_deref())
        .bind(&entry.credential)
        .bind(entry.fleet_id.as_deref())
        .bind(&entry.action)
        .bind(entry.resource_id.as_deref())
        .bind(i64::from(entry.outcome))
        .execute(&self.pool)
        .await?;
        Ok(entry)
    }

    /// Entries matching `filter` in time order, `limit` per page; `cursor`
    /// continues after a previous page.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let (after_time, after_id) = after(cursor)?;
        let rows = sqlx::query(
            "SELECT id, at, subject, role, credential, fleet_id, action, resource_id, outcome FROM audit_log \
             WHERE ($1 = '' OR fleet_id = $1) AND ($2 = '' OR subject = $2) AND at >= $3 AND at < $4 \
               AND (at > $5 OR (at = $5 AND id > $6)) \
             ORDER BY at, id LIMIT $7",
        )
        .bind(filter.fleet_id.as_deref().unwrap_or(""))
        .bind(filter.subject.as_deref().unwrap_or(""))
        .bind(filter.from.unwrap_or(i64::MIN))
        .bind(filter.to.unwrap_or(i64::MAX))
        .bind(after_time)
        .bind(after_id)
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                let outcome: i64 = r.try_get("outcome")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    subject: r.try_get("subject")?,
                    role: r.try_get("role")?,
                    credential: r.try_get("credential")?,
                    fleet_id: r.try_get("fleet_id")?,
                    action: r.try_get("action")?,
                    resource_id: r.try_get("resource_id")?,
                    outcome: u16::try_from(outcome)
                        .map_err(|_| StoreError::Corrupt(format!("outcome {outcome}")))?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(page(items, limit, |e| (e.at, e.id.clone())))
    }
}
