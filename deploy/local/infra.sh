#!/usr/bin/env bash
# Installs (if missing) and runs the real infrastructure on this machine without Docker:
# Apache Kafka in KRaft mode from the official jars on Maven Central, and PostgreSQL from the
# system's binaries in a private data folder. Two profiles keep `make up` and `make test` apart:
#   dev  - Kafka 9092, PostgreSQL 55432, data in .local/dev   (make up / down / clean)
#   test - Kafka 19092, PostgreSQL 55433, data in .local/test (make test; wiped when started afresh,
#          reused as they are when already running, since every test makes its own databases)
# The dev profile also runs Zipkin (the trace UI, 127.0.0.1:9411) unless OMS_ZIPKIN=0.
# Usage: infra.sh <dev|test> <start|stop|status|clean|env|jars|zipkin-jar|restart-kafka|restart-postgres>
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PROFILE=${1:?profile dev|test}; CMD=${2:?command}
case "$PROFILE" in
  dev)  KAFKA_PORT=${KAFKA_PORT:-9092};  CTRL_PORT=${KAFKA_CONTROLLER_PORT:-9093};  PG_PORT=${PG_PORT:-55432} ;;
  test) KAFKA_PORT=${TEST_KAFKA_PORT:-19092}; CTRL_PORT=${TEST_KAFKA_CONTROLLER_PORT:-19093}; PG_PORT=${TEST_PG_PORT:-55433} ;;
  *) echo "unknown profile $PROFILE" >&2; exit 2 ;;
esac
STATE="$ROOT/.local/$PROFILE"; RUN="$STATE/run"; LOGS="$STATE/logs"
KAFKA_LIBS="$ROOT/.cache/kafka/libs"; M2="$ROOT/.cache/m2"
PG_SUPERUSER=oms
log() { printf '[infra:%s] %s\n' "$PROFILE" "$*"; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install $*" >&2; exit 1; fi
  if [ ! -f "$ROOT/.cache/apt-updated" ]; then
    log "apt-get update"; apt-get update -qq; mkdir -p "$ROOT/.cache"; touch "$ROOT/.cache/apt-updated"
  fi
  log "installing $* from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_java() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
}

ensure_kafka_jars() {
  # Fetched again when kafka-pom.xml changes (its hash is the marker). Into a fresh folder swapped in
  # at the end: a Kafka or a tool already running from the old one (another worktree's) keeps going.
  local want; want=$(sha256sum "$ROOT/deploy/local/kafka-pom.xml" | cut -c1-16)
  if [ "$(cat "$KAFKA_LIBS/.complete" 2>/dev/null)" != "$want" ]; then
    ensure_java
    log "fetching Apache Kafka jars from Maven Central into .cache/kafka (first run, or kafka-pom.xml changed)"
    local tmp="$KAFKA_LIBS.new.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    mvn -q -B -Dstyle.color=never -f "$ROOT/deploy/local/kafka-pom.xml" -Dmaven.repo.local="$M2" \
      dependency:copy-dependencies -DoutputDirectory="$tmp"
    echo "$want" > "$tmp/.complete"
    rm -rf "$KAFKA_LIBS.old.$$"; [ -d "$KAFKA_LIBS" ] && mv "$KAFKA_LIBS" "$KAFKA_LIBS.old.$$"
    mv -T "$tmp" "$KAFKA_LIBS" 2>/dev/null || rm -rf "$tmp"  # another run swapped its copy in first
    rm -rf "$KAFKA_LIBS.old.$$"
  fi
}

pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    apt_install postgresql
    d=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  echo "$d"
}

# PostgreSQL refuses to run as root: run it as the `postgres` system user when we are root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_pg() {
  local bin; bin=$(pg_bindir)
  local data="$STATE/pg"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL data folder $data"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$data"
    chmod 700 "$data"
    as_pg "$bin/initdb" -D "$data" -U "$PG_SUPERUSER" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$data'
max_connections = 300
shared_buffers = 256MB
max_wal_size = 2GB
log_min_duration_statement = -1
CONF
    if [ "$PROFILE" = test ]; then
      # Throwaway test data: durability of the test cluster itself is not under test.
      printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >> "$data/postgresql.conf"
    fi
  fi
  if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then log "PostgreSQL already running on $PG_PORT"; return; fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null
  head -1 "$data/postmaster.pid" > "$RUN/postgres.pid"
}

stop_pg() {
  local data="$STATE/pg"
  [ -f "$data/PG_VERSION" ] || return 0
  local bin; bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$bin" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "stopping PostgreSQL"; as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  fi
  rm -f "$RUN/postgres.pid"
}

