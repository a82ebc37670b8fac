-- The audit trail: one row per management action that changed something. `before_state` and
-- `after_state` are the API's own views of the resource (JSON, secrets already redacted).
CREATE TABLE audit_log (
    seq           INTEGER PRIMARY KEY,         -- arrival order; cursor for listings
    id            TEXT    NOT NULL UNIQUE,     -- aud_… (UUIDv7)
    at            INTEGER NOT NULL,            -- unix ms
    actor         TEXT    NOT NULL,            -- token id (`bootstrap` for the configured token)
    action        TEXT    NOT NULL,            -- create | update | delete | revoke | replay | …
    resource_kind TEXT    NOT NULL,            -- destination | token | endpoint | …
    resource_id   TEXT,
    method        TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    request_id    TEXT,
    before_state  TEXT,
    after_state   TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_resource ON audit_log (resource_kind, resource_id, seq);

-- Retention of attempt rows goes by age.
CREATE INDEX attempts_started ON attempts (started_at);
