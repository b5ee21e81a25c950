"""Public contracts of the OMS: the envelope, topic names, and every event and command as a pydantic
model. Services and downstream systems depend on this package, never on a service's code."""

from oms_contracts.envelope import Envelope, new_envelope
from oms_contracts.publishing import Publishes, UndeclaredEvent
from oms_contracts.registry import EVENT_MODELS, model_for, parse_payload

__all__ = ["EVENT_MODELS", "Envelope", "Publishes", "UndeclaredEvent", "model_for", "new_envelope", "parse_payload"]
