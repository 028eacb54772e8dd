//! The ClickHouse sink (`CLICKHOUSE_ADDR`, e.g. `http://127.0.0.1:8123`):
//! each window's zone rows, solve statistics and recommendations, inserted
//! as RowBinary over HTTP, each insert deduplicated by a token of fleet,
//! window and table so a replayed window is not counted twice.

use std::sync::Arc;

use clickhouse::Client;

use crate::analytics::{statements, window_rows, CLICKHOUSE_DDL};
use crate::sink::{DeadLetter, Sink, WindowOutput};
use crate::source::BoxFuture;
use crate::zones::ZoneMap;

fn clickhouse_error(what: &str, e: impl std::fmt::Display) -> String {
    format!("ClickHouse {what}: {e}; check CLICKHOUSE_ADDR and that the server is up")
}

/// A client for `addr` that deduplicates repeated inserts, in the rollup
/// views too.
pub fn client(addr: &str) -> Client {
    Client::default()
        .with_url(addr)
        .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1")
}

/// Applies `sql/clickhouse/*.sql` (idempotent).
pub async fn apply_ddl(client: &Client) -> Result<(), String> {
    for (file, sql) in CLICKHOUSE_DDL {
        for statement in statements(sql) {
            client
                .query(&statement)
                .execute()
                .await
                .map_err(|e| clickhouse_error(&format!("applying {file}"), e))?;
        }
    }
    Ok(())
}

/// Writes windows to ClickHouse.
pub struct ClickHouseSink {
    client: Client,
    zones: Arc<dyn ZoneMap>,
}

impl ClickHouseSink {
    /// Applies the DDL through `client` (see [`client`]) and writes there.
    pub async fn connect(client: Client, zones: Arc<dyn ZoneMap>) -> Result<Self, String> {
        apply_ddl(&client).await?;
        Ok(ClickHouseSink { client, zones })
    }
}

/// Inserts `rows` into `table` once per `token`: ClickHouse drops a repeated
/// insert with the same token (within the tables' deduplication window).
pub async fn insert<T>(client: &Client, table: &str, token: &str, rows: &[T]) -> Result<(), String>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite,
{
    if rows.is_empty() {
        return Ok(());
    }
    let fail = |e: clickhouse::error::Error| clickhouse_error(&format!("insert into {table}"), e);
    let mut insert = client
        .insert::<T>(table)
        .await
        .map_err(fail)?
        .with_setting("insert_deduplication_token", format!("{token}:{table}"));
    for row in rows {
        insert.write(row).await.map_err(fail)?;
    }
    insert.end().await.map_err(fail)
}

impl Sink for ClickHouseSink {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    fn write_window<'a>(&'a mut self, out: &'a WindowOutput) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let rows = window_rows(out, self.zones.as_ref());
            let token = format!("{}:{}", out.fleet_id, out.window.end_ms);
            insert(&self.client, "zone_windows", &token, &rows.zones).await?;
            insert(&self.client, "solves", &token, &rows.solve).await?;
            insert(
                &self.client,
                "recommendations",
                &token,
                &rows.recommendations,
            )
            .await
        })
    }

    fn write_dead_letters<'a>(
        &'a mut self,
        _letters: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), String>> {
        // Dead letters are kept in the store and on the DLQ topic, not here.
        Box::pin(async { Ok(()) })
    }
}
