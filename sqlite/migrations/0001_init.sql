-- Initial schema. Times are integer Unix microseconds (UTC); ids are
-- canonical lower-case UUID strings, so TEXT ordering equals UUID ordering.
CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
    hash       TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE INDEX tokens_user_id ON tokens (user_id);

CREATE TABLE entries (
    id         TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX entries_user_created ON entries (user_id, created_at DESC, id DESC);

-- One row per committed write whose cache invalidation is still pending,
-- written in the write's transaction so the invalidation survives a crash or
-- a Redis outage. entry_id and token_hash are '' when not applicable.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT    NOT NULL,
    entry_id   TEXT    NOT NULL DEFAULT '',
    token_hash TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT;

CREATE INDEX outbox_user_seq ON outbox (user_id, seq);
