-- O(1) admission: every sandbox row says whether it counts against limits
-- (`counted`, written from `SandboxState::is_active` by the store), and
-- triggers keep per-scope totals of the counted rows in `sandbox_usage`:
-- scope `all`, `owner:<owner id>` and `node:<node id>`. A spawn reads the
-- totals and inserts its row in one write transaction, so admission never
-- scans the table and never over-admits.
--
-- `node_id` is the cluster node that runs the sandbox (NULL on one host).

ALTER TABLE sandboxes ADD COLUMN node_id TEXT;
ALTER TABLE sandboxes ADD COLUMN counted INTEGER NOT NULL DEFAULT 0 CHECK (counted IN (0, 1));

UPDATE sandboxes
SET counted = CASE WHEN state IN ('creating', 'running', 'unhealthy', 'destroying') THEN 1 ELSE 0 END;

CREATE TABLE sandbox_usage (
    scope     TEXT    NOT NULL PRIMARY KEY,
    sandboxes INTEGER NOT NULL DEFAULT 0,
    memory_mb INTEGER NOT NULL DEFAULT 0,
    vcpus     INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO sandbox_usage (scope, sandboxes, memory_mb, vcpus)
SELECT 'all', COUNT(*), COALESCE(SUM(memory_mb), 0), COALESCE(SUM(vcpus), 0)
FROM sandboxes WHERE counted = 1;
INSERT INTO sandbox_usage (scope, sandboxes, memory_mb, vcpus)
SELECT 'owner:' || owner_id, COUNT(*), SUM(memory_mb), SUM(vcpus)
FROM sandboxes WHERE counted = 1 AND owner_id IS NOT NULL GROUP BY owner_id;

-- The reaper's next expiry and due sandboxes, without visiting rows that
-- no longer count (destroyed records accumulate).
CREATE INDEX sandboxes_expiry ON sandboxes (expires_at) WHERE counted = 1;
CREATE INDEX sandboxes_node ON sandboxes (node_id, state);

CREATE TRIGGER sandboxes_usage_insert AFTER INSERT ON sandboxes WHEN NEW.counted = 1
BEGIN
    INSERT OR IGNORE INTO sandbox_usage (scope) VALUES ('all');
    UPDATE sandbox_usage
    SET sandboxes = sandboxes + 1, memory_mb = memory_mb + NEW.memory_mb, vcpus = vcpus + NEW.vcpus
    WHERE scope = 'all';
    INSERT OR IGNORE INTO sandbox_usage (scope)
    SELECT 'owner:' || NEW.owner_id WHERE NEW.owner_id IS NOT NULL;
    UPDATE sandbox_usage
    SET sandboxes = sandboxes + 1, memory_mb = memory_mb + NEW.memory_mb, vcpus = vcpus + NEW.vcpus
    WHERE scope = 'owner:' || NEW.owner_id;
    INSERT OR IGNORE INTO sandbox_usage (scope)
    SELECT 'node:' || NEW.node_id WHERE NEW.node_id IS NOT NULL;
    UPDATE sandbox_usage
    SET sandboxes = sandboxes + 1, memory_mb = memory_mb + NEW.memory_mb, vcpus = vcpus + NEW.vcpus
    WHERE scope = 'node:' || NEW.node_id;
END;

CREATE TRIGGER sandboxes_usage_delete AFTER DELETE ON sandboxes WHEN OLD.counted = 1
BEGIN
    UPDATE sandbox_usage
    SET sandboxes = sandboxes - 1, memory_mb = memory_mb - OLD.memory_mb, vcpus = vcpus - OLD.vcpus
    WHERE scope IN ('all', 'owner:' || OLD.owner_id, 'node:' || OLD.node_id);
END;

CREATE TRIGGER sandboxes_usage_update
AFTER UPDATE OF counted, owner_id, node_id, memory_mb, vcpus ON sandboxes
WHEN OLD.counted <> NEW.counted
    OR OLD.owner_id IS NOT NEW.owner_id
    OR OLD.node_id IS NOT NEW.node_id
    OR OLD.memory_mb <> NEW.memory_mb
    OR OLD.vcpus <> NEW.vcpus
BEGIN
    UPDATE sandbox_usage
    SET sandboxes = sandboxes - 1, memory_mb = memory_mb - OLD.memory_mb, vcpus = vcpus - OLD.vcpus
    WHERE OLD.counted = 1 AND scope IN ('all', 'owner:' || OLD.owner_id, 'node:' || OLD.node_id);
    INSERT OR IGNORE INTO sandbox_usage (scope) SELECT 'all' WHERE NEW.counted = 1;
    INSERT OR IGNORE INTO sandbox_usage (scope)
    SELECT 'owner:' || NEW.owner_id WHERE NEW.counted = 1 AND NEW.owner_id IS NOT NULL;
    INSERT OR IGNORE INTO sandbox_usage (scope)
    SELECT 'node:' || NEW.node_id WHERE NEW.counted = 1 AND NEW.node_id IS NOT NULL;
    UPDATE sandbox_usage
    SET sandboxes = sandboxes + 1, memory_mb = memory_mb + NEW.memory_mb, vcpus = vcpus + NEW.vcpus
    WHERE NEW.counted = 1 AND scope IN ('all', 'owner:' || NEW.owner_id, 'node:' || NEW.node_id);
END;
