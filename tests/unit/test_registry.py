"""The registry knows every event model of the contracts package, and the topic names."""

import importlib
import pkgutil
import re
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

import oms_contracts
from oms_contracts import EVENT_MODELS, model_for, parse_payload, topics
from oms_contracts.orders import OrderStatusChangedV1


def _declared_event_models() -> list[type[BaseModel]]:
    """Every model in every module of oms_contracts that names its own EVENT_TYPE."""
    found: dict[str, type[BaseModel]] = {}
    for info in pkgutil.walk_packages(oms_contracts.__path__, "oms_contracts."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and "EVENT_TYPE" in vars(obj):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_there_are_event_models() -> None:
    assert len(_declared_event_models()) >= 7


@pytest.mark.parametrize("model", _declared_event_models(), ids=lambda m: m.__name__)
def test_registry_finds_every_event_model(model: type[BaseModel]) -> None:
    key = (model.EVENT_TYPE, model.EVENT_VERSION)  # type: ignore[attr-defined]
    assert EVENT_MODELS.get(key) is model, f"{model.__name__} is not registered under {key}"
    assert model_for(*key) is model


def test_no_two_models_share_a_type_and_version() -> None:
    keys = [(m.EVENT_TYPE, m.EVENT_VERSION) for m in _declared_event_models()]  # type: ignore[attr-defined]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(EVENT_MODELS)


@pytest.mark.parametrize("key", sorted(EVENT_MODELS), ids=lambda k: f"{k[0]}.v{k[1]}")
def test_every_event_names_its_version_and_is_immutable(key: tuple[str, int]) -> None:
    event_type, version = key
    model = EVENT_MODELS[key]
    assert re.fullmatch(r"[A-Z][A-Za-z]+", event_type)
    assert version >= 1 and model.__name__ == f"{event_type}V{version}"
    assert model.model_config.get("frozen") is True


def test_parse_payload_returns_the_model_or_refuses() -> None:
    order_id = uuid.uuid4()
    payload = {"order_id": str(order_id), "old_status": None, "new_status": "confirmed",
               "changed_at": datetime.now(UTC).isoformat()}
    event = parse_payload("OrderStatusChanged", 1, payload)
    assert isinstance(event, OrderStatusChangedV1) and event.order_id == order_id
    assert model_for("OrderStatusChanged", 99) is None
    with pytest.raises(LookupError, match="OrderStatusChanged v99"):
        parse_payload("OrderStatusChanged", 99, payload)
    with pytest.raises(ValidationError):
        parse_payload("OrderStatusChanged", 1, {**payload, "new_status": "teleported"})


def test_topic_names_of_the_contract() -> None:
    expected = {"oms.orders.events", "oms.orders.status", "oms.billing.requests", "oms.billing.events"}
    for service in ("inventory", "fulfilment", "tracking", "returns", "notification"):
        expected |= {f"oms.{service}.commands", f"oms.{service}.events"}
    # Beyond CONTRACT.md (an addition, not a change): channel keys for the services that accept them.
    expected.add("oms.channels.events")
    assert set(topics.ALL_TOPICS) == expected and len(topics.ALL_TOPICS) == len(expected)
    assert topics.dlq(topics.ORDERS_STATUS) == "oms.orders.status.dlq"
