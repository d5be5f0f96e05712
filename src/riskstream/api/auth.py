"""API keys, scopes and masking of sensitive event fields.

Keys come from ``RISKSTREAM_API_KEYS`` (``key1=read+decide,key2=read``) and/or the file
named by ``RISKSTREAM_API_KEYS_FILE`` (one ``key=scopes`` per line, ``#`` comments).
Clients send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

With no key configured the API is *open* (every scope except ``sensitive``), and the
server refuses to listen on anything but loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

from riskstream.errors import UsageError

#: read: cases, metrics, rules; decide: POST /v1/decide; analyst: post decisions;
#: sensitive: see unmasked sensitive event fields.
SCOPES: frozenset[str] = frozenset({"read", "decide", "analyst", "sensitive"})
OPEN_SCOPES: frozenset[str] = SCOPES - {"sensitive"}

ENV_KEYS = "RISKSTREAM_API_KEYS"
ENV_KEYS_FILE = "RISKSTREAM_API_KEYS_FILE"


class KeyConfigError(UsageError):
    """The key configuration is malformed (one line, never echoes a key)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key label (never the key itself) and its scopes."""

    label: str
    scopes: frozenset[str]

    @property
    def sensitive(self) -> bool:
        """Whether sensitive fields are shown unmasked."""
        return "sensitive" in self.scopes


@dataclass(frozen=True)
class KeyRing:
    """Configured keys; empty means the API is open (loopback only)."""

    keys: tuple[tuple[bytes, frozenset[str]], ...] = field(default=())

    @property
    def open(self) -> bool:
        """True when no key is configured."""
        return not self.keys

    @classmethod
    def parse(cls, inline: str | None = None, lines: Iterable[str] = ()) -> KeyRing:
        """Keys from ``key=s1+s2,key2=s1`` text and ``key=scopes`` lines."""
        entries: dict[str, frozenset[str]] = {}
        items = [p for p in (inline or "").split(",") if p.strip()]
        items += [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        for n, item in enumerate(items, 1):
            key, sep, scopes = item.strip().partition("=")
            key = key.strip()
            wanted = frozenset(s.strip() for s in scopes.split("+") if s.strip())
            if not sep or not key or not wanted:
                raise KeyConfigError(f"API key entry {n}: expected key=scope1+scope2")
            unknown = sorted(wanted - SCOPES)
            if unknown:
                raise KeyConfigError(
                    f"API key entry {n}: unknown scope {unknown[0]!r} (scopes: {', '.join(sorted(SCOPES))})"
                )
            entries[key] = entries.get(key, frozenset()) | wanted
        return cls(tuple((k.encode(), s) for k, s in entries.items()))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        """Keys from ``RISKSTREAM_API_KEYS`` and ``RISKSTREAM_API_KEYS_FILE``."""
        env = os.environ if environ is None else environ
        lines: list[str] = []
        path = env.get(ENV_KEYS_FILE)
        if path:
            try:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise KeyConfigError(
                    f"cannot read {ENV_KEYS_FILE} {path!r}: {exc.strerror}"
                ) from None
        return cls.parse(env.get(ENV_KEYS), lines)

    def lookup(self, token: str | None) -> Principal | None:
        """The principal of ``token``; every key is compared in constant time."""
        if self.open:
            return Principal("open", OPEN_SCOPES)
        if not token:
            return None
        given = token.encode()
        found: Principal | None = None
        for i, (key, scopes) in enumerate(self.keys):
            if hmac.compare_digest(key, given):
                found = Principal(f"key{i + 1}", scopes)
        return found


#: OpenAPI security schemes (added to the document by ``app._openapi``; checked by :func:`require`).
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <API key>",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The API key"},
}


def token_of(request: Request) -> str | None:
    """The key sent with ``request`` (Bearer or X-API-Key)."""
    return token_from(request.headers.get("authorization"), request.headers.get("x-api-key"))


def token_from(authorization: str | None, api_key: str | None) -> str | None:
    """The key in an ``Authorization: Bearer`` header, else in ``X-API-Key``."""
    if authorization:
        scheme, _, cred = authorization.partition(" ")
        if scheme.lower() == "bearer" and cred.strip():
            return cred.strip()
    return api_key or None


def authorize(ring: KeyRing, token: str | None, scope: str) -> Principal:
    """The caller, or 401 (no or unknown key) / 403 (scope missing)."""
    who = ring.lookup(token)
    if who is None:
        msg = "missing API key" if not token else "unknown API key"
        raise HTTPException(401, msg, headers={"WWW-Authenticate": "Bearer"})
    if scope not in who.scopes:
        raise HTTPException(403, f"this API key lacks the {scope!r} scope")
    return who


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency enforcing ``scope``.

    ``async`` on purpose: FastAPI runs a sync dependency in its thread pool, a thread
    hop per request that the decide path cannot afford.
    """

    async def dependency(request: Request) -> Principal:
        ring: KeyRing = request.app.state.ctx.keys
        return admit(ring, request.headers.get("host", ""), token_of(request), scope)

    dependency.__name__ = f"require_{scope}"
    dependency.__scope__ = scope  # type: ignore[attr-defined]
    return dependency


