-- O(1) admission, Postgres flavour of migrations/sqlite/0002: every sandbox
-- row says whether it counts against limits (`counted`, written from
-- `SandboxState::is_active` by the store), and a trigger keeps per-scope
-- totals of the counted rows in `sandbox_usage`: scope `all`,
-- `owner:<owner id>` and `node:<node id>`. Admission locks the rows of the
-- scopes it checks (`all` first, then the owner's), so concurrent spawns on
-- any number of nodes are serialised exactly where they compete and never
-- over-admit. The trigger touches the scopes in the same order, so it
-- cannot deadlock against an admission.
--
-- `node_id` is the cluster node that runs the sandbox (NULL on one host).

ALTER TABLE sandboxes ADD COLUMN node_id TEXT COLLATE "C";
ALTER TABLE sandboxes ADD COLUMN counted BIGINT NOT NULL DEFAULT 0 CHECK (counted IN (0, 1));

UPDATE sandboxes
SET counted = CASE WHEN state IN ('creating', 'running', 'unhealthy', 'destroying') THEN 1 ELSE 0 END;

CREATE TABLE sandbox_usage (
    scope     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    sandboxes BIGINT           NOT NULL DEFAULT 0,
    memory_mb BIGINT           NOT NULL DEFAULT 0,
    vcpus     BIGINT           NOT NULL DEFAULT 0
);

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

CREATE FUNCTION stacyvm_usage_add(p_scope TEXT, p_sign BIGINT, p_memory BIGINT, p_vcpus BIGINT)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sandbox_usage AS u (scope, sandboxes, memory_mb, vcpus)
    VALUES (p_scope, p_sign, p_sign * p_memory, p_sign * p_vcpus)
    ON CONFLICT (scope) DO UPDATE
    SET sandboxes = u.sandboxes + EXCLUDED.sandboxes,
        memory_mb = u.memory_mb + EXCLUDED.memory_mb,
        vcpus = u.vcpus + EXCLUDED.vcpus;
END
$$;

CREATE FUNCTION stacyvm_sandboxes_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.counted = 1 THEN
        PERFORM stacyvm_usage_add('all', -1, OLD.memory_mb, OLD.vcpus);
        IF OLD.owner_id IS NOT NULL THEN
            PERFORM stacyvm_usage_add('owner:' || OLD.owner_id, -1, OLD.memory_mb, OLD.vcpus);
        END IF;
        IF OLD.node_id IS NOT NULL THEN
            PERFORM stacyvm_usage_add('node:' || OLD.node_id, -1, OLD.memory_mb, OLD.vcpus);
        END IF;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.counted = 1 THEN
        PERFORM stacyvm_usage_add('all', 1, NEW.memory_mb, NEW.vcpus);
        IF NEW.owner_id IS NOT NULL THEN
            PERFORM stacyvm_usage_add('owner:' || NEW.owner_id, 1, NEW.memory_mb, NEW.vcpus);
        END IF;
        IF NEW.node_id IS NOT NULL THEN
            PERFORM stacyvm_usage_add('node:' || NEW.node_id, 1, NEW.memory_mb, NEW.vcpus);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sandboxes_usage_insert_delete
AFTER INSERT OR DELETE ON sandboxes
FOR EACH ROW EXECUTE FUNCTION stacyvm_sandboxes_usage();

-- Only updates that change what is counted touch the totals, so the common
-- transitions (creating → running) never contend on the `all` row.
CREATE TRIGGER sandboxes_usage_update
AFTER UPDATE ON sandboxes
FOR EACH ROW
WHEN (OLD.counted IS DISTINCT FROM NEW.counted
      OR OLD.owner_id IS DISTINCT FROM NEW.owner_id
      OR OLD.node_id IS DISTINCT FROM NEW.node_id
      OR OLD.memory_mb IS DISTINCT FROM NEW.memory_mb
      OR OLD.vcpus IS DISTINCT FROM NEW.vcpus)
EXECUTE FUNCTION stacyvm_sandboxes_usage();
