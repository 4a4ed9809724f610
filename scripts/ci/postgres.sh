#!/usr/bin/env bash
# Installs (when missing) and starts Debian's PostgreSQL on 127.0.0.1 with a
# `stacyvm` role and database for the Postgres store tests, then prints the
# test URL on stdout (everything else goes to stderr). Idempotent.
#
#   export STACYVM_TEST_POSTGRES_URL="$(scripts/ci/postgres.sh)"
#   cargo nextest run -p stacyvm-store
#
# With arguments it manages another cluster of the same version, for tests
# that restart or kill their PostgreSQL (the cluster tests) without touching
# the shared one:
#
#   scripts/ci/postgres.sh cluster2 5433   # -> postgres://...:5433/stacyvm
#
# The password is a throw-away test credential for a server that listens on
# the loopback interface only.
set -euo pipefail

ROLE=stacyvm
PASSWORD=stacyvm
DB=stacyvm

log() { echo "postgres.sh: $*" >&2; }

if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null \
    || ! command -v pg_ctlcluster >/dev/null; then
    log "installing postgresql"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
cluster=${1:-main}
wanted_port=${2:-}
if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { found = 1 } END { exit !found }'; then
    log "creating cluster $version/$cluster"
    pg_createcluster "$version" "$cluster" ${wanted_port:+-p "$wanted_port"} >&2
fi

# Loopback only, whatever the packaged default says (conf.d is included by
# Debian's postgresql.conf and read last).
conf_dir="/etc/postgresql/$version/$cluster/conf.d"
mkdir -p "$conf_dir"
printf "listen_addresses = '127.0.0.1'\n" >"$conf_dir/stacyvm-test.conf"

port=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $3 }')
status=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $4 }')
if [ "$status" != online ]; then
    log "starting cluster $version/$cluster on 127.0.0.1:$port"
    pg_ctlcluster "$version" "$cluster" start >&2
fi

for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 1
done
pg_isready -h 127.0.0.1 -p "$port" >&2

psql_admin() {
    runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -p "$port" "$@"
}

psql_admin -d postgres >&2 <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
        CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD';
    END IF;
END
\$\$;
SQL
if [ "$cluster" != main ]; then
    # The cluster tests make a database and a role (with a password of
    # their own, to check it never shows) per test.
    psql_admin -d postgres -c "ALTER ROLE $ROLE CREATEDB CREATEROLE" >&2
fi
if ! psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    log "creating database $DB"
    psql_admin -d postgres -c "CREATE DATABASE $DB OWNER $ROLE" >&2
fi

echo "postgres://$ROLE:$PASSWORD@127.0.0.1:$port/$DB"
