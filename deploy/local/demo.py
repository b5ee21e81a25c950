"""`make demo`: one order's whole journey on the stack `make up` started, played by its parties.

An operator sets up a location and stock, a channel places an order, the warehouse picks, packs and
dispatches, the carrier posts signed scans until delivery, the customer returns an item and the
billing system (played here over Kafka, as the outside system would) reports the refund. Each step
prints one line with the order's status, then what the OMS did meanwhile: the emails from
notification's delivery log and the saga's steps (orchestrator). Every run uses fresh ids (SKUs,
location, external id, Idempotency-Keys), so it can be run again and again.

    python deploy/local/demo.py [--url SERVICE=URL ...] [--kafka HOST:PORT] [--zipkin URL] [--timeout S]

Credentials: $OMS_ADMIN_TOKEN, else the dev token `make up` keeps in .local/dev/admin-token; carrier
scans are signed with $CARRIER_WEBHOOK_SECRET, else .local/dev/carrier-webhook-secret.
"""

import argparse
import asyncio
import hashlib
import hmac
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from oms_contracts import new_envelope
from oms_contracts.billing import RefundCompletedV1
from oms_contracts.topics import BILLING_EVENTS, BILLING_REQUESTS

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / ".local" / "dev"


class DemoError(Exception):
    """A step did not get the answer it needs: the message says which and what came instead."""


def secret(var: str, file: str) -> str:
    value = os.environ.get(var)
    if not value and (DEV / file).exists():
        value = (DEV / file).read_text().strip()
    if not value:
        raise DemoError(f"no {var}: give it, or start the stack with `make up`, which keeps one in .local/dev/{file}")
    return value


