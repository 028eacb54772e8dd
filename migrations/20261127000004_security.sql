-- API keys and the audit log (issue 5). Portable types only, as in the first migration.

-- An API key is stored only as the SHA-256 of the key (keys are 256-bit random
-- strings, so a fast hash is as safe as a slow one and lets a request find its
-- key by index). `prefix` is the key's first characters, to tell keys apart in a list.
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,      -- hex SHA-256 of the whole key
    role        TEXT NOT NULL,             -- viewer | operator | admin
    fleets      TEXT NOT NULL,             -- JSON: "*" or a list of fleet ids
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT                     -- NULL while the key is valid
);

-- Every state-changing request, whatever its outcome. Append-only: the service
-- never updates or deletes a row, and triggers (added by the service per
-- database, `Store::migrate`) refuse anyone else's UPDATE or DELETE.
CREATE TABLE IF NOT EXISTS audit_log (
    id           TEXT PRIMARY KEY,
    at           BIGINT NOT NULL,          -- ms since the epoch
    subject      TEXT NOT NULL,            -- JWT `sub`, or `key:<id>`; `-` if unauthenticated
    role         TEXT,
    credential   TEXT NOT NULL,            -- jwt | api_key | none
    fleet_id     TEXT,
    action       TEXT NOT NULL,            -- method and route, e.g. `DELETE /runs/{id}`
    resource_id  TEXT,
    outcome      BIGINT NOT NULL           -- the HTTP status answered
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (at, id);
