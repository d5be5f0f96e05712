#!/usr/bin/env python3
"""A throw-away local PostgreSQL cluster for development and tests (like ``tools/kafka.py``).

Standard library only. Uses Debian's ``postgresql`` server binaries
(``/usr/lib/postgresql/<version>/bin``; installed with ``apt-get`` when missing and we are
root). ``initdb`` runs as the ``postgres`` user when we are root (PostgreSQL refuses to run as
root); trust authentication on 127.0.0.1 only, no Unix socket, ``fsync=off`` (a test cluster:
fast, not crash-safe), a free port.

Commands::

    python tools/postgres.py start --data-dir .postgres    # prints the DSN
    python tools/postgres.py status --data-dir .postgres   # exit 0 when running, 1 when not
    python tools/postgres.py dsn --data-dir .postgres      # prints the DSN of a started cluster
    python tools/postgres.py stop --data-dir .postgres

``start`` is idempotent: a running cluster is left alone and its DSN printed again.

Importable (``from tools.postgres import PostgresCluster``)::

    with PostgresCluster(tmp_path / "pg") as pg:
        psycopg.connect(pg.dsn)
        pg.restart()              # same port, same data; restart(crash=True) SIGKILLs first

Layout of a data dir: ``port`` and ``cluster`` (the path of the cluster directory). The cluster
directory is ``DATA_DIR/cluster`` when the ``postgres`` user can reach it, otherwise (pytest's
0700 temporary directories) a directory under ``/var/tmp/riskstream-postgres/`` named after the
data dir's absolute path. It holds the server's files and ``server.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

if __package__ in (None, ""):  # run as a script (python tools/postgres.py): import tools.* too
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools._service import HOST, can_connect, file_lock, free_port, logger, pid_alive, wait_until

_log = logger("postgres")

STARTUP_TIMEOUT = 60.0
SIDE_ROOT = Path("/var/tmp/riskstream-postgres")


class PostgresError(RuntimeError):
    """The cluster could not be installed, created, started or stopped (one-line reason)."""


def bin_dir() -> Path:
    """The newest installed server's ``bin`` directory; installs Debian's package if none."""
    found = _find_bin()
    if found is None:
        _install()
        found = _find_bin()
    if found is None:
        raise PostgresError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
    return found


def _find_bin() -> Path | None:
    env = os.environ.get("RISKSTREAM_PG_BIN")
    if env:
        return Path(env) if (Path(env) / "initdb").exists() else None
    dirs = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()]
    if not dirs:
        return None
    return max(dirs, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def _install() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresError(
            "PostgreSQL server binaries are missing: install Debian's 'postgresql' package"
        )
    _log("installing Debian's postgresql package (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise PostgresError(f"{' '.join(cmd)} failed: {tail[0]}")


def _as_server_user(cmd: list[str]) -> list[str]:
    """``cmd`` run as ``postgres`` when we are root (the server refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _server_user_ids() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


class PostgresCluster:
    """One local cluster whose state lives under ``data_dir``."""

    def __init__(self, data_dir: Path | str, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._port = port

    # ---- where things are ----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            stored = self.data_dir / "port"
            self._port = int(stored.read_text()) if stored.exists() else free_port()
        return self._port

    @property
    def dsn(self) -> str:
        """A libpq URI for the ``postgres`` database as the ``postgres`` superuser (trust)."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    @property
    def cluster_dir(self) -> Path:
        recorded = self.data_dir / "cluster"
        if recorded.exists():
            return Path(recorded.read_text().strip())
        own = self.data_dir / "pgdata"
        if _server_user_ids() is None or self._reachable(self.data_dir):
            return own
        digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:16]
        return SIDE_ROOT / digest

    @property
    def log_file(self) -> Path:
        return self.cluster_dir.parent / (self.cluster_dir.name + ".log")

    @staticmethod
    def _reachable(path: Path) -> bool:
        proc = subprocess.run(
            _as_server_user(["test", "-x", str(path), "-a", "-w", str(path)]),
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    # ---- lifecycle -----------------------------------------------------------------------

    def is_running(self) -> bool:
        pid_file = self.cluster_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return False
        return can_connect(self.port)

    def start(self) -> PostgresCluster:
        """Create the cluster if needed and start it; a running one is left alone."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.data_dir / ".lock"):
            if self.is_running():
                return self
            binaries = bin_dir()
            cluster = self.cluster_dir
            (self.data_dir / "cluster").write_text(str(cluster))
            if not (cluster / "PG_VERSION").exists():
                self._initdb(binaries, cluster)
            if can_connect(self.port):
                raise PostgresError(f"port {self.port} on {HOST} is taken by another process")
            (self.data_dir / "port").write_text(str(self.port))
            self._pg_ctl(binaries, "start")
        return self

    def _initdb(self, binaries: Path, cluster: Path) -> None:
        if cluster.exists():
            shutil.rmtree(cluster)
        cluster.parent.mkdir(parents=True, exist_ok=True)
        cluster.mkdir(mode=0o700)
        ids = _server_user_ids()
        if ids is not None:
            os.chown(cluster, *ids)
            if cluster.parent != self.data_dir:
                os.chown(cluster.parent, *ids)
        proc = subprocess.run(
            _as_server_user(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(cluster),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise PostgresError(f"initdb failed: {tail[0]}")
        with open(cluster / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# riskstream throw-away cluster (tools/postgres.py)\n"
                f"listen_addresses = '{HOST}'\n"
                "unix_socket_directories = ''\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 128MB\n"
                "max_wal_size = 1GB\n"
            )
        (cluster / "pg_hba.conf").write_text(
            "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
        )

    def _pg_ctl(self, binaries: Path, action: str, *extra: str) -> None:
        cmd = [str(binaries / "pg_ctl"), action, "-D", str(self.cluster_dir), "-w", *extra]
        if action == "start":
            cmd += ["-t", str(int(STARTUP_TIMEOUT)), "-l", str(self.log_file)]
            cmd += ["-o", f"-p {self.port}"]
            ids = _server_user_ids()
            self.log_file.touch()
            if ids is not None:
                os.chown(self.log_file, *ids)
        proc = subprocess.run(
            _as_server_user(cmd), capture_output=True, text=True, check=False, cwd="/"
        )
        if proc.returncode != 0:
            tail = self._log_tail() or (proc.stderr or proc.stdout).strip()
            last = tail.splitlines()[-1] if tail else "?"
            raise PostgresError(f"pg_ctl {action} failed: {last}")
        if action == "start" and not wait_until(lambda: can_connect(self.port), STARTUP_TIMEOUT):
            raise PostgresError(f"the server did not listen on {HOST}:{self.port}")

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, *, crash: bool = False) -> None:
        """Stop the server (fast shutdown; ``crash`` SIGKILLs the postmaster instead)."""
        pid_file = self.cluster_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        if crash:
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int(pid_file.read_text().splitlines()[0])
                os.kill(pid, signal.SIGKILL)
                wait_until(lambda: not pid_alive(pid), 10)
            # Orphaned backends exit once the postmaster is gone; wait for the port.
            wait_until(lambda: not can_connect(self.port), 10)
            return
        if not self.is_running():
            return
        self._pg_ctl(bin_dir(), "stop", "-m", "fast")

    def restart(self, *, crash: bool = False, down_s: float = 0.0) -> PostgresCluster:
        """Stop (or SIGKILL) and start again on the same port with the same data."""
        self.stop(crash=crash)
        time.sleep(down_s)
        return self.start()

    def destroy(self) -> None:
        """Stop and delete the cluster's files."""
        self.stop()
        cluster = self.cluster_dir
        shutil.rmtree(cluster, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.log_file.unlink()

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"PostgresCluster({str(self.data_dir)!r}, port={self._port})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=["start", "stop", "status", "dsn", "destroy"])
    parser.add_argument("--data-dir", default=".postgres", help="state directory (.postgres)")
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    args = parser.parse_args(argv)
    cluster = PostgresCluster(args.data_dir, args.port)
    try:
        if args.command == "start":
            cluster.start()
            print(cluster.dsn)
        elif args.command == "stop":
            cluster.stop()
        elif args.command == "destroy":
            cluster.destroy()
        elif args.command == "status":
            running = cluster.is_running()
            print(f"running {cluster.dsn}" if running else "stopped")
            return 0 if running else 1
        else:
            if not (cluster.data_dir / "port").exists():
                raise PostgresError(f"no cluster in {str(cluster.data_dir)!r} (start one first)")
            print(cluster.dsn)
    except PostgresError as exc:
        print(f"postgres: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
