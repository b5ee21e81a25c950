"""How the orchestrator wires the engine: the engine's migrations, its API's states, the
events its consumer subscribes to."""

from typing import get_args

from oms_platform.channel_keys import ChannelKeys
from oms_saga import MIGRATIONS as ENGINE
from oms_saga.runner import SagaRunner
from oms_saga.state import STATES
from orchestrator.api import SagaState
from orchestrator.bootstrap import MIGRATIONS as ORCHESTRATOR
from orchestrator.consumers import saga_consumer
from orchestrator.domain import order_saga


def test_the_orchestrator_applies_the_engine_migrations_and_does_not_copy_them():
    from orchestrator.bootstrap import OrchestratorRuntime
    from orchestrator.settings import Settings

    runtime = OrchestratorRuntime(Settings(), SagaRunner(order_saga()))
    assert runtime.lib_migrations == [("saga", ENGINE), ChannelKeys.migrations]
    assert runtime.migrations == ORCHESTRATOR
    assert sorted(ENGINE.glob("*.sql")), "the engine ships its tables"
    # One source of truth: the engine's SQL is not duplicated into the service.
    assert not {p.name for p in ORCHESTRATOR.glob("*.sql")} & {p.name for p in ENGINE.glob("*.sql")}


def test_the_api_offers_every_saga_state():
    assert set(get_args(SagaState)) == set(STATES)


def test_the_consumer_reads_every_event_the_saga_awaits():
    spec = saga_consumer(SagaRunner(order_saga()))
    assert spec.topics == ["oms.orders.events", "oms.inventory.events", "oms.fulfilment.events",
                           "oms.billing.events", "oms.tracking.events"]
    assert set(spec.handlers) == {
        "OrderPlaced", "OrderCancellationRequested", "StockReserved", "StockBackordered", "StockReservationFailed",
        "StockReleased", "PaymentConfirmed", "ShipmentsCreated", "ShipmentCreationFailed", "ShipmentsCancelled",
        "ShipmentCancellationRefused", "ShipmentDispatched", "ShipmentDelivered", "ShipmentDeliveryFailed",
    }


def test_a_topic_prefix_applies_to_every_topic_it_reads_and_writes():
    from orchestrator.bootstrap import OrchestratorRuntime
    from orchestrator.settings import Settings

    runtime = OrchestratorRuntime(Settings(kafka_topic_prefix="t1."), SagaRunner(order_saga()))
    assert runtime.topics() and all(t.startswith("t1.oms.") for t in runtime.topics())
    assert "t1.oms.orders.events.dlq" in runtime.topics() and "t1.oms.orders.status" in runtime.topics()
