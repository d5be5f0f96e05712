"""Webhook sink: POSTs each case to case-management software, beside ingestion.

``deliver`` only enqueues into a bounded queue (it blocks when the queue is full:
backpressure); worker threads send, retrying timeouts, connection errors, 408, 429
and 5xx with capped, fully jittered exponential backoff. Other non-2xx answers are
final: the case goes to the dead-letter file and counts as done. Cases finish out of
order, so the mark is the end of the finished prefix of handed-over seqs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import random
import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

import httpx
import orjson

from riskstream import __version__
from riskstream.core.case import Case
from riskstream.errors import SinkError
from riskstream.sinks._delivery_log import JsonlAppender, utc_now_iso
from riskstream.sinks.base import SinkStats

log = logging.getLogger(__name__)

_MAX_RETRY_AFTER_S = 300.0  # a larger Retry-After is taken as this: never stall for hours
_MAX_RESPONSE_CHARS = 2000  # of a refusing server's answer, kept in the dead-letter line
_POLL_S = 0.1  # how often blocked threads look at the stop flag

Verdict = Literal["delivered", "retry", "dead_letter"]


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Riskstream-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verdict_for(status: int) -> Verdict:
    """2xx delivered; 408, 429 and 5xx are worth retrying; anything else is final."""
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "dead_letter"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is not a delay


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Full jitter, uniform in ``[0, min(cap, base * 2**(attempt-1))]``; never below Retry-After."""
    delay = rand() * min(cap_s, base_s * 2.0 ** min(attempt - 1, 60))
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, _MAX_RETRY_AFTER_S))
    return delay


class _Progress:
    """Handed-over seqs in order, which of them finished, and the counters, under one lock."""

    def __init__(self, start: int) -> None:
        self._cond = threading.Condition()
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._last = start
        self.mark = start
        self.delivered = self.retried = self.dead_lettered = 0

    def submit(self, seq: int) -> bool:
        """Register a case about to be queued; False if its seq was already handed over."""
        with self._cond:
            if seq <= self._last:
                return False
            self._pending.append(seq)
            self._last = seq
            return True

    def finish(self, seq: int, verdict: Verdict) -> None:
        """A case is delivered or dead-lettered: advance the mark over the finished prefix."""
        with self._cond:
            if verdict == "delivered":
                self.delivered += 1
            else:
                self.dead_lettered += 1
            self._done.add(seq)
            while self._pending and self._pending[0] in self._done:
                self.mark = self._pending.popleft()
                self._done.discard(self.mark)
            if not self._pending:
                self._cond.notify_all()

    def note_retry(self) -> None:
        """Count one attempt that will be retried."""
        with self._cond:
            self.retried += 1

    def wait_idle(self, timeout_s: float | None) -> bool:
        """Block until nothing handed over is unfinished; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout_s)

    def stats(self) -> SinkStats:
        """A consistent snapshot of the counters."""
        with self._cond:
            return SinkStats(self.delivered, self.retried, self.dead_lettered, len(self._pending))


def redact_url(url: str) -> str:
    """``https://user:pw@host/p/<token>?k=abc#x`` -> ``https://***@host/p/***?k=***#***``.

    Credentials in the user-info part, token-like path segments (as in Slack's or Discord's
    webhook URLs), every query value and the fragment are hidden; the scheme, host, port and
    the rest of the path stay readable (they tell operators which endpoint it is).
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        (p.split("=", 1)[0] + "=***") if "=" in p else "***" for p in parts.query.split("&") if p
    )
    path = "/".join("***" if _is_token(seg) else seg for seg in parts.path.split("/"))
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, path, query, "***" if parts.fragment else "")
    )


# A path segment that is a credential: long, from a token alphabet, and either mixing letters
# and digits (Slack's 24-character tokens, UUIDs) or too long to be a readable name.
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9_\-.~%=]{16,}")


def _is_token(segment: str) -> bool:
    if not _TOKEN_SEGMENT.fullmatch(segment):
        return False
    has_digit = any(c.isdigit() for c in segment)
    has_alpha = any(c.isalpha() for c in segment)
    return len(segment) >= 32 or (has_digit and has_alpha)


