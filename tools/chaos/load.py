"""The channels' steady load: orders from several channels at a fixed rate, each POST retried on any
failure (connection refused, 5xx, 503 while a database restarts) with the same Idempotency-Key and
body, to the next replica of order-capture; a share sent twice on purpose (a client retrying after a
lost answer) and a share cancelled once placed. It remembers what each accepted order should be."""

import asyncio
import itertools
import random
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from tools.chaos.journeys import Journeys
from tools.chaos.stack import Stack

CHANNELS = ("web", "pos", "phone")
LOCATION = "chaos-dc"


@dataclass
class Placed:
    order_id: str
    channel: str
    lines: list[dict[str, Any]]
    cancel_requested: bool = False


@dataclass
class Load:
    stack: Stack
    rate: float
    skus: list[str]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    placed: dict[str, Placed] = field(default_factory=dict)  # by Idempotency-Key
    keys: dict[str, str] = field(default_factory=dict)  # channel -> API key
    mismatched_retries: int = 0  # a retry with the same key answered with another order: a duplicate
    retries: int = 0
    gave_up: list[str] = field(default_factory=list)  # keys never accepted: not orders (the client was told no)
    journeys: Journeys | None = None  # shipped, delivered, returned and refunded: a share of the orders

    def _capture(self) -> itertools.cycle:
        return itertools.cycle([i.url for i in self.stack.of("order-capture")])

    async def setup(self, http: httpx.AsyncClient, on_hand: int) -> None:
        admin = {"Authorization": f"Bearer {self.stack.admin_token}"}
        capture = self.stack.of("order-capture")[0].url
        inventory = self.stack.of("inventory")[0].url
        for channel in CHANNELS:
            r = await http.post(f"{capture}/v1/admin/api-keys", json={"channel": channel}, headers=admin)
            r.raise_for_status()
            self.keys[channel] = r.json()["key"]
        r = await http.put(f"{inventory}/v1/locations/{LOCATION}", json={"name": "Chaos DC", "country": "PT"},
                           headers=admin)
        r.raise_for_status()
        for sku in self.skus:
            for path, body in ((f"/v1/skus/{sku}", {"allow_backorder": False, "low_stock_threshold": 0,
                                                     "returnable": True}),
                               (f"/v1/locations/{LOCATION}/stock/{sku}", {"on_hand": on_hand, "reason": "chaos"})):
                (await http.put(f"{inventory}{path}", json=body, headers=admin)).raise_for_status()

    def _body(self, channel: str, n: int) -> dict[str, Any]:
        rnd = random.Random(n)
        lines = [{"sku": sku, "quantity": rnd.randint(1, 3), "unit_price": "9.90"}
                 for sku in rnd.sample(self.skus, rnd.randint(1, 2))]
        total = sum(Decimal(line["unit_price"]) * line["quantity"] for line in lines)
        return {"channel": channel, "external_id": f"CHAOS-{self.run_id}-{n}", "currency": "EUR",
                "customer": {"id": f"c-{n % 50}", "email": "chaos@example.com", "name": "Chaos Test", "phone": None},
                "shipping_address": {"name": "Chaos Test", "line1": "Rua Augusta 1", "line2": None,
                                     "city": "Lisboa", "postal_code": "1100-048", "country": "PT"},
                "shipping_method": "standard", "lines": lines,
                "payment": {"method": "card", "status": "authorized", "reference": f"pay-{n}", "amount": str(total)}}

    async def _post(self, http: httpx.AsyncClient, urls: itertools.cycle, path: str, body: dict[str, Any],
                    headers: dict[str, str], deadline: float) -> httpx.Response | None:
        while time.monotonic() < deadline:
            try:
                r = await http.post(f"{next(urls)}{path}", json=body, headers=headers)
                if r.status_code < 500:
                    return r
            except httpx.HTTPError:
                pass
            self.retries += 1
            await asyncio.sleep(0.3)
        return None

    async def _order(self, http: httpx.AsyncClient, urls: itertools.cycle, n: int, deadline: float) -> None:
        channel = CHANNELS[n % len(CHANNELS)]
        body, key = self._body(channel, n), f"chaos-{self.run_id}-{n}"
        headers = {"Authorization": f"Bearer {self.keys[channel]}", "Idempotency-Key": key}
        r = await self._post(http, urls, "/v1/orders", body, headers, deadline)
        if r is None or r.status_code not in (200, 201):
            self.gave_up.append(f"{key}: {r.status_code if r else 'no answer'} {r.text[:200] if r else ''}")
            return
        placed = self.placed[key] = Placed(r.json()["order_id"], channel, body["lines"])
        if n % 5 == 0:  # the client never saw the answer and sends it again
            again = await self._post(http, urls, "/v1/orders", body, headers, deadline)
            if again is not None and again.status_code in (200, 201) and again.json()["order_id"] != placed.order_id:
                self.mismatched_retries += 1
        if n % 7 == 0:
            r = await self._post(http, urls, f"/v1/orders/{placed.order_id}/cancel", {"reason": "chaos"},
                                 {"Authorization": headers["Authorization"]}, deadline)
            placed.cancel_requested = r is not None and r.status_code == 202
        elif self.journeys is not None and self.journeys.wanted(n):
            await self.journeys.run(http, placed.order_id, body["lines"], n, deadline + 240)

    async def run(self, http: httpx.AsyncClient, seconds: float, retry_for: float = 120) -> None:
        """Starts an order every 1/rate seconds for `seconds`; each keeps retrying up to `retry_for`."""
        urls, tasks, start = self._capture(), [], time.monotonic()
        for n in itertools.count():
            at = start + n / self.rate
            if at > start + seconds:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            tasks.append(asyncio.create_task(self._order(http, urls, n, time.monotonic() + retry_for)))
        await asyncio.gather(*tasks)
