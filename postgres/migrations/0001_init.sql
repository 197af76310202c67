-- Initial schema. Times are timestamptz (microsecond precision); ids are
-- uuid, whose ordering equals the ordering of their canonical strings.
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    username      text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username)
);

CREATE TABLE tokens (
    hash       text        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);

CREATE INDEX tokens_user_id ON tokens (user_id);

CREATE TABLE entries (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text        NOT NULL,
    body       text        NOT NULL,
    version    bigint      NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX entries_user_created ON entries (user_id, created_at DESC, id DESC);

-- One row per committed write whose cache invalidation is still pending,
-- written in the write's transaction so the invalidation survives a crash or
-- a Redis outage. entry_id is NULL and token_hash '' when not applicable.
CREATE TABLE outbox (
    seq        bigserial   PRIMARY KEY,
    user_id    uuid        NOT NULL,
    entry_id   uuid,
    token_hash text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_user_seq ON outbox (user_id, seq);
