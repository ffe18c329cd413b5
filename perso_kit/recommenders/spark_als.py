"""Implicit-feedback ALS fitted by Apache Spark, behind the kit's :class:`Recommender` interface.

The same model as :class:`~perso_kit.recommenders.ALS` (weighted matrix factorization, Hu,
Koren & Volinsky 2008), fitted by ``pyspark.ml.recommendation.ALS``. Spark splits the users and
the items into blocks and solves each block where its data lives, so the same code fits on the
two cores of a laptop (``master="local[2]"``, the default) or on a cluster of machines
(``master="spark://host:7077"``, or a session that ``spark-submit`` created)::

    model = SparkALS(rank=32, reg_param=0.1, max_iter=15).fit(split.train)
    recs = model.recommend(users=[1, 2, 3], k=10)

Only the fit runs in Spark. The learned vectors come back to this process as numpy arrays
(``user_factors_``, ``item_factors_``), and scoring and ranking are the base class's, exactly as
for every other model (a user's score for an item is the dot product of their vectors).

How Spark's ALS differs from ``implicit``'s (the kit's :class:`ALS`)
    * Confidence: the same, ``1 + alpha`` for an observed cell (the kit sends 1 for each
      interaction; Spark's confidence is ``1 + alpha * |r|``), 1 for the others.
    * Regularization: Spark multiplies ``reg_param`` by the number of interactions of each user
      (and of each item), the "weighted-lambda" of Zhou et al. 2008; ``implicit`` applies one
      ``regularization`` to every vector. So the numbers are not on the same scale: a user with
      ``n`` interactions is penalized ``reg_param * n`` here. Matching settings means choosing
      each on validation data, not copying the number.
    * Initial vectors: drawn by each library's own generator, so the fitted vectors differ even
      with the same seed.

Reproducibility: with a ``seed``, a fixed ``num_blocks`` and the same input, Spark in local mode
gives the same vectors on every run (the input is cut into ``num_blocks`` partitions by a
fixed rule, and the blocks' initial vectors come from the seed). On a cluster the sums that
build each least-squares problem may be added in another order, so expect equality up to
floating-point rounding, not bit for bit.

Requirements: ``pyspark`` (``pip install "perso-kit[scale]"``) and a Java runtime, 17 or 11
(on Debian or Ubuntu: ``apt-get install default-jre-headless``). Without them, :func:`check_spark`
says what is missing; nothing here imports ``pyspark`` until a model is fitted.
"""
from __future__ import annotations

import os
import shutil
import time

import numpy as np

from .. import config
from ..data.dataset import Dataset
from .base import Recommender
from .mf import FactorModel

INSTALL_HINT = ('install it with: pip install "perso-kit[scale]" (or pip install '
                '"pyspark>=3.5,<4"), and a Java runtime (17 or 11): on Debian or Ubuntu, '
                "apt-get install default-jre-headless")

#: Spark sessions this module started, by master URL (reused by later fits; see stop_spark)
_SESSIONS: dict = {}


class SparkUnavailable(RuntimeError):
    """Raised when ``pyspark`` or a Java runtime is missing (the message says how to install)."""


def spark_missing() -> str | None:
    """Why Spark cannot run here (``None`` when it can): ``pyspark`` not importable, or no
    ``java`` on the PATH nor under ``JAVA_HOME``.

    >>> spark_missing() is None or "install" in spark_missing()
    True
    """
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return f"pyspark is not installed; {INSTALL_HINT}"
    home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (home and os.path.exists(os.path.join(home, "bin",
                                                                               "java"))):
        return f"no Java runtime (java is not on the PATH and JAVA_HOME is not set); {INSTALL_HINT}"
    return None


def check_spark() -> None:
    """Raise :class:`SparkUnavailable` with install instructions when Spark cannot run here."""
    why = spark_missing()
    if why:
        raise SparkUnavailable(why)


def spark_session(master: str = "local[2]", app_name: str = "perso-kit"):
    """A Spark session for ``master``, started once and reused (starting Java costs seconds).

    ``master`` is ``"local[2]"`` (this machine, two cores), ``"local[*]"`` (all cores) or a
    cluster's URL (``"spark://host:7077"``, ``"yarn"``, ``"k8s://..."``). Spark's own logging
    is turned down to errors, and its web UI is off. :func:`stop_spark` stops the sessions
    started here. A session that already runs in this process (one ``spark-submit`` or
    ``pyspark`` made) is reused whatever ``master`` says.
    """
    check_spark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if master in _SESSIONS:
        return _SESSIONS[master]
    quiet = f"-Dlog4j2.configurationFile={_log_config()}"
    session = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.driver.extraJavaOptions", quiet)
               .config("spark.executor.extraJavaOptions", quiet)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.driver.memory", os.environ.get("PERSO_KIT_SPARK_MEMORY", "1g"))
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    _SESSIONS[master] = session
    return session


