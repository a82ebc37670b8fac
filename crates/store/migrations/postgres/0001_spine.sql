-- The event spine: immutable events, one delivery per (event, route), one attempt row per try.
-- PostgreSQL twin of migrations/sqlite/0001_spine.sql: the same tables, columns and indexes.
-- Integers are BIGINT throughout (SQLite's INTEGER is 64-bit); blobs are BYTEA.
CREATE TABLE events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- arrival order; cursor for listings
    id           TEXT   NOT NULL UNIQUE,       -- UUIDv7
    source       TEXT   NOT NULL,
    tenant       TEXT,
    event_type   TEXT,
    dedup_key    TEXT,
    headers      TEXT   NOT NULL,              -- JSON array of [name, value]
    content_type TEXT,
    body         BYTEA  NOT NULL,              -- raw bytes exactly as received
    received_at  BIGINT NOT NULL               -- unix ms
);
CREATE INDEX events_source_seq ON events (source, seq);
CREATE INDEX events_received_at ON events (received_at);

CREATE TABLE deliveries (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT   NOT NULL UNIQUE,    -- also the webhook-id sent to the receiver
    event_id        TEXT   NOT NULL,
    route_id        TEXT   NOT NULL,
    destination     TEXT   NOT NULL,
    status          TEXT   NOT NULL,           -- pending | in_flight | succeeded | failed | cancelled
    attempts        BIGINT NOT NULL DEFAULT 0, -- attempts made, all runs
    run_attempts    BIGINT NOT NULL DEFAULT 0, -- attempts in the current run (reset by replay)
    next_attempt_at BIGINT NOT NULL,           -- unix ms
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    completed_at    BIGINT
);
-- `seq` ends the due index as SQLite's rowid implicitly ends its: equal due times claim in
-- arrival order, straight from the index.
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at, seq);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_destination ON deliveries (destination, status, updated_at);

CREATE TABLE attempts (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id      TEXT   NOT NULL,
    event_id         TEXT   NOT NULL,
    destination      TEXT   NOT NULL,
    attempt          BIGINT NOT NULL,          -- 1-based, across runs
    started_at       BIGINT NOT NULL,
    latency_ms       BIGINT NOT NULL,
    outcome          TEXT   NOT NULL,          -- delivered | retryable | permanent
    status_code      BIGINT,
    error            TEXT,
    request_url      TEXT   NOT NULL,
    response_headers TEXT,                     -- JSON array of [name, value]
    response_body    BYTEA                     -- bounded excerpt
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, attempt);
CREATE INDEX attempts_event ON attempts (event_id);
