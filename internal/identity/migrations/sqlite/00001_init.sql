-- +goose Up
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('customer', 'admin')),
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);

-- One row per login; revoking it kills every token descending from it.
CREATE TABLE refresh_families (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP NOT NULL,
    revoked_at   TIMESTAMP
);
CREATE INDEX refresh_families_user_id ON refresh_families (user_id);

-- Only the SHA-256 of each token is stored.
CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at    TIMESTAMP
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

-- private_key holds the Ed25519 seed in the clear: a demo-grade store. A
-- production deployment would wrap it with a KMS key or keep keys in an HSM.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    generation   INTEGER NOT NULL UNIQUE,
    private_key  BLOB NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    activates_at TIMESTAMP NOT NULL,
    retires_at   TIMESTAMP
);

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE refresh_tokens;
DROP TABLE refresh_families;
DROP TABLE users;