#: Spark's logging, down to errors (written once into the kit's cache folder; Java reads a file)
LOG_CONFIG = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


def _log_config() -> str:
    path = config.cache_dir() / "spark-log4j2.properties"
    if not path.exists() or path.read_text() != LOG_CONFIG:
        path.write_text(LOG_CONFIG)
    return str(path)


def stop_spark() -> None:
    """Stop the Spark sessions this module started (sessions passed in are left alone)."""
    while _SESSIONS:
        _, session = _SESSIONS.popitem()
        session.stop()


def jvm_cpu_seconds() -> float | None:
    """CPU seconds (user + system) used so far by the Java process behind the local Spark
    session and any other process it started (Spark's work runs there, not in Python), or
    ``None`` without ``psutil`` or a local session. Read it before and after a fit to charge
    the fit its Java CPU. (``resource.getrusage(RUSAGE_CHILDREN)`` would not do: it counts
    child processes only once they have ended, and the session's Java process lives on.)"""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil ships with the course's Jupyter stack
        return None
    total, found = 0.0, False
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            found = found or "java" in child.name().lower()
        except psutil.Error:  # pragma: no cover - a process that just ended
            continue
        total += t.user + t.system
    return total if found else None


class SparkALS(FactorModel):
    """Implicit-feedback ALS fitted by Spark (``pyspark.ml``); see the module docstring.

    Parameters
    ----------
    rank : int
        Length of the user and item vectors (``factors`` in the kit's :class:`ALS`).
    reg_param : float
        L2 penalty, multiplied by each user's (each item's) number of interactions: Spark's
        ``regParam``, not on the scale of :class:`ALS`'s ``regularization``.
    alpha : float
        Confidence of an observed interaction is ``1 + alpha`` (unobserved cells weigh 1).
    max_iter : int
        Alternating sweeps (Spark's ``maxIter``).
    seed : int, optional
        Seeds Spark's initial vectors (default :func:`perso_kit.config.seed`).
    num_blocks : int
        Partitions of the input and blocks of users and of items (Spark's ``numUserBlocks``
        and ``numItemBlocks``). Fixed, with the seed, so a fit is reproducible; on a cluster,
        raise it to a few times the number of cores.
    master : str
        Where Spark runs: ``"local[2]"`` (default), ``"local[*]"``, ``"spark://host:7077"``...
        Ignored when ``spark`` is given or a session already runs in this process.
    spark : SparkSession, optional
        A session to use (e.g. the one ``spark-submit`` created); it is never stopped here.

    Example
    -------
    >>> from perso_kit import load_dataset                              # doctest: +SKIP
    >>> model = SparkALS(rank=16, max_iter=5).fit(load_dataset("demo"))  # doctest: +SKIP
    >>> model.user_factors_.shape                                       # doctest: +SKIP
    (1000, 16)
    """

    def __init__(self, rank: int = 32, reg_param: float = 0.1, alpha: float = 1.0,
                 max_iter: int = 15, seed: int | None = None, num_blocks: int = 2,
                 master: str = "local[2]", spark=None):
        if int(rank) < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        if reg_param < 0:
            raise ValueError(f"reg_param must be >= 0, got {reg_param}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be at least 1, got {max_iter}")
        if int(num_blocks) < 1:
            raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
        self.rank = int(rank)
        self.reg_param = float(reg_param)
        self.alpha = float(alpha)
        self.max_iter = int(max_iter)
        self.seed = seed
        self.num_blocks = int(num_blocks)
        self.master = master
        self.spark = spark

    def __sklearn_clone__(self) -> "SparkALS":
        """An unfitted copy with the same parameters, sharing the same Spark session (a
        session cannot be copied)."""
        return type(self)(**self.get_params(deep=False))

    def _session(self):
        return self.spark if self.spark is not None else spark_session(self.master)

    def fit(self, train: Dataset) -> "SparkALS":
        """Fit in Spark on ``train``'s interactions (one per user and item, value 1), then
        bring the vectors back as numpy arrays. Sets ``user_factors_`` (users x rank, zeros
        for a user without interactions), ``item_factors_`` (items x rank, likewise),
        ``fit_s`` (wall seconds) and ``jvm_cpu_s`` (the local Java process's CPU seconds
        during the fit, ``None`` when not measurable). The first fit also starts Java (seconds);
        call :func:`spark_session` beforehand to keep that out of the fit's time."""
        check_spark()
        super().fit(train)
        from pyspark.ml.recommendation import ALS as _SparkALS

        spark = self._session()
        X = train.matrix().tocoo()
        rows = list(zip(X.row.tolist(), X.col.tolist(), X.data.astype(float).tolist()))
        jvm0, t0 = jvm_cpu_seconds(), time.perf_counter()
        frame = spark.createDataFrame(rows, "user int, item int, rating float",
                                      ).repartition(self.num_blocks, "user")
        als = _SparkALS(rank=self.rank, regParam=self.reg_param, alpha=self.alpha,
                        maxIter=self.max_iter, implicitPrefs=True, nonnegative=False,
                        numUserBlocks=self.num_blocks, numItemBlocks=self.num_blocks,
                        userCol="user", itemCol="item", ratingCol="rating",
                        seed=config.seed() if self.seed is None else int(self.seed))
        model = als.fit(frame)
        self.user_factors_ = _factors(model.userFactors, train.n_users, self.rank)
        self.item_factors_ = _factors(model.itemFactors, train.n_items, self.rank)
        jvm1 = jvm_cpu_seconds()
        self.fit_s = time.perf_counter() - t0
        self.jvm_cpu_s = None if jvm1 is None else jvm1 - (jvm0 or 0.0)
        return self


