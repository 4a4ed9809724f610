-- Multi-tenancy: API keys, per-owner quotas, template ownership.
--
-- A key is stored only as the HMAC-SHA256 of the whole key under a server
-- pepper (`hash`, unique, the lookup path); `prefix` is what a person sees
-- in listings. Timestamps are RFC 3339 text as everywhere else.

CREATE TABLE api_keys (
    id           TEXT NOT NULL PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    owner_id     TEXT NOT NULL,
    scope        TEXT NOT NULL CHECK (scope IN ('admin', 'user', 'read')),
    name         TEXT,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
) STRICT;

CREATE INDEX api_keys_owner ON api_keys (owner_id, created_at, id);

-- Per-owner limits; NULL means "no limit of that kind". Durations are Go
-- duration strings.
CREATE TABLE quotas (
    owner_id         TEXT NOT NULL PRIMARY KEY,
    max_sandboxes    INTEGER CHECK (max_sandboxes >= 0),
    max_memory_mb    INTEGER CHECK (max_memory_mb >= 0),
    max_vcpus        INTEGER CHECK (max_vcpus >= 0),
    max_ttl          TEXT,
    max_exec_timeout TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
) STRICT;

-- Who a template belongs to (NULL: the operator's) and whether every owner
-- may use it.
ALTER TABLE templates ADD COLUMN owner_id TEXT;
ALTER TABLE templates ADD COLUMN public INTEGER NOT NULL DEFAULT 0 CHECK (public IN (0, 1));
