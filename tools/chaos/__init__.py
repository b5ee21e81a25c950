"""`make chaos`: a fault-injection run against a running stack (`make up`, or processes a test started
through deploy/local/services.sh).

While several sales channels place orders at a steady rate (each POST retried on any failure with
the same Idempotency-Key, some sent twice on purpose, some orders cancelled), it SIGKILLs random
service processes (each started again at once through services.sh, ONLY=<instance>), restarts every
replica of one service in turn (a rolling restart), restarts Kafka once and PostgreSQL once (through
deploy/local/infra.sh). Then it waits for the orders to settle and checks, each with its figure:
orders lost, stuck, oversold, wrongly reserved, duplicated effects, status regressions, dead letters,
and the time each component took to recover. It exits 1 on any loss or duplicate.

    stack.py   what runs: services.conf, replicas, ports, pid files, databases, topics
    load.py      the channels' orders and cancellations
    journeys.py  a share of them dispatched, delivered, returned and received at the returns desk
    parties.py   billing (refunds), a webhook receiver and the mail sink's log: what reached them
    faults.py    kills, rolling restart, Kafka and PostgreSQL restarts, recovery times
    checks.py    the checks on the services' databases and the status topic
    effects.py   the checks on what reached billing, the webhook receiver and the mailbox"""
