#!/usr/bin/env bash
# Make sure the local PostgreSQL and Redis that DATABASE_URL, TEST_DATABASE_URL and BROKER_URL
# name are reachable, starting the installed ones when they are down, and create the databases.
# Stops with a message that says what is missing when a service is neither up nor installed.
set -euo pipefail

database_url=${DATABASE_URL:-postgresql://localhost/walletpipe}
test_database_url=${TEST_DATABASE_URL:-postgresql://localhost/walletpipe_test}
broker_url=${BROKER_URL:-redis://localhost:6379/0}

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

# host and port of a URL like scheme://user:pass@host:port/db
url_host() { local rest=${1#*://}; rest=${rest%%/*}; rest=${rest##*@}; echo "${rest%%:*}"; }
url_port() { local rest=${1#*://}; rest=${rest%%/*}; rest=${rest##*@}; [[ $rest == *:* ]] && echo "${rest##*:}" || echo "$2"; }
url_db() { local rest=${1#*://}; rest=${rest#*/}; echo "${rest%%\?*}"; }
is_local() { [[ $1 == localhost || $1 == 127.0.0.1 || $1 == ::1 || -z $1 ]]; }

wait_for() { # command... ; up to 30 s
  for _ in $(seq 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}

ensure_postgres() {
  local host port
  host=$(url_host "$database_url"); port=$(url_port "$database_url" 5432)
  command -v pg_isready >/dev/null || die "PostgreSQL client tools are missing: apt-get install -y postgresql"
  if ! pg_isready -q -h "${host:-127.0.0.1}" -p "$port"; then
    is_local "$host" || die "PostgreSQL at $host:$port is not reachable; check DATABASE_URL."
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [[ -n $version ]] || die "PostgreSQL is not installed: apt-get update && apt-get install -y postgresql"
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start \
      || die "could not start PostgreSQL $version; see /var/log/postgresql/"
    wait_for pg_isready -q -h 127.0.0.1 -p "$port" || die "PostgreSQL did not come up on port $port"
  fi
  for url in "$database_url" "$test_database_url"; do
    local db h p
    db=$(url_db "$url"); h=$(url_host "$url"); p=$(url_port "$url" 5432)
    if ! psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
      is_local "$h" || die "cannot connect to $url; create the database or fix the URL."
      # The role may be missing on a fresh server: create it through the postgres superuser.
      local me=${PGUSER:-$(id -un)}
      psql -h "${h:-127.0.0.1}" -p "$p" -U postgres -d postgres -Atqc \
        "select 1 from pg_roles where rolname = '$me'" 2>/dev/null | grep -q 1 \
        || psql -h "${h:-127.0.0.1}" -p "$p" -U postgres -d postgres -qc \
             "create role \"$me\" login superuser" 2>/dev/null || true
      say "creating database $db"
      createdb -h "${h:-127.0.0.1}" -p "$p" "$db" 2>/dev/null || true
      psql "$url" -Atqc 'select 1' >/dev/null 2>&1 \
        || die "cannot connect to $url: create the role and database (createdb $db) or fix the URL."
    fi
  done
}

ensure_redis() {
  local host port
  host=$(url_host "$broker_url"); port=$(url_port "$broker_url" 6379)
  [[ $broker_url == redis://* ]] || return 0
  if command -v redis-cli >/dev/null && redis-cli -h "${host:-127.0.0.1}" -p "$port" ping 2>/dev/null | grep -q PONG; then
    return 0
  fi
  is_local "$host" || die "Redis at $host:$port is not reachable; check BROKER_URL."
  command -v redis-server >/dev/null || die "Redis is not installed: apt-get update && apt-get install -y redis-server"
  say "starting Redis on port $port"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$port" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null \
    || die "could not start Redis; see /var/log/redis/ci.log"
  wait_for redis-cli -h 127.0.0.1 -p "$port" ping || die "Redis did not come up on port $port"
}

ensure_postgres
ensure_redis
say "PostgreSQL and Redis are reachable"
