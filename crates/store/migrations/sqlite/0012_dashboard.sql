-- Dashboard sessions that were signed out. A session is a sealed cookie that every node can
-- open, so a sign-out must be shared through the store to hold on every node and across
-- restarts. An entry lives until the session's own expiry (its cookie is refused by then
-- anyway) and is deleted afterwards.
CREATE TABLE ui_sign_outs (
    session_id TEXT    PRIMARY KEY,       -- the random id inside the sealed cookie
    expires_at INTEGER NOT NULL           -- unix ms: the session's expiry
);
CREATE INDEX ui_sign_outs_expires ON ui_sign_outs (expires_at);

-- The overview's charts count events per time bucket and source, and attempts per time bucket
-- and outcome, over an hour or a day. With the grouped column in the time index the count is
-- read from the index alone instead of visiting every row (an event row holds its body). These
-- replace the single-column indexes, which retention's age scans use the same way.
DROP INDEX events_received_at;
CREATE INDEX events_received_at_source ON events (received_at, source);
DROP INDEX attempts_started;
CREATE INDEX attempts_started_outcome ON attempts (started_at, outcome);
