-- E2B: the default environment of a sandbox's commands (`envVars` at
-- create), a JSON object of strings. Kept out of `sandboxes` so that no
-- listing carries it (it may hold secrets); a row outlives nothing: the
-- E2B layer clears it when the sandbox is killed.

CREATE TABLE sandbox_env (
    sandbox_id TEXT NOT NULL PRIMARY KEY,
    env        TEXT NOT NULL
) STRICT;
