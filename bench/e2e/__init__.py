"""End to end: orders per second carried from POST /v1/orders to `confirmed`, and the latency from the
POST to `confirmed` at a fixed rate of half that maximum.

The benchmark runs processes of its own of order-capture, orchestrator, inventory and fulfilment (never
the ones `make up` started), each on a fresh database `bench_<database of deploy/services.conf>`, on
topics of their own: the topics of CONTRACT.md with KAFKA_TOPIC_PREFIX=bench. (bench.oms.orders.events,
...), deleted at the start of every run, so the dev services never see the benchmark's orders and a run
starts empty. Their consumer groups are new (KAFKA_GROUP_SUFFIX=.bench-<nonce>). It sets them up
through the operator APIs (one location, a few SKUs with a billion units each, a channel API key), then:

1. Maximum throughput: a closed loop of HTTP connections posts orders while at most --e2e-window orders
   are posted and not yet confirmed, so orders go in exactly as fast as the system confirms them.
   After --e2e-warmup seconds, the figure is the number of orders whose POST was sent inside the next
   --e2e-duration seconds and that were confirmed, divided by that duration. Posting then stops, and
   the backlog must drain: the orders still unconfirmed --e2e-drain seconds later are reported (a
   maximum that leaves a backlog was not sustained).
2. Latency at a fixed rate (open loop): orders sent on a fixed schedule at half the measured maximum
   (or --e2e-rate) for --e2e-latency-duration seconds; POST -> confirmed p50/p90/p99/max, and the
   POST's own latency.

`confirmed` is read from oms.orders.status by the benchmark itself (OrderStatusChanged with new_status
`confirmed`, keyed by order id), consumed from the topic's end before any order is posted. Its time is
the record's Kafka timestamp: when the orchestrator's outbox relay produced it, whatever this process's
own consumer delay. The POST's time is taken just before its bytes are written to the socket.

The load generator is a small HTTP/1.1 client on asyncio streams with uvloop, over keep-alive
connections, with prebuilt request bytes: on this 2-core machine every millisecond of CPU it takes is
taken from the servers, and it costs a fraction of httpx per request (its own CPU is reported). wrk
cannot be used here: the time each order was sent must be matched to its order id.

CPU is accounted per process over each measured window (from /proc): each service, the Kafka broker of
the dev profile, the PostgreSQL backends serving the bench databases and PostgreSQL's own background
processes, the benchmark process itself, and the whole machine (the rest is other work on the machine).
Each service's /metrics gives its consumer batches in the window (count, mean size, time spent), and
PostgreSQL its activity per database (commits, rows written and read, WAL), all per confirmed order.

Options for experiments: --e2e-env (settings of the services), --e2e-pg (of the bench databases),
--e2e-replicas (several processes of a service), --e2e-profile (cProfile of one service). --e2e-edges
also starts tracking, notification and returns the same way (with their secrets, and an aiosmtpd sink
that takes notification's emails, its CPU shown apart), so their CPU per confirmed order is in the table
and in the services' sum; off by default, so runs without it stay comparable. The figures
are printed as a table and returned to __main__, which writes bench/results/e2e-<UTC time>.json.

The package, by concern: plan.py (options and the settings of a run), runner.py (the processes, their
set-up, the run), load.py (the load generator and the phases), client.py (the HTTP client and an
order's record), measure.py (the snapshots of a window), procstats.py (CPU and context switches from
/proc), pgstats.py (PostgreSQL's counters), metrics.py (the services' /metrics), figures.py
(percentiles and the figures of a phase), report.py (the printed table), curve.py (the raw baseline's
run, bench/raw.py, and the cost curve: CPU per order and p50/p99 against the rate, a table and a PNG),
edges.py (the edge services' settings and the mail sink of --e2e-edges).
"""

from bench.e2e.plan import DESCRIPTION, NAME, add_arguments, check_arguments
from bench.e2e.runner import run

__all__ = ["DESCRIPTION", "NAME", "add_arguments", "check_arguments", "run"]
