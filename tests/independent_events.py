"""An event writer independent of riskstream's generator: plain ``random`` and ``json``.

It plays "a program other than ours" in the acceptance tests: out-of-order times
over several hours, mixed epoch-ms and ISO-8601 times, occasional risky titles.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

T0 = 1_767_600_000_000  # 2026-01-05T08:00:00Z
RISKY = ["replica watch", "vape", "hair extensions"]
TITLES = ["blue shirt", "coffee beans", "running shoes", "usb cable", "garden hose", "phone case"]


def write_events(
    path: Path, n: int, seed: int, hours: float = 4.0, cards: int = 300
) -> list[dict[str, object]]:
    """Write ``n`` events as JSON lines and return them in file order."""
    rnd = random.Random(seed)
    span = int(hours * 3_600_000)
    events: list[dict[str, object]] = []
    for i in range(n):
        t = T0 + span * i // n
        r = rnd.random()
        if r < 0.05:
            t -= rnd.randint(1_000, 90_000)  # late by seconds to a minute and a half
        elif r < 0.06:
            t -= rnd.randint(600_000, 3_000_000)  # late by 10 to 50 minutes
        elif r < 0.08:
            t += rnd.randint(0, 30_000)  # early
        card = f"card-{int(rnd.paretovariate(1.2)) % cards}"
        title = rnd.choice(TITLES)
        if rnd.random() < 0.01:
            title = f"Cheap {rnd.choice(RISKY).upper()}!! best"
        event: dict[str, object] = {
            "event_id": f"x{i:06d}",
            "ts": t
            if rnd.random() < 0.7
            else datetime.fromtimestamp(t / 1000, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "card": card,
            "merchant": f"m{rnd.randint(0, 40)}",
            "amount": round(rnd.lognormvariate(3, 1), 2),
            "status": "ok" if rnd.random() < 0.9 else "declined",
            "title": title,
        }
        events.append(event)
    with path.open("w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
    return events


def event_ms(e: dict[str, object]) -> int:
    """The event's time in epoch ms, parsed independently of riskstream."""
    t = e["ts"]
    if isinstance(t, int):
        return t
    return int(datetime.fromisoformat(str(t).replace("Z", "+00:00")).timestamp() * 1000)
