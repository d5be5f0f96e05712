"""Entry point for ``spark-submit``: ``spark-submit [spark options] submit.py run -c SPEC ...``.

The arguments are those of ``riskstream`` (``run --engine spark`` is implied when missing);
the master, the Kafka connector (``--packages``) and the executors' Python come from
spark-submit. See ``docs/spark.md``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run ``riskstream`` with ``--engine spark`` on the session spark-submit set up."""
    from riskstream.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "run":
        args = ["run", *args]
    if "--engine" not in args:
        args += ["--engine", "spark"]
    cli_main(args)


if __name__ == "__main__":
    main()
