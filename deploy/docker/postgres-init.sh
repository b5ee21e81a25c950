#!/usr/bin/env bash
# Creates one login role and one database per service of deploy/services.conf (4th column), the
# database owned by the role, the role's password equal to its name (as docker-compose.yml's
# DATABASE_URLs expect). Idempotent: what exists is left as it is, so it is safe to run again after
# a service is added to services.conf.
#
# Runs as a PostgreSQL image init script (/docker-entrypoint-initdb.d, first start of an empty data
# volume) and as the `db-init` one-shot of docker-compose.yml (every `docker compose up`, against
# the running server through PGHOST/PGUSER/PGPASSWORD).
#
# Environment:
#   OMS_SERVICES_CONF  the services list (default /etc/oms/services.conf, mounted by compose)
#   OMS_INIT_DRY_RUN=1 print the SQL instead of running it (no server needed)
#   POSTGRES_USER, POSTGRES_DB  the superuser and the database psql connects to (image defaults)
# No `set -u`: the image entrypoint sources a non-executable init script into its own shell.
set -eo pipefail

oms_services_conf=${OMS_SERVICES_CONF:-/etc/oms/services.conf}

oms_init_sql() {
  local name module port db
  # Keeps the `while read` happy on a last line without a newline.
  while read -r name module port db _ || [ -n "${name:-}" ]; do
    case "$name" in '' | '#'*) continue ;; esac
    if ! [[ "$db" =~ ^[a-z_][a-z0-9_]{0,62}$ ]]; then
      echo "postgres-init: service '$name' in $oms_services_conf: database name '$db' is not a lower-case SQL identifier" >&2
      return 1
    fi
    cat <<SQL
-- $name
SELECT 'CREATE ROLE $db LOGIN PASSWORD ''$db''' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$db')\gexec
SELECT 'CREATE DATABASE $db OWNER $db' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')\gexec
SQL
  done < "$oms_services_conf"
}

if [ ! -r "$oms_services_conf" ]; then
  echo "postgres-init: cannot read $oms_services_conf (mount deploy/services.conf there or set OMS_SERVICES_CONF)" >&2
  exit 1
fi
oms_sql=$(oms_init_sql)
if [ "${OMS_INIT_DRY_RUN:-0}" = 1 ]; then
  printf '%s\n' "$oms_sql"
else
  printf '%s\n' "$oms_sql" | psql -v ON_ERROR_STOP=1 -q \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"
  echo "postgres-init: databases ready for every service of $oms_services_conf"
fi
