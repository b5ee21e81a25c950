"""Settings read from the environment, one class per service (subclass ServiceSettings)."""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    service_name: str = "oms"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    database_url: str = "postgresql://oms@127.0.0.1:55432/oms"
    db_pool_min: int = 2
    db_pool_max: int = 10
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Group ids are per service; a suffix lets tests and side-by-side installs run apart.
    kafka_group_suffix: str = ""
    # Prepended to every topic the service reads and writes, at the Kafka boundary (the code and the
    # outbox use the topic names of CONTRACT.md): installs, test runs or benchmarks sharing one Kafka
    # cluster stay apart. Empty: the topics of CONTRACT.md.
    kafka_topic_prefix: str = ""
    # Where a consumer group with no committed offset starts: "earliest" loses nothing (production);
    # "latest" lets a throwaway group (tests, a bench) skip the history of a shared topic.
    kafka_auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # How long the group waits for a silent member before giving its partitions to others: after a
    # crash, a restarted process consumes again within about this time.
    kafka_session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)
    # Static group membership (KIP-345): a process restarted with the same id gets its partitions back
    # at once instead of waiting out the session timeout of its dead self. Unique per live process and
    # stable across its restarts (`make up` uses <service>-<port>; Kubernetes the pod name of a
    # StatefulSet). Unset: dynamic membership (a graceful stop leaves the group at once).
    kafka_group_instance_id: str | None = Field(default=None, min_length=1, max_length=200)
    # Topics a service creates at start (when missing): every topic gets the same partition count, so
    # topics keyed by order id are co-partitioned; replication factor and min.insync.replicas default
    # to what the cluster can hold (3 and 2 on three brokers or more, 1 and 1 on a single broker).
    kafka_topic_partitions: int = Field(default=3, ge=1, le=1000)
    kafka_replication_factor: int | None = Field(default=None, ge=1, le=10)
    kafka_min_insync_replicas: int | None = Field(default=None, ge=1, le=10)
    oms_admin_token: str | None = None
    log_level: str = "INFO"
    # Traces go to Zipkin's v2 API when set (e.g. http://127.0.0.1:9411/api/v2/spans).
    zipkin_endpoint: str | None = None
    # Share of new traces recorded when exporting (a caller's sampled flag is honoured).
    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    outbox_relay_enabled: bool = True
    outbox_poll_interval: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=500, ge=1)
    # Inbox rows (ids of applied events) are deleted after this long; redeliveries come within seconds.
    inbox_retention_hours: float = Field(default=168, gt=0)
    consumer_max_records: int = Field(default=500, ge=1)
    consumer_max_attempts: int = Field(default=3, ge=1)
    # How long one consumer poll waits for a first record, and how long Kafka holds a fetch open for one
    # (both return as soon as there is one, so neither adds latency). Long waits make an idle service
    # cheap: at 500 ms each consumer sent Kafka two fetches a second, 126 ms of the broker's CPU per
    # second for the seven services doing nothing (27 ms at 5 s). The price: after a rebalance or a
    # seek back the next fetch may wait for the one in flight (up to KAFKA_FETCH_MAX_WAIT_MS).
    consumer_poll_ms: int = Field(default=5000, ge=1, le=30_000)
    kafka_fetch_max_wait_ms: int = Field(default=5000, ge=1, le=30_000)
    # Processed offsets are committed to Kafka at most this often (0: after every batch). Longer means
    # fewer commits and more (harmless, deduplicated) redelivery after a crash or rebalance.
    consumer_commit_interval_ms: int = Field(default=200, ge=0, le=10_000)
    # A small batch at a steady rate waits this long for more records (consumer_lag.Linger): fewer,
    # larger batches at moderate rates, for at most this much latency per hop. 0: off.
    consumer_linger_ms: int = Field(default=10, ge=0, le=1000)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Requests per second per channel key (a token bucket per key and process; 0: no limit) and how
    # many may come at once after a quiet spell (README, Input rules). The operator is not limited.
    rate_limit_per_key_per_second: float = Field(default=100, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    # The customer's tracking page link (oms_platform.links): the tracking service checks it, the
    # emails carry it. Change the secret in production; every service that writes or checks links
    # must share it.
    tracking_link_secret: str = "dev-tracking-link-secret"
    tracking_public_url: str = "http://127.0.0.1:8004"
