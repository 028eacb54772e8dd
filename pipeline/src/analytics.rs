//! Analytics rows: what each closed window contributes to the analytics
//! tables (`sql/clickhouse/001_tables.sql`), built once here and written by
//! either sink: ClickHouse ([`crate::clickhouse_sink`], `CLICKHOUSE_ADDR`)
//! or Parquet files in the embedded default ([`crate::parquet_sink`]).

use serde::Serialize;

use crate::sink::WindowOutput;
use crate::zones::ZoneMap;

/// The DDL applied at start, in order (each statement idempotent).
pub const CLICKHOUSE_DDL: &[(&str, &str)] = &[
    (
        "001_tables.sql",
        include_str!("../../sql/clickhouse/001_tables.sql"),
    ),
    (
        "002_rollups.sql",
        include_str!("../../sql/clickhouse/002_rollups.sql"),
    ),
];

/// The dashboard panels' queries (`sql/clickhouse/panels/`), by name.
pub const PANELS: &[(&str, &str)] = &[
    (
        "solve_latency",
        include_str!("../../sql/clickhouse/panels/solve_latency.sql"),
    ),
    (
        "empty_km",
        include_str!("../../sql/clickhouse/panels/empty_km.sql"),
    ),
    (
        "unserved_by_zone",
        include_str!("../../sql/clickhouse/panels/unserved_by_zone.sql"),
    ),
    (
        "recommendation_adoption",
        include_str!("../../sql/clickhouse/panels/recommendation_adoption.sql"),
    ),
    (
        "seed_metrics",
        include_str!("../../sql/clickhouse/panels/seed_metrics.sql"),
    ),
];

/// The statements of a SQL file: split at `;` ending a line, comment lines dropped.
pub fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches(';').to_owned())
        .collect()
}

/// A row of `zone_windows`.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct ZoneWindowRow {
    pub fleet_id: String,
    /// ms since the epoch (DateTime64(3)).
    pub window_start: i64,
    pub window_end: i64,
    pub zone: String,
    pub requests: u32,
    pub idle: u32,
    pub soon_idle: u32,
    pub unserved: u32,
}

/// A row of `solves`.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct SolveRow {
    pub fleet_id: String,
    pub window_end: i64,
    pub zones: u32,
    pub objective: f64,
    pub unmet: u64,
    pub empty_km: f64,
    pub moves: u32,
    pub changed: u32,
    pub solve_ms: f64,
    pub warm_pivots: u64,
    pub warm_fallback: u8,
}

/// A row of `recommendations`.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct RecommendationRow {
    pub fleet_id: String,
    pub window_end: i64,
    pub from_zone: String,
    pub to_zone: String,
    pub vehicles: u32,
    pub km: f64,
    pub cost: f64,
    pub benefit_per_vehicle: f64,
}

/// A row of `recommendation_outcomes`.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct OutcomeRow {
    pub fleet_id: String,
    pub recommendation_id: String,
    pub run_id: String,
    /// accepted | rejected | expired
    pub status: String,
    pub at: i64,
}

/// A row of `metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct MetricRow {
    pub name: String,
    pub fleet_id: String,
    pub ts: i64,
    pub value: f64,
}

/// Everything one window adds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowRows {
    pub zones: Vec<ZoneWindowRow>,
    pub solve: Vec<SolveRow>,
    pub recommendations: Vec<RecommendationRow>,
}

fn count(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX)) as u32
}

/// The rows of `out`; zone keys are named through `zones`.
pub fn window_rows(out: &WindowOutput, zones: &dyn ZoneMap) -> WindowRows {
    let (fleet, start, end) = (&out.fleet_id, out.window.start_ms, out.window.end_ms);
    let plan = &out.plan;
    WindowRows {
        zones: out
            .window
            .zones
            .iter()
            .map(|z| ZoneWindowRow {
                fleet_id: fleet.clone(),
                window_start: start,
                window_end: end,
                zone: zones
                    .describe(z.zone)
                    .map_or_else(|| z.zone.to_string(), |info| info.id),
                requests: count(z.requests),
                idle: count(z.idle),
                soon_idle: count(z.soon_idle),
                unserved: count(z.unserved),
            })
            .collect(),
        solve: vec![SolveRow {
            fleet_id: fleet.clone(),
            window_end: end,
            zones: plan.zones.min(u32::MAX as usize) as u32,
            objective: plan.objective,
            unmet: plan.unmet,
            empty_km: plan.empty_km,
            moves: plan.moves.len().min(u32::MAX as usize) as u32,
            changed: plan.changed.len().min(u32::MAX as usize) as u32,
            solve_ms: plan.solve_ms,
            warm_pivots: plan.warm_pivots,
            warm_fallback: u8::from(plan.warm_fallback),
        }],
        recommendations: plan
            .changed
            .iter()
            .map(|m| RecommendationRow {
                fleet_id: fleet.clone(),
                window_end: end,
                from_zone: m.from_zone.clone(),
                to_zone: m.to_zone.clone(),
                vehicles: m.vehicles,
                km: m.km,
                cost: m.cost,
                benefit_per_vehicle: m.benefit_per_vehicle,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_files_split_into_their_statements() {
        let ddl = statements(CLICKHOUSE_DDL[0].1);
        assert_eq!(ddl.len(), 5, "{ddl:#?}");
        assert!(ddl
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
        let rollups = statements(CLICKHOUSE_DDL[1].1);
        assert_eq!(rollups.len(), 4);
        for (name, sql) in PANELS {
            assert_eq!(statements(sql).len(), 1, "{name}");
        }
        assert_eq!(
            statements("-- note\nSELECT 1;\n\nSELECT ';';\n"),
            vec!["SELECT 1", "SELECT ';'"]
        );
    }
}

/// Where rows that do not come from windows (metric points, outcomes) go:
/// the same destination as the windows' rows.
#[derive(Clone)]
pub enum AnalyticsStore {
    /// Boxed: a client is large, and stores are made once.
    ClickHouse(Box<clickhouse::Client>),
    /// The analytics directory of the embedded default.
    Parquet(std::path::PathBuf),
}

impl AnalyticsStore {
    /// Writes metric points once per `token` (a repeat is dropped or replaces itself).
    pub async fn write_metrics(&self, token: &str, rows: &[MetricRow]) -> Result<(), String> {
        match self {
            AnalyticsStore::ClickHouse(client) => {
                crate::clickhouse_sink::insert(client, "metrics", token, rows).await
            }
            AnalyticsStore::Parquet(dir) => crate::parquet_sink::write_file(
                dir,
                "metrics",
                token,
                &crate::parquet_sink::metrics_batch(rows)?,
            ),
        }
    }

    /// Writes recommendation outcomes once per `token`.
    pub async fn write_outcomes(&self, token: &str, rows: &[OutcomeRow]) -> Result<(), String> {
        match self {
            AnalyticsStore::ClickHouse(client) => {
                crate::clickhouse_sink::insert(client, "recommendation_outcomes", token, rows).await
            }
            AnalyticsStore::Parquet(dir) => crate::parquet_sink::write_file(
                dir,
                "recommendation_outcomes",
                token,
                &crate::parquet_sink::outcomes_batch(rows)?,
            ),
        }
    }
}
