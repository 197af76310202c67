-- Tokens get a public id (UUIDv7) and a name. SQLite cannot add a NOT NULL
-- column without a default, so the table is rebuilt; existing tokens get an
-- id from their creation time and random bits.
CREATE TABLE tokens_new (
    hash       TEXT    PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

INSERT INTO tokens_new (hash, id, user_id, created_at, expires_at, revoked_at)
SELECT hash,
       printf('%08x-%04x-7%03x-%04x-%012x', (created_at / 1000) >> 16, (created_at / 1000) & 65535,
              random() & 4095, (random() & 16383) | 32768, random() & 281474976710655),
       user_id, created_at, expires_at, revoked_at
FROM tokens;

DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;

CREATE INDEX tokens_user_created ON tokens (user_id, created_at DESC, id DESC);
-- For the purge of expired and revoked tokens.
CREATE INDEX tokens_expires ON tokens (expires_at);
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;

-- The word index of entries: one row per distinct word (its index form, see
-- journal.IndexWord) of an entry's title and body, ordered like a list page
-- within (user, word). words_version says which tokenizer indexed an entry;
-- entries below the current one are indexed again when the store opens.
CREATE TABLE entry_words (
    user_id    TEXT    NOT NULL,
    word       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    entry_id   TEXT    NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, word, created_at, entry_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX entry_words_entry ON entry_words (entry_id);

ALTER TABLE entries ADD COLUMN words_version INTEGER NOT NULL DEFAULT 0;

-- Idempotency-Key records: pending (status NULL, claim set) while the first
-- request runs, then its response, until expires_at.
CREATE TABLE idempotency_keys (
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    claim       TEXT    NOT NULL,
    status      INTEGER,
    location    TEXT    NOT NULL DEFAULT '',
    etag        TEXT    NOT NULL DEFAULT '',
    body        BLOB,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) STRICT;

CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
