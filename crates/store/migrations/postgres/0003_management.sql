-- Resources created through the management API. The spec (JSON, with secrets) is sealed with
-- XChaCha20-Poly1305 under the vault key; nothing secret is stored in clear.
CREATE TABLE resources (
    kind       TEXT   NOT NULL,                -- source | destination | route
    id         TEXT   NOT NULL,
    sealed     BYTEA  NOT NULL,                -- nonce || ciphertext of the JSON spec
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- API tokens: only a SHA-256 hash of the token is stored.
CREATE TABLE tokens (
    id           TEXT   PRIMARY KEY,           -- tok_…
    name         TEXT   NOT NULL,
    hash         TEXT   NOT NULL UNIQUE,       -- hex SHA-256 of the full token
    prefix       TEXT   NOT NULL,              -- first characters, to recognise a token
    scopes       TEXT   NOT NULL,              -- space-separated
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

-- Idempotency-Key records: the first response to a key is replayed for the same request.
CREATE TABLE idempotency (
    scope         TEXT   NOT NULL,             -- token id + method + path
    key           TEXT   NOT NULL,
    request_hash  TEXT   NOT NULL,
    status        BIGINT,                      -- NULL while the first request is in progress
    response      BYTEA,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);
