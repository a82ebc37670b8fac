-- Outbound webhooks: ordered delivery, per-message headers, endpoint health, payload retention.
-- PostgreSQL twin of migrations/sqlite/0005_outbound.sql: the same columns and indexes; SQLite's
-- 0/1 integer flags are BOOLEAN here. Adding a column with a constant default rewrites nothing.

-- Headers the publisher asked to send with every delivery of the event (JSON array of
-- [name, value]); NULL for ingested events, whose request headers are never forwarded.
ALTER TABLE events ADD COLUMN forward_headers TEXT;
-- Set when retention removed the body; the event and its delivery history stay.
ALTER TABLE events ADD COLUMN body_pruned_at BIGINT;

-- Ordered delivery: deliveries of an ordered destination carry a key ('' = the whole
-- destination); a delivery is claimable only when no earlier delivery of its key is pending,
-- in flight, or failed with its hold not released.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
ALTER TABLE deliveries ADD COLUMN hold_released BOOLEAN NOT NULL DEFAULT FALSE;
-- Set once the delivery has ever been dead-lettered (so a later success is a recovery).
ALTER TABLE deliveries ADD COLUMN exhausted BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX deliveries_ordering ON deliveries (destination, ordering_key, seq)
    WHERE ordering_key IS NOT NULL;

-- Circuit breaker and failure bookkeeping per destination, written by the worker.
CREATE TABLE destination_health (
    destination          TEXT   PRIMARY KEY,
    state                TEXT   NOT NULL,      -- closed | open | half_open
    consecutive_failures BIGINT NOT NULL,
    failing_since        BIGINT,               -- first failure after the last success
    last_failure_at      BIGINT,
    last_success_at      BIGINT,
    last_error           TEXT,
    opened_at            BIGINT,
    updated_at           BIGINT NOT NULL
);

-- The pruner looks for old bodies that are not pruned yet.
CREATE INDEX events_unpruned ON events (received_at) WHERE body_pruned_at IS NULL;
