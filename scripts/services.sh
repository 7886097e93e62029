#!/usr/bin/env bash
# Make sure the real local services the test suite talks to are installed and running:
# PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379. Starts (or installs, on a fresh
# Debian machine) only what is missing; never stops anything.
set -euo pipefail
say() { printf '\033[1m[services]\033[0m %s\n' "$*" >&2; }
apt_updated=0
apt_install() {
  [ "$apt_updated" = 1 ] || { apt-get update -qq >/dev/null; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c5 <&3 | grep -q PONG) 2>/dev/null; }

if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing PostgreSQL"; apt_install postgresql
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  conf=/etc/postgresql/$ver/main
  # Local trust auth over TCP for the test role, as on the project's machines.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf/pg_hba.conf"
  fi
  say "starting PostgreSQL $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 30); do pg_up && break; sleep 1; done
  pg_up || { say "PostgreSQL did not start"; exit 1; }
fi
# The suite connects as postgres; create database `test` if a fresh cluster lacks it.
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE test" >/dev/null

if ! redis_up; then
  command -v redis-server >/dev/null || { say "installing Redis"; apt_install redis-server; }
  say "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 20); do redis_up && break; sleep 0.5; done
  redis_up || { say "Redis did not start"; exit 1; }
fi
say "PostgreSQL and Redis are up"

# The Pub/Sub emulator: the tests start their own instances (free ports, so one can be stopped and
# restarted mid-test); here we only make sure it can run, and fail early and clearly when not.
if ! command -v gcloud >/dev/null || ! gcloud beta emulators pubsub env-init --help >/dev/null 2>&1; then
  say "the Google Cloud CLI with the Pub/Sub emulator is missing (gcloud beta emulators pubsub);"
  say "install google-cloud-cli and google-cloud-cli-pubsub-emulator (and a Java runtime)"; exit 1
fi
command -v java >/dev/null || { say "installing a Java runtime for the Pub/Sub emulator"; apt_install default-jre-headless; }
say "Pub/Sub emulator available: $(gcloud --version 2>/dev/null | head -n1)"
