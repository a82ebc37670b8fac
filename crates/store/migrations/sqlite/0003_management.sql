-- Resources created through the management API. The spec (JSON, with secrets) is sealed with
-- XChaCha20-Poly1305 under the vault key; nothing secret is stored in clear.
CREATE TABLE resources (
    kind       TEXT    NOT NULL,               -- source | destination | route
    id         TEXT    NOT NULL,
    sealed     BLOB    NOT NULL,               -- nonce || ciphertext of the JSON spec
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);

-- API tokens: only a SHA-256 hash of the token is stored.
CREATE TABLE tokens (
    id           TEXT    PRIMARY KEY,          -- tok_…
    name         TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE,      -- hex SHA-256 of the full token
    prefix       TEXT    NOT NULL,             -- first characters, to recognise a token
    scopes       TEXT    NOT NULL,             -- space-separated
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
);

-- Idempotency-Key records: the first response to a key is replayed for the same request.
CREATE TABLE idempotency (
    scope         TEXT    NOT NULL,            -- token id + method + path
    key           TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,
    status        INTEGER,                     -- NULL while the first request is in progress
    response      BLOB,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);
