"""Which backend to talk to, with which key: :class:`Settings`, read from the environment.

The key is held in a :class:`Secret`: it stays in memory, its ``repr`` and ``str`` say
``<hidden>``, it refuses to be pickled, and error messages are scrubbed of it. It comes from an
environment variable, or from :func:`set_api_key` (what the password box of
:func:`perso_kit.widgets.api_key_box` calls) -- never from a file the kit writes.

>>> s = Settings.resolve(backend="openai", api_key="sk-example-123")
>>> "sk-example" in repr(s)
False
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlparse

from .. import config
from .reply import STAND_IN_MODEL

BACKENDS = ("offline", "local", "openai", "azure", "compatible", "replay")
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_OPENAI_EMBED_MODEL = "text-embedding-3-small"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
OPENAI_URL = "https://api.openai.com/v1"


class Secret:
    """A string that does not show itself: ``repr``/``str`` print ``<hidden>``; pickling and
    copying into JSON fail. Call :meth:`reveal` only where the value must be used."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):
        raise TypeError("a Secret cannot be pickled or saved")


_KEYS: dict[str, Secret] = {}


def set_api_key(key: str, backend: str = "openai") -> None:
    """Keep an API key in memory for ``backend`` ("openai", "azure" or "compatible"); it takes
    precedence over the environment. Nothing is written anywhere."""
    if backend not in ("openai", "azure", "compatible"):
        raise ValueError(f"keys are for 'openai', 'azure' or 'compatible', not {backend!r}")
    key = (key or "").strip()
    if key:
        _KEYS[backend] = Secret(key)
    else:
        _KEYS.pop(backend, None)


def clear_api_keys() -> None:
    """Forget every key given with :func:`set_api_key`."""
    _KEYS.clear()


def known_secrets() -> list[str]:
    """Every key value the process knows (memory and environment), for scrubbing text."""
    values = [s.reveal() for s in _KEYS.values()]
    for var in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY"):
        if os.environ.get(var):
            values.append(os.environ[var])
    return [v for v in values if len(v) >= 6]


def scrub(text: str, extra: list[str] | None = None) -> str:
    """``text`` with every known key (and ``extra`` values) replaced by ``<hidden>``."""
    for secret in known_secrets() + list(extra or []):
        if secret:
            text = text.replace(secret, "<hidden>")
    return re.sub(r"\b(sk-[A-Za-z0-9_\-]{3})[A-Za-z0-9_\-]{12,}", r"\1…<hidden>", text)


