"""bench/run.py's stitched-query workload for chosen modes over an existing store, in turn.

    .venv/bin/python bench/query_modes.py STORE_DIR EVENTS_FILE --modes keep,index --budget 10

Each mode runs in a fresh process (``QUERY_CODE``): ``open`` and ``keep`` query the store,
``index`` the serving process's range index loaded from it. Prints one JSON line per mode.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import run


def main() -> None:
    """Run the modes one after the other and print their figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("events", type=Path)
    ap.add_argument("--modes", default="keep,index")
    ap.add_argument("--budget", type=float, default=10.0)
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    for mode in args.modes.split(","):
        cmd = [sys.executable, "-c", run.QUERY_CODE, str(run.SPEC), str(args.store)]
        cmd += [str(args.events), str(args.n), mode, str(args.budget)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res.pop("sample", None)
        print(mode, json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
