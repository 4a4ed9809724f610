-- Cluster nodes (PostgreSQL only: SQLite is one host). Every server on
-- this database registers a row and holds a lease it renews by heartbeat.
-- Lease times are the database's clock (`now()`), so nodes with skewed
-- clocks still agree on who has lapsed. A node's sandboxes and memory are
-- the `node:<id>` totals of `sandbox_usage`, kept by the trigger of 0002.
CREATE TABLE nodes (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    state            TEXT             NOT NULL CHECK (state IN ('ready', 'draining', 'lost')),
    advertise_url    TEXT             NOT NULL,
    version          TEXT             NOT NULL,
    labels           JSONB            NOT NULL DEFAULT '{}',
    providers        JSONB            NOT NULL DEFAULT '[]',
    max_sandboxes    BIGINT           NOT NULL DEFAULT 0 CHECK (max_sandboxes >= 0),
    memory_mb        BIGINT           NOT NULL DEFAULT 0 CHECK (memory_mb >= 0),
    registered_at    TIMESTAMPTZ      NOT NULL DEFAULT now(),
    heartbeat_at     TIMESTAMPTZ      NOT NULL DEFAULT now(),
    lease_expires_at TIMESTAMPTZ      NOT NULL
);

CREATE INDEX nodes_lease ON nodes (lease_expires_at) WHERE state <> 'lost';
