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


def seed() -> int:
    """The default seed: ``PERSO_KIT_SEED`` or 42."""
    return int(os.environ.get("PERSO_KIT_SEED", DEFAULT_SEED))


def default_dataset() -> str:
    """The dataset notebooks load unless told otherwise: ``PERSO_KIT_DATASET`` or ``"demo"``."""
    return os.environ.get("PERSO_KIT_DATASET", "demo")


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
