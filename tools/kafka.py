#!/usr/bin/env python3
"""A real single-node Apache Kafka broker (KRaft, broker + controller) for development and tests.

Standard library only; ``confluent_kafka`` is used when importable (readiness check, topics).

Commands::

    python tools/kafka.py fetch                      # download the broker jars once (Maven Central)
    python tools/kafka.py start --data-dir .kafka    # prints the bootstrap address (host:port)
    python tools/kafka.py status --data-dir .kafka   # exit 0 when running, 1 when not
    python tools/kafka.py topic --data-dir .kafka payments --partitions 4
    python tools/kafka.py stop --data-dir .kafka

Importable (``from tools.kafka import KafkaBroker``)::

    with KafkaBroker(tmp_path / "kafka") as broker:
        broker.create_topic("payments", partitions=4)
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        broker.restart()  # same port, same data; restart(crash=True) SIGKILLs first

Layout of a data dir: ``server.properties``, ``log4j2.properties``, ``pid``, ``bootstrap``,
``ports``, ``data/`` (the Kafka log dir) and ``logs/`` (``server.log``, ``kafka.out``).

The jars live in ``~/.cache/riskstream/kafka/<version>/libs`` (``$RISKSTREAM_CACHE`` replaces
``~/.cache/riskstream``). ``fetch`` also records a class-data-sharing archive of a warm broker
(a JVM start-up cache, in ``cds/``), which roughly halves the broker's start-up CPU; if that
fails once it is not retried until ``cds/*.failed`` is deleted. The broker runs with a 512 MiB
heap, the serial GC and the quick (C1) JIT only, to start fast on a shared 2-core machine.

Environment: ``RISKSTREAM_CACHE``, ``RISKSTREAM_KAFKA_VERSION``, ``RISKSTREAM_KAFKA_HEAP``
(default ``512m``), ``RISKSTREAM_KAFKA_JAVA_OPTS`` (extra JVM options), ``RISKSTREAM_KAFKA_CDS=0``
(do not use or build the class-data-sharing archive), ``JAVA_HOME``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python tools/kafka.py): import tools.* too
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.kafka_broker import (
    DEFAULT_HEAP,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    KafkaBroker,
)
from tools.kafka_dist import (
    DEFAULT_VERSION,
    BrokerError,
    cache_root,
    fetch,
    java_executable,
    kafka_home,
    kafka_version,
    log,
)

__all__ = [
    "DEFAULT_VERSION",
    "BrokerError",
    "KafkaBroker",
    "cache_root",
    "fetch",
    "java_executable",
    "kafka_home",
    "kafka_version",
]


# Command line


def _parse_set(values: Sequence[str]) -> dict[str, str]:
    config: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"kafka: --set expects KEY=VALUE, got {item!r}")
        config[key.strip()] = value.strip()
    return config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/kafka.py", description="Single-node Apache Kafka for riskstream development."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    fetch_p = sub.add_parser("fetch", help="download the broker jars once (Maven Central)")
    fetch_p.add_argument("--kafka-version", default=None, help=f"default {DEFAULT_VERSION}")
    fetch_p.add_argument("--no-cds", action="store_true", help="skip the start-up archive")

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, default=Path(".kafka"), help="default .kafka")

    start_p = sub.add_parser("start", help="start the broker detached; prints host:port")
    data_dir(start_p)
    start_p.add_argument("--port", type=int, default=None, help="default: a free port")
    start_p.add_argument("--controller-port", type=int, default=None)
    start_p.add_argument("--partitions", type=int, default=1, help="num.partitions (default 1)")
    start_p.add_argument("--timeout", type=float, default=STARTUP_TIMEOUT)
    start_p.add_argument("--heap", default=None, help=f"-Xmx value (default {DEFAULT_HEAP})")
    start_p.add_argument("--kafka-version", default=None)
    start_p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="server.properties"
    )

    stop_p = sub.add_parser("stop", help="SIGTERM, then SIGKILL after --timeout")
    data_dir(stop_p)
    stop_p.add_argument("--timeout", type=float, default=STOP_TIMEOUT)

    status_p = sub.add_parser("status", help="exit 0 when running, 1 when not")
    data_dir(status_p)

    topic_p = sub.add_parser("topic", help="create a topic on the running broker")
    data_dir(topic_p)
    topic_p.add_argument("name")
    topic_p.add_argument("--partitions", type=int, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch":
            libs = fetch(args.kafka_version, cds=False if args.no_cds else None)
            print(libs)
        elif args.command == "start":
            broker = KafkaBroker(
                args.data_dir,
                args.port,
                controller_port=args.controller_port,
                partitions=args.partitions,
                config=_parse_set(args.set),
                version=args.kafka_version,
                heap=args.heap,
                startup_timeout=args.timeout,
                die_with_parent=False,
            )
            was_running = broker.is_running()
            broker.start()
            if was_running:
                log(f"already running (pid {broker.pid}) in {broker.data_dir}")
            else:
                log(
                    f"Kafka {broker.version} up in {broker.start_seconds:.1f}s "
                    f"(pid {broker.pid}, log {broker.log_file})"
                )
            print(broker.bootstrap)
        elif args.command == "stop":
            broker = KafkaBroker(args.data_dir)
            if not broker.is_running():
                log(f"not running in {broker.data_dir}")
            broker.stop(args.timeout)
        elif args.command == "status":
            broker = KafkaBroker(args.data_dir)
            pid = broker._running_pid()
            if pid is None:
                print(f"stopped ({broker.data_dir})")
                return 1
            bootstrap = (broker.data_dir / "bootstrap").read_text().strip()
            print(f"running pid={pid} bootstrap={bootstrap} log={broker.log_file}")
        elif args.command == "topic":
            broker = KafkaBroker(args.data_dir)
            bootstrap = (broker.data_dir / "bootstrap").read_text().strip()
            broker.port = int(bootstrap.rsplit(":", 1)[1])
            broker.create_topic(args.name, args.partitions, exist_ok=True)
            print(args.name)
    except BrokerError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"kafka: not running? {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
