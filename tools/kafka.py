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
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

DEFAULT_VERSION = "4.3.1"
"""Apache Kafka version used unless ``RISKSTREAM_KAFKA_VERSION`` says otherwise."""

SCALA_VERSION = "2.13"
HOST = "127.0.0.1"
DEFAULT_HEAP = "512m"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

# log4j version of Kafka's own log4j-core, per Kafka version; only a first guess for the
# slf4j -> log4j binding, which fetch re-resolves when the resolved jars disagree.
_LOG4J_GUESS = {"4.3.1": "2.25.4"}
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_STARTED_LINE = b"Kafka Server started"
_BIND_ERROR = "Address already in use"


class BrokerError(RuntimeError):
    """The broker could not be fetched, started, stopped or used.

    ``str(error)`` is a one-line reason; ``error.detail`` holds the tail of the relevant log.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    def report(self) -> str:
        """The reason, then the log tail (if any), as printed by the command line."""
        text = f"kafka: {self}"
        if self.detail:
            text += "\n" + self.detail.rstrip()
        return text


def _log(message: str) -> None:
    print(f"kafka: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Cache and fetch


def kafka_version() -> str:
    """The Kafka version to use: ``$RISKSTREAM_KAFKA_VERSION`` or :data:`DEFAULT_VERSION`."""
    return os.environ.get("RISKSTREAM_KAFKA_VERSION") or DEFAULT_VERSION


def cache_root() -> Path:
    """``$RISKSTREAM_CACHE`` or ``~/.cache/riskstream``."""
    env = os.environ.get("RISKSTREAM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "riskstream"


def kafka_home(version: str | None = None) -> Path:
    """``<cache>/kafka/<version>``: holds ``libs/``, the ``.complete`` marker and ``cds/``."""
    return cache_root() / "kafka" / (version or kafka_version())


def _cds_enabled() -> bool:
    return os.environ.get("RISKSTREAM_KAFKA_CDS", "1").strip().lower() not in {"0", "false", "no"}


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _marker_ok(home: Path) -> bool:
    marker = home / ".complete"
    try:
        jars = json.loads(marker.read_text())["jars"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    libs = home / "libs"
    return bool(jars) and all((libs / str(jar)).is_file() for jar in jars)


def _pom(version: str, binding: str, binding_version: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>riskstream.tools</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{SCALA_VERSION}</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>{binding}</artifactId>
      <version>{binding_version}</version>
      <exclusions>
        <exclusion><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId></exclusion>
        <exclusion><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId></exclusion>
        <exclusion><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId></exclusion>
      </exclusions>
    </dependency>
  </dependencies>
</project>
"""


def _jar_version(libs: Path, artifact: str) -> str | None:
    pattern = re.compile(rf"^{re.escape(artifact)}-(\d[\w.\-]*)\.jar$")
    for jar in libs.iterdir():
        match = pattern.match(jar.name)
        if match:
            return match.group(1)
    return None


