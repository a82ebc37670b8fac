-- De-duplication: one event per (source, dedup key). Events without a key are never duplicates.
CREATE UNIQUE INDEX events_dedup ON events (source, dedup_key) WHERE dedup_key IS NOT NULL;

-- Recently rejected ingest requests, kept (bounded per source) for debugging. Headers only,
-- with credentials redacted; never bodies.
CREATE TABLE rejections (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    code        TEXT   NOT NULL,
    detail      TEXT   NOT NULL,
    headers     TEXT   NOT NULL,
    body_len    BIGINT NOT NULL
);
CREATE INDEX rejections_source ON rejections (source, seq);