def is_local_url(url: str | None) -> bool:
    """True for a server on this machine or a private network (free to call)."""
    if not url:
        return False
    host = (urlparse(url).hostname or "").lower()
    return (host in ("localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal")
            or host.endswith(".local") or host.startswith(("10.", "192.168."))
            or re.match(r"172\.(1[6-9]|2\d|3[01])\.", host) is not None)


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@dataclass(repr=False)
class Settings:
    """Everything :class:`~perso_kit.llm.client.LLM` needs to reach a backend.

    Build it with :meth:`resolve`, which fills what is not given from the environment (see the
    table in :mod:`perso_kit.llm`).
    """

    backend: str = "offline"
    model: str | None = None
    embed_model: str | None = None
    base_url: str | None = None
    api_key: Secret | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    replay_path: str | None = None
    cache_path: str | None = None
    budget_usd: float | None = None
    timeout_s: float = 60.0
    max_retries: int = 4
    price_as: str | None = None
    titles_only: bool = False
    json_mode: str | None = None
    local_model: str | None = None

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "api_key":
                v = "<hidden>" if v else None
            if v is not None:
                parts.append(f"{f.name}={v!r}" if f.name != "api_key" else f"api_key={v}")
        return f"Settings({', '.join(parts)})"

    @property
    def is_local(self) -> bool:
        return self.backend in ("offline", "local") or (self.backend == "compatible"
                                                        and is_local_url(self.base_url))

    @classmethod
    def resolve(cls, backend: str | None = None, model: str | None = None, **kw) -> "Settings":
        """Settings from the arguments, else the environment, else the offline stand-in.

        Raises ``ValueError`` naming the variable to set when a chosen backend lacks something
        (a key, an endpoint, a replay file).
        """
        unknown = set(kw) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}; known: "
                            f"{[f.name for f in fields(cls)]}")
        backend = (backend or _env("PERSO_KIT_LLM_BACKEND") or "").lower() or _infer_backend()
        if backend not in BACKENDS:
            raise ValueError(f"unknown LLM backend {backend!r}; choose one of {BACKENDS} "
                             "(argument backend= or PERSO_KIT_LLM_BACKEND)")
        s = cls(backend=backend)
        s.model = model or _env("PERSO_KIT_LLM_MODEL")
        s.embed_model = kw.pop("embed_model", None) or _env("PERSO_KIT_EMBED_MODEL")
        key = kw.pop("api_key", None)
        if key is not None and not isinstance(key, Secret):
            key = Secret(key)
        budget = kw.pop("budget_usd", None)
        if budget is None and _env("PERSO_KIT_LLM_BUDGET_USD"):
            try:
                budget = float(_env("PERSO_KIT_LLM_BUDGET_USD"))
            except ValueError:
                raise ValueError("PERSO_KIT_LLM_BUDGET_USD must be a number of dollars, e.g. "
                                 "0.50") from None
        s.budget_usd = budget
        timeout = kw.pop("timeout_s", None)
        s.timeout_s = _timeout(timeout if timeout is not None
                               else _env("PERSO_KIT_LLM_TIMEOUT") or 60.0)
        retries = kw.pop("max_retries", None)
        s.max_retries = int(retries if retries is not None else 4)
        s.price_as = kw.pop("price_as", None) or _env("PERSO_KIT_LLM_PRICE_AS")
        s.json_mode = kw.pop("json_mode", None) or _env("PERSO_KIT_LLM_JSON_MODE")
        titles_only = kw.pop("titles_only", None)
        if titles_only is None:
            titles_only = (_env("PERSO_KIT_LLM_TITLES_ONLY") or "0").lower() in ("1", "true", "yes")
        s.titles_only = bool(titles_only)
        cache = kw.pop("cache_path", None)
        if cache is None:
            cache = _env("PERSO_KIT_LLM_CACHE")
        if cache is None:
            cache = str(config.cache_dir() / "llm_cache.sqlite")
        s.cache_path = None if str(cache).lower() in ("off", "none", "0", "") else str(cache)

        if backend == "openai":
            s.api_key = key or _KEYS.get("openai") or _secret_env("OPENAI_API_KEY")
            if not s.api_key:
                raise ValueError("the openai backend needs a key: set OPENAI_API_KEY, or enter it "
                                 "in perso_kit.widgets.api_key_box(), or choose "
                                 "backend='offline'")
            s.base_url = kw.pop("base_url", None) or _env("OPENAI_BASE_URL") or OPENAI_URL
            s.model = s.model or DEFAULT_OPENAI_MODEL
            s.embed_model = s.embed_model or DEFAULT_OPENAI_EMBED_MODEL
        elif backend == "compatible":
            s.base_url = kw.pop("base_url", None) or _env("OPENAI_BASE_URL")
            if not s.base_url:
                raise ValueError("the compatible backend needs the server's URL: set "
                                 "OPENAI_BASE_URL, e.g. http://localhost:11434/v1 for Ollama")
            s.api_key = key or _KEYS.get("compatible") or _secret_env("OPENAI_API_KEY")
        elif backend == "local":
            from .local import start_server
            server = start_server(model or kw.pop("local_model", None))
            s.base_url, s.model = server.base_url, server.alias
            s.local_model = str(server.model_path)
            s.json_mode = s.json_mode or "json_object"  # llama.cpp's schema-constrained decoding
            if not _env("PERSO_KIT_LLM_TIMEOUT"):
                s.timeout_s = 600.0  # one CPU answers requests one at a time: queues are long
        elif backend == "azure":
            s.azure_endpoint = kw.pop("azure_endpoint", None) or _env("AZURE_OPENAI_ENDPOINT")
            s.api_key = key or _KEYS.get("azure") or _secret_env("AZURE_OPENAI_API_KEY")
            s.api_version = (kw.pop("api_version", None) or _env("OPENAI_API_VERSION")
                             or DEFAULT_AZURE_API_VERSION)
            s.model = s.model or _env("AZURE_OPENAI_DEPLOYMENT")
            if not s.azure_endpoint or not s.api_key:
                raise ValueError("the azure backend needs AZURE_OPENAI_ENDPOINT and "
                                 "AZURE_OPENAI_API_KEY (and the deployment name in "
                                 "PERSO_KIT_LLM_MODEL)")
            if not s.model:
                raise ValueError("the azure backend needs the deployment name: set "
                                 "PERSO_KIT_LLM_MODEL (or AZURE_OPENAI_DEPLOYMENT)")
        elif backend == "replay":
            path = kw.pop("replay_path", None) or _env("PERSO_KIT_LLM_REPLAY")
            if not path:
                raise ValueError("replay needs a recorded file: set PERSO_KIT_LLM_REPLAY to the "
                                 ".sqlite file your teacher recorded")
            if not Path(path).expanduser().exists():
                raise ValueError(f"replay file {path} not found (PERSO_KIT_LLM_REPLAY)")
            s.replay_path = str(Path(path).expanduser())
            s.cache_path = None  # replay reads the recording only, and never writes
        else:  # offline
            s.model = STAND_IN_MODEL
        for name in ("base_url", "azure_endpoint", "api_version", "replay_path"):
            if name in kw and kw[name] is not None:
                setattr(s, name, kw.pop(name))
        return s


