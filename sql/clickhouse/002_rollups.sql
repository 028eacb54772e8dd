-- Materialized views: dashboard rollups kept up to date as rows arrive, so panels
-- read a few rows per hour instead of every window.

-- Per fleet and hour: windows solved, solve time (mean and p99 states), unmet, empty km.
CREATE TABLE IF NOT EXISTS solves_hourly (
    fleet_id     LowCardinality(String),
    hour         DateTime('UTC'),
    windows      AggregateFunction(count),
    solve_ms_avg AggregateFunction(avg, Float64),
    solve_ms_p99 AggregateFunction(quantile(0.99), Float64),
    unmet_sum    AggregateFunction(sum, UInt64),
    empty_km_sum AggregateFunction(sum, Float64)
) ENGINE = AggregatingMergeTree
ORDER BY (fleet_id, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS solves_hourly_mv TO solves_hourly AS
SELECT fleet_id,
       toStartOfHour(window_end) AS hour,
       countState() AS windows,
       avgState(solve_ms) AS solve_ms_avg,
       quantileState(0.99)(solve_ms) AS solve_ms_p99,
       sumState(unmet) AS unmet_sum,
       sumState(empty_km) AS empty_km_sum
FROM solves
GROUP BY fleet_id, hour;

-- Per fleet, zone and hour: requests and unserved requests.
CREATE TABLE IF NOT EXISTS zone_demand_hourly (
    fleet_id       LowCardinality(String),
    zone           String,
    hour           DateTime('UTC'),
    requests_sum   UInt64,
    unserved_sum   UInt64
) ENGINE = SummingMergeTree
ORDER BY (fleet_id, zone, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS zone_demand_hourly_mv TO zone_demand_hourly AS
SELECT fleet_id,
       zone,
       toStartOfHour(window_end) AS hour,
       toUInt64(sum(requests)) AS requests_sum,
       toUInt64(sum(unserved)) AS unserved_sum
FROM zone_windows
GROUP BY fleet_id, zone, hour;
