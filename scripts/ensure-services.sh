#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer before the tests run.
# Starts local servers that are installed but stopped; installs them with apt when missing and
# apt is usable. With TEST_DATABASE_URL set, the PostgreSQL step is skipped; with a Docker
# daemon answering, both are (the tests start containers).
set -euo pipefail

log() { echo "ensure-services: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() {
  command -v apt-get >/dev/null || return 1
  as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

docker_answers() { command -v docker >/dev/null && timeout 5 docker info >/dev/null 2>&1; }

# Where a Docker daemon answers, tests/conftest.py runs PostgreSQL and Redis in containers
# (tests/support/backends.py): local servers are not needed, so none are installed or started.
if docker_answers; then
  log "a Docker daemon answers (DOCKER_HOST=${DOCKER_HOST:-default}): the tests use containers"
  exit 0
fi

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 -t 2 2>/dev/null; }
redis_up() { [ "$(timeout 2 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  if ! command -v pg_isready >/dev/null && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "PostgreSQL is not installed; installing it"
    apt_install postgresql || log "could not install PostgreSQL; tests will use testcontainers or an embedded server"
  fi
  if command -v pg_isready >/dev/null && ! pg_up; then
    log "starting the local PostgreSQL cluster"
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$version" ]; then
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  if command -v pg_isready >/dev/null && pg_up; then log "PostgreSQL answers on 127.0.0.1:5432"; fi
fi

if [ -z "${TEST_REDIS_URL:-}" ]; then
  if ! command -v redis-server >/dev/null; then
    log "Redis is not installed; installing it"
    apt_install redis-server || { log "could not install Redis"; exit 1; }
  fi
  if ! redis_up; then
    log "starting a local Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  fi
  redis_up || { log "Redis does not answer on 127.0.0.1:6379"; exit 1; }
  log "Redis answers on 127.0.0.1:6379"
fi