start_kafka() {
  ensure_kafka_jars; ensure_java
  local dir="$STATE/kafka"; local props="$dir/server.properties"
  if alive "$RUN/kafka.pid"; then log "Kafka already running on $KAFKA_PORT"; return; fi
  mkdir -p "$dir/data"
  sed -e "s#@DATA@#$dir/data#" -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@CTRL@#$CTRL_PORT#g" \
    "$ROOT/deploy/local/kafka-server.properties" > "$props"
  local cp="$KAFKA_LIBS/*"
  if [ ! -f "$dir/data/meta.properties" ]; then
    log "formatting Kafka storage (KRaft)"
    local cid; cid=$(python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
    java -cp "$cp" -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka-log4j2.xml" -Dkafka.logs.dir="$LOGS" \
      kafka.tools.StorageTool format --cluster-id="$cid" -c "$props" >/dev/null
  fi
  log "starting Kafka (KRaft) on 127.0.0.1:$KAFKA_PORT"
  # A fresh log per start, so the readiness check below cannot match an earlier start's line.
  for f in kafka.log kafka.out; do [ -f "$LOGS/$f" ] && mv "$LOGS/$f" "$LOGS/$f.1"; done
  nohup java -Xms256m -Xmx512m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka-log4j2.xml" -Dkafka.logs.dir="$LOGS" \
    -cp "$cp" kafka.Kafka "$props" > "$LOGS/kafka.out" 2>&1 &
  echo $! > "$RUN/kafka.pid"
  # KAFKA_START_SECONDS (60): a restart under load (make chaos) may give it longer.
  for _ in $(seq 1 $((2 * ${KAFKA_START_SECONDS:-60}))); do
    if grep -qs "Kafka Server started" "$LOGS/kafka.out" "$LOGS/kafka.log" && port_open "$KAFKA_PORT"; then
      log "Kafka ready"; return
    fi
    alive "$RUN/kafka.pid" || { echo "Kafka exited; see $LOGS/kafka.out" >&2; tail -20 "$LOGS/kafka.out" >&2; exit 1; }
    sleep 0.5
  done
  echo "Kafka did not start in ${KAFKA_START_SECONDS:-60}s; see $LOGS" >&2; exit 1
}

ZIPKIN_VERSION=3.6.1
ZIPKIN_JAR="$ROOT/.cache/zipkin/zipkin-server-$ZIPKIN_VERSION-exec.jar"
ZIPKIN_PORT=${ZIPKIN_PORT:-9411}

ensure_zipkin_jar() {
  if [ ! -f "$ZIPKIN_JAR" ]; then
    ensure_java
    log "fetching the Zipkin server from Maven Central into .cache/zipkin (first run only)" >&2
    mvn -q -B -f "$ROOT/deploy/local/zipkin-pom.xml" -Dmaven.repo.local="$M2" dependency:copy \
      -Dartifact="io.zipkin:zipkin-server:$ZIPKIN_VERSION:jar:exec" -DoutputDirectory="$ROOT/.cache/zipkin" >&2
  fi
}

start_zipkin() {
  [ "$PROFILE" = dev ] && [ "${OMS_ZIPKIN:-1}" != 0 ] || return 0
  if alive "$RUN/zipkin.pid"; then log "Zipkin already running on $ZIPKIN_PORT"; return; fi
  ensure_zipkin_jar
  log "starting Zipkin (in-memory storage) on 127.0.0.1:$ZIPKIN_PORT"
  QUERY_PORT=$ZIPKIN_PORT STORAGE_TYPE=mem MEM_MAX_SPANS=200000 nohup java -Xms64m -Xmx384m -XX:+UseSerialGC \
    -Darmeria.ports[0].ip=127.0.0.1 -Darmeria.ports[0].port="$ZIPKIN_PORT" -Darmeria.ports[0].protocols[0]=http -jar "$ZIPKIN_JAR" > "$LOGS/zipkin.log" 2>&1 &
  echo $! > "$RUN/zipkin.pid"
  # Services export spans in the background, so they need not wait for Zipkin to finish starting.
}

stop_zipkin() {
  if alive "$RUN/zipkin.pid"; then
    local pid; pid=$(cat "$RUN/zipkin.pid"); log "stopping Zipkin (pid $pid)"
    kill "$pid"; for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/zipkin.pid"
}

stop_kafka() {
  if alive "$RUN/kafka.pid"; then
    local pid; pid=$(cat "$RUN/kafka.pid"); log "stopping Kafka (pid $pid)"
    kill "$pid"; for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/kafka.pid"
}

case "$CMD" in
  start)
    if [ "$PROFILE" = test ] && ! alive "$RUN/kafka.pid" && ! port_open "$PG_PORT"; then
      "$0" test stop >/dev/null 2>&1 || true; rm -rf "$STATE"
    fi
    mkdir -p "$RUN" "$LOGS"
    # curl, jq and openssl: the README's walkthrough uses them (and tests/e2e/test_demo.py runs it)
    for tool in curl jq openssl; do command -v "$tool" >/dev/null || apt_install "$tool"; done
    start_pg; start_kafka; start_zipkin ;;
  stop) mkdir -p "$RUN"; stop_zipkin; stop_kafka; stop_pg ;;
  # Fault injection (make chaos): one server stopped and started again on its data, ready when it returns.
  restart-kafka) mkdir -p "$RUN" "$LOGS"; stop_kafka; start_kafka ;;
  restart-postgres) mkdir -p "$RUN"; stop_pg; start_pg ;;
  status)
    alive "$RUN/kafka.pid" && echo "kafka: running on $KAFKA_PORT" || echo "kafka: stopped"
    port_open "$PG_PORT" && echo "postgres: running on $PG_PORT" || echo "postgres: stopped"
    [ "$PROFILE" = dev ] && { alive "$RUN/zipkin.pid" && echo "zipkin: running on $ZIPKIN_PORT" || echo "zipkin: stopped"; } ;;
  jars) ensure_kafka_jars; echo "$KAFKA_LIBS" ;;  # the Kafka jars (broker and tools), fetched if missing
  zipkin-jar) ensure_zipkin_jar; echo "$ZIPKIN_JAR" ;;  # the Zipkin server (tests/support/zipkin.py), fetched if missing
  clean) "$0" "$PROFILE" stop; log "removing $STATE"; rm -rf "$STATE" ;;
  env)
    echo "KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"; echo "PG_ADMIN_DSN=postgresql://$PG_SUPERUSER@127.0.0.1:$PG_PORT/postgres"
    if [ "$PROFILE" = dev ] && alive "$RUN/zipkin.pid"; then echo "ZIPKIN_SPANS=http://127.0.0.1:$ZIPKIN_PORT/api/v2/spans"; fi ;;
  *) echo "unknown command $CMD" >&2; exit 2 ;;
esac
