-- Data sync (issue 10). The jobs themselves are configuration (the file, or sealed `resources`
-- rows of kind `sync`); these tables hold what the engine keeps between pages and runs.

-- One row per run: its progress while it runs (updated with every checkpoint) and its outcome.
-- `checkpoint` is the JSON the engine needs to resume (next page, phase, cursor high-water
-- mark); a run left `running` by a crash or `paused` by a limit is resumed by the next run.
CREATE TABLE sync_runs (
    id               TEXT    PRIMARY KEY,
    sync_id          TEXT    NOT NULL,
    status           TEXT    NOT NULL,            -- running | paused | succeeded | failed | cancelled
    mode             TEXT    NOT NULL,            -- full | incremental
    trigger          TEXT    NOT NULL,            -- schedule | api
    started_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    finished_at      BIGINT,
    pages            BIGINT  NOT NULL DEFAULT 0,
    fetched          BIGINT  NOT NULL DEFAULT 0,
    created          BIGINT  NOT NULL DEFAULT 0,
    updated          BIGINT  NOT NULL DEFAULT 0,
    deleted          BIGINT  NOT NULL DEFAULT 0,
    unchanged        BIGINT  NOT NULL DEFAULT 0,
    failed           BIGINT  NOT NULL DEFAULT 0,
    error            TEXT,
    checkpoint       TEXT    NOT NULL,
    cancel_requested BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX sync_runs_by_sync ON sync_runs (sync_id, started_at);

-- The records cache: per sync, each record's key (its JSON text) and the hash of its mapped
-- content, and the last run that saw it. Unchanged hashes are skipped; keys a complete full
-- run did not see are the deletes.
CREATE TABLE sync_records (
    sync_id    TEXT    NOT NULL,
    record_key TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    seen_run   TEXT    NOT NULL,
    PRIMARY KEY (sync_id, record_key)
);
CREATE INDEX sync_records_seen ON sync_records (sync_id, seen_run);

-- Per sync: the incremental cursor of the last successful run.
CREATE TABLE sync_state (
    sync_id    TEXT    PRIMARY KEY,
    cursor     TEXT,
    updated_at BIGINT  NOT NULL
);

-- Two-way syncs with `conflict = "manual"`: records changed on both sides since the last run,
-- parked (both versions, mapped) until reviewed; the cache keeps the last agreed hash, so the
-- record stays in conflict (and is written to neither side) while it differs on both.
CREATE TABLE sync_conflicts (
    sync_id     TEXT    NOT NULL,
    record_key  TEXT    NOT NULL,
    source      TEXT,                               -- JSON of the source's version (null: deleted)
    destination TEXT,                               -- JSON of the destination's version
    detected_at BIGINT  NOT NULL,
    PRIMARY KEY (sync_id, record_key)
);
