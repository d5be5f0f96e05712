"""Issue 12: hostile bodies fuzzed into ``POST /v1/decide`` on a real server.

Every answer is 200 (scored) or 422 with a known quarantine reason, never a 500; the bodies
built to be refused are refused with the reason the batch decoder gives; good events score.
"""

from __future__ import annotations

import json

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.api._live import T0

REASONS = {
    "not_json",
    "not_object",
    "missing_time",
    "bad_time",
    "wrong_type",
    "oversized",
    "too_late",
    "too_early",
    "too_deep",
    "duplicate_key",
    "unprocessable",
}
T = st.integers(0, 3_000_000).map(lambda d: T0 + d)

GOOD = st.builds(
    lambda t, card, amount: ("good", orjson.dumps(
        {"event_id": "fz", "event_time": t, "card_id": card, "amount": amount}
    )),
    T, st.sampled_from(["c1", "c2", "c_burst"]), st.floats(0, 1e6, allow_nan=False),
)  # fmt: skip
REFUSED = st.one_of(
    st.tuples(T, st.integers(65, 2_000)).map(
        lambda a: ("too_deep", b'{"event_time":%d,"x":%s%s}' % (a[0], b"[" * a[1], b"]" * a[1]))
    ),
    st.tuples(T, st.sampled_from(["amount", "card_id", "event_time", "zz"])).map(
        lambda a: (
            "duplicate_key",
            b'{"event_time":%d,"amount":1,"%s":2,"%s":3}' % (a[0], a[1].encode(), a[1].encode()),
        )
    ),
    st.sampled_from([253402300799000, "9999-12-31T23:59:59Z", 1e15, 1e17]).map(
        lambda v: ("too_early", orjson.dumps({"event_time": v, "card_id": "c1"}))
    ),
)
ANY = st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["event_time", "amount", "card_id", "x"]), inner)
        ),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode()),
).map(lambda body: ("any", body))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=st.one_of(GOOD, REFUSED, ANY))
def test_decide_answers_every_hostile_body_without_a_500(
    client: httpx.Client, case: tuple[str, bytes]
) -> None:
    kind, body = case
    r = client.post(
        "/v1/decide", content=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert r.status_code in (200, 422), (r.status_code, r.text[:300], body[:200])
    if r.status_code == 422:
        out = r.json()
        assert out["reason"] in REASONS and "\n" not in out["error"]
    if kind == "good":
        assert r.status_code == 200, r.text[:300]
    elif kind != "any":
        assert r.status_code == 422 and r.json()["reason"] == kind, r.text[:300]
