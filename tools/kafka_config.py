"""A broker's configuration: its ports, ``server.properties``, log4j and JVM options."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shlex
import uuid
from collections.abc import Mapping
from pathlib import Path

from tools._service import (
    HOST,
    free_ports,
    port_free,
    write_atomic,
)
from tools.kafka_dist import BrokerError, cds_archives, cds_enabled, kafka_home


def size_bytes(size: str) -> int:
    """``512m`` -> bytes (a JVM memory size)."""
    match = re.fullmatch(r"(\d+)([kmgt]?)", size.strip().lower())
    if match is None:
        raise BrokerError(f"not a JVM memory size: {size!r} (e.g. 512m)")
    return int(match.group(1)) << (10 * " kmgt".index(match.group(2) or " "))


def new_cluster_id() -> str:
    """A random cluster id as Kafka makes them (base64url of 16 bytes, never starting with -)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # would read as an option on the command line
            return cluster_id


def properties_text(props: Mapping[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n")

    return "".join(f"{key}={escape(value)}\n" for key, value in props.items())


def read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                props[key.strip()] = value.strip()
    return props


class BrokerConfig:
    """Writes a :class:`~tools.kafka_broker.KafkaBroker`'s configuration (a mixin)."""

    data_dir: Path
    port: int | None
    controller_port: int | None
    partitions: int
    config: dict[str, str]
    version: str
    heap: str
    _fixed_controller: bool
    _cds_dump: tuple[Path, Path] | None

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

    def _choose_ports(self) -> None:
        previous = read_properties(self.data_dir / "ports")
        old, old_ctl = (int(previous.get(k, "0") or 0) for k in ("port", "controller.port"))
        if self.port is None:
            if old and old != self.controller_port and port_free(old):
                self.port = old  # keep the address of the previous run in this data dir
        elif not port_free(self.port):
            raise BrokerError(f"port {self.port} on {HOST} is already in use")
        if self.controller_port is not None and not port_free(self.controller_port):
            if self._fixed_controller:
                raise BrokerError(f"controller port {self.controller_port} is already in use")
            self.controller_port = None  # only the broker itself uses it: any port will do
        if self.controller_port is None and old_ctl and old_ctl != self.port:
            self.controller_port = old_ctl if port_free(old_ctl) else None
        if self.port is None or self.controller_port is None:
            fresh = [p for p in free_ports(3) if p not in (self.port, self.controller_port)]
            if self.port is None:
                self.port = fresh.pop(0)
            if self.controller_port is None:
                self.controller_port = fresh.pop(0)
        write_atomic(
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
        write_atomic(self.properties_file, properties_text(props))
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
        write_atomic(self.data_dir / "log4j2.properties", properties_text(log4j))

    def _jvm_options(self, kind: str) -> list[str]:
        extra = shlex.split(os.environ.get("RISKSTREAM_KAFKA_JAVA_OPTS", ""))
        heap = self.heap if kind == "broker" else "256m"
        opts = [f"-Xmx{heap}", f"-Xms{min(size_bytes(heap), 64 * 2**20)}"]
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
        elif cds_enabled():
            broker_jsa, format_jsa = cds_archives(kafka_home(self.version))
            archive = broker_jsa if kind == "broker" else format_jsa
            if archive.is_file():
                opts += ["-Xshare:auto", f"-XX:SharedArchiveFile={archive}"]
        return opts + extra
