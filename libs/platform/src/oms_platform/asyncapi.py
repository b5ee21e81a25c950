"""A service's AsyncAPI 3.0 document (`GET /asyncapi.json`), generated from what it really reads and
writes: the topics and handled event types of its ConsumerSpecs, the topics and contract classes of its
Publishes (oms_contracts.publishing, which its outbox enforces), and the dead-letter topics beside what
it reads. Payload schemas come from the pydantic contract models inside the envelope of CONTRACT.md.

Written here rather than by faststream's generator: the services consume with their own batch loop
over aiokafka (oms_platform.consumer) and publish through the outbox relay, so faststream knows
neither the event types a consumer handles nor anything a service sends."""

from typing import Any

from pydantic import BaseModel

from oms_contracts import Envelope
from oms_contracts.catalog import models_on
from oms_contracts.topics import dlq
from oms_platform.consumer import ConsumerSpec

REF = "#/components/schemas/{model}"
_HEADERS = {
    "type": "object",
    "required": ["event_type", "event_version"],
    "properties": {
        "event_type": {"type": "string", "description": "the envelope's event_type"},
        "event_version": {"type": "string", "pattern": "^[1-9][0-9]*$", "description": "the envelope's event_version"},
        "content-type": {"type": "string", "const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context of the trace the message belongs to",
                        "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
    },
}
_KEY = {"kafka": {"key": {"type": "string", "format": "uuid", "description": "the order id (UTF-8)"},
                  "bindingVersion": "0.5.0"}}


def _id(topic: str) -> str:
    return topic.replace(".", "_")


def _schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    """Serialization schemas (what is on the wire: money as a decimal string) of the models and their parts."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF, mode="serialization")
        for name, sub in schema.pop("$defs", {}).items():
            out.setdefault(name, sub)
        out[model.__name__] = schema
    return out


def _envelope(model: type[BaseModel] | None) -> dict[str, Any]:
    schema = Envelope.model_json_schema(mode="serialization")
    props = schema["properties"]
    if model is not None:
        props["event_type"] = {**props["event_type"], "const": vars(model)["EVENT_TYPE"]}
        props["event_version"] = {**props["event_version"], "const": vars(model)["EVENT_VERSION"]}
        props["payload"] = {"$ref": REF.format(model=model.__name__)}
    return schema


def _message(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "name": vars(model)["EVENT_TYPE"], "title": f"{vars(model)['EVENT_TYPE']} v{vars(model)['EVENT_VERSION']}",
        **({"summary": doc} if (doc := (model.__doc__ or "").strip().split("\n\n")[0]) else {}),
        "contentType": "application/json", "headers": _HEADERS, "payload": _envelope(model), "bindings": _KEY,
    }


DEAD_LETTER = {
    "name": "DeadLetter", "title": "a record the consumer group could not apply",
    "summary": "The failed record's key, value and headers as they came, plus dlq.* headers saying why, "
               "where from and which group failed it (`make dlq` lists and replays them).",
    "contentType": "application/json",
    "headers": {"type": "object", "required": ["dlq.error", "dlq.original_topic", "dlq.consumer"], "properties": {
        name: {"type": "string"} for name in ("dlq.error", "dlq.original_topic", "dlq.original_partition",
                                                "dlq.original_offset", "dlq.consumer", "dlq.failed_at")}},
    "payload": {"description": "the failed record's value, unchanged (usually an envelope, maybe not valid JSON)"},
}


def document(name: str, consumers: list[ConsumerSpec], produces: dict[str, tuple[type[BaseModel], ...]], *,
             title: str, version: str) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    models: dict[str, type[BaseModel]] = {}

    def channel(topic: str, messages: list[type[BaseModel]] | None, description: str) -> list[dict[str, str]]:
        entry = channels.setdefault(_id(topic), {"address": topic, "description": description, "messages": {}})
        refs = []
        for model in messages if messages is not None else []:
            models[model.__name__] = model
            entry["messages"][model.__name__] = {"$ref": f"#/components/messages/{model.__name__}"}
            refs.append({"$ref": f"#/channels/{_id(topic)}/messages/{model.__name__}"})
        if messages is None:
            entry["messages"]["DeadLetter"] = {"$ref": "#/components/messages/DeadLetter"}
            refs.append({"$ref": f"#/channels/{_id(topic)}/messages/DeadLetter"})
        return refs

    for topic, sent in sorted(produces.items()):
        refs = channel(topic, list(sent), f"Kafka topic {topic} (key: the order id)")
        operations[f"send_{_id(topic)}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{_id(topic)}"}, "messages": refs,
            "summary": f"{name} publishes these events on {topic} (through its transactional outbox: at least "
                       "once, in commit order per order; consumers drop repeats by event_id)"}
    for spec in consumers:
        handled = set(spec.handlers)
        for topic in spec.topics:
            refs = channel(topic, list(models_on(topic, handled)), f"Kafka topic {topic} (key: the order id)")
            operations[f"receive_{spec.name}_{_id(topic)}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{_id(topic)}"}, "messages": refs,
                "summary": f"consumer group {name}.{spec.name} applies these event types (others on the topic are "
                           "skipped), each once (inbox by event_id)"}
            letters = channel(dlq(topic), None, f"dead letters of {topic}'s consumers")
            operations[f"send_{spec.name}_{_id(dlq(topic))}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{_id(dlq(topic))}"}, "messages": letters,
                "summary": f"a record of {topic} that {name}.{spec.name} could not apply (invalid, or failed on "
                           "every attempt), kept for `make dlq`"}
    ordered = sorted(models.values(), key=lambda m: m.__name__)
    messages = {m.__name__: _message(m) for m in ordered}
    if any("DeadLetter" in c["messages"] for c in channels.values()):
        messages["DeadLetter"] = DEAD_LETTER
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"{title} events", "version": version,
                 "description": f"The Kafka topics {name} reads and writes, generated from its consumers and its "
                                "declared publications (oms_contracts.publishing). Every message: key = the order "
                                "id, value = the JSON envelope of CONTRACT.md with the event's payload."},
        "defaultContentType": "application/json",
        "servers": {"kafka": {"host": "127.0.0.1:9092", "protocol": "kafka",
                              "description": "KAFKA_BOOTSTRAP_SERVERS (topics get KAFKA_TOPIC_PREFIX if set)"}},
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"messages": messages, "schemas": dict(sorted(_schemas(ordered).items()))},
    }
