"""Who calls: the operator token, or a sales channel's API key (its own orders' returns only)."""

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request

from oms_platform.http import bearer_token, unauthorized
from returns.handlers import Caller


def caller_dependency(admin_token: str | None) -> Callable[[Request], Awaitable[Caller]]:
    async def caller(request: Request) -> Caller:
        token = bearer_token(request)
        if token is None:
            raise unauthorized()
        if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
            return Caller(operator=True, channel=None)
        raise unauthorized("unknown or revoked credentials")

    return caller
