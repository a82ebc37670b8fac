-- Nodes sharing the database announce themselves; per-destination budgets (throttling) are
-- split between the live ones.
CREATE TABLE nodes (
    id         TEXT   PRIMARY KEY,
    started_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
