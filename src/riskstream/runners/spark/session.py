"""The Spark session for the Spark runner: Kafka connector jars, worker Python, small defaults.

The connector (``spark-sql-kafka-0-10_2.13``, same version as pyspark) and its dependencies
(kafka-clients, commons-pool2, the Kafka token provider) resolve from Maven Central through
``spark.jars.packages`` at start, into an Ivy cache under ``~/.cache/riskstream/ivy`` (or
``RISKSTREAM_IVY_DIR``), so only the first start downloads them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from riskstream.errors import UsageError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: pyspark is pinned to this version (pyproject's ``spark`` extra); Maven Central serves the
#: Kafka connector only up to 4.2.0.
SPARK_VERSION = "4.2.0"
KAFKA_PACKAGE = f"org.apache.spark:spark-sql-kafka-0-10_2.13:{SPARK_VERSION}"


class SparkUnavailable(UsageError):
    """pyspark is not installed (``pip install 'riskstream[spark]'``) or does not match."""


def ivy_dir() -> Path:
    """Where resolved connector jars are cached between runs."""
    env = os.environ.get("RISKSTREAM_IVY_DIR")
    return Path(env) if env else Path.home() / ".cache" / "riskstream" / "ivy"


def check_pyspark() -> None:
    """Raise :class:`SparkUnavailable` with one clear line when pyspark is missing or mismatched."""
    try:
        import pyspark
    except ImportError:
        raise SparkUnavailable(
            "--engine spark needs pyspark: pip install 'riskstream[spark]'"
        ) from None
    if pyspark.__version__ != SPARK_VERSION:
        raise SparkUnavailable(
            f"--engine spark needs pyspark=={SPARK_VERSION} (found {pyspark.__version__}): "
            "the Kafka connector on Maven Central stops at that version"
        )


def under_spark_submit() -> bool:
    """True when this driver was launched by ``spark-submit`` (it then owns master and jars)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(
    master: str | None = "local[2]",
    *,
    app_name: str = "riskstream",
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """A Spark session with the Kafka connector, the current Python for workers, and defaults
    sized for micro-batches (few shuffle partitions, Arrow on, UI off)."""
    check_pyspark()
    # Workers must run this interpreter (the one riskstream is installed in), not the system one.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    ivy = ivy_dir()
    ivy.mkdir(parents=True, exist_ok=True)
    cores = _cores(master or "")
    settings: dict[str, str] = {
        "spark.jars.packages": KAFKA_PACKAGE,
        "spark.jars.ivy": str(ivy),
        "spark.sql.shuffle.partitions": str(max(2, cores)),
        # A micro-batch is one small job: adaptive execution would submit each of its stages
        # as a job of its own (a driver round trip between stages) to re-plan partitions the
        # runner already sizes to the cores.
        "spark.sql.adaptive.enabled": "false",
        "spark.default.parallelism": str(max(2, cores)),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": "1g",
        "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.python.worker.reuse": "true",
    }
    settings.update(conf or {})
    builder = SparkSession.builder.appName(app_name)
    if master is None and not under_spark_submit():
        master = "local[2]"
    if master is not None:
        builder = builder.master(master)
    for k, v in settings.items():
        builder = builder.config(k, v)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _cores(master: str) -> int:
    if master.startswith("local[") and master.endswith("]"):
        inner = master[6:-1]
        if inner.isdigit():
            return int(inner)
        return os.cpu_count() or 2
    return 2
