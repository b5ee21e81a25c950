"""A receiver of OMS webhooks (docs/notification.md): checks X-OMS-Signature against the secret given
when the subscription was created, applies each event once (a redelivery carries the same
X-OMS-Event-Id), and answers 2xx only once the event is safely applied (any other answer, or none
within the timeout, makes the OMS retry).

    WEBHOOK_SECRET=... python docs/examples/webhook_receiver.py 8080

Only the standard library; tests/integration/notification uses it as the receiver of every test."""

import hashlib
import hmac
import json
import os
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """X-OMS-Signature is `sha256=<hex HMAC-SHA256 of the raw body>`; compare in constant time, on the
    bytes received (not on re-serialised JSON)."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return signature is not None and hmac.compare_digest(expected, signature)


def make_handler(secret: str, on_event: Callable[[str, dict[str, Any]], None]) -> type[BaseHTTPRequestHandler]:
    """on_event(event_id, envelope) applies the event; if it raises, the OMS is told to retry."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not verify(secret, body, self.headers.get("X-OMS-Signature")):
                return self._answer(401)
            try:
                on_event(self.headers["X-OMS-Event-Id"], json.loads(body))
            except Exception:  # noqa: BLE001 - not applied: 500, and the OMS sends it again
                return self._answer(500)
            self._answer(204)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


if __name__ == "__main__":
    applied: set[str] = set()

    def apply(event_id: str, envelope: dict[str, Any]) -> None:
        if event_id in applied:  # a redelivery: already applied
            return
        # ... apply it to your system here (and record event_id in the same transaction)
        applied.add(event_id)
        print(envelope["event_type"], envelope["order_id"], envelope["payload"], flush=True)

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    ThreadingHTTPServer(("127.0.0.1", port), make_handler(os.environ["WEBHOOK_SECRET"], apply)).serve_forever()
