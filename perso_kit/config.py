"""Settings read from the environment, in one place.

=========================  ===================================================================
variable                   meaning
=========================  ===================================================================
``PERSO_KIT_DATASET``      dataset the notebooks load by default (``demo``)
``PERSO_KIT_DATA_DIR``     a folder holding already-downloaded or extracted MovieLens files
                           (``ml-100k/``, ``ml-1m/``, ``ml-latest-small/`` or their zips)
``PERSO_KIT_CACHE_DIR``    where downloads and the LLM cache live (``<repo>/data/cache`` when the
                           kit runs from a checkout, else ``~/.cache/perso-kit``)
``PERSO_KIT_SEED``         the default seed (``42``)
=========================  ===================================================================

A relative path in any of these variables, or in ``PERSO_KIT_LLM_CACHE`` /
``PERSO_KIT_LLM_REPLAY``, means a path from the folder the command ran in: commands that start
kernels (the tour, the recording) make them absolute first (:func:`absolute_path_variables`),
since the kernels run in ``notebooks/``.

The LLM backend has its own variables; see :mod:`perso_kit.llm`.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
#: small files the kit ships (the demo world's vocabulary, the LLM price table, ...)
SHIPPED_DATA_DIR = REPO_DIR / "data" if (REPO_DIR / "data").is_dir() else PACKAGE_DIR / "_data"

DEFAULT_SEED = 42


@contextlib.contextmanager
def environment(**values: str):
    """Set environment variables for the duration of a ``with`` block (kernels started inside
    it inherit them), then put back what was there before.

    >>> with environment(PERSO_KIT_SEED="7"):
    ...     seed()
    7
    """
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: environment variables that name a file or folder (``off``/``none`` turn the LLM cache off)
PATH_VARIABLES = ("PERSO_KIT_LLM_CACHE", "PERSO_KIT_LLM_REPLAY", "PERSO_KIT_DATA_DIR",
                  "PERSO_KIT_CACHE_DIR")


def absolute_path_variables(base: str | Path | None = None) -> dict[str, str]:
    """The :data:`PATH_VARIABLES` set to relative paths, made absolute against ``base`` (the
    current folder by default): pass them to :func:`environment` before starting a process that
    runs elsewhere, so ``PERSO_KIT_LLM_CACHE=class.sqlite`` means the same file for it.

    >>> with environment(PERSO_KIT_LLM_REPLAY="class.sqlite", PERSO_KIT_LLM_CACHE="off"):
    ...     absolute_path_variables("/course")
    {'PERSO_KIT_LLM_REPLAY': '/course/class.sqlite'}
    """
    base = Path(base) if base is not None else Path.cwd()
    out = {}
    for var in PATH_VARIABLES:
        value = os.environ.get(var, "").strip()
        if not value or value.lower() in ("off", "none", "0"):
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            out[var] = str(base / path)
    return out


def seed() -> int:
    """The default seed: ``PERSO_KIT_SEED`` or 42."""
    return int(os.environ.get("PERSO_KIT_SEED", DEFAULT_SEED))


def default_dataset() -> str:
    """The dataset notebooks load unless told otherwise: ``PERSO_KIT_DATASET`` or ``"demo"``."""
    return os.environ.get("PERSO_KIT_DATASET", "").strip() or "demo"


def data_dir() -> Path | None:
    """The folder named by ``PERSO_KIT_DATA_DIR``, or ``None``."""
    value = os.environ.get("PERSO_KIT_DATA_DIR")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Where the kit writes downloads and caches; created on first use."""
    value = os.environ.get("PERSO_KIT_CACHE_DIR")
    if value:
        path = Path(value).expanduser()
    elif (REPO_DIR / "pyproject.toml").exists():
        path = REPO_DIR / "data" / "cache"
    else:
        path = Path.home() / ".cache" / "perso-kit"
    path.mkdir(parents=True, exist_ok=True)
    return path