def admit(ring: KeyRing, host: str, token: str | None, scope: str) -> Principal:
    """The caller of a request with this Host header and key, or 403 / 401 (:func:`authorize`).

    An open API (no keys) answers loopback Host names only: no DNS rebinding from a web page.
    """
    if ring.open and not _loopback_host(host):
        raise HTTPException(403, "without API keys only localhost may be used as the Host")
    return authorize(ring, token, scope)


def _loopback_host(host: str) -> bool:
    """Whether a Host header names the loopback interface: ``localhost`` or a loopback IP.

    An optional ``:port`` (digits) may follow; IPv6 literals are bracketed (``[::1]:8080``).
    Anything else (``127.attacker.example``, ``localhost.evil``) is refused: a DNS name a web
    page controls can be rebound to 127.0.0.1, a loopback *address* cannot.
    """
    host = host.strip()
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return False
        if "%" in name:  # zone ids are not valid in a Host header
            return False
    else:
        name, sep, port = host.partition(":")
        if sep and not port.isdigit():
            return False
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def mask(value: Any) -> Any:
    """``4111111111111234`` -> ``************1234``; short values are masked entirely."""
    if value is None:
        return None
    text = str(value)
    if len(text) <= 4:
        return "*" * len(text)
    return "*" * (len(text) - 4) + text[-4:]


def masked(event: Mapping[str, Any], sensitive: Iterable[str], who: Principal) -> dict[str, Any]:
    """A copy of ``event`` with sensitive fields masked unless ``who`` may see them."""
    out = dict(event)
    if who.sensitive:
        return out
    for name in sensitive:
        if name in out:
            out[name] = mask(out[name])
    return out


def sensitive_dimension(dimension: Sequence[str], sensitive: Iterable[str]) -> list[str]:
    """The dimension fields of a metric that are sensitive event fields."""
    hidden = set(sensitive)
    return [d for d in dimension if d in hidden]


def require_dimension(
    metric: str, dimension: Sequence[str], sensitive: Iterable[str], who: Principal
) -> None:
    """403 unless ``who`` may query a metric keyed by sensitive fields.

    Answering ``count 3`` for a full card number would confirm the number to a key that
    only ever sees it masked, so such a metric needs the ``sensitive`` scope.
    """
    fields = sensitive_dimension(dimension, sensitive)
    if fields and not who.sensitive:
        raise HTTPException(
            403,
            f"metric {metric!r} is keyed by the sensitive field {fields[0]!r}: "
            "this API key lacks the 'sensitive' scope",
        )


def masked_key(key: str, dimension: Sequence[str], sensitive: Iterable[str], who: Principal) -> str:
    """A metric key with the values of its sensitive dimension fields masked for ``who``."""
    fields = set(sensitive_dimension(dimension, sensitive))
    if who.sensitive or not fields:
        return key
    parts = key.split("|") if len(dimension) > 1 else [key]
    if len(parts) != len(dimension):
        return str(mask(key))
    return "|".join(
        str(mask(p)) if d in fields else p for p, d in zip(parts, dimension, strict=True)
    )


def masked_categories(
    counts: Mapping[str, int], field_name: str | None, sensitive: Iterable[str], who: Principal
) -> dict[str, int]:
    """Distribution categories of a sensitive value field, masked (equal masks add up)."""
    if who.sensitive or field_name is None or field_name not in set(sensitive):
        return dict(counts)
    out: dict[str, int] = {}
    for category, n in counts.items():
        hidden = str(mask(category))
        out[hidden] = out.get(hidden, 0) + int(n)
    return dict(sorted(out.items()))
