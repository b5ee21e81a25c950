"""A service's runtime: settings, telemetry, the database pool and migrations, its topics, the outbox
relay and its consumers, wired into one FastAPI app with /healthz, /readyz and /metrics."""

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from oms_contracts import Publishes
from oms_contracts.topics import dlq
from oms_platform import asyncapi, db, kafka, kafka_outages, telemetry
from oms_platform import openapi as openapi_doc
from oms_platform.channel_keys import ChannelKeys
from oms_platform.consumer import BatchProcessor, ConsumerSpec
from oms_platform.hot_routes import HotRoutesMiddleware, hot_routes
from oms_platform.http import (
    ORJSONResponse,
    PlatformMiddleware,
    add_openapi_models,
    body_models,
    install_error_handlers,
)
from oms_platform.http_input import InputRulesMiddleware
from oms_platform.outbox import Outbox, OutboxRelay
from oms_platform.ratelimit import RateLimitMiddleware
from oms_platform.settings import ServiceSettings
from oms_platform.subscriber import subscribe

if TYPE_CHECKING:  # imported when a service has consumers (start)
    from faststream.kafka import KafkaBroker

log = logging.getLogger(__name__)


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        migrations: Path | None,
        consumers: Sequence[ConsumerSpec] = (),
        produces: Publishes | None = None,
        lib_migrations: Sequence[tuple[str, Path]] = (),
        channel_keys: bool = True,
        ready_needs: Collection[str] | None = None,
    ):
        self.settings = settings
        # The checks readiness depends on (None: all of them). The others are reported in /readyz's
        # body as `details` and do not fail it: order capture takes orders with its database alone
        # (the outbox holds them while Kafka or its consumer group is not there yet).
        self.ready_needs = None if ready_needs is None else frozenset(ready_needs)
        self.migrations = migrations
        # Its own copy of the channel keys (oms_platform.channel_keys): operator endpoints tell a
        # channel key (403) from unknown credentials (401), and channel endpoints can check keys.
        # Order capture, which issues the keys, passes channel_keys=False and looks up its own table.
        self.channel_keys = ChannelKeys(self, settings.oms_admin_token) if channel_keys else None
        self.lib_migrations = list(lib_migrations)
        if channel_keys and ChannelKeys.migrations not in self.lib_migrations:
            self.lib_migrations.append(ChannelKeys.migrations)
        self.consumers = list(consumers)
        # What it sends, per topic (oms_contracts.publishing): its outbox refuses anything else.
        self.produces = produces or Publishes({})
        self.pool: asyncpg.Pool | None = None
        self.kafka_outages: kafka_outages.KafkaOutageLog | None = None
        self.relay: OutboxRelay | None = None
        # Every message the service sends goes through it (its relay is set at start when enabled).
        self.outbox = Outbox(settings.service_name, publishes=self.produces)
        self.broker: KafkaBroker | None = None
        self.processors: list[BatchProcessor] = []
        self.subscribers: list = []
        self._broker_start: asyncio.Task | None = None  # the consumers' start, when readiness needs none

    @property
    def name(self) -> str:
        return self.settings.service_name

    def group_id(self, spec: ConsumerSpec) -> str:
        return f"{self.name}.{spec.name}{self.settings.kafka_group_suffix}"

    def all_consumers(self) -> list[ConsumerSpec]:
        """The service's consumers, and the platform's (the channel keys' copy)."""
        wired = self.channel_keys is None or any(c is ChannelKeys.consumer for c in self.consumers)
        return self.consumers if wired else [*self.consumers, ChannelKeys.consumer]

    def topics(self) -> set[str]:
        """The Kafka topics it reads and writes (with KAFKA_TOPIC_PREFIX)."""
        consumed = {t for c in self.all_consumers() for t in c.topics}
        prefix = self.settings.kafka_topic_prefix
        return {prefix + t for t in set(self.produces.topics) | consumed | {dlq(t) for t in consumed}}

    async def start(self) -> None:
        s = self.settings
        telemetry.setup(
            s.service_name, log_level=s.log_level, zipkin_endpoint=s.zipkin_endpoint, sample_ratio=s.trace_sample_ratio
        )
        self.kafka_outages = kafka_outages.install(s.kafka_bootstrap_servers)
        self.pool = await db.create_pool(s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max)
        await db.migrate(self.pool, self.migrations, self.lib_migrations)
        await kafka.ensure_topics(
            s.kafka_bootstrap_servers, self.topics(), partitions=s.kafka_topic_partitions,
            replication_factor=s.kafka_replication_factor, min_insync_replicas=s.kafka_min_insync_replicas,
        )
        if s.outbox_relay_enabled:
            self.relay = OutboxRelay(
                s.database_url, s.kafka_bootstrap_servers, client_id=s.service_name, topic_prefix=s.kafka_topic_prefix,
                batch_size=s.outbox_batch_size, poll_interval=s.outbox_poll_interval,
                inbox_retention_seconds=int(s.inbox_retention_hours * 3600),
            )
            await self.relay.start()
            self.outbox.relay = self.relay
        if self.all_consumers():
            from faststream.kafka import KafkaBroker

            # No FastDepends: the one handler per subscriber (subscriber.subscribe) takes the message as it is.
            self.broker = KafkaBroker(s.kafka_bootstrap_servers, client_id=s.service_name, logger=log,
                                      apply_types=False)
            for spec in self.all_consumers():
                proc = BatchProcessor(
                    spec, self.pool, outbox=self.outbox, group_id=self.group_id(spec),
                    max_attempts=s.consumer_max_attempts, topic_prefix=s.kafka_topic_prefix,
                )
                self.processors.append(proc)
                self.subscribers.append(subscribe(
                    self.broker, proc, max_records=s.consumer_max_records, auto_offset_reset=s.kafka_auto_offset_reset,
                    session_timeout_ms=s.kafka_session_timeout_ms, poll_ms=s.consumer_poll_ms,
                    fetch_max_wait_ms=s.kafka_fetch_max_wait_ms, linger_ms=s.consumer_linger_ms,
                    commit_interval=s.consumer_commit_interval_ms / 1000, group_instance_id=s.kafka_group_instance_id,
                ))
            if self.ready_needs is None or "consumers" in self.ready_needs:
                await self._start_consumers()  # returns once the groups have handed this process its partitions
            else:  # serve HTTP meanwhile (a restarted member may wait out a dead one's session)
                self._broker_start = asyncio.create_task(self._start_broker(), name="broker-start")
        log.info("%s started on %s:%d", s.service_name, s.http_host, s.http_port)

    async def _start_broker(self) -> None:
        assert self.broker is not None
        try:
            await self._start_consumers()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            # As when the start is awaited (the service exits and its supervisor starts it again),
            # rather than serving on without ever consuming.
            log.exception("consumers did not start; stopping the service")
            os.kill(os.getpid(), signal.SIGTERM)

    async def _start_consumers(self) -> None:
        """The broker's start (KafkaBroker.start: connect, then each subscriber, then each publisher),
        with every consumer group joined at once: faststream starts its subscribers one after another,
        each waiting until its group hands it partitions, so a replica restarted beside others waited
        out one rebalance per group in a row."""
        assert self.broker is not None
        await self.broker.connect()
        await asyncio.gather(*(sub.start() for sub in self.broker.subscribers))
        for pub in self.broker.publishers:
            await pub.start()
        self.broker.running = True

    async def stop(self) -> None:
        if self._broker_start is not None and not self._broker_start.done():
            self._broker_start.cancel()
            await asyncio.gather(self._broker_start, return_exceptions=True)
        for sub in self.subscribers:  # what was processed is committed, so a restart does not redo it
            await sub.committer.flush()
        if self.broker is not None:
            await self.broker.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.pool is not None:
            await self.pool.close()
        if self.kafka_outages is not None:
            await self.kafka_outages.stop()

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            assert self.pool is not None
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), 2)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"error: {type(exc).__name__}"
        checks["kafka"] = await self._kafka_check()
        if self.subscribers:
            checks["consumers"] = await self._consumers_check()
        return checks

    async def _consumers_check(self) -> str:
        """Ready to consume once the group gave this process its partitions and their start offsets
        are resolved (so with auto_offset_reset=latest nothing produced after readiness is skipped)."""
        for sub in self.subscribers:
            consumer = sub.consumer
            if consumer is None or not consumer.assignment():
                return "waiting for partition assignment"
            try:
                for tp in consumer.assignment():
                    await asyncio.wait_for(consumer.position(tp), 2)
            except Exception as exc:  # noqa: BLE001 - a rebalance in progress: not ready yet
                return f"waiting: {type(exc).__name__}"
        return "ok"

    async def _kafka_check(self) -> str:
        try:
            producer = self.relay.publisher.producer if self.relay else None
            client = producer.client if producer else None
            if client is None:
                from aiokafka.admin import AIOKafkaAdminClient

                admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
                await asyncio.wait_for(admin.start(), 3)
                await admin.close()
                return "ok"
            await asyncio.wait_for(client.fetch_all_metadata(), 2)
            return "ok"
        except Exception as exc:  # noqa: BLE001
            return f"error: {type(exc).__name__}"


