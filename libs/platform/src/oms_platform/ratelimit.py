"""Rate limits per channel key (README, Input rules): a token bucket per bearer token, so one channel
sending too much gets 429s while the others go on. The operator token is not limited.

Per process: each replica keeps its own buckets, so with N replicas behind a balancer a key may send
up to N times RATE_LIMIT_PER_KEY_PER_SECOND. That keeps the check free of any shared state on the hot
path; size the limit per replica. A limit across replicas belongs to the gateway in front of them."""

import hmac
import math
import time
from collections import OrderedDict
from typing import Any

from oms_platform.http import error_body, send_json


class TokenBuckets:
    """`rate` tokens a second per key, at most `burst` saved up. The least recently seen keys are
    forgotten past `max_keys` (a forgotten key starts again with a full bucket)."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 50_000, clock: Any = time.monotonic):
        self.rate, self.burst, self.max_keys, self.clock = rate, max(1, burst), max_keys, clock
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def take(self, key: bytes) -> float:
        """0 when the request may go, else how many seconds until it could."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


class RateLimitMiddleware:
    """Pure ASGI: 429 in the contract's error shape, with Retry-After (whole seconds), before the
    request reaches a route."""

    def __init__(self, app: Any, *, per_second: float, burst: int, operator_token: str | None):
        self.app = app
        self.buckets = TokenBuckets(per_second, burst)
        self.operator = operator_token.encode() if operator_token else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scheme, _, token = value.partition(b" ")
                    token = token.strip()
                    if scheme.lower() == b"bearer" and token and not self._is_operator(token):
                        wait = self.buckets.take(token)
                        if wait:
                            return await self._refuse(send, wait)
                    break
        await self.app(scope, receive, send)

    def _is_operator(self, token: bytes) -> bool:
        return self.operator is not None and hmac.compare_digest(token, self.operator)

    async def _refuse(self, send: Any, wait: float) -> None:
        rate = self.buckets.rate
        await send_json(send, 429, error_body(
            "rate_limited", f"too many requests with this API key (at most {rate:g} a second); retry later",
            [{"field": "Authorization", "rule": "rate_limit", "message": f"at most {rate:g} requests a second"}],
        ), [(b"retry-after", str(max(1, math.ceil(wait))).encode())])
