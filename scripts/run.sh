#!/usr/bin/env bash
# run.sh -- `make run`: a private redis-server on loopback (password, AOF,
# data under data/) and duckgrid with the demo data. Ctrl-C stops both.
#
# Settings: REDIS_PORT (default 6379), and any DUCKGRID_* variable.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA_DIR:-data}
REDIS_PORT=${REDIS_PORT:-6379}
mkdir -p "$DATA"
chmod 700 "$DATA"

# A Redis password made once and kept beside the data (mode 0600).
if [ ! -s "$DATA/redis.password" ]; then
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DATA/redis.password")
fi
REDIS_PASS=$(cat "$DATA/redis.password")

if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 ||
   redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>&1 | grep -q NOAUTH; then
  echo "run: port $REDIS_PORT is taken by another Redis; set REDIS_PORT to a free port" >&2
  exit 1
fi

# The password goes to redis-server through its config on stdin, not argv.
printf 'requirepass %s\n' "$REDIS_PASS" | redis-server - \
  --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
  --dir "$PWD/$DATA" --appendonly yes --appendfsync always --save '' \
  --daemonize no --logfile "$PWD/$DATA/redis.log" &
REDIS_PID=$!
SERVER_PID=

stop() {
  trap - INT TERM EXIT
  [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  kill -TERM "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null || true
  echo "run: stopped duckgrid and redis-server"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

for _ in $(seq 1 100); do
  REDISCLI_AUTH=$REDIS_PASS redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
  kill -0 "$REDIS_PID" 2>/dev/null || { echo "run: redis-server failed; see $DATA/redis.log" >&2; exit 1; }
  sleep 0.1
done

export DUCKGRID_REDIS_URL="redis://:${REDIS_PASS}@127.0.0.1:${REDIS_PORT}/0"
export DUCKGRID_DB=${DUCKGRID_DB:-$DATA/duckgrid.duckdb}
export DUCKGRID_LISTEN=${DUCKGRID_LISTEN:-127.0.0.1:8080}
export DUCKGRID_DEMO=${DUCKGRID_DEMO:-1}

build/duckgrid serve &
SERVER_PID=$!

for _ in $(seq 1 100); do
  curl -fsS "http://$DUCKGRID_LISTEN/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "run: duckgrid failed to start" >&2; exit 1; }
  sleep 0.1
done

KEY=${DUCKGRID_ADMIN_KEY:-$(cat "$DUCKGRID_DB.admin-key" 2>/dev/null || true)}
cat <<MSG

  duckgrid is running at http://$DUCKGRID_LISTEN
  admin key:  $KEY
  try:        curl -H "Authorization: Bearer $KEY" http://$DUCKGRID_LISTEN/health
  stop:       Ctrl-C

MSG
wait "$SERVER_PID"
