-- Analytics tables (ClickHouse, CLICKHOUSE_ADDR). The service applies the numbered files
-- of sql/clickhouse/ in name order at start; each statement is idempotent. Times are
-- DateTime64(3, 'UTC'); the embedded default writes the same columns to Parquet.
--
-- Exactly once: the pipeline may write a window again after a restart (it replays from
-- the last committed offsets). Each insert carries a deduplication token (fleet, window,
-- table) and the tables keep a deduplication window, so a repeated insert is dropped,
-- in the rollup views too (deduplicate_blocks_in_dependent_materialized_views).

-- One row per zone of each closed window: the pipeline's view of supply and demand.
CREATE TABLE IF NOT EXISTS zone_windows (
    fleet_id      LowCardinality(String),
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    zone          String,
    requests      UInt32,
    idle          UInt32,
    soon_idle     UInt32,
    unserved      UInt32
) ENGINE = ReplacingMergeTree
ORDER BY (fleet_id, window_end, zone)
SETTINGS non_replicated_deduplication_window = 10000;

-- One row per window re-solve: the plan's objectives and how the solve went.
CREATE TABLE IF NOT EXISTS solves (
    fleet_id       LowCardinality(String),
    window_end     DateTime64(3, 'UTC'),
    zones          UInt32,
    objective      Float64,
    unmet          UInt64,
    empty_km       Float64,
    moves          UInt32,
    changed        UInt32,
    solve_ms       Float64,
    warm_pivots    UInt64,
    warm_fallback  UInt8
) ENGINE = ReplacingMergeTree
ORDER BY (fleet_id, window_end)
SETTINGS non_replicated_deduplication_window = 10000;

-- The new or changed moves each window emitted.
CREATE TABLE IF NOT EXISTS recommendations (
    fleet_id             LowCardinality(String),
    window_end           DateTime64(3, 'UTC'),
    from_zone            String,
    to_zone              String,
    vehicles             UInt32,
    km                   Float64,
    cost                 Float64,
    benefit_per_vehicle  Float64
) ENGINE = ReplacingMergeTree
ORDER BY (fleet_id, window_end, from_zone, to_zone)
SETTINGS non_replicated_deduplication_window = 10000;

-- What became of recommendations: accepted (a rebalancing operation took them),
-- rejected or expired, with when.
CREATE TABLE IF NOT EXISTS recommendation_outcomes (
    fleet_id           LowCardinality(String),
    recommendation_id  String,
    run_id             String,
    status             LowCardinality(String),
    at                 DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (fleet_id, recommendation_id, status)
SETTINGS non_replicated_deduplication_window = 10000;

-- The service's metric points (the seed's five metrics and any ingested ones).
CREATE TABLE IF NOT EXISTS metrics (
    name      LowCardinality(String),
    fleet_id  LowCardinality(String),
    ts        DateTime64(3, 'UTC'),
    value     Float64
) ENGINE = MergeTree
ORDER BY (name, fleet_id, ts)
SETTINGS non_replicated_deduplication_window = 10000;