def _mvn_copy(mvn: str, workdir: Path, pom_text: str, out: Path) -> None:
    pom = workdir / "pom.xml"
    pom.write_text(pom_text)
    if out.exists():
        shutil.rmtree(out)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={out}",
    ]
    proc = subprocess.run(
        cmd, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = _quote((proc.stdout + proc.stderr).splitlines(), 25)
        raise BrokerError(f"mvn could not download the Kafka jars (exit {proc.returncode})", tail)


def _download(version: str, home: Path) -> list[str]:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("mvn (Apache Maven) is not on PATH; it is needed once to fetch Kafka")
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetch-", dir=home) as tmp:
        work = Path(tmp)
        out = work / "libs"
        binding, binding_version = "log4j-slf4j-impl", _LOG4J_GUESS.get(version, "2.25.4")
        for _ in range(3):
            _mvn_copy(mvn, work, _pom(version, binding, binding_version), out)
            core = _jar_version(out, "log4j-core")
            slf4j = _jar_version(out, "slf4j-api")
            want = "log4j-slf4j2-impl" if slf4j and slf4j.startswith("2.") else "log4j-slf4j-impl"
            if core is None or (want == binding and core == binding_version):
                break
            binding, binding_version = want, core  # re-resolve with the matching binding
        if _jar_version(out, f"kafka_{SCALA_VERSION}") != version:
            raise BrokerError(f"Maven did not deliver kafka_{SCALA_VERSION}-{version}.jar")
        libs = home / "libs"
        if libs.exists():
            shutil.rmtree(libs)
        out.rename(libs)
    return sorted(jar.name for jar in libs.glob("*.jar"))


def fetch(version: str | None = None, *, cds: bool | None = None, quiet: bool = False) -> Path:
    """Download the broker jars once (idempotent; fast when cached) and return the libs dir.

    Also builds the class-data-sharing archive for the current ``java`` unless disabled.
    Safe to call from several processes at once (a file lock serialises them).
    """
    version = version or kafka_version()
    home = kafka_home(version)
    cds = _cds_enabled() if cds is None else cds
    if _marker_ok(home) and (not cds or _cds_settled(home)):
        return home / "libs"
    with _file_lock(home / ".lock"):
        if not _marker_ok(home):
            if not quiet:
                _log(f"downloading Apache Kafka {version} jars from Maven Central into {home}")
            started = time.monotonic()
            jars = _download(version, home)
            marker = {"version": version, "jars": jars, "fetched_at": int(time.time())}
            (home / ".complete").write_text(json.dumps(marker, indent=1) + "\n")
            if not quiet:
                size = sum((home / "libs" / jar).stat().st_size for jar in jars)
                _log(
                    f"fetched {len(jars)} jars ({size / 2**20:.0f} MiB) "
                    f"in {time.monotonic() - started:.1f}s"
                )
        if cds and not _cds_settled(home):
            _build_cds(version, home, quiet=quiet)
    return home / "libs"


# --------------------------------------------------------------------------------------------
# Java, class path, class-data sharing


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` if present, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise BrokerError("java is not on PATH (Kafka needs Java 17 or newer)")
    return found


def _classpath(libs: Path) -> str:
    # An explicit sorted list (not libs/*): the class-data-sharing archive needs the same order.
    return os.pathsep.join(str(jar) for jar in sorted(libs.glob("*.jar")))


def _java_key() -> str:
    java = Path(java_executable()).resolve()
    stat = java.stat()
    return hashlib.sha1(f"{java}:{stat.st_mtime_ns}:{stat.st_size}".encode()).hexdigest()[:12]


def _cds_archives(home: Path) -> tuple[Path, Path]:
    """(broker archive, format-tool archive) for the current java."""
    key = _java_key()
    return home / "cds" / f"{key}-broker.jsa", home / "cds" / f"{key}-format.jsa"


def _cds_settled(home: Path) -> bool:
    """True once an archive was built for this java, or building one failed (not retried)."""
    broker, _ = _cds_archives(home)
    return broker.is_file() or broker.with_suffix(".failed").is_file()


def _build_cds(version: str, home: Path, *, quiet: bool) -> None:
    broker_jsa, format_jsa = _cds_archives(home)
    broker_jsa.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        _log("recording a class-data-sharing archive of a warm broker (once, ~15 s)")
    started = time.monotonic()
    tmp_broker = broker_jsa.with_suffix(".tmp")
    tmp_format = format_jsa.with_suffix(".tmp")
    for stale in (tmp_broker, tmp_format):
        stale.unlink(missing_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="cds-", dir=home) as tmp:
            broker = KafkaBroker(Path(tmp), version=version)
            broker._cds_dump = (tmp_broker, tmp_format)
            broker.start()
            try:
                _exercise(broker)
            except Exception as exc:  # best effort: the archive is useful without it
                if not quiet:
                    _log(f"warm-up traffic failed ({exc}); recording the archive anyway")
            finally:
                broker.stop(timeout=120)
        if not tmp_broker.is_file():
            raise BrokerError("the JVM wrote no class-data-sharing archive")
        tmp_broker.replace(broker_jsa)
        if tmp_format.is_file():
            tmp_format.replace(format_jsa)
    except BrokerError as exc:
        broker_jsa.with_suffix(".failed").write_text(exc.report() + "\n")
        if not quiet:
            _log(f"no class-data-sharing archive (start-up will be slower): {exc}")
        return
    if not quiet:
        _log(f"class-data-sharing archive recorded in {time.monotonic() - started:.1f}s")


def _exercise(broker: KafkaBroker) -> None:
    """Touch the produce/fetch/group paths so their classes land in the archive."""
    try:
        from confluent_kafka import Consumer, Producer
    except ImportError:
        return
    broker.create_topic("riskstream-warmup", partitions=2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "log_level": 0})
    for i in range(20):
        producer.produce("riskstream-warmup", key=str(i).encode(), value=b"warm")
    producer.flush(15)
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "riskstream-warmup",
            "auto.offset.reset": "earliest",
            "log_level": 0,
        }
    )
    try:
        consumer.subscribe(["riskstream-warmup"])
        seen, deadline = 0, time.monotonic() + 20
        while seen < 20 and time.monotonic() < deadline:
            seen += len(consumer.consume(num_messages=20, timeout=0.5))
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()


# --------------------------------------------------------------------------------------------
# Processes and ports


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like Java's server sockets: TIME_WAIT leftovers of a previous run do not block a bind.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _can_connect(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie is gone for our purposes


def _is_broker_of(pid: int, properties: Path) -> bool:
    """True when ``pid`` is a live ``kafka.Kafka`` running ``properties`` (guards pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    return b"kafka.Kafka" in args and str(properties).encode() in args


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


_STACK_FRAME = re.compile(r"^\s+at \S|^\s*\.\.\. \d+ more")


def _quote(lines: Sequence[str], count: int) -> str:
    """The last ``count`` lines, Java stack frames left out, each prefixed with ``  | ``."""
    kept = [line for line in lines if line.strip() and not _STACK_FRAME.match(line)]
    return "\n".join(f"  | {line}" for line in kept[-count:])


def _tail(path: Path, lines: int = 30, start: int = 0) -> str:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = start if start <= size else 0
            handle.seek(max(start, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return _quote(data.decode("utf-8", "replace").splitlines(), lines)


def _size_bytes(size: str) -> int:
    """``512m`` -> bytes (a JVM memory size)."""
    match = re.fullmatch(r"(\d+)([kmgt]?)", size.strip().lower())
    if match is None:
        raise BrokerError(f"not a JVM memory size: {size!r} (e.g. 512m)")
    return int(match.group(1)) << (10 * " kmgt".index(match.group(2) or " "))


def _cluster_id() -> str:
    """A random cluster id as Kafka makes them (base64url of 16 bytes, never starting with -)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # would read as an option on the command line
            return cluster_id


def _properties_text(props: Mapping[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n")

    return "".join(f"{key}={escape(value)}\n" for key, value in props.items())


def _read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                props[key.strip()] = value.strip()
    return props


class _LogWatch:
    """Scans a growing log file, from a given offset, for the broker's "started" line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.start_offset = self.offset
        self._carry = b""

    def seen_started(self) -> bool:
        try:
            with self.path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size < self.offset:  # rolled over
                    self.offset, self._carry = 0, b""
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return False
        self.offset += len(chunk)
        data = self._carry + chunk
        found = _STARTED_LINE in data
        self._carry = data[-len(_STARTED_LINE) :]
        return found


# --------------------------------------------------------------------------------------------
# The broker


class KafkaBroker:
    """One single-node Kafka (KRaft combined broker + controller) on 127.0.0.1.

    ``port`` None picks a free port at the first start (a previous run's port in the same
    data dir is reused when free) and keeps it for :meth:`restart`. ``config`` adds or
    overrides ``server.properties`` entries. With ``die_with_parent`` (the default) the broker
    gets SIGTERM when the process (thread) that started it dies, so a killed test run leaks no
    JVM; the command line's ``start`` turns that off to leave the broker running.
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        controller_port: int | None = None,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        version: str | None = None,
        heap: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        die_with_parent: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.partitions = partitions
        self.config = dict(config or {})
        self.version = version or kafka_version()
        self.heap = heap or os.environ.get("RISKSTREAM_KAFKA_HEAP") or DEFAULT_HEAP
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.pid: int | None = None
        self.start_seconds: float | None = None
        """Wall time of the last :meth:`start` (format included), in seconds."""
        self.formatted_now = False
        """True when the last :meth:`start` formatted fresh storage."""
        self.timings: dict[str, float] = {}
        """Seconds spent by the last :meth:`start` in ``format`` and ``launch`` (to ready)."""
        self._fixed_port = port is not None
        self._fixed_controller = controller_port is not None
        self._proc: subprocess.Popen[bytes] | None = None
        self._cds_dump: tuple[Path, Path] | None = None

    # -- paths -------------------------------------------------------------------------------
    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        """Directory with ``server.log`` (log4j) and ``kafka.out`` (JVM stdout/stderr)."""
        return self.data_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def storage_dir(self) -> Path:
        """Kafka's ``log.dirs``: the topic data and the KRaft metadata log."""
        return self.data_dir / "data"

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:<port>`` for ``bootstrap.servers``."""
        if self.port is None:
            raise BrokerError(f"the broker in {self.data_dir} has not been started")
        return f"{HOST}:{self.port}"

    def client_config(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``{"bootstrap.servers": <bootstrap>}`` merged with ``extra``, for confluent_kafka."""
        return {"bootstrap.servers": self.bootstrap, **(extra or {})}

    # -- state -------------------------------------------------------------------------------
    def _running_pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        pid = _read_int(self.data_dir / "pid")
        if pid is not None and _is_broker_of(pid, self.properties_file):
            return pid
        return None

    def is_running(self) -> bool:
        return self._running_pid() is not None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> KafkaBroker:
        """Start (formatting fresh storage first) and wait until it answers; returns self.

        A broker already running for this data dir is adopted. Raises :class:`BrokerError`.
        """
        begun = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.data_dir / ".lock"):
            pid = self._running_pid()
            if pid is not None:
                self.pid = pid
                ports = _read_properties(self.data_dir / "ports")
                self.port = int(ports.get("port", self.port or 0)) or self.port
                self.controller_port = int(ports.get("controller.port", 0)) or None
                self.start_seconds = 0.0
                return self
            libs = fetch(self.version, cds=None if self._cds_dump is None else False)
            self.formatted_now = False
            self.timings = {}
            attempts = 1 if self._fixed_port and self._fixed_controller else 3
            for attempt in range(1, attempts + 1):
                self._choose_ports()
                self._write_config()
                mark = time.monotonic()
                self._format(libs)
                self.timings["format"] = time.monotonic() - mark
                try:
                    mark = time.monotonic()
                    self._launch(libs)
                    self.timings["launch"] = time.monotonic() - mark
                    break
                except BrokerError as exc:
                    if attempt == attempts or _BIND_ERROR not in exc.detail:
                        raise
                    # Lost a race for a port we picked: pick again.
                    self.port = self.port if self._fixed_port else None
                    self.controller_port = (
                        None if not self._fixed_controller else self.controller_port
                    )
        self.start_seconds = time.monotonic() - begun
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to ``timeout`` s for a clean shutdown, then SIGKILL. Idempotent.

        ``timeout=0`` sends SIGKILL at once (see :meth:`kill`).
        """
        with _file_lock(self.data_dir / ".lock"):
            pid = self._running_pid()
            if pid is not None:
                self._terminate(pid, timeout)
            for name in ("pid", "bootstrap"):
                (self.data_dir / name).unlink(missing_ok=True)
            self.pid = None
            self._proc = None

    def kill(self) -> None:
        """SIGKILL, no clean shutdown: a crash. :meth:`start` then recovers the same data."""
        self.stop(timeout=0.0)

    def restart(self, timeout: float = STOP_TIMEOUT, *, crash: bool = False) -> KafkaBroker:
        """Stop (or with ``crash`` SIGKILL), then start on the same ports with the same data."""
        if self.port is not None:
            self._fixed_port = True
        self.stop(0.0 if crash else timeout)
        return self.start()

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        port = self.port if self.port is not None else "?"
        return f"KafkaBroker({str(self.data_dir)!r}, port={port}, pid={self.pid})"

    # -- topics ------------------------------------------------------------------------------
    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        config: Mapping[str, str] | None = None,
        exist_ok: bool = False,
        timeout: float = 30.0,
    ) -> None:
        """Create a topic (replication factor 1) and wait until every partition has a leader."""
        try:
            from confluent_kafka import KafkaError, KafkaException
            from confluent_kafka.admin import AdminClient
            from confluent_kafka.cimpl import NewTopic
        except ImportError as exc:
            raise BrokerError("create_topic needs confluent_kafka") from exc
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        topic = NewTopic(
            name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
        )
        futures = admin.create_topics([topic], request_timeout=timeout)
        try:
            futures[name].result(timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if not (exist_ok and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise BrokerError(f"could not create topic {name!r}: {error.str()}") from exc
        deadline = time.monotonic() + timeout
        while True:
            meta = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
            if (
                meta is not None
                and meta.error is None
                and meta.partitions
                and all(p.leader >= 0 and p.error is None for p in meta.partitions.values())
            ):
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"topic {name!r} has no leader after {timeout:.0f}s")
            time.sleep(0.05)

    # -- internals ---------------------------------------------------------------------------
    def _choose_ports(self) -> None:
        previous = _read_properties(self.data_dir / "ports")
        old, old_ctl = (int(previous.get(k, "0") or 0) for k in ("port", "controller.port"))
        if self.port is None:
            if old and old != self.controller_port and _port_free(old):
                self.port = old  # keep the address of the previous run in this data dir
        elif not _port_free(self.port):
            raise BrokerError(f"port {self.port} on {HOST} is already in use")
        if self.controller_port is not None and not _port_free(self.controller_port):
            if self._fixed_controller:
                raise BrokerError(f"controller port {self.controller_port} is already in use")
            self.controller_port = None  # only the broker itself uses it: any port will do
        if self.controller_port is None and old_ctl and old_ctl != self.port:
            self.controller_port = old_ctl if _port_free(old_ctl) else None
        if self.port is None or self.controller_port is None:
            fresh = [p for p in _free_ports(3) if p not in (self.port, self.controller_port)]
            if self.port is None:
                self.port = fresh.pop(0)
            if self.controller_port is None:
                self.controller_port = fresh.pop(0)
        _write_atomic(
            self.data_dir / "ports", f"port={self.port}\ncontroller.port={self.controller_port}\n"
        )

    def _write_config(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.storage_dir),
            "num.partitions": str(self.partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            # After a crash (SIGKILL) the restarted broker waits for its old registration's
            # session to expire before it may register again: 9 s by default, 4 s here.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "4000",
            # A small footprint for a shared 2-core machine.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 2**20),
        }
        props.update(self.config)
        _write_atomic(self.properties_file, _properties_text(props))
        log4j = {
            "status": "error",
            "name": "riskstream-kafka",
            "appender.file.type": "RollingFile",
            "appender.file.name": "FILE",
            "appender.file.fileName": str(self.log_file),
            "appender.file.filePattern": f"{self.log_file}.%i",
            "appender.file.layout.type": "PatternLayout",
            "appender.file.layout.pattern": "[%d] %p %m (%c)%n",
            "appender.file.policies.type": "Policies",
            "appender.file.policies.size.type": "SizeBasedTriggeringPolicy",
            "appender.file.policies.size.size": "20MB",
            "appender.file.strategy.type": "DefaultRolloverStrategy",
            "appender.file.strategy.max": "3",
            "rootLogger.level": "INFO",
            "rootLogger.appenderRef.file.ref": "FILE",
            "logger.request.name": "kafka.request.logger",
            "logger.request.level": "WARN",
        }
        _write_atomic(self.data_dir / "log4j2.properties", _properties_text(log4j))

    def _jvm_options(self, kind: str) -> list[str]:
        extra = shlex.split(os.environ.get("RISKSTREAM_KAFKA_JAVA_OPTS", ""))
        heap = self.heap if kind == "broker" else "256m"
        opts = [f"-Xmx{heap}", f"-Xms{min(_size_bytes(heap), 64 * 2**20)}"]
        if kind == "broker":
            opts.append("-XX:+ExitOnOutOfMemoryError")
        # The quick (C1) compiler only: half the CPU to start (no C2 compiling the start-up
        # code), and less CPU overall for test-sized traffic. For long benchmarks the full JIT
        # comes back with RISKSTREAM_KAFKA_JAVA_OPTS=-XX:TieredStopAtLevel=4 (last flag wins).
        opts.append("-XX:TieredStopAtLevel=1")
        if not any(opt.startswith("-XX:+Use") and opt.endswith("GC") for opt in extra):
            opts.append("-XX:+UseSerialGC")  # fewest threads on a shared 2-core machine
        opts += [
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_dir}",
        ]
        if self._cds_dump is not None:
            dump = self._cds_dump[0] if kind == "broker" else self._cds_dump[1]
            opts.append(f"-XX:ArchiveClassesAtExit={dump}")
        elif _cds_enabled():
            broker_jsa, format_jsa = _cds_archives(kafka_home(self.version))
            archive = broker_jsa if kind == "broker" else format_jsa
            if archive.is_file():
                opts += ["-Xshare:auto", f"-XX:SharedArchiveFile={archive}"]
        return opts + extra

    def _format(self, libs: Path) -> None:
        if (self.storage_dir / "meta.properties").is_file():
            return  # formatted by an earlier run: keep the data
        cmd = [
            java_executable(),
            *self._jvm_options("format"),
            "-cp",
            _classpath(libs),
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "--cluster-id",
            _cluster_id(),
            "--config",
            str(self.properties_file),
        ]
        proc = subprocess.run(
            cmd,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if proc.returncode != 0 or not (self.storage_dir / "meta.properties").is_file():
            tail = _quote((proc.stdout + proc.stderr).splitlines(), 15)
            raise BrokerError(f"formatting Kafka storage failed (exit {proc.returncode})", tail)
        self.formatted_now = True

    def _launch(self, libs: Path) -> None:
        cmd = [
            java_executable(),
            *self._jvm_options("broker"),
            "-cp",
            _classpath(libs),
            "kafka.Kafka",
            str(self.properties_file),
        ]
        setpriv = shutil.which("setpriv")
        if self.die_with_parent and setpriv and sys.platform.startswith("linux"):
            cmd = [setpriv, "--pdeathsig", "TERM", *cmd]  # setpriv execs java: same pid
        watch = _LogWatch(self.log_file)
        out_file = self.log_dir / "kafka.out"
        out_offset = out_file.stat().st_size if out_file.exists() else 0
        out: IO[bytes]
        with out_file.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._proc, self.pid = proc, proc.pid
        _write_atomic(self.data_dir / "pid", f"{proc.pid}\n")
        try:
            self._wait_ready(proc, watch)
        except BrokerError as exc:
            self._terminate(proc.pid, 5.0)
            (self.data_dir / "pid").unlink(missing_ok=True)
            self._proc = self.pid = None
            exc.detail = "\n".join(
                part
                for part in (
                    f"  {self.log_file}:",
                    _tail(self.log_file, 25, watch.start_offset),
                    f"  {out_file}:",
                    _tail(out_file, 10, out_offset),
                )
                if part
            )
            raise
        _write_atomic(self.data_dir / "bootstrap", f"{self.bootstrap}\n")

    def _wait_ready(self, proc: subprocess.Popen[bytes], watch: _LogWatch) -> None:
        assert self.port is not None
        deadline = time.monotonic() + self.startup_timeout
        cluster_id = _read_properties(self.storage_dir / "meta.properties").get("cluster.id")
        probe = _MetadataProbe.create(self.bootstrap)
        started = False
        while True:
            code = proc.poll()
            if code is not None:
                raise BrokerError(f"Kafka exited with code {code} while starting")
            started = started or watch.seen_started()
            if started and _can_connect(self.port) and (probe is None or probe.ready(cluster_id)):
                return
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"Kafka did not answer on {self.bootstrap} within {self.startup_timeout:.0f}s"
                )
            time.sleep(0.05)

    def _terminate(self, pid: int, timeout: float) -> None:
        proc = self._proc if self._proc is not None and self._proc.pid == pid else None
        if timeout > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if self._wait_gone(pid, proc, timeout):
                return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not self._wait_gone(pid, proc, 10.0):
            raise BrokerError(f"Kafka (pid {pid}) survived SIGKILL")

    @staticmethod
    def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


class _MetadataProbe:
    """Asks the broker for metadata with confluent_kafka (when importable)."""

    def __init__(self, admin: Any) -> None:
        self._admin = admin

    @classmethod
    def create(cls, bootstrap: str) -> _MetadataProbe | None:
        try:
            from confluent_kafka.admin import AdminClient
        except ImportError:
            return None
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": bootstrap,
            "log_level": 0,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 250,
        }
        return cls(AdminClient(config))

    def ready(self, cluster_id: str | None) -> bool:
        try:
            meta = self._admin.list_topics(timeout=1.0)
        except Exception:  # KafkaException while the broker comes up
            return False
        return bool(meta.brokers) and (cluster_id is None or meta.cluster_id == cluster_id)


# --------------------------------------------------------------------------------------------
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
                _log(f"already running (pid {broker.pid}) in {broker.data_dir}")
            else:
                _log(
                    f"Kafka {broker.version} up in {broker.start_seconds:.1f}s "
                    f"(pid {broker.pid}, log {broker.log_file})"
                )
            print(broker.bootstrap)
        elif args.command == "stop":
            broker = KafkaBroker(args.data_dir)
            if not broker.is_running():
                _log(f"not running in {broker.data_dir}")
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
