"""Named dependencies for the routes: the service, the settings, and the caller (auth + rate limit)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from maskops.serve.authguard import AuthGuard
from maskops.serve.errors import ApiError
from maskops.serve.keys import ApiKey, KeyStore
from maskops.serve.ratelimit import RateLimiter, retry_after_header
from maskops.serve.service import MaskService
from maskops.serve.settings import ServeSettings

logger = logging.getLogger(__name__)

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="an API key (maskops keys create)"
)
_bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


async def get_service(request: Request) -> MaskService:
    return request.app.state.service  # type: ignore[no-any-return]


async def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_keys(request: Request) -> KeyStore:
    return request.app.state.keys  # type: ignore[no-any-return]


# async: FastAPI runs a plain ``def`` dependency in a thread, a hop that costs more than the lookup

ServiceDep = Annotated[MaskService, Depends(get_service)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key (``None`` when auth is off) and the rate-limit identity."""

    key: ApiKey | None
    ident: str


def _rate_limited(reason: str, wait_s: float) -> ApiError:
    """A 429 with ``Retry-After`` in whole seconds."""
    retry = retry_after_header(wait_s)
    return ApiError(
        429,
        "rate_limited",
        f"{reason}; retry in {retry} s",
        {"retry_after_s": int(retry)},
        headers={"Retry-After": retry},
    )


def authenticate(
    settings: ServeSettings,
    keys: KeyStore,
    limiter: RateLimiter,
    presented: str | None,
    client_host: str | None,
    role: str,
    guard: AuthGuard | None = None,
) -> Caller:
    """Check the key and the role, then take a rate-limit token.

    With ``guard``, a client address with too many recent invalid keys is refused before its key
    is looked at, and each invalid key counts against its address.

    Raises:
        ApiError: 401 (no key, unknown or revoked key), 403 (role), 429 (rate limit or too many failed
            authentications, with ``Retry-After``), 503 (the key store cannot be read).
    """
    key: ApiKey | None = None
    if settings.auth:
        client = client_host or "-"
        blocked = guard.blocked_for(client) if guard is not None else 0.0
        if blocked > 0:
            raise _rate_limited("too many failed authentications from this address", blocked)
        if not presented:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required: send it as X-API-Key or Authorization: Bearer",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            key = keys.verify(presented)
        except sqlite3.Error as exc:  # the key store's file or shared table cannot be read
            logger.error("API key store unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            raise ApiError(
                503,
                "key_store_unavailable",
                "the API key store cannot be read right now; retry later",
                headers={"Retry-After": "5"},
            ) from None
        if key is None:
            if guard is not None:
                guard.failed(client, "invalid or revoked API key")
            raise ApiError(
                401, "unauthorized", "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        if not key.allows(role):
            raise ApiError(403, "forbidden", f"a {key.role!r} key cannot use a route that needs {role!r}")
        ident = f"key:{key.id}"
    else:
        ident = f"client:{client_host or '-'}"
    wait = limiter.take(ident, key.rate_per_s if key else None)
    if wait > 0:
        raise _rate_limited("rate limit reached", wait)
    return Caller(key, ident)


def require(role: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency that lets through callers whose key has ``role`` (any caller when auth is off)."""

    async def dependency(
        request: Request,
        x_api_key: Annotated[str | None, Security(_api_key_header)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    ) -> Caller:
        state = request.app.state
        presented = x_api_key or (bearer.credentials if bearer else None)
        caller = authenticate(
            state.settings,
            state.keys,
            state.limiter,
            presented,
            request.client.host if request.client else None,
            role,
            getattr(state, "auth_guard", None),
        )
        request.state.caller = caller
        return caller

    return dependency


PredictCaller = Annotated[Caller, Depends(require("predict"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]
