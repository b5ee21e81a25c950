"""The contracts every service publishes for integrators (issue 14 item 5): the committed documents under
docs/api/ are what the code generates now, each service's AsyncAPI comes from its declared publications
and its consumers, its outbox refuses what it did not declare, and its OpenAPI states security, the
error body and the statuses."""

import importlib
from uuid import uuid4

import pytest
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema

from oms_contracts import Publishes, UndeclaredEvent, new_envelope
from oms_contracts.catalog import EXTERNAL_TOPICS, TOPIC_EVENTS
from oms_contracts.fulfilment import ShipmentDispatchedV1, ShipmentsCreatedV1
from oms_contracts.orders import OrderPlacedV1
from oms_contracts.topics import events
from oms_platform import outbox
from tests.support.services import service_table
from tools import api_docs

SERVICES = sorted(service_table().items())


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, (module, _, _) in SERVICES:
        out.update(api_docs.documents(name, module))
    return out


def test_the_committed_documents_are_what_the_code_generates() -> None:
    assert api_docs.stale() == [], "docs/api is stale: run `make api-docs` and commit docs/api"


def test_every_contract_of_the_catalog_is_sent_by_some_service() -> None:
    declared: set[tuple[str, type]] = set()
    for _, (module, _, _) in SERVICES:
        publishes = importlib.import_module(f"{module}.bootstrap").build_app().state.runtime.produces
        declared |= {(topic, m) for topic, models in publishes.topics.items() for m in models}
    expected = {(t, m) for t, models in TOPIC_EVENTS.items() if t not in EXTERNAL_TOPICS for m in models}
    assert expected - declared == set(), "in oms_contracts.catalog but sent by no service"


def test_a_declaration_outside_the_catalog_is_refused() -> None:
    with pytest.raises(ValueError, match="TOPIC_EVENTS"):
        Publishes({events("fulfilment"): (OrderPlacedV1,)})


def _message(event: object, topic: str) -> outbox.OutgoingMessage:
    return outbox.message(topic, new_envelope(event, producer="fulfilment", order_id=uuid4()))  # type: ignore[arg-type]


def test_the_outbox_refuses_an_event_its_service_did_not_declare() -> None:
    created = _message(ShipmentsCreatedV1(order_id=uuid4(), shipments=[]), events("fulfilment"))
    outbox.Outbox("fulfilment", publishes=Publishes({events("fulfilment"): (ShipmentsCreatedV1,)})).sql([created], 1)
    box = outbox.Outbox("fulfilment", publishes=Publishes({events("fulfilment"): (ShipmentDispatchedV1,)}))
    with pytest.raises(UndeclaredEvent, match="ShipmentsCreated v1 on oms.fulfilment.events"):
        box.sql([created], 1)
    with pytest.raises(UndeclaredEvent):  # declared, but for another topic
        box.sql([_message(ShipmentsCreatedV1(order_id=uuid4(), shipments=[]), events("tracking"))], 1)
    # a dead letter carries a failed record as it came: not the service's own event
    box.sql([outbox.OutgoingMessage("oms.fulfilment.commands.dlq", "k", b"{}", [("dlq.error", "x")])], 1)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + \
            [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolves(doc: dict, ref: str) -> bool:
    node: object = doc
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize(("name", "module"), [(n, m) for n, (m, _, _) in SERVICES])
def test_asyncapi_names_what_the_service_reads_and_writes(docs: dict, name: str, module: str) -> None:
    doc = docs[f"{name}.asyncapi.json"]
    assert doc["asyncapi"].startswith("3.")
    assert [r for r in _refs(doc) if not _resolves(doc, r)] == []
    runtime = importlib.import_module(f"{module}.bootstrap").build_app().state.runtime
    addresses = {c["address"] for c in doc["channels"].values()}
    for topic, models in runtime.produces.topics.items():
        op = doc["operations"][f"send_{topic.replace('.', '_')}"]
        assert {r["$ref"].rsplit("/", 1)[1] for r in op["messages"]} == {m.__name__ for m in models}
    for spec in runtime.all_consumers():
        assert set(spec.topics) <= addresses and {f"{t}.dlq" for t in spec.topics} <= addresses
        on_topics = {m.EVENT_TYPE for t in spec.topics for m in TOPIC_EVENTS.get(t, ())}
        handled = {t for t in spec.handlers if t in on_topics}
        ops = [doc["operations"][f"receive_{spec.name}_{t.replace('.', '_')}"] for t in spec.topics]
        names = [r["$ref"].rsplit("/", 1)[1] for op in ops for r in op["messages"]]
        received = {doc["components"]["messages"][n]["name"] for n in names}
        assert received == handled, spec.name
    # The structure, by faststream's AsyncAPI 3.0 models (stricter than the spec on one point: they
    # require a server's pathname, which the spec leaves optional and Kafka has none of).
    ApplicationSchema.model_validate({**doc, "servers": {k: {**v, "pathname": ""} for k, v in doc["servers"].items()}})
    placed = doc["components"]["schemas"].get("OrderPlacedV1")
    if placed is not None:  # money on the wire is a decimal string
        assert placed["properties"]["total"]["type"] == "string"


@pytest.mark.parametrize(("name", "module"), [(n, m) for n, (m, _, _) in SERVICES])
def test_openapi_states_security_errors_and_statuses(docs: dict, name: str, module: str) -> None:
    doc = docs[f"{name}.openapi.json"]
    schemas = doc["components"]["schemas"]
    assert "Error" in schemas and "HTTPValidationError" not in schemas
    assert set(doc["components"]["securitySchemes"]) >= {"operatorToken", "channelKey"}
    secured = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "security" in op, f"{method} {path}"
            responses = op["responses"]
            assert "422" in responses
            for status, answer in responses.items():
                if status[0] in "45" and "application/json" in answer.get("content", {}):
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            if op["security"]:
                secured += 1
                if "customerLink" not in op["security"][0]:
                    assert "401" in responses, f"{method} {path}"
            if "requestBody" in op:
                assert {"413", "415"} <= set(responses), f"{method} {path}"
    assert secured, name


def test_field_rules_are_stated() -> None:
    spec = importlib.import_module("order_capture.bootstrap").build_app().openapi()
    schemas = spec["components"]["schemas"]
    assert schemas["LineIn"]["properties"]["unit_price"]["pattern"] == r"^\d+(\.\d{1,2})?$"
    assert schemas["OrderIn"]["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"
    assert schemas["AddressIn"]["properties"]["country"]["pattern"] == "^[A-Z]{2}$"
    place = spec["paths"]["/v1/orders"]["post"]
    assert place["security"] == [{"channelKey": []}]
    assert {"401", "403", "409", "413", "415", "422", "429", "503"} <= set(place["responses"])
