#!/usr/bin/env bash
# Start a local PostgreSQL for the carrier server's tests and benchmarks (idempotent).
#
#   bash scripts/postgres.sh                 # start cluster, ensure role + database
#   bash scripts/postgres.sh --fresh         # … and recreate the database empty (the test command)
#   eval "$(bash scripts/postgres.sh | tail -n 1 | sed 's/^/export /')"
#
# Uses the Debian `postgresql` package (scripts/setup.sh installs it). Finds the
# first cluster with pg_lsclusters (creates one with pg_createcluster if there is
# none), starts it if it is down, creates the role `cpe` (LOGIN, password) and the
# database `cpe_test` owned by it if they are missing, and prints
#   CPE_TEST_POSTGRES_URL=postgres://cpe:PASSWORD@127.0.0.1:PORT/cpe_test
# as its last line. Safe with CI=true and no stdin; each step prints one line.
#
# Overrides: CPE_PG_USER (cpe), CPE_PG_PASSWORD (cpe-test), CPE_PG_DATABASE (cpe_test).
set -euo pipefail

FRESH=0
for arg in "$@"; do
    case "$arg" in
        --fresh) FRESH=1 ;;
        *)
            printf '[postgres] ERROR: unknown option %s (known: --fresh)\n' "$arg" >&2
            exit 2
            ;;
    esac
done

PG_USER="${CPE_PG_USER:-cpe}"
PG_PASSWORD="${CPE_PG_PASSWORD:-cpe-test}"
PG_DATABASE="${CPE_PG_DATABASE:-cpe_test}"

step() { printf '[postgres] %-30s %s\n' "$1" "$2"; }
die() {
    printf '[postgres] ERROR: %s\n' "$*" >&2
    exit 1
}

case "$PG_USER$PG_DATABASE" in
    *[!a-zA-Z0-9_]*) die "CPE_PG_USER and CPE_PG_DATABASE may only contain letters, digits and _" ;;
esac
case "$PG_PASSWORD" in
    *[!a-zA-Z0-9_.-]*) die "CPE_PG_PASSWORD may only contain letters, digits, '_', '.' and '-'" ;;
esac

command -v pg_lsclusters >/dev/null 2>&1 ||
    die "pg_lsclusters not found: install the Debian package 'postgresql' (bash scripts/setup.sh)"

# Run a command as the postgres OS user, without any prompt.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@" </dev/null
    elif [ "$(id -un)" = postgres ]; then
        "$@" </dev/null
    else
        sudo -n -u postgres -- "$@" </dev/null
    fi
}
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@" </dev/null; else sudo -n -- "$@" </dev/null; fi
}

# 1. The cluster: the first one listed, or a new one for the newest installed version.
cluster_line() { pg_lsclusters --no-header 2>/dev/null | head -n 1; }
line="$(cluster_line)"
if [ -z "$line" ]; then
    version="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)"
    [ -n "$version" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
    step "cluster" "none found: pg_createcluster $version main"
    as_root pg_createcluster "$version" main >/dev/null
    line="$(cluster_line)"
    [ -n "$line" ] || die "pg_createcluster did not create a cluster"
fi
read -r version name port status _ <<<"$line"
step "cluster" "$version/$name on port $port ($status)"

# 2. Running?
if [ "${status%%,*}" != online ]; then
    step "start" "pg_ctlcluster $version $name start"
    as_root pg_ctlcluster "$version" "$name" start
else
    step "start" "already running"
fi
for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
    sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$port" || die "server on 127.0.0.1:$port is not accepting connections"
step "ready" "127.0.0.1:$port accepts connections"

psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres -tAc "$1"; }

# 3. Role (password reset every time so the printed URL is always right).
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" = 1 ]; then
    psql_admin "ALTER ROLE $PG_USER WITH LOGIN PASSWORD '$PG_PASSWORD'" >/dev/null
    step "role $PG_USER" "already present (password set)"
else
    psql_admin "CREATE ROLE $PG_USER WITH LOGIN PASSWORD '$PG_PASSWORD'" >/dev/null
    step "role $PG_USER" "created"
fi

# 4. Database (dropped first with --fresh: tests expect a store without
#    devices left over from earlier runs or benchmarks).
if [ "$FRESH" = 1 ] && [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" = 1 ]; then
    psql_admin "DROP DATABASE $PG_DATABASE WITH (FORCE)" >/dev/null
    step "database $PG_DATABASE" "dropped (--fresh)"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" = 1 ]; then
    step "database $PG_DATABASE" "already present"
else
    psql_admin "CREATE DATABASE $PG_DATABASE OWNER $PG_USER" >/dev/null
    step "database $PG_DATABASE" "created (owner $PG_USER)"
fi

# 5. Check the URL works with password authentication over TCP.
if PGPASSWORD="$PG_PASSWORD" psql -X -q -h 127.0.0.1 -p "$port" -U "$PG_USER" -d "$PG_DATABASE" \
    -tAc 'SELECT 1' </dev/null >/dev/null; then
    step "login" "ok ($PG_USER@127.0.0.1:$port/$PG_DATABASE)"
else
    die "cannot log in as $PG_USER over TCP: check pg_hba.conf of cluster $version/$name"
fi

echo "CPE_TEST_POSTGRES_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/$PG_DATABASE"
