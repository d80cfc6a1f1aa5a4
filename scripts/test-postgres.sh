#!/usr/bin/env bash
# The PostgreSQL server the test suite runs the server's tests against (the other backend is PGlite).
# Sourced by scripts/test.sh; also runnable alone. Idempotent: installs Debian's `postgresql` when
# missing, keeps a cluster of its own (trust auth, loopback only) under $WRENN_DIR/test-postgres,
# starts it when it is not running, and exports TEST_DATABASE_URL. A TEST_DATABASE_URL that is set
# already is used as it is. The cluster is left running for the next run: `pg_ctl stop -D <dir>`.
set -euo pipefail

WRENN_DIR=${WRENN_DIR:-/var/lib/wrenn}
TEST_PG_PORT=${WRENN_TEST_PG_PORT:-54329}
pg_dir="$WRENN_DIR/test-postgres"

if [ -n "${TEST_DATABASE_URL:-}" ]; then
  echo "using TEST_DATABASE_URL as given"
else
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    echo "installing Debian's postgresql"
    apt-get update -q
    # policy-rc.d 101: the package must not start Debian's own cluster; ours is started below.
    policy=/usr/sbin/policy-rc.d
    if [ -e "$policy" ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
    else
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod +x "$policy"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql || {
        rm -f "$policy"
        exit 1
      }
      rm -f "$policy"
    fi
  fi
  # The newest installed major version.
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  mkdir -p "$pg_dir"
  chown postgres:postgres "$pg_dir"
  as_pg() { runuser -u postgres -- "$@"; }
  if [ ! -f "$pg_dir/data/PG_VERSION" ]; then
    echo "creating the test cluster in $pg_dir/data"
    as_pg "$bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$pg_dir/initdb.log"
  fi
  if as_pg "$bin/pg_ctl" -D "$pg_dir/data" status >/dev/null 2>&1; then
    echo "test PostgreSQL already running on 127.0.0.1:$TEST_PG_PORT"
  else
    # fsync off: a test cluster trades durability for speed; nothing in it outlives a run.
    as_pg "$bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 start \
      -o "-p $TEST_PG_PORT -c listen_addresses=127.0.0.1 -k $pg_dir -c fsync=off -c max_connections=200" >/dev/null
    echo "test PostgreSQL $("$bin/postgres" --version | awk '{print $3}') started on 127.0.0.1:$TEST_PG_PORT (log: $pg_dir/server.log)"
  fi
  export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$TEST_PG_PORT/postgres"
fi
