"""The load generator's HTTP/1.1 client on asyncio streams with prebuilt requests, and the record it
keeps of each order it placed."""

import asyncio
import time
from dataclasses import dataclass, field

from bench.e2e.plan import QUANTITY, UNIT_PRICE, skus
from bench.orders import order_body_parts

_MARK = "@EXTERNAL_ID@"


class Order:
    __slots__ = ("phase", "sent", "post_ms", "done", "seen", "status", "reason", "lag_ms")

    def __init__(self, phase: str, sent: float, post_ms: float, lag_ms: float = 0.0):
        self.phase, self.sent, self.post_ms, self.lag_ms = phase, sent, post_ms, lag_ms
        self.done: float | None = None  # Kafka timestamp of the final status (s since the epoch)
        self.seen: float | None = None  # when this process read it
        self.status: str | None = None
        self.reason: str | None = None


class RequestFactory:
    """The bytes of one POST /v1/orders: a unique external id and Idempotency-Key per order, the SKUs in
    turn, the body of bench/orders.py otherwise."""

    def __init__(self, host: str, port: int, api_key: str, nonce: str):
        self.head = (f"POST /v1/orders HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {api_key}\r\n"
                     f"Content-Type: application/json\r\n").encode()
        self.parts = []
        for sku in skus():
            before, after = order_body_parts(sku=sku, quantity=QUANTITY, unit_price=UNIT_PRICE)
            self.parts.append((before.encode(), after.encode()))
        self.prefix = f"BENCH-{nonce}-"
        self.count = 0

    def next(self) -> bytes:
        self.count += 1
        ident = f"{self.prefix}{self.count}".encode()
        before, after = self.parts[self.count % len(self.parts)]
        length = len(before) + len(ident) + len(after)
        return b"".join((self.head, b"Idempotency-Key: ", ident, b"\r\nContent-Length: ", str(length).encode(),
                         b"\r\n\r\n", before, ident, after))


class HttpConn:
    """One keep-alive HTTP/1.1 connection: a request, then its response (Content-Length bodies only)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes) -> tuple[float, int, bytes]:
        """(wall time the request was written, status, body). A connection the server closed while idle
        is opened again and the request sent once more: the same Idempotency-Key makes that safe."""
        for attempt in (1, 2):
            if self.writer is None:
                await self.open()
            assert self.reader is not None and self.writer is not None
            sent = time.time()
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                at = head.lower().find(b"\r\ncontent-length:")
                if at < 0:
                    raise ConnectionError(f"response without Content-Length: {head[:200]!r}")
                end = head.find(b"\r\n", at + 2)
                body = await self.reader.readexactly(int(head[at + 17:end]))
                if b"\r\nconnection: close" in head.lower():
                    self.close()
                return sent, status, body
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@dataclass
class PhaseCounters:
    posted: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_sample: str | None = None

    def error(self, key: str, sample: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1
        if self.error_sample is None:
            self.error_sample = sample[:300]