def _timeout(value) -> float:
    """A request timeout in seconds, from an argument or ``PERSO_KIT_LLM_TIMEOUT``.

    >>> _timeout("90"), _timeout(1.5)
    (90.0, 1.5)
    >>> _timeout("abc")
    Traceback (most recent call last):
    ...
    ValueError: PERSO_KIT_LLM_TIMEOUT (timeout_s) must be a number of seconds above 0, e.g. 60; got 'abc'
    """
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("PERSO_KIT_LLM_TIMEOUT (timeout_s) must be a number of seconds above 0, "
                         f"e.g. 60; got {value!r}")
    return seconds


def _secret_env(name: str) -> Secret | None:
    value = _env(name)
    return Secret(value) if value else None


def _infer_backend() -> str:
    if _env("PERSO_KIT_LLM_REPLAY"):
        return "replay"
    if _env("AZURE_OPENAI_ENDPOINT"):
        return "azure"
    if _env("OPENAI_BASE_URL"):
        return "compatible"
    if _env("OPENAI_API_KEY") or "openai" in _KEYS:
        return "openai"
    if "compatible" in _KEYS:
        return "compatible"
    return "offline"


def make_client(s: Settings, stand_in=None):
    """The ``openai`` SDK client for ``s`` (None for replay). The SDK's own retries are off:
    the kit retries itself (see :meth:`~perso_kit.llm.client.LLM.chat`)."""
    import openai

    if s.backend == "replay":
        return None
    if s.backend == "offline":
        from .offline import stand_in_client
        return stand_in_client(stand_in, timeout=s.timeout_s)
    if s.backend == "azure":
        return openai.AzureOpenAI(api_key=s.api_key.reveal(), azure_endpoint=s.azure_endpoint,
                                  api_version=s.api_version, max_retries=0, timeout=s.timeout_s)
    key = s.api_key.reveal() if s.api_key else "not-needed"  # local servers ignore the key
    return openai.OpenAI(api_key=key, base_url=s.base_url, max_retries=0, timeout=s.timeout_s)
