-- Outbound webhooks: ordered delivery, per-message headers, endpoint health, payload retention.

-- Headers the publisher asked to send with every delivery of the event (JSON array of
-- [name, value]); NULL for ingested events, whose request headers are never forwarded.
ALTER TABLE events ADD COLUMN forward_headers TEXT;
-- Set when retention removed the body; the event and its delivery history stay.
ALTER TABLE events ADD COLUMN body_pruned_at INTEGER;

-- Ordered delivery: deliveries of an ordered destination carry a key ('' = the whole
-- destination); a delivery is claimable only when no earlier delivery of its key is pending,
-- in flight, or failed with its hold not released.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
ALTER TABLE deliveries ADD COLUMN hold_released INTEGER NOT NULL DEFAULT 0;
-- Set once the delivery has ever been dead-lettered (so a later success is a recovery).
ALTER TABLE deliveries ADD COLUMN exhausted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_ordering ON deliveries (destination, ordering_key, seq)
    WHERE ordering_key IS NOT NULL;

-- Circuit breaker and failure bookkeeping per destination, written by the worker.
CREATE TABLE destination_health (
    destination          TEXT    PRIMARY KEY,
    state                TEXT    NOT NULL,     -- closed | open | half_open
    consecutive_failures INTEGER NOT NULL,
    failing_since        INTEGER,              -- first failure after the last success
    last_failure_at      INTEGER,
    last_success_at      INTEGER,
    last_error           TEXT,
    opened_at            INTEGER,
    updated_at           INTEGER NOT NULL
);

-- The pruner looks for old bodies that are not pruned yet.
CREATE INDEX events_unpruned ON events (received_at) WHERE body_pruned_at IS NULL;
