-- Initial StacyVM schema.
--
-- Timestamps are RFC 3339 UTC text with exactly nine fractional digits
-- ("2026-05-04T10:30:00.000000000Z"): fixed width, so text order is time
-- order, and nanoseconds survive a round trip. Maps are JSON objects.

CREATE TABLE sandboxes (
    id             TEXT    NOT NULL PRIMARY KEY,
    state          TEXT    NOT NULL,
    provider       TEXT    NOT NULL,
    image          TEXT    NOT NULL,
    memory_mb      INTEGER NOT NULL CHECK (memory_mb >= 0),
    vcpus          INTEGER NOT NULL CHECK (vcpus >= 0),
    owner_id       TEXT,
    created_at     TEXT    NOT NULL,
    expires_at     TEXT    NOT NULL,
    metadata       TEXT    NOT NULL DEFAULT '{}',
    preview_domain TEXT,
    template       TEXT,
    error          TEXT
) STRICT;

CREATE INDEX sandboxes_state ON sandboxes (state);
CREATE INDEX sandboxes_owner ON sandboxes (owner_id);
CREATE INDEX sandboxes_created ON sandboxes (created_at, id);

CREATE TABLE templates (
    name       TEXT    NOT NULL PRIMARY KEY,
    image      TEXT    NOT NULL,
    provider   TEXT    NOT NULL DEFAULT '',
    memory_mb  INTEGER NOT NULL CHECK (memory_mb >= 0),
    vcpus      INTEGER NOT NULL CHECK (vcpus >= 0),
    -- Go duration string ("1h30m0s"), NULL when the template sets no TTL.
    ttl        TEXT,
    metadata   TEXT    NOT NULL DEFAULT '{}',
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
) STRICT;
