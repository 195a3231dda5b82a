#!/usr/bin/env bash
# Make PostgreSQL's server programs (initdb, pg_ctl) available for the promotion tests that run
# `mlflow server` on a PostgreSQL backend store. The tests create, start and remove their own
# cluster on 127.0.0.1; this script only installs Debian's postgresql package when no initdb is
# found on PATH or under /usr/lib/postgresql. Without root or apt-get it only warns, unless
# CI=true, where it fails so that those tests cannot be skipped silently.
set -euo pipefail

have_postgres() {
    [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ] && return 0
    command -v initdb >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if have_postgres; then
    exit 0
fi

fail() {
    echo "postgres_setup: $1" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
    echo "postgres_setup: the PostgreSQL promotion tests will be skipped." >&2
    exit 0
}

command -v apt-get >/dev/null 2>&1 || fail "PostgreSQL is missing and apt-get is not available; install PostgreSQL 13+ server programs."
SUDO=""
if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null 2>&1 || fail "PostgreSQL is missing; installing it needs root: apt-get install postgresql."
    SUDO="sudo -n"
fi
echo "postgres_setup: installing PostgreSQL from Debian packages" >&2
$SUDO apt-get update -qq
# The package's own cluster is not needed: the tests start theirs in a temporary folder.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql \
    || fail "apt-get install postgresql failed."
have_postgres || fail "postgresql installed, but no initdb was found under /usr/lib/postgresql."
