"""Resident memory of one ``riskstream run`` over a file, sampled along the stream.

Why: the 10M-event peak is set by transients; this says at which point of the stream the
peak rises and, with ``--dump-on MIB``, what every thread was doing then (``py-spy dump``).

    .venv/bin/python bench/memory_trace.py EVENTS.jsonl --out trace.tsv [--src TREE/src]
        [--spec bench/specs/bench.yaml] [--every 0.5] [--dump-on 150]

Prints one line per sample: seconds, events read (bytes read / mean line length), VmRSS,
VmHWM (MiB); the summary gives the peak, the wall time and events/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def status_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def bytes_read(pid: int, path: Path) -> int:
    """The read offset of ``path`` in ``pid`` (0 before it is opened or after it is closed)."""
    target = str(path.resolve())
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                        return int(fh.readline().split()[1])
            except OSError:
                continue
    except OSError:
        pass
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="TSV of the samples")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the tree's src to run")
    ap.add_argument("--spec", type=Path, default=ROOT / "bench" / "specs" / "bench.yaml")
    ap.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    ap.add_argument("--dump-on", type=float, default=0.0, help="py-spy dump when RSS grows by MiB")
    ap.add_argument("--timeout", type=float, default=3600.0)
    args = ap.parse_args()
    size = args.events.stat().st_size
    with open(args.events, "rb") as fh:
        head = fh.read(1 << 20)
    line_bytes = len(head) / max(1, head.count(b"\n"))
    work = Path(tempfile.mkdtemp(prefix="memtrace-"))
    env = dict(os.environ, PYTHONPATH=str(args.src.resolve()))
    cmd = [sys.executable, "-m", "riskstream.cli", "run", "-c", str(args.spec.resolve())]
    cmd += ["--source", f"file:{args.events.resolve()}", "--data-dir", str(work / "data")]
    cmd += ["--until-end", "--quiet", "--summary-json", str(work / "summary.json")]
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=work, env=env)
    last_rss, peak, pos = 0.0, 0.0, 0
    with open(args.out, "w") as out:
        out.write("s\tevents\trss_mib\thwm_mib\n")
        try:
            while proc.poll() is None:
                if time.monotonic() - t0 > args.timeout:
                    proc.kill()
                    raise SystemExit(f"timed out after {args.timeout:.0f} s")
                try:
                    rss, hwm = status_mib(proc.pid)
                except OSError:
                    break
                pos = bytes_read(proc.pid, args.events) or pos
                s = time.monotonic() - t0
                out.write(f"{s:.1f}\t{pos / line_bytes:.0f}\t{rss:.0f}\t{hwm:.0f}\n")
                out.flush()
                if args.dump_on and rss - last_rss > args.dump_on:
                    dump = subprocess.run(
                        [spy, "dump", "--pid", str(proc.pid)], capture_output=True, text=True
                    )
                    out.write(f"# dump at {s:.1f}s rss {rss:.0f} (+{rss - last_rss:.0f})\n")
                    out.write("".join(f"# {x}\n" for x in dump.stdout.splitlines()))
                last_rss, peak = rss, max(peak, hwm)
                time.sleep(args.every)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    wall = time.monotonic() - t0
    print(
        f"rc={proc.returncode} wall {wall:.1f} s, {pos / line_bytes / wall:.0f} ev/s at most, "
        f"peak RSS >= {peak:.0f} MiB (sampled), size {size} bytes; work dir {work}"
    )
    summ = work / "summary.json"
    if summ.exists():
        print(summ.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