def _url_secrets(url: str) -> list[str]:
    """The secret pieces of ``url`` (user-info, query values, fragment), longest first."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return [url]
    found: set[str] = {url}
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.add(userinfo)
        found.update(userinfo.split(":", 1))
        found.update(urllib.parse.unquote(p) for p in userinfo.split(":", 1))
    for p in parts.query.split("&"):
        value = p.split("=", 1)[1] if "=" in p else p
        found.update({value, urllib.parse.unquote_plus(value)})
    found.add(parts.fragment)
    found.update(seg for seg in parts.path.split("/") if _is_token(seg))
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


class WebhookSink:
    """POSTs ``case.body()`` with ``Idempotency-Key`` and an optional HMAC signature."""

    def __init__(
        self,
        url: str,
        secret: bytes | None = None,
        *,
        dead_letter_path: str | Path,
        delivery_log_path: str | Path | None = None,
        timeout_s: float = 5.0,
        concurrency: int = 4,
        queue_size: int = 1000,
        max_attempts: int | None = None,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 30.0,
        close_timeout_s: float = 30.0,
        resume_seq: int = 0,
        user_agent: str = f"riskstream/{__version__}",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # Shown in /metrics labels, logs and the store (the mark's key): never credentials.
        self.name = f"webhook:{redact_url(url)}"
        #: The name before credentials were redacted: a store may still hold a mark under it.
        self.legacy_name = f"webhook:{url}"
        self._secrets = _url_secrets(url)
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise SinkError(f"{self.name}: bad URL: {self.scrub(str(exc))}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise SinkError(f"{self.name}: the URL must be http:// or https:// with a host")
        for label, value in (
            ("timeout", timeout_s),
            ("concurrency", concurrency),
            ("queue_size", queue_size),
        ):
            if not value > 0:
                raise SinkError(f"{self.name}: {label} must be positive, got {value}")
        if max_attempts is not None and max_attempts < 1:
            raise SinkError(f"{self.name}: max_attempts must be at least 1, got {max_attempts}")
        self._url = url
        self._secret = secret
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._close_timeout_s = close_timeout_s
        self._headers = {"User-Agent": user_agent}
        self._transport = transport
        self._dead = JsonlAppender(Path(dead_letter_path), durable=True)
        self._log = JsonlAppender(Path(delivery_log_path)) if delivery_log_path else None
        self._progress = _Progress(resume_seq)
        self._queue: queue.Queue[Case] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._closed = False
        self._workers = [
            threading.Thread(target=self._run, name=f"riskstream-webhook-{i}", daemon=True)
            for i in range(concurrency)
        ]
        for worker in self._workers:
            worker.start()

    def scrub(self, text: str) -> str:
        """``text`` (an error message) with the URL's credentials replaced by ``***``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***" if secret != self._url else self.name[8:])
        return text

    # -- the engine's side --------------------------------------------------------------

    def deliver(self, cases: Sequence[Case]) -> None:
        """Queue the cases for sending; blocks while the queue is full (backpressure)."""
        for case in cases:
            if self._closed:
                raise SinkError(f"{self.name}: sink is closed")
            if not self._progress.submit(case.seq):
                continue  # handed over before: re-delivered after a restart
            while True:
                try:
                    self._queue.put(case, timeout=_POLL_S)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        raise SinkError(f"{self.name}: sink is closed") from None

    def delivered_seq(self) -> int:
        """Every case with seq <= this is delivered or dead-lettered (finished prefix)."""
        return self._progress.mark

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every case handed over is finished; False on timeout."""
        return self._progress.wait_idle(timeout_s)

    def stats(self) -> SinkStats:
        """Delivered, retried attempts, dead-lettered, and handed over but unfinished."""
        return self._progress.stats()

    def close(self) -> None:
        """Flush (up to ``close_timeout_s``), then stop the workers; unfinished cases are
        not marked delivered, so the engine re-delivers them after a restart."""
        if self._closed:
            return
        self._closed = True
        if not self.flush(self._close_timeout_s):
            log.warning(
                "%s: closing with %d cases unfinished; they are re-sent after a restart",
                self.name,
                self.stats().in_flight,
            )
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self._timeout_s + 1.0)
        self._dead.close()
        if self._log is not None:
            self._log.close()

    # -- the workers' side --------------------------------------------------------------

    def _run(self) -> None:
        """One worker: take cases from the queue and send each until it is finished."""
        client = httpx.Client(
            timeout=httpx.Timeout(self._timeout_s),
            headers=self._headers,
            transport=self._transport,
            follow_redirects=False,
        )
        try:
            while not self._stop.is_set():
                try:
                    case = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                self._send(client, case)
        finally:
            client.close()

    def _send(self, client: httpx.Client, case: Case) -> None:
        """Attempt until delivered or dead-lettered; give up silently only when stopping."""
        body = case.body()
        headers = {"Content-Type": "application/json", "Idempotency-Key": case.case_id}
        if self._secret is not None:
            headers["X-Riskstream-Signature"] = signature(self._secret, body)
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None
            error: str | None = None
            retry_after: float | None = None
            text = ""
            started = time.perf_counter()
            try:
                response = client.post(self._url, content=body, headers=headers)
                status = response.status_code
                verdict = verdict_for(status)
                if verdict == "dead_letter":
                    text = response.text[:_MAX_RESPONSE_CHARS]
                elif status in (429, 503):
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
            except httpx.HTTPError as exc:  # timeouts, refused or reset connections ...
                error, verdict = self.scrub(f"{type(exc).__name__}: {exc}"), "retry"
            except Exception as exc:  # a bug here must not kill the worker and stall the mark
                error, verdict = self.scrub(f"{type(exc).__name__}: {exc}"), "retry"
                log.error(
                    "%s: unexpected error sending case %s: %s", self.name, case.case_id, error
                )
            if (
                verdict == "retry"
                and self._max_attempts is not None
                and attempt >= self._max_attempts
            ):
                verdict = "dead_letter"
            latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
            if verdict == "dead_letter" and not self._dead_letter(
                case, body, attempt, status, error, text
            ):
                verdict = "retry"  # the dead-letter line is not on disk: the case is not done
            self._log_attempt(case, attempt, status, error, latency_ms, verdict)
            if verdict != "retry":
                self._progress.finish(case.seq, verdict)
                return
            self._progress.note_retry()
            base_s, cap_s = self._backoff
            delay = backoff_delay(attempt, base_s=base_s, cap_s=cap_s, retry_after_s=retry_after)
            if self._stop.wait(delay):
                return  # closing: left unfinished, so the mark stays below it

    def _log_attempt(
        self,
        case: Case,
        attempt: int,
        status: int | None,
        error: str | None,
        latency_ms: float,
        verdict: Verdict,
    ) -> None:
        """One delivery-log line per attempt; a full disk must not stop delivery itself."""
        if self._log is None:
            return
        record = {
            "time": utc_now_iso(),
            "case_id": case.case_id,
            "seq": case.seq,
            "attempt": attempt,
            "status": status,
            "error": error,
            "latency_ms": latency_ms,
            "outcome": verdict,
        }
        try:
            self._log.append(record)
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot write the delivery log: %s", self.name, exc)

    def _dead_letter(
        self,
        case: Case,
        body: bytes,
        attempts: int,
        status: int | None,
        error: str | None,
        text: str,
    ) -> bool:
        """Write the case and the refusal to the dead-letter file (fsynced); False if that fails."""
        record = {
            "time": utc_now_iso(),
            "case_id": case.case_id,
            "seq": case.seq,
            "attempts": attempts,
            "status": status,
            "error": error,
            "response": text,
            "case": orjson.Fragment(body),
        }
        try:
            self._dead.append(record)
        except (OSError, ValueError) as exc:
            log.error("%s: cannot write the dead-letter file: %s", self.name, exc)
            return False
        log.warning("%s: case %s dead-lettered (status %s)", self.name, case.case_id, status)
        return True
