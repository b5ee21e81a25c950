"""Domain errors (oms_platform.errors) become the error body of CONTRACT.md in one place, the HTTP
edge's handlers: each kind its status, its code (a default or the one the use case names) and fields."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from oms_platform.errors import Conflict, DomainError, InvalidTransition, NotFound, RuleBroken, Violation
from oms_platform.http import install_error_handlers


def _answer(exc: DomainError) -> tuple[int, dict]:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/x")
    async def refuse() -> None:
        raise exc

    resp = TestClient(app).get("/x")
    return resp.status_code, resp.json()


@pytest.mark.parametrize(("exc", "status", "code"), [
    (NotFound("order 1 not found"), 404, "not_found"),
    (Conflict("order 1 is already cancelled", code="not_cancellable"), 409, "not_cancellable"),
    (Conflict("clash"), 409, "conflict"),
    (InvalidTransition("shipment 1 is packed"), 409, "invalid_transition"),
    (RuleBroken("bad"), 422, "validation_failed"),
])
def test_each_kind_answers_its_status_and_code(exc: DomainError, status: int, code: str) -> None:
    got_status, body = _answer(exc)
    assert got_status == status
    assert body == {"error": {"code": code, "message": str(exc), "fields": []}}


def test_fields_name_the_field_and_the_rule() -> None:
    exc = RuleBroken.of([Violation("lines[1].sku", "unique_sku", "SKU A already appears in lines[0]"),
                         Violation("payment.amount", "equals_total", "must equal the order total 3.00")])
    status, body = _answer(exc)
    assert status == 422
    assert body["error"]["message"] == ("invalid request: lines[1].sku: SKU A already appears in lines[0]; "
                                        "payment.amount: must equal the order total 3.00")
    assert [(f["field"], f["rule"]) for f in body["error"]["fields"]] == [
        ("lines[1].sku", "unique_sku"), ("payment.amount", "equals_total")]


def test_domain_errors_know_nothing_of_http() -> None:
    import oms_platform.errors as errors
    import oms_platform.pagination as pagination

    for module in (errors, pagination):
        imports = [line for line in open(module.__file__ or "") if line.startswith(("import ", "from "))]
        assert not [line for line in imports if "fastapi" in line or "starlette" in line or "http" in line]
