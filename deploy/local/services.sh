#!/usr/bin/env bash
# Starts/stops every service of deploy/services.conf against the dev infrastructure (infra.sh dev):
# creates each service's database and role if missing, runs it in the background with its log in
# .local/dev/logs/<name>.log and its pid in .local/dev/run/<name>.pid, and waits for /readyz.
# Environment given to `make up` (OMS_ADMIN_TOKEN, SMTP_HOST, ...) reaches every service. A service
# already running is restarted when the settings it would get now differ from those it was started
# with (deploy/local/service_env.py records them, hashed, in .local/dev/run/<name>.env).
# Replicas: REPLICAS=3 runs three processes of every service, REPLICAS="orchestrator=3,inventory=2" of
# those named (others one). Replica k (from 0) listens on port + k*REPLICA_PORT_STEP (100: 8001, 8101,
# 8201), has its own pid/log/settings files (<name>.<k>.*; replica 0 keeps <name>.*) and its own
# KAFKA_GROUP_INSTANCE_ID (<name>-<port>); all replicas of a service share its consumer groups and
# database (its outbox relay leads in one of them). `up` with fewer replicas stops the extra ones.
# With no OMS_ADMIN_TOKEN (or CARRIER_WEBHOOK_SECRET) given, a dev one is generated once and kept in
# .local/dev/admin-token (carrier-webhook-secret), so operator calls and `make demo` work at once.
# With no SMTP_HOST given, a local mail sink (aiosmtpd) takes the emails on 127.0.0.1:1025 and
# prints them to .local/dev/logs/mail.log (tests: only with MAIL_SINK_PORT, its port).
# ONLY=<instance>[,<instance>] limits `up` to those (e.g. ONLY=orchestrator.1: start it again after a crash,
# as `make chaos` does) and stops no extra replica.
# READY_SECONDS (default 120): how long each process may take to answer /readyz (2 cores starting 15
# processes beside Kafka and PostgreSQL, each replica joining its groups, can take more than a minute).
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
# Ready, and what /readyz reports without requiring it ("details": order capture's consumers) is up too.
all_up() { local body; body=$(curl -sf "http://127.0.0.1:$1/readyz") && ! grep -qE '"details":\{[^}]*"(waiting|error)' <<<"$body"; }
services() { grep -vE '^\s*(#|$)' "$CONF"; }
STEP=${REPLICA_PORT_STEP:-100}

replicas() {  # how many processes of service $1 REPLICAS asks for
  local spec=${REPLICAS:-1} item n=""
  if [[ $spec =~ ^[0-9]+$ ]]; then n=$spec; else
    for item in ${spec//,/ }; do [ "${item%%=*}" = "$1" ] && n=${item#*=}; done
  fi
  n=${n:-1}
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "REPLICAS: '$n' for $1 is not a count of 1 or more" >&2; exit 2; }
  echo "$n"
}
# Every process to run: instance name (file names), service name, module, port, database.
instances() {
  local name module port db k n inst
  while read -r name module port db; do
    n=$(replicas "$name")
    for ((k = 0; k < n; k++)); do
      inst=$name; [ "$k" = 0 ] || inst=$name.$k
      [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *",$inst,"* ]] || continue
      echo "$inst $name $module $((port + k * STEP)) $db"
    done
  done < <(services)
}
# Every instance with a pid file, running or not (replicas of an earlier `up` included).
recorded() {
  local name module port db f
  while read -r name module port db; do
    for f in "$RUN/$name.pid" "$RUN/$name".[0-9]*.pid; do [ -f "$f" ] && basename "$f" .pid; done
  done < <(services)
  return 0
}

