"""The envelope of every Kafka message (CONTRACT.md, Kafka) and new_envelope, which wraps an event."""

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from pydantic import ValidationError

from oms_contracts import Envelope, new_envelope
from oms_contracts.billing import PaymentConfirmedV1
from oms_contracts.orders import OrderCancellationRequestedV1
from oms_platform.outbox import UnitOfWork, message

CONTRACT_KEYS = {"event_id", "event_type", "event_version", "occurred_at", "producer", "order_id",
                 "correlation_id", "causation_id", "payload"}


def _payment(order_id: uuid.UUID) -> PaymentConfirmedV1:
    return PaymentConfirmedV1(order_id=order_id, amount=Decimal("39.80"), currency="EUR", reference="pay_123")


def test_new_envelope_takes_type_and_version_from_the_event() -> None:
    order_id = uuid.uuid4()
    before = datetime.now(UTC)
    env = new_envelope(_payment(order_id), producer="billing", order_id=order_id)
    assert env.event_type == "PaymentConfirmed" and env.event_version == 1
    assert env.producer == "billing" and env.order_id == order_id
    assert env.correlation_id == order_id  # a new flow is correlated by its order
    assert env.causation_id is None
    assert env.occurred_at.tzinfo is not None and before <= env.occurred_at <= datetime.now(UTC)
    assert env.payload == {"order_id": str(order_id), "amount": "39.80", "currency": "EUR", "reference": "pay_123"}


def test_new_envelope_keeps_given_correlation_causation_and_time() -> None:
    order_id, correlation, causation = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    env = new_envelope(_payment(order_id), producer="billing", order_id=order_id, correlation_id=correlation,
                       causation_id=causation, occurred_at=at)
    assert (env.correlation_id, env.causation_id, env.occurred_at) == (correlation, causation, at)


def test_each_envelope_has_its_own_event_id() -> None:
    order_id = uuid.uuid4()
    assert len({new_envelope(_payment(order_id), producer="p", order_id=order_id).event_id for _ in range(100)}) == 100


def test_the_wire_form_has_exactly_the_contract_keys_and_round_trips() -> None:
    order_id = uuid.uuid4()
    env = new_envelope(_payment(order_id), producer="billing", order_id=order_id, causation_id=uuid.uuid4())
    wire = orjson.loads(orjson.dumps(env.model_dump(mode="json")))
    assert set(wire) == CONTRACT_KEYS
    assert wire["order_id"] == str(order_id) and wire["event_version"] == 1
    assert datetime.fromisoformat(wire["occurred_at"]) == env.occurred_at
    assert Envelope.model_validate_json(orjson.dumps(wire)) == env
    assert Envelope.model_validate_json(env.model_dump_json()) == env


def test_an_envelope_from_a_newer_producer_with_extra_keys_still_parses() -> None:
    order_id = uuid.uuid4()
    wire = new_envelope(_payment(order_id), producer="billing", order_id=order_id).model_dump(mode="json")
    assert Envelope.model_validate({**wire, "tenant": "eu-1"}).order_id == order_id


@pytest.mark.parametrize("change", [
    {"event_version": 0},
    {"event_id": "not-a-uuid"},
    {"order_id": None},
    {"payload": [1, 2]},
])
def test_an_invalid_envelope_is_refused(change: dict) -> None:
    order_id = uuid.uuid4()
    wire = new_envelope(_payment(order_id), producer="billing", order_id=order_id).model_dump(mode="json")
    with pytest.raises(ValidationError):
        Envelope.model_validate({**wire, **change})


@pytest.mark.parametrize("missing", sorted(CONTRACT_KEYS - {"causation_id"}))
def test_every_contract_key_but_causation_is_required(missing: str) -> None:
    order_id = uuid.uuid4()
    wire = new_envelope(_payment(order_id), producer="billing", order_id=order_id).model_dump(mode="json")
    del wire[missing]
    with pytest.raises(ValidationError):
        Envelope.model_validate(wire)


def test_envelope_is_immutable() -> None:
    order_id = uuid.uuid4()
    env = new_envelope(_payment(order_id), producer="billing", order_id=order_id)
    with pytest.raises(ValidationError):
        env.producer = "someone else"  # type: ignore[misc]


def test_the_kafka_message_of_an_envelope_has_key_order_id_and_the_type_headers() -> None:
    order_id = uuid.uuid4()
    event = OrderCancellationRequestedV1(order_id=order_id, reason="r", requested_by="customer")
    uow = UnitOfWork(None, "order-capture", None)  # type: ignore[arg-type]
    env = uow.emit("oms.orders.events", event, order_id=order_id)
    [msg] = uow.messages
    assert msg.topic == "oms.orders.events"
    assert msg.key == str(order_id)
    headers = dict(msg.headers)
    assert headers["event_type"] == "OrderCancellationRequested" and headers["event_version"] == "1"
    assert headers["content-type"] == "application/json"
    assert Envelope.model_validate_json(msg.value) == env
    assert env.producer == "order-capture" and env.correlation_id == order_id and env.causation_id is None
    # The same bytes as pydantic's own JSON of the envelope (orjson writes it without a second walk).
    assert orjson.loads(msg.value) == orjson.loads(env.model_dump_json())
    assert message("t", env).value == msg.value


def test_what_a_handler_emits_is_caused_by_the_message_it_handles() -> None:
    order_id = uuid.uuid4()
    cause = new_envelope(OrderCancellationRequestedV1(order_id=order_id, reason="r", requested_by="customer"),
                         producer="order-capture", order_id=order_id, correlation_id=uuid.uuid4())
    uow = UnitOfWork(None, "orchestrator", None, cause)  # type: ignore[arg-type]
    reply = uow.emit("t", OrderCancellationRequestedV1(order_id=order_id, reason="r", requested_by="x"))
    assert (reply.order_id, reply.correlation_id, reply.causation_id) == (order_id, cause.correlation_id,
                                                                         cause.event_id)
    assert reply.producer == "orchestrator"
    other, correlation = uuid.uuid4(), uuid.uuid4()
    given = uow.emit("t", OrderCancellationRequestedV1(order_id=other, reason="r", requested_by="x"),
                     order_id=other, correlation_id=correlation)
    assert (given.order_id, given.correlation_id, given.causation_id) == (other, correlation, cause.event_id)
    assert uow.emit("t", cause) is cause  # an envelope built already is sent as it is
    assert [m.key for m in uow.messages] == [str(order_id), str(other), str(order_id)]
