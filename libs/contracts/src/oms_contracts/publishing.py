"""What a service publishes: each topic it writes and the contract classes it sends there.

Every service declares it once, next to its code (`PUBLISHES` in its bootstrap.py), and passes it to
its runtime (`ServiceRuntime(produces=PUBLISHES)`). It is the single source of three things: the
topics the service creates at start, its outbox's check (a message of a type not declared for its
topic is refused before it is written: tests fail, nothing undeclared reaches Kafka) and the `send`
side of the service's `/asyncapi.json`."""

from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel

from oms_contracts.catalog import TOPIC_EVENTS
from oms_contracts.topics import DLQ_SUFFIX


class UndeclaredEvent(RuntimeError):
    """A service tried to send an event type its Publishes does not declare for that topic."""


class Publishes:
    def __init__(self, topics: Mapping[str, Iterable[type[BaseModel]]]):
        self.topics: dict[str, tuple[type[BaseModel], ...]] = {t: tuple(models) for t, models in topics.items()}
        self._allowed = {(topic, vars(m)["EVENT_TYPE"], vars(m)["EVENT_VERSION"])
                         for topic, models in self.topics.items() for m in models}
        outside = [f"{m.__name__} on {t}" for t, models in self.topics.items() for m in models
                   if m not in TOPIC_EVENTS.get(t, ())]
        if outside:
            raise ValueError(f"not in oms_contracts.catalog.TOPIC_EVENTS (add it there first): {outside}")

    def allows(self, topic: str, event_type: str, event_version: int) -> bool:
        return (topic, event_type, event_version) in self._allowed

    def check(self, sent: Iterable[tuple[str, Sequence[tuple[str, str]]]]) -> None:
        """Raises UndeclaredEvent for the first message (topic, Kafka headers) of a type not declared for
        its topic. Dead letters are not checked: they carry a failed record as it came."""
        for topic, headers in sent:
            if topic.endswith(DLQ_SUFFIX):
                continue
            h = dict(headers)
            event_type, version = h.get("event_type", "?"), int(h.get("event_version") or 0)
            if (topic, event_type, version) not in self._allowed:
                declared = sorted(f"{t}/{e}.v{v}" for t, e, v in self._allowed if t == topic) or "nothing"
                raise UndeclaredEvent(f"{event_type} v{version} on {topic} is not declared in the service's "
                                      f"Publishes (declared there: {declared})")
