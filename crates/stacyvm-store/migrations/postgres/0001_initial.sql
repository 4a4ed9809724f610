-- Initial StacyVM schema, Postgres flavour of migrations/sqlite/0001.
--
-- Timestamps are RFC 3339 UTC text with exactly nine fractional digits, as
-- in SQLite: `timestamptz` keeps only microseconds, and the shared codec
-- round-trips nanoseconds. Text that is ordered (timestamps, ids, template
-- names) uses the "C" collation so order is byte order, whatever the
-- database locale. Metadata is `json`, not `jsonb`: `jsonb` rejects the
-- \u0000 escape that a metadata value may legally contain.

CREATE TABLE sandboxes (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    state          TEXT             NOT NULL,
    provider       TEXT             NOT NULL,
    image          TEXT             NOT NULL,
    memory_mb      BIGINT           NOT NULL CHECK (memory_mb >= 0),
    vcpus          BIGINT           NOT NULL CHECK (vcpus >= 0),
    owner_id       TEXT,
    created_at     TEXT COLLATE "C" NOT NULL,
    expires_at     TEXT COLLATE "C" NOT NULL,
    metadata       JSON             NOT NULL DEFAULT '{}',
    preview_domain TEXT,
    template       TEXT,
    error          TEXT
);

CREATE INDEX sandboxes_state ON sandboxes (state);
CREATE INDEX sandboxes_owner ON sandboxes (owner_id);
CREATE INDEX sandboxes_created ON sandboxes (created_at, id);

CREATE TABLE templates (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    image      TEXT             NOT NULL,
    provider   TEXT             NOT NULL DEFAULT '',
    memory_mb  BIGINT           NOT NULL CHECK (memory_mb >= 0),
    vcpus      BIGINT           NOT NULL CHECK (vcpus >= 0),
    -- Go duration string ("1h30m0s"), NULL when the template sets no TTL.
    ttl        TEXT,
    metadata   JSON             NOT NULL DEFAULT '{}',
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);