def _factors(frame, n: int, rank: int) -> np.ndarray:
    """Spark's ``id, features`` vectors as an ``n x rank`` float32 array (rows of ids Spark
    never saw stay zero)."""
    out = np.zeros((n, rank), dtype=np.float32)
    for row in frame.collect():
        out[row["id"]] = row["features"]
    return out


def fit_timed(model: Recommender, train: Dataset) -> dict:
    """Fit ``model`` on ``train``; return its wall seconds and CPU seconds, the CPU of this
    process plus that of Spark's Java process (:func:`jvm_cpu_seconds`; 0 for a model that
    does not use Spark). Keys: ``fit_wall_s``, ``fit_cpu_s``, ``fit_cpu_python_s``,
    ``fit_cpu_jvm_s``."""
    jvm0, cpu0, t0 = jvm_cpu_seconds(), time.process_time(), time.perf_counter()
    model.fit(train)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    jvm1 = jvm_cpu_seconds()      # None before Java started: all its CPU is this fit's
    jvm = 0.0 if jvm1 is None else jvm1 - (jvm0 or 0.0)
    return {"fit_wall_s": wall, "fit_cpu_s": cpu + jvm, "fit_cpu_python_s": cpu,
            "fit_cpu_jvm_s": jvm}


def side_by_side(models: dict, split, k: int = 10, ci: float = 0.95):
    """Fit each model on ``split.train`` (timed by :func:`fit_timed`) and evaluate it by the
    kit's protocol: one row per model with NDCG@k and recall@k, each with its bootstrap
    interval over users (``ci``), and the fit's wall and CPU seconds."""
    import pandas as pd

    from ..evaluate import evaluate

    rows = []
    for name, model in models.items():
        times = fit_timed(model, split.train)
        r = evaluate(model, split, k=k, fit=False, progress=False, ci=ci).iloc[0]
        rows.append({"model": name, **{c: float(r[c]) for m in ("ndcg", "recall")
                                       for c in (f"{m}@{k}", f"{m}@{k}_lo", f"{m}@{k}_hi")},
                     "fit_wall_s": times["fit_wall_s"], "fit_cpu_s": times["fit_cpu_s"]})
    return pd.DataFrame(rows)


def recorded_benchmark(path=None) -> dict:
    """The results ``benchmarks/spark_als.py --save`` recorded (shipped with the kit as
    ``data/benchmarks/spark_als.json``): ``rows`` (one per model) and how they were measured
    (``command``, ``date``, ``machine``, ``load``, ``dataset``, ``settings``)."""
    import json

    path = path or config.SHIPPED_DATA_DIR / "benchmarks" / "spark_als.json"
    return json.loads(open(path, encoding="utf-8").read())
