#!/usr/bin/env bash
# `make topics`: every topic with its partitions, then every consumer group's lag per topic (the sum
# over its partitions of log-end offset minus committed offset), from Apache Kafka's own
# kafka-topics and kafka-consumer-groups (deploy/local/bin/). Kafka: $KAFKA_BOOTSTRAP, else the dev one.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/deploy/local/bin"
[ -n "${KAFKA_BOOTSTRAP:-}" ] || eval "$("$ROOT/deploy/local/infra.sh" dev env)"

"$BIN/kafka-topics" --bootstrap-server "$KAFKA_BOOTSTRAP" --describe --exclude-internal |
  awk -F'\t' 'BEGIN { printf "%-44s %10s %8s\n", "TOPIC", "PARTITIONS", "REPLICAS" }
    /^Topic:/ { t = $1; sub(/^Topic: /, "", t); p = $3; sub(/^PartitionCount: /, "", p)
                r = $4; sub(/^ReplicationFactor: /, "", r); printf "%-44s %10s %8s\n", t, p, r }'
echo
# Rows: GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID. A partition
# with no committed offset has LAG "-": the group's lag for that topic is then shown as "?".
"$BIN/kafka-consumer-groups" --bootstrap-server "$KAFKA_BOOTSTRAP" --describe --all-groups 2>/dev/null |
  awk '$1 == "GROUP" || NF < 7 { next }
    { k = $1 SUBSEP $2; if (!(k in parts)) order[++n] = k; parts[k]++
      if ($6 ~ /^[0-9]+$/) lag[k] += $6; else unknown[k] = 1
      if ($7 != "-" && !((k, $7) in seen)) { seen[k, $7] = 1; members[k]++ } }
    END { printf "%-52s %-36s %10s %10s %7s\n", "GROUP", "TOPIC", "PARTITIONS", "LAG", "MEMBERS"
      if (n == 0) print "(no consumer group has committed offsets yet)"
      for (i = 1; i <= n; i++) { k = order[i]; split(k, gt, SUBSEP)
        printf "%-52s %-36s %10d %10s %7d\n", gt[1], gt[2], parts[k], (k in unknown) ? "?" : lag[k] + 0, members[k] } }'
