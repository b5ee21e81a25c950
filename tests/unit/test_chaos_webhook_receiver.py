"""make chaos's webhook receiver (tools/chaos/parties.Webhooks) on a real socket: a signed delivery is
kept, a wrong signature is counted as such, and a request whose body ends early (its sender SIGKILLed
mid-send: the OMS gets no answer and sends it again) is neither, so a kill is not reported as a lost
effect."""

import hashlib
import hmac
import socket
import time
import uuid

import httpx
import orjson

from tools.chaos.parties import Webhooks


def _wait(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_the_receiver_tells_a_cut_request_from_a_bad_signature() -> None:
    hooks = Webhooks()
    hooks.start()
    try:
        body = orjson.dumps({"event_id": str(uuid.uuid4()), "event_type": "OrderStatusChanged", "order_id": "o1",
                             "payload": {}})
        good = "sha256=" + hmac.new(hooks.secret.encode(), body, hashlib.sha256).hexdigest()
        assert httpx.post(hooks.url, content=body, headers={"X-OMS-Signature": good}).status_code == 204
        assert httpx.post(hooks.url, content=body, headers={"X-OMS-Signature": "sha256=00"}).status_code == 401
        host, port = hooks.url.removeprefix("http://").split("/")[0].split(":")
        with socket.create_connection((host, int(port))) as s:  # the sender dies after half its body
            s.sendall(b"POST /oms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Content-Length: {len(body)}\r\nX-OMS-Signature: {good}\r\n\r\n".encode()
                      + body[: len(body) // 2])
            s.shutdown(socket.SHUT_WR)
            _wait(lambda: hooks.cut_short == 1)
        assert (len(hooks.received), hooks.bad_signatures, hooks.cut_short) == (1, 1, 1)
    finally:
        hooks.stop()
