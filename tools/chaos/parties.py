"""The parties outside the OMS during a run, each counting what reached it:

- Billing: answers every RefundRequested on oms.billing.requests with RefundCompleted, refunding once
  per return_id as the contract asks of it (a request sent again gets the same RefundCompleted
  again, same event id); it keeps every amount asked per return.
- Webhooks: a receiver (HTTP on 127.0.0.1) subscribed through notification's API; it verifies the
  signature and keeps each delivery's X-OMS-Event-Id, event type and payload.
- Emails: the mail sink services.sh runs (aiosmtpd, printing every message to <state>/logs/mail.log),
  read back for each message's Message-ID and X-OMS-Order-Id."""

import asyncio
import hashlib
import hmac
import secrets
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from email.parser import HeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from oms_contracts import new_envelope
from oms_contracts.billing import RefundCompletedV1
from tools.chaos.stack import Stack

# What the receiver subscribes to: the events whose repeat would be a customer-visible duplicate.
WEBHOOK_EVENTS = ["OrderStatusChanged", "ShipmentDispatched", "ReturnApproved", "RefundCompleted"]


@dataclass
class Billing:
    stack: Stack
    asked: dict[str, list[Decimal]] = field(default_factory=lambda: defaultdict(list))  # return_id -> amounts
    _answers: dict[str, bytes] = field(default_factory=dict)
    _task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        """Reads from the start of the topic (a group of its own per run); survives a Kafka restart by
        starting again where it stopped (its offsets are committed after each answer)."""
        group = f"chaos-billing-{uuid.uuid4().hex[:8]}"
        while True:
            consumer = AIOKafkaConsumer(f"{self.stack.topic_prefix}oms.billing.requests",
                                        bootstrap_servers=self.stack.kafka_bootstrap, group_id=group,
                                        auto_offset_reset="earliest", enable_auto_commit=False)
            producer = AIOKafkaProducer(bootstrap_servers=self.stack.kafka_bootstrap, acks="all")
            try:
                await consumer.start()
                await producer.start()
                async for rec in consumer:
                    env = orjson.loads(rec.value)
                    if env.get("event_type") == "RefundRequested":
                        await self._refund(producer, env["payload"])
                    await consumer.commit()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Kafka restarting: start again in a moment
                await asyncio.sleep(1)
            finally:
                await asyncio.gather(consumer.stop(), producer.stop(), return_exceptions=True)

    async def _refund(self, producer: AIOKafkaProducer, payload: dict[str, Any]) -> None:
        return_id = payload["return_id"]
        self.asked[return_id].append(Decimal(payload["amount"]))
        if return_id not in self._answers:  # once per return: a repeat gets the same answer
            order_id = uuid.UUID(payload["order_id"])
            event = RefundCompletedV1(order_id=order_id, return_id=uuid.UUID(return_id),
                                      amount=Decimal(payload["amount"]), currency=payload["currency"],
                                      reference=f"rf_{return_id[:8]}")
            self._answers[return_id] = orjson.dumps(new_envelope(event, producer="billing", order_id=order_id)
                                                    .model_dump(mode="json"))
        await producer.send_and_wait(f"{self.stack.topic_prefix}oms.billing.events", self._answers[return_id],
                                     key=payload["order_id"].encode(),
                                     headers=[("event_type", b"RefundCompleted"), ("event_version", b"1")])


@dataclass
class Delivery:
    event_id: str
    event_type: str
    order_id: str
    payload: dict[str, Any]


class Webhooks:
    def __init__(self) -> None:
        self.secret = secrets.token_urlsafe(24)
        self.received: list[Delivery] = []
        self.bad_signatures = 0
        self.cut_short = 0  # requests whose body ended early (their sender killed mid-send)
        self.subscribed = False
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender was SIGKILLed mid-request: nothing was delivered (no answer reaches it,
                    # so it sends again), and a cut body is not a wrong signature.
                    receiver.cut_short += 1
                    self.close_connection = True
                    return
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(expected, self.headers.get("X-OMS-Signature") or ""):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                else:
                    env = orjson.loads(body)
                    receiver.received.append(Delivery(str(env["event_id"]), env["event_type"],
                                                      str(env.get("order_id")), env.get("payload") or {}))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/oms"

    async def subscribe(self, http: httpx.AsyncClient, stack: Stack) -> bool:
        """Subscribes at notification (when the stack runs it); False when it does not."""
        if not stack.of("notification"):
            return False
        r = await http.post(f"{stack.of('notification')[0].url}/v1/webhook-subscriptions",
                            json={"url": self.url, "event_types": WEBHOOK_EVENTS, "secret": self.secret,
                                  "description": "make chaos"},
                            headers={"Authorization": f"Bearer {stack.admin_token}"})
        r.raise_for_status()
        self.subscribed = True
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Mail:
    message_id: str
    order_id: str


class MailLog:
    """The messages printed to the mail sink's log since the run began (aiosmtpd -n: each between
    MESSAGE FOLLOWS and END MESSAGE)."""

    def __init__(self, path: Path):
        self.path = path
        self.start = path.stat().st_size if path.is_file() else 0

    def read(self) -> list[Mail]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as f:
            f.seek(self.start)
            text = f.read().decode(errors="replace")
        mails = []
        for block in text.split("---------- MESSAGE FOLLOWS ----------")[1:]:
            # aiosmtpd may print the session's "mail options: [...]" paragraph before the message's headers
            for part in block.split("------------ END MESSAGE ------------")[0].split("\n\n"):
                headers = HeaderParser().parsestr(part.strip("\n") + "\n")
                if headers["Message-ID"]:
                    mails.append(Mail(headers["Message-ID"].strip(), (headers["X-OMS-Order-Id"] or "").strip()))
                    break
        return mails
