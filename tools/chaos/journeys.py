"""The rest of an order's life for a share of the orders, during the faults: once confirmed, the
warehouse picks, packs and dispatches its shipment (fulfilment's API), the carrier reports it
delivered (tracking's signed webhook), the customer asks to return every unit for a refund (returns'
API, with an Idempotency-Key, some sent twice) and the returns desk receives the parcel. Billing
(tools/chaos/parties.py) then refunds. Every call is retried on any failure, as the callers would."""

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson

from tools.chaos.stack import ROOT, Stack

JOURNEY_SERVICES = ("fulfilment", "tracking", "returns")


@dataclass
class Journey:
    order_id: str
    lines: list[dict[str, Any]]
    return_id: str | None = None
    refund: Decimal = Decimal("0")  # what the refund must be: every unit at the order's price
    failed: str | None = None  # where it stopped (a call refused for good, or out of time)


def carrier_secret(stack: Stack) -> str | None:
    """CARRIER_WEBHOOK_SECRET as given, else the dev one `make up` kept."""
    kept = Path(stack.env.get("OMS_STATE_DIR") or ROOT / ".local" / "dev") / "carrier-webhook-secret"
    return stack.env.get("CARRIER_WEBHOOK_SECRET") or (kept.read_text().strip() if kept.is_file() else None)


@dataclass
class Journeys:
    stack: Stack
    every: int = 4  # one order in `every` (never one the load cancels) goes the whole way
    done: list[Journey] = field(default_factory=list)
    mismatched_retries: int = 0  # a return retried with its key answered with another return
    retries: int = 0

    def enabled(self) -> bool:
        return all(self.stack.of(s) for s in JOURNEY_SERVICES) and carrier_secret(self.stack) is not None

    def wanted(self, n: int) -> bool:
        return self.enabled() and n % self.every == 1 and n % 7 != 0

    async def _call(self, http: httpx.AsyncClient, method: str, service: str, path: str, deadline: float,
                    ok: Callable[[httpx.Response], bool], **kwargs: Any) -> httpx.Response | None:
        """The call, to each replica in turn, until `ok` holds for the answer (or the deadline)."""
        urls = [i.url for i in self.stack.of(service)]
        kwargs.setdefault("headers", {"Authorization": f"Bearer {self.stack.admin_token}"})
        k = 0
        while time.monotonic() < deadline:
            try:
                r = await http.request(method, f"{urls[k % len(urls)]}{path}", **kwargs)
                if ok(r):
                    return r
            except httpx.HTTPError:
                pass
            k += 1
            self.retries += 1
            await asyncio.sleep(0.5)
        return None

    async def _until(self, what: Callable[[], Awaitable[Any]], deadline: float) -> Any:
        while time.monotonic() < deadline:
            if (found := await what()) is not None:
                return found
            await asyncio.sleep(0.5)
        return None

    async def run(self, http: httpx.AsyncClient, order_id: str, lines: list[dict[str, Any]], n: int,
                  deadline: float) -> None:
        journey = Journey(order_id, lines)
        self.done.append(journey)
        journey.failed = await self._walk(http, journey, n, deadline)

    async def _walk(self, http: httpx.AsyncClient, j: Journey, n: int, deadline: float) -> str | None:
        async def status() -> str | None:
            r = await self._call(http, "GET", "order-capture", f"/v1/orders/{j.order_id}", deadline,
                                 lambda r: r.status_code == 200)
            return r.json()["status"] if r is not None else None

        async def shipment() -> dict[str, Any] | None:
            r = await self._call(http, "GET", "fulfilment", "/v1/shipments", deadline, lambda r: r.status_code == 200,
                                 params={"order_id": j.order_id})
            items = r.json()["items"] if r is not None else []
            return items[0] if items else None

        if await self._until(lambda: _is(status, {"confirmed", "rejected", "cancelled"}), deadline) != "confirmed":
            return None  # out of stock, say: nothing to ship (the checks judge the order itself)
        ship = await self._until(shipment, deadline)
        if ship is None:
            return "no shipment"
        for action in ("pick", "pack", "dispatch"):
            # 409: a retry of a call whose answer was lost already moved it (or a later step did)
            r = await self._call(http, "POST", "fulfilment", f"/v1/shipments/{ship['shipment_id']}/{action}",
                                 deadline, lambda r: r.status_code in (200, 409))
            if r is None:
                return f"{action} never answered"
        ship = await self._until(lambda: _field(shipment, "status", "dispatched"), deadline)
        if ship is None:
            return "not dispatched"
        if await self._deliver(http, ship, deadline) is None:
            return "carrier scan refused"
        if await self._until(lambda: _is(status, {"delivered"}), deadline) is None:
            return "not delivered"
        return await self._return(http, j, n, deadline)

    async def _deliver(self, http: httpx.AsyncClient, ship: dict[str, Any], deadline: float) -> httpx.Response | None:
        body = orjson.dumps({"carrier": ship["carrier"], "event_id": f"chaos-{ship['shipment_id']}",
                             "tracking_number": ship["tracking_number"], "status": "delivered",
                             "occurred_at": datetime.now(UTC).isoformat(), "location": "Lisboa"})
        secret = carrier_secret(self.stack) or ""
        sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        # 404 while tracking has not yet read the dispatch; 200 is a repeat of the event id
        return await self._call(http, "POST", "tracking", "/v1/carrier-events", deadline,
                                lambda r: r.status_code in (200, 201), content=body,
                                headers={"content-type": "application/json", "X-Carrier-Signature": sig})

    async def _return(self, http: httpx.AsyncClient, j: Journey, n: int, deadline: float) -> str | None:
        body = {"order_id": j.order_id, "resolution": "refund",
                "lines": [{"sku": line["sku"], "quantity": line["quantity"], "reason": "too_small"}
                          for line in j.lines]}
        headers = {"Authorization": f"Bearer {self.stack.admin_token}", "Idempotency-Key": f"rma-{uuid.uuid4().hex}"}

        def accepted(r: httpx.Response) -> bool:  # 422 `delivered`: returns has not read the delivery yet
            return r.status_code == 201 or (r.status_code < 500 and r.status_code not in (404, 409, 422))

        r = await self._call(http, "POST", "returns", "/v1/returns", deadline, accepted, json=body, headers=headers)
        if r is None or r.status_code != 201:
            return f"return refused: {r.status_code if r else 'no answer'} {r.text[:200] if r else ''}"
        j.return_id = r.json()["return_id"]
        j.refund = sum((Decimal(line["unit_price"]) * line["quantity"] for line in j.lines), Decimal("0"))
        if n % 3 == 0:  # the client never saw the answer and sends it again
            again = await self._call(http, "POST", "returns", "/v1/returns", deadline, accepted, json=body,
                                     headers=headers)
            if again is not None and again.status_code == 201 and again.json()["return_id"] != j.return_id:
                self.mismatched_retries += 1
        receive = {"lines": [{"sku": line["sku"], "quantity": line["quantity"], "condition": "resellable"}
                             for line in j.lines]}
        # 409: received already (a retry whose answer was lost)
        r = await self._call(http, "POST", "returns", f"/v1/returns/{j.return_id}/receive", deadline,
                             lambda r: r.status_code in (200, 409), json=receive)
        return None if r is not None else "receipt never answered"


async def _is(status: Callable[[], Awaitable[str | None]], wanted: set[str]) -> str | None:
    s = await status()
    return s if s in wanted else None


async def _field(get: Callable[[], Awaitable[dict[str, Any] | None]], name: str, value: str) -> dict[str, Any] | None:
    found = await get()
    return found if found is not None and found.get(name) == value else None
