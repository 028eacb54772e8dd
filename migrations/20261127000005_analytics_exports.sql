-- How far the service has shipped metric points and recommendation outcomes to the
-- analytics store (ClickHouse or Parquet): one row per stream, the (time, id) of the
-- last row shipped. Shipping is at-least-once; the analytics side drops repeats.
CREATE TABLE IF NOT EXISTS analytics_exports (
    stream  TEXT PRIMARY KEY,             -- metrics | recommendation_outcomes
    at      BIGINT NOT NULL,
    id      TEXT NOT NULL
);
