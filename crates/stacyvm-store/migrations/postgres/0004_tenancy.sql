-- Multi-tenancy, Postgres flavour of migrations/sqlite/0004: API keys,
-- per-owner quotas, template ownership.
--
-- A key is stored only as the HMAC-SHA256 of the whole key under a server
-- pepper (`hash`, unique, the lookup path); `prefix` is what a person sees
-- in listings. Ordered text uses the "C" collation, as in 0001.

CREATE TABLE api_keys (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    hash         TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix       TEXT             NOT NULL,
    owner_id     TEXT COLLATE "C" NOT NULL,
    scope        TEXT             NOT NULL CHECK (scope IN ('admin', 'user', 'read')),
    name         TEXT,
    created_at   TEXT COLLATE "C" NOT NULL,
    expires_at   TEXT COLLATE "C",
    revoked_at   TEXT COLLATE "C",
    last_used_at TEXT COLLATE "C"
);

CREATE INDEX api_keys_owner ON api_keys (owner_id, created_at, id);

-- Per-owner limits; NULL means "no limit of that kind". Durations are Go
-- duration strings.
CREATE TABLE quotas (
    owner_id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    max_sandboxes    BIGINT CHECK (max_sandboxes >= 0),
    max_memory_mb    BIGINT CHECK (max_memory_mb >= 0),
    max_vcpus        BIGINT CHECK (max_vcpus >= 0),
    max_ttl          TEXT,
    max_exec_timeout TEXT,
    created_at       TEXT COLLATE "C" NOT NULL,
    updated_at       TEXT COLLATE "C" NOT NULL
);

-- Who a template belongs to (NULL: the operator's) and whether every owner
-- may use it.
ALTER TABLE templates ADD COLUMN owner_id TEXT COLLATE "C";
ALTER TABLE templates ADD COLUMN public BIGINT NOT NULL DEFAULT 0 CHECK (public IN (0, 1));
