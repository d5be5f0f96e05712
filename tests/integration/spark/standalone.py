"""A real Spark standalone cluster (a master and workers) started from pyspark's own jars.

``java -cp pyspark/jars/* org.apache.spark.deploy.master.Master`` and ``...worker.Worker``: the
same classes ``sbin/start-master.sh`` runs, without a Spark distribution.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StandaloneCluster:
    """Master + ``workers`` workers of ``cores`` cores each, on 127.0.0.1."""

    def __init__(self, work: Path, workers: int = 2, cores: int = 1) -> None:
        import pyspark

        self.home = Path(pyspark.__file__).parent
        self.work = work
        self.workers = workers
        self.cores = cores
        self.port = _free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def _java(self, cls: str, *args: str, log: str) -> subprocess.Popen[bytes]:
        java = shutil.which("java") or "java"
        # pyspark's jars are not a Spark release (no RELEASE file): without the Scala version the
        # worker's executor launcher looks for a source build and fails ("Cannot find any build
        # directories").
        env = dict(
            os.environ,
            SPARK_HOME=str(self.home),
            SPARK_LOCAL_IP="127.0.0.1",
            SPARK_SCALA_VERSION="2.13",
        )
        out = (self.work / log).open("wb")
        cmd = [java, "-Xmx256m", "-cp", f"{self.home / 'jars'}/*", cls, *args]
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)

    def start(self, timeout: float = 180.0) -> None:
        """Start the master, then the workers; wait until every worker has registered."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.procs.append(
            self._java(
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--webui-port",
                str(_free_port()),
                log="master.log",
            )
        )
        for i in range(self.workers):
            wdir = self.work / f"worker{i}"
            wdir.mkdir(exist_ok=True)
            self.procs.append(
                self._java(
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    str(self.cores),
                    "--memory",
                    "1g",
                    "--webui-port",
                    str(_free_port()),
                    "--work-dir",
                    str(wdir),
                    self.url,
                    log=f"worker{i}.log",
                )
            )
        deadline = time.monotonic() + timeout
        master_log = self.work / "master.log"
        while time.monotonic() < deadline:
            text = master_log.read_text(errors="replace") if master_log.exists() else ""
            if text.count("Registering worker") >= self.workers:
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a Spark daemon exited: {text[-2000:]}")
            time.sleep(0.5)
        raise RuntimeError(f"the workers did not register within {timeout}s")

    def stop(self) -> None:
        """Stop every daemon."""
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