def create_app(runtime: ServiceRuntime, routers: Sequence[APIRouter], *, title: str, version: str = "1.0.0",
               description: str = "") -> FastAPI:
    """The service's FastAPI app; `description` (Markdown: what the service is for and how to
    authenticate) heads its interactive docs at /docs."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # FastAPI's own telemetry is off: PlatformMiddleware makes the one server span per request (and
    # the metrics), so requests are not traced twice.
    app = FastAPI(
        title=title, version=version, description=description, lifespan=lifespan, default_response_class=ORJSONResponse,
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.runtime = runtime
    if runtime.channel_keys is not None:  # a service that issues keys itself sets its own lookup
        app.state.channel_key_lookup = runtime.channel_keys.channel_of
    install_error_handlers(app)
    # Outermost first: traces and metrics see every answer, then the rate limit, then the input
    # rules (README, Input rules), then the hot routes (oms_platform.hot_routes), then FastAPI's routing.
    s = runtime.settings
    hot = hot_routes(())  # filled below, once the routers are included
    app.add_middleware(HotRoutesMiddleware, routes=hot, exception_handlers=app.exception_handlers)
    app.add_middleware(InputRulesMiddleware)
    if s.rate_limit_per_key_per_second > 0:
        app.add_middleware(RateLimitMiddleware, per_second=s.rate_limit_per_key_per_second,
                           burst=s.rate_limit_burst, operator_token=s.oms_admin_token)
    app.add_middleware(PlatformMiddleware, max_body_bytes=s.max_body_bytes)

    for router in routers:  # first: the service's routes are matched before the ops endpoints
        app.include_router(router)
    hot.update(hot_routes(r for router in routers for r in router.routes))
    add_openapi_models(app, *(m for router in routers for m in body_models(router.routes)))
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:  # security, error body and statuses (oms_platform.openapi)
        if not app.openapi_schema:
            app.openapi_schema = openapi_doc.enrich(
                generate_openapi(), [*app.router.routes, *(r for router in routers for r in router.routes)])
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    events_doc: dict[str, Any] = {}

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> ORJSONResponse:
        found, needs = await runtime.readiness(), runtime.ready_needs
        checks = {k: v for k, v in found.items() if needs is None or k in needs}
        ok = all(v == "ok" for v in checks.values())
        body: dict[str, object] = {"status": "ready" if ok else "unavailable", "checks": checks}
        if details := {k: v for k, v in found.items() if k not in checks}:
            body["details"] = details  # reported, not required (ServiceRuntime.ready_needs)
        return ORJSONResponse(body, 200 if ok else 503)

    @app.get("/asyncapi.json", tags=["ops"], summary="The service's Kafka contracts (AsyncAPI 3.0)")
    async def asyncapi_endpoint() -> dict[str, Any]:
        if not events_doc:
            events_doc.update(asyncapi.document(runtime.name, runtime.all_consumers(), runtime.produces.topics,
                                                title=title, version=version))
        return events_doc

    prometheus_text = {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}

    @app.get("/metrics", tags=["ops"], response_class=Response,
             responses={200: {"description": "Prometheus text exposition", "content": prometheus_text}})
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    import gc

    import uvicorn

    # Everything loaded at start lives as long as the process: keep it out of the collector's scans,
    # and collect young objects less often (request handling allocates many short-lived ones).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)

    uvicorn.run(
        app, host=settings.http_host, port=settings.http_port, loop="uvloop", http="httptools",
        log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5,
    )
