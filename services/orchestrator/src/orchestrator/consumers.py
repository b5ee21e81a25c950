"""Kafka consumers of the orchestrator: one consumer group reads every topic the order saga listens
to, so each batch is one transaction whatever its mix of topics."""

from functools import partial

from oms_contracts.topics import BILLING_EVENTS, ORDERS_EVENTS, events
from oms_platform.consumer import ConsumerSpec, Handler
from oms_saga.runner import SagaRunner
from orchestrator import handlers

TOPICS = [ORDERS_EVENTS, events("inventory"), events("fulfilment"), BILLING_EVENTS, events("tracking")]


def saga_consumer(runner: SagaRunner) -> ConsumerSpec:
    apply = partial(handlers.apply_event, runner)
    table: dict[str, Handler] = {event_type: apply for event_type in runner.saga.event_types()}
    table["OrderPlaced"] = partial(handlers.start_saga, runner)
    # Its handlers touch nothing but the batch's sagas: a batch is one read and one write (SagaBatch).
    return runner.consumer("saga", list(TOPICS), table, optimistic=True)
