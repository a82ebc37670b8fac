-- Connections to third-party APIs (issue 7): one row per connection, its credentials and tokens
-- sealed with XChaCha20-Poly1305 under the vault key (nothing secret is stored in clear).
-- Token refreshes update the row in place with a compare-and-swap on `version`, so concurrent
-- refreshes on several nodes never overwrite a newer token with an older one; they never touch
-- the `resources` table (whose changes rebuild the registry).
CREATE TABLE connections (
    id          TEXT    PRIMARY KEY,
    provider    TEXT    NOT NULL,
    auth_mode   TEXT    NOT NULL,               -- oauth2 | oauth2_client_credentials | api_key | basic | bearer
    params      TEXT    NOT NULL,               -- JSON object of URL parameters (not secret)
    settings    TEXT    NOT NULL,               -- JSON object: per-connection pacing, timeout… overrides
    status      TEXT    NOT NULL,               -- pending | active | needs_reauth
    scopes      TEXT    NOT NULL,               -- space-separated granted (or requested) scopes
    credentials BLOB,                           -- sealed JSON: client secret, API key, password…
    tokens      BLOB,                           -- sealed JSON: access and refresh tokens, kept fields
    expires_at  INTEGER,                        -- access token expiry (unix ms)
    version     INTEGER NOT NULL,               -- bumped by every token update (CAS)
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Pending OAuth2 authorization-code flows: the single-use `state` (stored as its SHA-256), the
-- sealed PKCE verifier, and a 10-minute expiry. In the database so that any node can finish a
-- flow another node started.
CREATE TABLE oauth_states (
    state_hash    TEXT    PRIMARY KEY,
    connection_id TEXT    NOT NULL,
    sealed        BLOB    NOT NULL,             -- sealed JSON: PKCE verifier, redirect URI
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);
