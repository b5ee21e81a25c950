#!/bin/sh
# Entry point of the prometheus container (docker-compose.yml): writes the scrape configuration from
# deploy/services.conf (one target per service, `<name>:<port>/metrics`, labelled service=<name>), so
# a service added there is scraped without editing anything else, then runs Prometheus.
# POSIX sh and awk: the Prometheus image is busybox-based.
# OMS_PROMETHEUS_DRY_RUN=1 prints the configuration instead (tests).
set -eu
CONF=${OMS_SERVICES_CONF:-/etc/oms/services.conf}
OUT=${OMS_PROMETHEUS_CONFIG:-/prometheus/oms-prometheus.yml}
RULES=${OMS_PROMETHEUS_RULES:-/etc/prometheus/rules}

config() {
  cat <<YAML
# Written by deploy/prometheus/entrypoint.sh from services.conf at container start.
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files:
  - $RULES/*.yml
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
  - job_name: oms
    metrics_path: /metrics
    static_configs:
YAML
  awk '/^[[:space:]]*(#|$)/ { next }
    $1 !~ /^[a-z0-9-]+$/ || $3 !~ /^[0-9]+$/ { print "bad services.conf line: " $0 > "/dev/stderr"; exit 1 }
    { printf "      - targets: [\"%s:%s\"]\n        labels: {service: \"%s\"}\n", $1, $3, $1 }' "$CONF"
}

if [ "${OMS_PROMETHEUS_DRY_RUN:-0}" = 1 ]; then config; exit 0; fi
config > "$OUT"
exec /bin/prometheus --config.file="$OUT" --storage.tsdb.path=/prometheus --web.enable-lifecycle "$@"
