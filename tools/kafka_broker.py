"""One single-node Kafka broker (KRaft combined broker + controller) on 127.0.0.1: its life
(start, stop, crash, restart) and its topics. See ``tools/kafka.py`` for the layout."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tools._service import (
    HOST,
    can_connect,
    file_lock,
    pid_alive,
    read_int,
    wait_gone,
    write_atomic,
)
from tools.kafka_config import BrokerConfig, new_cluster_id, read_properties
from tools.kafka_dist import (
    BrokerError,
    classpath,
    fetch,
    java_executable,
    kafka_version,
    quote,
    tail,
)

DEFAULT_HEAP = "512m"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_STARTED_LINE = b"Kafka Server started"
_BIND_ERROR = "Address already in use"


def _is_broker_of(pid: int, properties: Path) -> bool:
    """True when ``pid`` is a live ``kafka.Kafka`` running ``properties`` (guards pid reuse)."""
    if not pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    return b"kafka.Kafka" in args and str(properties).encode() in args


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


class KafkaBroker(BrokerConfig):
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
        pid = read_int(self.data_dir / "pid")
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
        with file_lock(self.data_dir / ".lock"):
            pid = self._running_pid()
            if pid is not None:
                self.pid = pid
                ports = read_properties(self.data_dir / "ports")
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
        with file_lock(self.data_dir / ".lock"):
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
    def _format(self, libs: Path) -> None:
        if (self.storage_dir / "meta.properties").is_file():
            return  # formatted by an earlier run: keep the data
        cmd = [
            java_executable(),
            *self._jvm_options("format"),
            "-cp",
            classpath(libs),
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "--cluster-id",
            new_cluster_id(),
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
            tail = quote((proc.stdout + proc.stderr).splitlines(), 15)
            raise BrokerError(f"formatting Kafka storage failed (exit {proc.returncode})", tail)
        self.formatted_now = True

    def _launch(self, libs: Path) -> None:
        cmd = [
            java_executable(),
            *self._jvm_options("broker"),
            "-cp",
            classpath(libs),
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
        write_atomic(self.data_dir / "pid", f"{proc.pid}\n")
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
                    tail(self.log_file, 25, watch.start_offset),
                    f"  {out_file}:",
                    tail(out_file, 10, out_offset),
                )
                if part
            )
            raise
        write_atomic(self.data_dir / "bootstrap", f"{self.bootstrap}\n")

    def _wait_ready(self, proc: subprocess.Popen[bytes], watch: _LogWatch) -> None:
        assert self.port is not None
        deadline = time.monotonic() + self.startup_timeout
        cluster_id = read_properties(self.storage_dir / "meta.properties").get("cluster.id")
        probe = _MetadataProbe.create(self.bootstrap)
        started = False
        while True:
            code = proc.poll()
            if code is not None:
                raise BrokerError(f"Kafka exited with code {code} while starting")
            started = started or watch.seen_started()
            if started and can_connect(self.port) and (probe is None or probe.ready(cluster_id)):
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
            if wait_gone(pid, proc, timeout):
                return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not wait_gone(pid, proc, 10.0):
            raise BrokerError(f"Kafka (pid {pid}) survived SIGKILL")


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
