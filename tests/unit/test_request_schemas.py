"""Every request body of every service refuses unknown fields (README, Input rules): walks each
service's OpenAPI (the services of deploy/services.conf, so a new service is checked as soon as it is
listed) and checks that every object schema a request body can hold says additionalProperties: false."""

import importlib
from typing import Any

import pytest

from tests.support.services import service_table

SERVICES = sorted(service_table())
# Bodies that deliberately ignore what they do not know, each with its reason.
IGNORE_UNKNOWN = {
    # A carrier's webhook: carriers extend their payloads without notice, and a refusal would only make
    # the carrier retry the same scan forever.
    "CarrierEvent",
}


def _openapi(name: str) -> dict[str, Any]:
    module = service_table()[name][0]
    return importlib.import_module(f"{module}.bootstrap").build_app().openapi()


def _open_objects(schema: Any, components: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    """The paths of object schemas under `schema` that allow properties they do not name."""
    if isinstance(schema, list):
        return [p for i, s in enumerate(schema) for p in _open_objects(s, components, f"{where}[{i}]", seen)]
    if not isinstance(schema, dict):
        return []
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        if name in seen or name in IGNORE_UNKNOWN:
            return []
        return _open_objects(components[name], components, name, seen | {name})
    problems = []
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties", True) is not False:
            problems.append(where)
    for key in ("properties", "$defs"):
        for prop, sub in (schema.get(key) or {}).items():
            problems += _open_objects(sub, components, f"{where}.{prop}", seen)
    for key in ("items", "anyOf", "oneOf", "allOf"):
        if key in schema:
            problems += _open_objects(schema[key], components, where, seen)
    return problems


@pytest.mark.parametrize("name", SERVICES)
def test_every_request_body_refuses_unknown_fields(name: str) -> None:
    spec = _openapi(name)
    components = spec.get("components", {}).get("schemas", {})
    problems = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for media, content in ((op.get("requestBody") or {}).get("content") or {}).items():
                problems += [f"{method.upper()} {path} ({media}): {p}"
                             for p in _open_objects(content.get("schema"), components, "body", set())]
    assert not problems, "request bodies that accept unknown fields:\n" + "\n".join(problems)


def test_the_walk_sees_an_open_object() -> None:
    components = {"In": {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/Sub"}},
                         "additionalProperties": False},
                  "Sub": {"type": "object", "properties": {"b": {"type": "string"}}}}
    assert _open_objects({"$ref": "#/components/schemas/In"}, components, "body", set()) == ["Sub"]
