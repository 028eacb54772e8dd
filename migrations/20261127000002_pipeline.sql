-- The streaming pipeline's persistent state (portable SQL, as the first migration).

-- One row per fleet and closed window: written exactly once (the primary key makes
-- a replay after a crash a no-op) in the same transaction as the window's
-- recommendations. The newest row per fleet is where a restarted pipeline resumes.
CREATE TABLE IF NOT EXISTS pipeline_windows (
    fleet_id      TEXT NOT NULL,
    window_end    BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    run_id        TEXT,                    -- the continuous run it fed (NULL while paused)
    objective     DOUBLE PRECISION NOT NULL,
    report        TEXT NOT NULL,           -- JSON: zones, plan, stats
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (fleet_id, window_end)
);

-- The newest checkpoint per fleet (vehicles, smoothed demand, plan): with the
-- uncommitted telemetry replayed, all a restarted pipeline needs. Written in the same
-- transaction as the window it follows.
CREATE TABLE IF NOT EXISTS pipeline_checkpoints (
    fleet_id    TEXT PRIMARY KEY,
    window_end  BIGINT NOT NULL,
    state       TEXT NOT NULL              -- JSON
);

-- Telemetry that failed decoding or validation, with the reason.
CREATE TABLE IF NOT EXISTS dead_letters (
    id           TEXT PRIMARY KEY,         -- source:partition:offset when known (idempotent replays)
    source       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    payload      TEXT NOT NULL,            -- lossy UTF-8, at most 4 KiB
    received_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_time ON dead_letters (received_at);