def service_urls(overrides: list[str]) -> dict[str, str]:
    urls = {}
    for line in (ROOT / "deploy" / "services.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _module, port, _db = line.split()
            urls[name] = f"http://127.0.0.1:{port}"
    for item in overrides:
        name, _, url = item.partition("=")
        urls[name] = url.rstrip("/")
    return urls


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.urls = service_urls(args.url)
        self.kafka = args.kafka
        self.prefix = os.environ.get("KAFKA_TOPIC_PREFIX", "")
        self.zipkin = args.zipkin.rstrip("/")
        self.timeout = args.timeout
        self.admin = {"Authorization": f"Bearer {secret('OMS_ADMIN_TOKEN', 'admin-token')}"}
        self.carrier_secret = secret("CARRIER_WEBHOOK_SECRET", "carrier-webhook-secret")
        self.http = httpx.AsyncClient(timeout=30)
        run = uuid.uuid4().hex[:6].upper()
        self.run = run
        self.tee, self.mug, self.location = f"DEMO-TEE-{run}", f"DEMO-MUG-{run}", f"demo-lisbon-{run.lower()}"
        self.channel: dict[str, str] = {}
        self.order_id = ""
        self.step = 0
        self.emails_seen: set[tuple[str, str]] = set()
        self.steps_seen: set[tuple[int, str | None]] = set()

    # --- output ------------------------------------------------------------------------------------------

    def say(self, who: str, what: str, status: str | None = None) -> None:
        self.step += 1
        line = f"{self.step:>2}. {who:<9} {what}"
        if status:
            line = f"{line:<92} status: {status}"
        print(line, flush=True)

    def detail(self, text: str) -> None:
        print(f"{'':14}{text}", flush=True)

    async def report(self) -> None:
        """What the OMS did since the last step: new emails and saga steps."""
        # An email shows again when its status changed (pending, then sent).
        new = [e for e in await self.emails() if (e["notification_id"], e["status"]) not in self.emails_seen]
        for e in new:
            self.emails_seen.add((e["notification_id"], e["status"]))
        if new:
            self.detail("emails: " + ", ".join(f"{e['template']} -> {e['recipient'] or 'customer'} ({e['status']})"
                                               for e in new))
        saga = await self.get("orchestrator", f"/v1/sagas/{self.order_id}")
        steps = [s for s in saga["steps"] if (s["seq"], s["outcome"]) not in self.steps_seen]
        for s in steps:
            self.steps_seen.add((s["seq"], s["outcome"]))
        if steps:
            self.detail("saga:   " + ", ".join(f"{s['step']} {s['outcome'] or 'in progress'}" for s in steps)
                        + f"  (state {saga['state']})")

    # --- HTTP --------------------------------------------------------------------------------------------

    async def call(self, method: str, service: str, path: str, *, expect: tuple[int, ...] = (200,),
                   headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        url = f"{self.urls[service]}{path}"
        try:
            resp = await self.http.request(method, url, headers=headers or self.admin, **kw)
        except httpx.HTTPError as exc:
            raise DemoError(f"{method} {url}: {exc!r} (is the stack up? `make up`)") from exc
        if resp.status_code not in expect:
            raise DemoError(f"{method} {url}: {resp.status_code} {resp.text[:500]}")
        return resp

    async def get(self, service: str, path: str, **kw: Any) -> Any:
        return (await self.call("GET", service, path, **kw)).json()

    async def until(self, what: str, check: Callable[[], Awaitable[Any]]) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            found = await check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise DemoError(f"waited {self.timeout:.0f}s for {what}")
            await asyncio.sleep(0.3)

    async def order(self) -> dict[str, Any]:
        return await self.get("order-capture", f"/v1/orders/{self.order_id}", headers=self.channel)

    async def wait_status(self, *statuses: str) -> str:
        async def check() -> str | None:
            order = await self.order()
            if order["status"] in ("rejected", "cancelled") and order["status"] not in statuses:
                raise DemoError(f"order {self.order_id} is {order['status']} ({order.get('status_reason')})")
            return order["status"] if order["status"] in statuses else None

        return await self.until(f"order {self.order_id} to be {' or '.join(statuses)}", check)

    # --- the journey ---------------------------------------------------------------------------------------

    async def run_journey(self) -> None:
        print(f"OMS demo run {self.run}: one order from stock to return ({', '.join(sorted(self.urls))})")
        await self.setup_stock()
        await self.place_order()
        shipments = await self.fulfil()
        await self.deliver(shipments)
        await self.return_item()
        try:
            emails = await self.until("every email to be sent", self.all_emails_sent)
        except DemoError:
            emails = await self.emails()
        print(f"emails: {len(emails)} to {emails[0]['recipient'] if emails else 'the customer'}: "
              + ", ".join(f"{e['template']} ({e['status']})" for e in emails))
        print(f"done: order {self.order_id} went pending -> confirmed -> shipped -> delivered -> "
              f"{(await self.order())['status']}; trace: {self.trace_link}")

    async def setup_stock(self) -> None:
        await self.call("PUT", "inventory", f"/v1/locations/{self.location}", expect=(200, 201),
                        json={"name": f"Lisbon DC ({self.run})", "country": "PT"})
        for sku, units in ((self.tee, 10), (self.mug, 5)):
            await self.call("PUT", "inventory", f"/v1/locations/{self.location}/stock/{sku}", expect=(200, 201),
                            json={"on_hand": units, "reason": "demo: goods received"})
            await self.call("PUT", "inventory", f"/v1/skus/{sku}", expect=(200, 201),
                            json={"allow_backorder": False, "low_stock_threshold": 2, "returnable": True})
        self.say("operator", f"location {self.location} (PT) with {self.tee} x10 and {self.mug} x5 on hand")
        key = (await self.call("POST", "order-capture", "/v1/admin/api-keys", expect=(201,),
                               json={"channel": "web"})).json()
        self.channel = {"Authorization": f"Bearer {key['key']}"}
        self.say("operator", f"channel key {key['key_id']} issued for the web shop (shown once: {key['key'][:10]}...)")

    async def place_order(self) -> None:
        body = {
            "channel": "web", "external_id": f"WEB-DEMO-{self.run}", "currency": "EUR",
            "customer": {"id": f"c-{self.run.lower()}", "email": f"ana.{self.run.lower()}@example.com",
                         "name": "Ana Lima", "phone": "+351912345678"},
            "shipping_address": {"name": "Ana Lima", "line1": "Rua Augusta 1", "line2": None, "city": "Lisboa",
                                 "postal_code": "1100-048", "country": "PT"},
            "shipping_method": "standard",
            "lines": [{"sku": self.tee, "quantity": 2, "unit_price": "19.90"},
                      {"sku": self.mug, "quantity": 1, "unit_price": "9.90"}],
            "payment": {"method": "card", "status": "authorized", "reference": f"pay_{self.run}", "amount": "49.70"},
        }
        resp = await self.call("POST", "order-capture", "/v1/orders", expect=(201,), json=body,
                               headers={**self.channel, "Idempotency-Key": f"demo-{uuid.uuid4()}"})
        order = resp.json()
        self.order_id = order["order_id"]
        traceparent = resp.headers.get("traceparent", "")
        parts = traceparent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            self.trace_link = f"{self.zipkin}/zipkin/traces/{parts[1]}"
        else:
            self.trace_link = f"{self.zipkin}/zipkin/?annotationQuery={quote(f'oms.order_id={self.order_id}')}"
        self.say("channel", f"web shop placed order {self.order_id} ({body['external_id']}, "
                 f"{order['total']} {order['currency']})", order["status"])
        self.detail(f"trace:  {self.trace_link}")
        status = await self.wait_status("confirmed")
        self.say("OMS", "stock reserved at one location, payment authorized: the order is confirmed", status)
        await self.report()

    async def fulfil(self) -> list[dict[str, Any]]:
        async def created() -> list[dict[str, Any]] | None:
            items = (await self.get("fulfilment", "/v1/shipments", params={"order_id": self.order_id}))["items"]
            return items or None

        shipments = await self.until("the order's shipments", created)
        for s in shipments:
            for action in ("pick", "pack", "dispatch"):
                await self.call("POST", "fulfilment", f"/v1/shipments/{s['shipment_id']}/{action}")
            self.say("warehouse", f"picked, packed and dispatched shipment {s['shipment_id']} "
                     f"({s['carrier']} {s['tracking_number']})")
        status = await self.wait_status("shipped")
        self.say("OMS", "every parcel left the warehouse: stock committed, billing asked to capture", status)
        await self.report()
        return shipments

    async def deliver(self, shipments: list[dict[str, Any]]) -> None:
        for s in shipments:
            for n, (scan, place) in enumerate((("in_transit", "Lisbon hub"), ("out_for_delivery", "Lisboa"),
                                               ("delivered", "Front door"))):
                body = orjson.dumps({"carrier": s["carrier"], "event_id": f"demo-{self.run}-{s['tracking_number']}-{n}",
                                     "tracking_number": s["tracking_number"], "status": scan,
                                     "occurred_at": datetime.now(UTC).isoformat(), "location": place})
                sig = hmac.new(self.carrier_secret.encode(), body, hashlib.sha256).hexdigest()
                await self.call("POST", "tracking", "/v1/carrier-events", expect=(201,), content=body,
                                headers={"content-type": "application/json", "X-Carrier-Signature": f"sha256={sig}"})
            self.say("carrier", f"signed scans for {s['tracking_number']}: in_transit, out_for_delivery, delivered")
        status = await self.wait_status("delivered")
        self.say("OMS", "every shipment delivered: the order is delivered", status)
        await self.report()

    async def return_item(self) -> None:
        body = {"order_id": self.order_id, "resolution": "refund",
                "lines": [{"sku": self.tee, "quantity": 1, "reason": "too_small"}]}
        headers = {**self.channel, "Idempotency-Key": f"demo-rma-{uuid.uuid4()}"}

        async def requested() -> dict[str, Any] | None:
            # Returns learns of the delivery from Kafka a moment after the order shows it: a 422 with
            # rule `delivered` then stores nothing and is asked again.
            resp = await self.call("POST", "returns", "/v1/returns", expect=(201, 422), json=body, headers=headers)
            if resp.status_code == 201:
                return resp.json()
            if "delivered" not in resp.text:
                raise DemoError(f"return refused: {resp.text}")
            return None

        rma = await self.until("returns to accept the request", requested)
        return_id = rma["return_id"]
        status = await self.wait_status("return_requested")
        self.say("customer", f"asked to return 1 x {self.tee} (too small): return {return_id} "
                 f"{rma['status']}, label {rma.get('tracking_number', '')}", status)
        await self.report()
        requests = await BillingRequests(self.kafka, self.prefix + BILLING_REQUESTS).start()
        try:
            await self.call("POST", "returns", f"/v1/returns/{return_id}/receive",
                            json={"lines": [{"sku": self.tee, "quantity": 1, "condition": "resellable"}]})
            self.say("warehouse", f"received return {return_id}: 1 x {self.tee} resellable, back in stock")
            refund = await requests.wait_for(return_id, "RefundRequested", self.timeout)
        finally:
            await requests.stop()
        payload = refund["payload"]
        self.say("OMS", f"asked billing for a refund of {payload['amount']} {payload['currency']} "
                 "(RefundRequested on oms.billing.requests)")
        event = RefundCompletedV1(order_id=uuid.UUID(self.order_id), return_id=uuid.UUID(return_id),
                                  amount=Decimal(payload["amount"]), currency=payload["currency"],
                                  reference=f"refund_{self.run}")
        env = new_envelope(event, producer="billing", order_id=uuid.UUID(self.order_id))
        producer = AIOKafkaProducer(bootstrap_servers=self.kafka, enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(self.prefix + BILLING_EVENTS, orjson.dumps(env.model_dump(mode="json")),
                                         key=self.order_id.encode(),
                                         headers=[("event_type", b"RefundCompleted"), ("event_version", b"1")])
        finally:
            await producer.stop()

        async def refunded() -> dict[str, Any] | None:
            r = await self.get("returns", f"/v1/returns/{return_id}", headers=self.channel)
            return r if r["status"] in ("refunded", "closed") else None

        rma = await self.until(f"return {return_id} to be refunded", refunded)
        status = await self.wait_status("partially_returned", "returned")
        self.say("billing", f"refunded {payload['amount']} {payload['currency']} (RefundCompleted on "
                 f"oms.billing.events): return {rma['status']}", status)
        await self.until("the refund email", self.refund_emailed)
        await self.report()

    async def emails(self) -> list[dict[str, Any]]:
        """The order's emails from notification's delivery log, oldest first."""
        items = (await self.get("notification", "/v1/notifications", params={"order_id": self.order_id,
                                                                            "limit": 200}))["items"]
        return sorted((e for e in items if e["channel"] == "email"), key=lambda e: e["created_at"])

    async def refund_emailed(self) -> bool:
        return any(e["template"] == "refund_issued" for e in await self.emails())

    async def all_emails_sent(self) -> list[dict[str, Any]] | None:
        emails = await self.emails()
        return emails if all(e["status"] == "sent" for e in emails) else None


class BillingRequests:
    """Reads oms.billing.requests from its end, without a consumer group, as the billing system would."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def start(self) -> "BillingRequests":
        await self.consumer.start()
        metadata = await self.consumer._client.fetch_all_metadata()  # aiokafka has no public call for it
        partitions = metadata.partitions_for_topic(self.topic)
        if not partitions:
            await self.consumer.stop()
            raise DemoError(f"topic {self.topic} not found (is the stack up?)")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)  # fix the start before anything is asked for
        return self

    async def wait_for(self, return_id: str, event_type: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await self.consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    env = orjson.loads(r.value)
                    if env["event_type"] == event_type and env["payload"].get("return_id") == return_id:
                        return env
        raise DemoError(f"no {event_type} for return {return_id} on {self.topic} in {timeout:.0f}s")

    async def stop(self) -> None:
        await self.consumer.stop()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", default=[], metavar="SERVICE=URL",
                        help="a service's base URL (default: 127.0.0.1 and its port in deploy/services.conf)")
    parser.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--zipkin", default=os.environ.get("ZIPKIN_URL", "http://127.0.0.1:9411"))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each step")
    args = parser.parse_args(argv)
    try:
        demo = Demo(args)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    try:
        await demo.run_journey()
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await demo.http.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
