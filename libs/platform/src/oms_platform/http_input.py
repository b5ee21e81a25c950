"""The input rules every HTTP API shares (README, Input rules), checked once before any route runs, so
every service, old or new, gets them without a line of its own:

- no NUL character anywhere (path, query parameters, JSON strings and keys): PostgreSQL text cannot
  hold one, so it would otherwise end as a 500 deep in a repository;
- query parameters are percent-encoded UTF-8 and each is given at most once (a repeat would silently
  take one of the values);
- a request with a body sends JSON (`application/json` or `application/<x>+json`, UTF-8): anything
  else is a 415, and a body that is not UTF-8 (or holds a lone UTF-16 surrogate escape) is a 422
  naming `body`.

Each refusal is the contract's error body naming the field and the rule."""

import re
from typing import Any
from urllib.parse import parse_qsl

import orjson

from oms_platform.http import error_body, send_json

_JSON_MEDIA = re.compile(r"^application/(?:[a-z0-9.+-]+\+)?json$")


class InputError(Exception):
    def __init__(self, status: int, code: str, field: str, rule: str, message: str):
        super().__init__(message)
        self.status, self.code, self.field, self.rule, self.message = status, code, field, rule, message

    def body(self) -> dict[str, Any]:
        fields = [{"field": self.field, "rule": self.rule, "message": self.message}]
        return error_body(self.code, f"invalid request: {self.field}: {self.message}", fields)


def invalid(field: str, rule: str, message: str) -> InputError:
    return InputError(422, "validation_failed", field, rule, message)


def nul(field: str) -> InputError:
    return invalid(field, "no_nul", "must not contain a NUL character")


def check_path(path: str) -> None:
    if "\x00" in path:
        raise nul("path")


def check_query(query_string: bytes) -> None:
    if not query_string:
        return
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise invalid("query", "utf8", "query parameters must be percent-encoded UTF-8") from exc
    seen: set[str] = set()
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise nul(name.replace("\x00", "") or "query")
        if name in seen:
            raise invalid(name, "not_repeated", "must be given at most once")
        seen.add(name)


def check_content_type(content_type: bytes | None) -> None:
    media, _, params = (content_type or b"").decode("latin-1").partition(";")
    charset = next((v.strip().strip('"').lower() for k, _, v in (p.partition("=") for p in params.split(";"))
                    if k.strip().lower() == "charset"), "utf-8")
    if not _JSON_MEDIA.match(media.strip().lower()) or charset not in ("utf-8", "utf8"):
        raise InputError(415, "unsupported_media_type", "content-type", "application_json",
                         "the request body must be JSON (content-type: application/json)")


def _nul_field(value: Any, where: str = "") -> str | None:
    """The field (in the error body's notation, e.g. lines[0].sku) of the first string holding NUL."""
    if isinstance(value, str):
        return (where or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else key
            if "\x00" in key:
                return path.replace("\x00", "") or "body"
            found = _nul_field(item, path)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_field(item, f"{where}[{i}]")
            if found:
                return found
    return None


def check_body(body: bytes) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid("body", "utf8", f"the body must be UTF-8 (invalid byte at offset {exc.start})") from exc
    # Escapes are where a NUL (\u0000) or a lone surrogate (\ud800, which Python's json module
    # takes and PostgreSQL cannot store) hide: such a body is parsed here, strictly (orjson refuses
    # lone surrogates).
    if b"\\u" in body or b"\x00" in body:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise invalid("body", "json_invalid", f"the body is not valid JSON: {exc}") from exc
        field = _nul_field(parsed)
        if field is not None:
            raise nul(field)


class InputRulesMiddleware:
    """Pure ASGI: checks path and query of every request, and the content type and body of every
    request that has one (read whole: bodies are bounded by MAX_BODY_BYTES), then hands the same
    body on to the app."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            check_path(scope["path"])
            check_query(scope["query_string"])
            has_body, content_type = False, None
            for name, value in scope["headers"]:
                if name == b"content-length":
                    has_body = has_body or value.strip() not in (b"0", b"")
                elif name == b"transfer-encoding":
                    has_body = True
                elif name == b"content-type":
                    content_type = value
            if not has_body:
                return await self.app(scope, receive, send)
            check_content_type(content_type)
        except InputError as exc:
            return await self._refuse(exc, send)

        chunks, message = [], {"type": "http.request", "more_body": True}
        while message["type"] == "http.request" and message.get("more_body"):
            message = await receive()
            chunks.append(message.get("body", b""))
        if message["type"] != "http.request":  # the client left (or the size limit cut it short)
            return await self.app(scope, _replay([message]), send)
        body = b"".join(chunks)
        try:
            check_body(body)
        except InputError as exc:
            return await self._refuse(exc, send)
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)

    @staticmethod
    async def _refuse(exc: InputError, send: Any) -> None:
        await send_json(send, exc.status, exc.body())


def _replay(messages: list[dict], then: Any = None) -> Any:
    """A receive that gives `messages`, then waits on the real one (for the disconnect)."""
    pending = list(messages)

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
