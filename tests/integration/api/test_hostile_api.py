"""Issue 12, API half, over a real engine and real uvicorn servers (no mocks).

* 3: without keys only ``localhost`` or a loopback IP is accepted as the Host (DNS rebinding);
* 9: request bodies are capped while they stream in (413 before buffering them);
* 10: metrics keyed by a sensitive field need the ``sensitive`` scope; distribution
  categories of a sensitive value field are masked.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from riskstream.api.auth import KeyRing
from riskstream.api.context import ApiContext
from riskstream.api.server import ServerHandle, serve_context
from riskstream.runners.embedded_live import EmbeddedLive
from riskstream.store.duckdb import Store
from tests.integration.api._live import ADMIN, READER, SPEC, T0, Live, start_live

SENSITIVE_SPEC = SPEC.replace(
    "rules:\n",
    """  by_number:
    dimension: [card_number]
  numbers_at_merchant:
    dimension: [merchant_id]
    value: card_number
    stats: [distribution]
  number_and_merchant:
    dimension: [card_number, merchant_id]
rules:
""",
    1,
)
BURST_NUMBER = "4111111111111111"
END = T0 + 10 * 86_400_000
#: A small cap so the tests stream only a few MB.
MAX_BYTES = 200_000


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[Live]:
    """A live engine whose spec has metrics keyed by / counting the sensitive ``card_number``."""
    spec = SENSITIVE_SPEC.replace(
        "  sensitive: [card_number]", f"  sensitive: [card_number]\n  max_bytes: {MAX_BYTES}"
    )
    system = start_live(
        Path(tmp_path_factory.mktemp("hostile-api")), n=600, spec_text=spec, server=http_server
    )
    yield system
    system.stop()


@pytest.fixture(scope="module")
def open_server(live: Live) -> Iterator[ServerHandle]:
    """A second real server over the same engine with no API keys (the open, loopback mode)."""
    ctx = ApiContext(
        spec=live.runner.spec,
        data_dir=live.data_dir,
        store=Store(live.data_dir),
        engine=EmbeddedLive(live.runner),
        keys=KeyRing(),
    )
    handle = serve_context(
        ctx, host="127.0.0.1", port=0, log=lambda m: None, server=live.server.kind
    )
    yield handle
    handle.stop()


# -- 3: DNS-rebinding guard -------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.attacker.example",
        "127.0.0.1.attacker.example",
        "127.0.0.1.nip.io:8080",
        "localhost.attacker.example",
        "attacker.example",
        "127.0.0.1:80x",
        "[::1].evil",
        "10.0.0.1",
        "",
    ],
)
def test_open_api_refuses_rebindable_host(open_server: ServerHandle, host: str) -> None:
    r = httpx.get(open_server.url + "/v1/rules", headers={"Host": host})
    assert r.status_code == 403, (host, r.status_code)
    assert r.json() == {"error": "without API keys only localhost may be used as the Host"}


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST:8080",
        "127.0.0.1",
        "127.0.0.1:9",
        "127.5.6.7:8080",
        "[::1]:80",
        "[::1]",
    ],
)
def test_open_api_accepts_loopback_host(open_server: ServerHandle, host: str) -> None:
    r = httpx.get(open_server.url + "/v1/rules", headers={"Host": host})
    assert r.status_code == 200, (host, r.text)
    assert {rule["name"] for rule in r.json()["rules"]} >= {"big_amount", "card_velocity"}


# -- 10: sensitive dimensions and categories ----------------------------------------------------


def _number_count(live: Live, number: str) -> int:
    return sum(1 for e in live.events if e["card_number"] == number)


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/metrics/by_number/{BURST_NUMBER}?from={T0}&to={END}",
        f"/v1/metrics/by_number/{BURST_NUMBER}/series?from={T0}&to={T0 + 86_400_000}",
        f"/v1/metrics/number_and_merchant/{BURST_NUMBER}|m0?from={T0}&to={END}",
    ],
)
def test_read_key_cannot_confirm_a_card_number(
    live: Live, open_server: ServerHandle, path: str
) -> None:
    for url, headers in ((live.url, live.headers(READER)), (open_server.url, {})):
        r = httpx.get(url + path, headers=headers)
        assert r.status_code == 403, r.text
        assert "sensitive" in r.json()["error"] and BURST_NUMBER not in r.text
    # a number that was never seen is refused the same way: no oracle either way
    r = httpx.get(
        live.url + f"/v1/metrics/by_number/4999999999999999?from={T0}&to={END}",
        headers=live.headers(READER),
    )
    assert r.status_code == 403


def test_sensitive_key_sees_the_count(live: Live) -> None:
    r = httpx.get(
        live.url + f"/v1/metrics/by_number/{BURST_NUMBER}",
        params={"from": T0, "to": END},
        headers=live.headers(ADMIN),
    )
    assert r.status_code == 200, r.text
    assert r.json()["count"] == _number_count(live, BURST_NUMBER) == 6
    assert r.json()["key"] == BURST_NUMBER


def test_distribution_of_a_sensitive_field_is_masked(live: Live) -> None:
    truth = Counter(e["card_number"] for e in live.events if e["merchant_id"] == "m0")
    masked_truth: Counter[str] = Counter()
    for number, n in truth.items():
        masked_truth["*" * 12 + number[-4:]] += n
    params = {"from": T0, "to": END}
    url = live.url + "/v1/metrics/numbers_at_merchant/m0"
    reader = httpx.get(url, params=params, headers=live.headers(READER)).json()
    assert reader["distribution"] == dict(masked_truth)
    assert reader["stats"]["distribution"] == dict(masked_truth)
    assert not any(number in str(reader) for number in truth)
    admin = httpx.get(url, params=params, headers=live.headers(ADMIN)).json()
    assert admin["distribution"] == dict(truth)


# -- 9: request body size ---------------------------------------------------------------------


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def _response(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(30)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_declared_oversized_body_is_413_before_reading_it(live: Live) -> None:
    sock = _raw(live.url)
    try:
        sock.sendall(
            b"POST /v1/decide HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {ADMIN}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 300000000\r\n\r\n{"
        )
        head = _response(sock)  # not one more byte of the 300 MB is sent
    finally:
        sock.close()
    assert head.startswith(b"HTTP/1.1 413"), head[:200]


def test_streamed_oversized_body_is_413_while_streaming(live: Live) -> None:
    """A chunked body is refused once it crosses the cap; the client never has to send it all."""
    sock = _raw(live.url)
    chunk = b"x" * 65536
    sent = 0
    head = b""
    try:
        sock.sendall(
            b"POST /v1/decide HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {ADMIN}\r\n".encode()
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.setblocking(False)
        deadline = time.monotonic() + 30
        while sent < 50 * MAX_BYTES and time.monotonic() < deadline:
            try:
                head += sock.recv(65536)
                if b"\r\n\r\n" in head:
                    break
            except BlockingIOError:
                pass
            try:
                sock.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
        if b"\r\n\r\n" not in head:
            head += _response_blocking(sock)
    finally:
        sock.close()
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert sent < 50 * MAX_BYTES, f"the server read {sent} bytes without answering"
    assert b"max_bytes" in head


def _response_blocking(sock: socket.socket) -> bytes:
    sock.setblocking(True)
    try:
        return _response(sock)
    except OSError:
        return b""


def test_body_within_the_cap_is_served(live: Live) -> None:
    event = {
        "event_id": "small-1",
        "event_time": T0 + 3_600_000,
        "amount": 1.0,
        "card_id": "c1",
        "card_number": "4000000000000001",
        "status": "succeeded",
        "merchant_id": "m1",
        "pad": "y" * (MAX_BYTES // 2),
    }
    r = httpx.post(live.url + "/v1/decide", json=event, headers=live.headers(ADMIN))
    assert r.status_code == 200, r.text
    r = httpx.post(
        live.url + "/v1/decide", json={**event, "pad": "y" * MAX_BYTES}, headers=live.headers(ADMIN)
    )
    assert r.status_code == 413
    assert r.json()["error"] == f"request body larger than {MAX_BYTES} bytes (event.max_bytes)"
