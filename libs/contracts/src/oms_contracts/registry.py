"""Looks up the model of an (event_type, event_version) pair, so consumers parse payloads strictly."""

from typing import Any

from pydantic import BaseModel

from oms_contracts import billing, channels, fulfilment, inventory, orders, returns, tracking

_MODULES = (orders, billing, inventory, fulfilment, tracking, returns, channels)

EVENT_MODELS: dict[tuple[str, int], type[BaseModel]] = {
    (vars(obj)["EVENT_TYPE"], vars(obj)["EVENT_VERSION"]): obj  # both declared by each model itself
    for module in _MODULES
    for obj in vars(module).values()
    if isinstance(obj, type) and issubclass(obj, BaseModel) and "EVENT_TYPE" in vars(obj)
}


def register(model: type[BaseModel]) -> type[BaseModel]:
    """Adds a model from another contracts module (used by modules added for later services)."""
    EVENT_MODELS[(model.EVENT_TYPE, model.EVENT_VERSION)] = model  # type: ignore[attr-defined]
    return model


def model_for(event_type: str, event_version: int) -> type[BaseModel] | None:
    return EVENT_MODELS.get((event_type, event_version))


def parse_payload(event_type: str, event_version: int, payload: dict[str, Any]) -> BaseModel:
    model = model_for(event_type, event_version)
    if model is None:
        raise LookupError(f"unknown event {event_type} v{event_version}")
    return model.model_validate(payload)
