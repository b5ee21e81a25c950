"""Every service's interactive API docs (/docs, from its OpenAPI): they say how to authenticate, and
every JSON request body shows an example that the body's own schema accepts."""

import importlib

import jsonschema
import pytest

from tests.support.services import service_table

SERVICES = sorted(service_table().items())


def openapi(module: str) -> dict:
    return importlib.import_module(f"{module}.bootstrap").build_app().openapi()


def resolve(spec: dict, schema: dict) -> dict:
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


@pytest.mark.parametrize(("name", "module"), [(n, m) for n, (m, _, _) in SERVICES])
def test_the_docs_say_how_to_authenticate(name: str, module: str) -> None:
    description = openapi(module)["info"]["description"]
    assert "**Authentication**" in description, name
    assert "Authorization: Bearer" in description or "X-Carrier-Signature" in description, name
    assert "401" in description, name


@pytest.mark.parametrize(("name", "module"), [(n, m) for n, (m, _, _) in SERVICES])
def test_every_json_body_has_an_example_its_schema_accepts(name: str, module: str) -> None:
    spec = openapi(module)
    bodies = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            media = op.get("requestBody", {}).get("content", {}).get("application/json")
            if media is None:
                continue
            bodies += 1
            schema = media["schema"]
            examples = resolve(spec, schema).get("examples") or [media.get("example")]
            assert examples and examples[0] is not None, f"{name}: {method.upper()} {path} has no example"
            for example in examples:
                # the whole document as the root, so that the schema's $refs resolve
                jsonschema.validate(example, {**schema, "components": spec["components"]})
    assert bodies or name in ("orchestrator", "fulfilment"), f"{name}: no JSON request bodies found"


# The main answers show a real example (tests/e2e/test_demo.py checks each against the live answer's shape).
ANSWERS = {
    "order_capture": [("get", "/v1/orders/{order_id}", "200"), ("post", "/v1/orders", "201")],
    "inventory": [("get", "/v1/stock/{sku}", "200"), ("get", "/v1/reservations/{order_id}", "200")],
    "fulfilment": [("get", "/v1/shipments", "200")],
    "orchestrator": [("get", "/v1/sagas/{order_id}", "200")],
    "notification": [("get", "/v1/notifications", "200")],
    "returns": [("get", "/v1/returns/{return_id}", "200"), ("post", "/v1/returns", "201")],
}


@pytest.mark.parametrize("module", sorted(ANSWERS))
def test_the_main_answers_show_an_example(module: str) -> None:
    spec = openapi(module)
    for method, path, status in ANSWERS[module]:
        media = spec["paths"][path][method]["responses"][status]["content"]["application/json"]
        assert isinstance(media.get("example"), dict) and media["example"], f"{method.upper()} {path}"
