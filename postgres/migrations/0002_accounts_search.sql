-- Tokens get a public id (UUIDv7) and a name; existing tokens get an id from
-- their creation time and random bits.
ALTER TABLE tokens ADD COLUMN id uuid, ADD COLUMN name text NOT NULL DEFAULT '';

UPDATE tokens SET id = (
    lpad(to_hex((extract(epoch FROM created_at) * 1000)::bigint), 12, '0') || '7' ||
    substr(md5(random()::text), 1, 3) || to_hex(8 + floor(random() * 4)::int) ||
    substr(md5(random()::text), 1, 15))::uuid;

ALTER TABLE tokens ALTER COLUMN id SET NOT NULL, ADD CONSTRAINT tokens_id_key UNIQUE (id);

DROP INDEX tokens_user_id;
CREATE INDEX tokens_user_created ON tokens (user_id, created_at DESC, id DESC);
-- For the purge of expired and revoked tokens.
CREATE INDEX tokens_expires ON tokens (expires_at);
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;

-- The word index of entries: one row per distinct word (its index form, see
-- journal.IndexWord) of an entry's title and body, ordered like a list page
-- within (user, word). Words compare bytewise (COLLATE "C"). words_version
-- says which tokenizer indexed an entry; entries below the current one are
-- indexed again when the store opens.
CREATE TABLE entry_words (
    user_id    uuid        NOT NULL,
    word       text        COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL,
    entry_id   uuid        NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, word, created_at, entry_id)
);

CREATE INDEX entry_words_entry ON entry_words (entry_id);

ALTER TABLE entries ADD COLUMN words_version integer NOT NULL DEFAULT 0;

-- Idempotency-Key records: pending (status NULL, claim set) while the first
-- request runs, then its response, until expires_at.
CREATE TABLE idempotency_keys (
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         text        COLLATE "C" NOT NULL,
    fingerprint text        NOT NULL,
    claim       text        NOT NULL,
    status      integer,
    location    text        NOT NULL DEFAULT '',
    etag        text        NOT NULL DEFAULT '',
    body        bytea,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