ENSURED=" "
ensure_db() {  # role and database named after the service, owned by it (once per service, not per replica)
  local db=$1
  [[ $ENSURED == *" $db "* ]] && return 0
  # One psql for both checks (each psql start costs a noticeable moment on a busy machine).
  local have; have=$(psql "$PG_ADMIN_DSN" -qtAc "SELECT (SELECT count(*) FROM pg_roles WHERE rolname='$db')::text
    || (SELECT count(*) FROM pg_database WHERE datname='$db')::text")
  [ "${have:0:1}" = 1 ] || psql "$PG_ADMIN_DSN" -qc "CREATE ROLE $db LOGIN"
  [ "${have:1:1}" = 1 ] || psql "$PG_ADMIN_DSN" -qc "CREATE DATABASE $db OWNER $db"
  ENSURED+="$db "
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

# A value given in the environment wins; else the one generated once into $STATE/<file>.
dev_secret() {
  local var=$1 file="$STATE/$2"
  if [ -n "${!var:-}" ]; then return; fi
  [ -s "$file" ] || ( umask 077; "$PY" -c 'import secrets; print("dev-" + secrets.token_urlsafe(24))' > "$file" )
  export "$var=$(cat "$file")"
  echo "[services] no $var given: using the dev one kept in ${file#"$ROOT"/}"
}

# Only when no SMTP server was given (notification's default is 127.0.0.1:1025); in tests (external
# infrastructure) only when they name its port, MAIL_SINK_PORT (the chaos run reads mail.log).
mail_sink() {
  [ -z "${SMTP_HOST:-}" ] || return 0
  [ "${OMS_SERVICES_INFRA:-}" != external ] || [ -n "${MAIL_SINK_PORT:-}" ] || return 0
  local port=${MAIL_SINK_PORT:-1025}
  [ -z "${MAIL_SINK_PORT:-}" ] || export SMTP_PORT=$port
  alive "$RUN/mail.pid" && return 0
  echo "[services] no SMTP_HOST given: a local mail sink on 127.0.0.1:$port prints every email to ${LOGS#"$ROOT"/}/mail.log"
  nohup "$PY" -u -m aiosmtpd -n -l "127.0.0.1:$port" < /dev/null >> "$LOGS/mail.log" 2>&1 &
  echo $! > "$RUN/mail.pid"
}

case "$CMD" in
  up)
    dev_secret OMS_ADMIN_TOKEN admin-token
    dev_secret CARRIER_WEBHOOK_SECRET carrier-webhook-secret
    mail_sink
    pg_host_port=${PG_ADMIN_DSN#*@}; pg_host_port=${pg_host_port%%/*}
    wanted=$(instances)
    for inst in $(recorded); do  # replicas beyond the count asked for now
      [ -n "${ONLY:-}" ] || grep -q "^$inst " <<< "$wanted" || stop_service "$inst"
    done
    while read -r inst name module port db; do
      ensure_db "$db"
      # What this service gets: the caller's environment plus these (the same in both places below).
      svc_env=(SERVICE_NAME="$name" HTTP_PORT="$port" DATABASE_URL="postgresql://$db@$pg_host_port/$db"
               KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP" ZIPKIN_ENDPOINT="${ZIPKIN_ENDPOINT:-${ZIPKIN_SPANS:-}}"
               KAFKA_GROUP_INSTANCE_ID="$name-$port")
      ( umask 077; "$PY" "$ROOT/deploy/local/service_env.py" "$module" "${svc_env[@]}" > "$RUN/$inst.env.new" )
      if alive "$RUN/$inst.pid"; then
        if [ ! -f "$RUN/$inst.env" ]; then
          echo "[services] $inst already running on :$port (its settings were not recorded: \`make down && make up\` applies the current ones)"
          rm -f "$RUN/$inst.env.new"; continue
        fi
        diff=$("$PY" "$ROOT/deploy/local/service_env.py" --diff "$RUN/$inst.env" "$RUN/$inst.env.new")
        if [ -z "$diff" ]; then
          echo "[services] $inst already running on :$port"; rm -f "$RUN/$inst.env.new"; continue
        fi
        echo "[services] $inst: settings changed since it started ($diff): restarting it with the new ones"
        stop_service "$inst"
      fi
      echo "[services] starting $inst on 127.0.0.1:$port"
      env "${svc_env[@]}" nohup "$PY" -m "$module" < /dev/null >> "$LOGS/$inst.log" 2>&1 &
      echo $! > "$RUN/$inst.pid"
      mv "$RUN/$inst.env.new" "$RUN/$inst.env"
    done < <(instances)
    while read -r inst name module port db; do
      ready=0
      for _ in $(seq 1 $((2 * ${READY_SECONDS:-120}))); do
        if all_up "$port"; then echo "[services] $inst ready: http://127.0.0.1:$port"; ready=1; break; fi
        alive "$RUN/$inst.pid" || { echo "$inst exited; last lines of $LOGS/$inst.log:" >&2; tail -20 "$LOGS/$inst.log" >&2; exit 1; }
        sleep 0.5
      done
      # Not asked again once seen ready: a service that was ready and is briefly not (a rebalance
      # under way) is not one that never started.
      [ "$ready" = 1 ] || all_up "$port" || {
        echo "$inst not ready after ${READY_SECONDS:-120}s ($(curl -s "http://127.0.0.1:$port/readyz" || echo "no answer" ));" \
             "last lines of $LOGS/$inst.log:" >&2; tail -20 "$LOGS/$inst.log" >&2
        # Where it is stuck (py-spy is a dev dependency; it needs ptrace rights, so it may say no).
        [ ! -x "$ROOT/.venv/bin/py-spy" ] || { echo "its threads now:" >&2; "$ROOT/.venv/bin/py-spy" dump --pid "$(cat "$RUN/$inst.pid")" >&2 || true; }
        exit 1; }
    done < <(instances) ;;
  down)
    for inst in $(recorded); do stop_service "$inst"; done
    stop_service mail ;;
  status)
    while read -r inst name module port db; do
      if alive "$RUN/$inst.pid"; then echo "$inst: running on :$port (pid $(cat "$RUN/$inst.pid"))"; else echo "$inst: stopped"; fi
    done < <(instances)
    if alive "$RUN/mail.pid"; then echo "mail sink: running on :1025 (pid $(cat "$RUN/mail.pid"))"; fi ;;
  *) echo "unknown command $CMD" >&2; exit 2 ;;
esac
