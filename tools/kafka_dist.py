"""The Kafka broker's distribution: its jars (fetched once from Maven Central into a cache),
``java``, the class path and the class-data-sharing start-up archive."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools._service import (
    file_lock,
    logger,
)

DEFAULT_VERSION = "4.3.1"
"""Apache Kafka version used unless ``RISKSTREAM_KAFKA_VERSION`` says otherwise."""

SCALA_VERSION = "2.13"

# log4j version of Kafka's own log4j-core, per Kafka version; only a first guess for the
# slf4j -> log4j binding, which fetch re-resolves when the resolved jars disagree.
_LOG4J_GUESS = {"4.3.1": "2.25.4"}
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


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


log = logger("kafka")


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


def cds_enabled() -> bool:
    return os.environ.get("RISKSTREAM_KAFKA_CDS", "1").strip().lower() not in {"0", "false", "no"}


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
        tail = quote((proc.stdout + proc.stderr).splitlines(), 25)
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
    cds = cds_enabled() if cds is None else cds
    if _marker_ok(home) and (not cds or cds_settled(home)):
        return home / "libs"
    with file_lock(home / ".lock"):
        if not _marker_ok(home):
            if not quiet:
                log(f"downloading Apache Kafka {version} jars from Maven Central into {home}")
            started = time.monotonic()
            jars = _download(version, home)
            marker = {"version": version, "jars": jars, "fetched_at": int(time.time())}
            (home / ".complete").write_text(json.dumps(marker, indent=1) + "\n")
            if not quiet:
                size = sum((home / "libs" / jar).stat().st_size for jar in jars)
                log(
                    f"fetched {len(jars)} jars ({size / 2**20:.0f} MiB) "
                    f"in {time.monotonic() - started:.1f}s"
                )
        if cds and not cds_settled(home):
            _build_cds(version, home, quiet=quiet)
    return home / "libs"


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


def classpath(libs: Path) -> str:
    # An explicit sorted list (not libs/*): the class-data-sharing archive needs the same order.
    return os.pathsep.join(str(jar) for jar in sorted(libs.glob("*.jar")))


def _java_key() -> str:
    java = Path(java_executable()).resolve()
    stat = java.stat()
    return hashlib.sha1(f"{java}:{stat.st_mtime_ns}:{stat.st_size}".encode()).hexdigest()[:12]


def cds_archives(home: Path) -> tuple[Path, Path]:
    """(broker archive, format-tool archive) for the current java."""
    key = _java_key()
    return home / "cds" / f"{key}-broker.jsa", home / "cds" / f"{key}-format.jsa"


def cds_settled(home: Path) -> bool:
    """True once an archive was built for this java, or building one failed (not retried)."""
    broker, _ = cds_archives(home)
    return broker.is_file() or broker.with_suffix(".failed").is_file()


def _build_cds(version: str, home: Path, *, quiet: bool) -> None:
    broker_jsa, format_jsa = cds_archives(home)
    broker_jsa.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        log("recording a class-data-sharing archive of a warm broker (once, ~15 s)")
    started = time.monotonic()
    tmp_broker = broker_jsa.with_suffix(".tmp")
    tmp_format = format_jsa.with_suffix(".tmp")
    for stale in (tmp_broker, tmp_format):
        stale.unlink(missing_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="cds-", dir=home) as tmp:
            from tools.kafka_broker import KafkaBroker  # the broker starts from these jars

            broker = KafkaBroker(Path(tmp), version=version)
            broker._cds_dump = (tmp_broker, tmp_format)
            broker.start()
            try:
                _exercise(broker)
            except Exception as exc:  # best effort: the archive is useful without it
                if not quiet:
                    log(f"warm-up traffic failed ({exc}); recording the archive anyway")
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
            log(f"no class-data-sharing archive (start-up will be slower): {exc}")
        return
    if not quiet:
        log(f"class-data-sharing archive recorded in {time.monotonic() - started:.1f}s")


def _exercise(broker: Any) -> None:
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


_STACK_FRAME = re.compile(r"^\s+at \S|^\s*\.\.\. \d+ more")


def quote(lines: Sequence[str], count: int) -> str:
    """The last ``count`` lines, Java stack frames left out, each prefixed with ``  | ``."""
    kept = [line for line in lines if line.strip() and not _STACK_FRAME.match(line)]
    return "\n".join(f"  | {line}" for line in kept[-count:])


def tail(path: Path, lines: int = 30, start: int = 0) -> str:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = start if start <= size else 0
            handle.seek(max(start, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return quote(data.decode("utf-8", "replace").splitlines(), lines)
