#!/usr/bin/env bash
# Starts/stops every service of deploy/services.conf against the dev infrastructure (infra.sh dev):
# creates each service's database and role if missing, runs it in the background with its log in
# .local/dev/logs/<name>.log and its pid in .local/dev/run/<name>.pid, and waits for /readyz.
# Environment given to `make up` (OMS_ADMIN_TOKEN, SMTP_HOST, ...) reaches every service. A service
# already running is restarted when the settings it would get now differ from those it was started
# with (deploy/local/service_env.py records them, hashed, in .local/dev/run/<name>.env).
# Overrides (tests): SERVICES_CONF, OMS_STATE_DIR, and OMS_SERVICES_INFRA=external with
# KAFKA_BOOTSTRAP and PG_ADMIN_DSN given instead of the dev infrastructure's.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CMD=${1:?up|down|status}
CONF=${SERVICES_CONF:-$ROOT/deploy/services.conf}
STATE=${OMS_STATE_DIR:-$ROOT/.local/dev}; RUN="$STATE/run"; LOGS="$STATE/logs"
[ "${OMS_SERVICES_INFRA:-}" = external ] || eval "$("$ROOT/deploy/local/infra.sh" dev env)"
PY="$ROOT/.venv/bin/python"
mkdir -p "$RUN" "$LOGS"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
services() { grep -vE '^\s*(#|$)' "$CONF"; }

ensure_db() {  # role and database named after the service, owned by it
  local db=$1
  psql "$PG_ADMIN_DSN" -qtAc "SELECT 1 FROM pg_roles WHERE rolname='$db'" | grep -q 1 ||
    psql "$PG_ADMIN_DSN" -qc "CREATE ROLE $db LOGIN"
  psql "$PG_ADMIN_DSN" -qtAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 ||
    psql "$PG_ADMIN_DSN" -qc "CREATE DATABASE $db OWNER $db"
}

stop_service() {
  local name=$1 pid
  if alive "$RUN/$name.pid"; then
    pid=$(cat "$RUN/$name.pid"); echo "[services] stopping $name (pid $pid)"; kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid" "$RUN/$name.env"
}

case "$CMD" in
  up)
    pg_host_port=${PG_ADMIN_DSN#*@}; pg_host_port=${pg_host_port%%/*}
    while read -r name module port db; do
      ensure_db "$db"
      # What this service gets: the caller's environment plus these (the same in both places below).
      svc_env=(SERVICE_NAME="$name" HTTP_PORT="$port" DATABASE_URL="postgresql://$db@$pg_host_port/$db"
               KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP" ZIPKIN_ENDPOINT="${ZIPKIN_ENDPOINT:-${ZIPKIN_SPANS:-}}"
               KAFKA_GROUP_INSTANCE_ID="${KAFKA_GROUP_INSTANCE_ID:-$name-$port}")
      ( umask 077; "$PY" "$ROOT/deploy/local/service_env.py" "$module" "${svc_env[@]}" > "$RUN/$name.env.new" )
      if alive "$RUN/$name.pid"; then
        if [ ! -f "$RUN/$name.env" ]; then
          echo "[services] $name already running on :$port (its settings were not recorded: \`make down && make up\` applies the current ones)"
          rm -f "$RUN/$name.env.new"; continue
        fi
        diff=$("$PY" "$ROOT/deploy/local/service_env.py" --diff "$RUN/$name.env" "$RUN/$name.env.new")
        if [ -z "$diff" ]; then
          echo "[services] $name already running on :$port"; rm -f "$RUN/$name.env.new"; continue
        fi
        echo "[services] $name: settings changed since it started ($diff): restarting it with the new ones"
        stop_service "$name"
      fi
      echo "[services] starting $name on 127.0.0.1:$port"
      env "${svc_env[@]}" nohup "$PY" -m "$module" < /dev/null >> "$LOGS/$name.log" 2>&1 &
      echo $! > "$RUN/$name.pid"
      mv "$RUN/$name.env.new" "$RUN/$name.env"
    done < <(services)
    while read -r name module port db; do
      for _ in $(seq 1 120); do
        if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; then echo "[services] $name ready: http://127.0.0.1:$port"; break; fi
        alive "$RUN/$name.pid" || { echo "$name exited; last lines of $LOGS/$name.log:" >&2; tail -20 "$LOGS/$name.log" >&2; exit 1; }
        sleep 0.5
      done
      curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "$name not ready after 60s; see $LOGS/$name.log" >&2; exit 1; }
    done < <(services) ;;
  down)
    while read -r name module port db; do stop_service "$name"; done < <(services) ;;
  status)
    while read -r name module port db; do
      if alive "$RUN/$name.pid"; then echo "$name: running on :$port (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
    done < <(services) ;;
  *) echo "unknown command $CMD" >&2; exit 2 ;;
esac
