"""The widgets: the chat reads like a chat (Enter sends, a busy mark, notes, newest reply in
view), every widget builds under ipywidgets 7.7 (Colab's) and 8 (the lock's), and a saved
widget becomes a static snapshot for the tour's pages."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("ipywidgets")

from perso_kit.llm import get_llm  # noqa: E402
from perso_kit.roles.conversation import Conversation  # noqa: E402
from perso_kit.widgets import chat_box, snapshot_html, snapshot_widgets  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EMPTY_UPDATE = {"genres": [], "exclude_genres": [], "moods": [], "exclude_moods": [],
                "decades": [], "max_runtime": None, "liked_titles": [], "disliked_titles": [],
                "exclude_titles": []}


class ScriptedLLM:
    """Answers each dialogue request with the next scripted update (None: a failed call),
    and notes what the chat box showed while it was being asked."""

    label = "scripted test model"

    def __init__(self, updates, box_holder):
        self.updates, self.box_holder, self.seen_while_busy = list(updates), box_holder, []

    def chat(self, messages, **kw):
        box = self.box_holder.get("box")
        if box is not None:
            self.seen_while_busy.append((box.send_button.disabled, box.text.disabled,
                                         box.status.value))
        update = self.updates.pop(0)
        return SimpleNamespace(ok=update is not None, data=update)


def press_enter(text_widget, typed: str) -> None:
    """What the browser does on Enter when ``continuous_update`` is off (ipywidgets 7.7 and
    8): the typed value reaches the kernel, then the (deprecated) ``submit`` event."""
    text_widget.value = typed
    text_widget._handle_string_msg(None, {"event": "submit"}, None)


def test_enter_sends_once_and_the_reply_shows_the_systems_notes(demo):
    title = demo.items["title"].iloc[0]
    refusing = {**EMPTY_UPDATE, "genres": ["Comedy", "Space Opera"], "max_runtime": 30,
                "exclude_titles": [title, "No Such Film (2099)"]}
    holder = {}
    llm = ScriptedLLM([refusing, None], holder)
    box = holder["box"] = chat_box(Conversation(llm, demo, k=3))
    press_enter(box.text, "a comedy under 30 minutes, not " + title)
    history = box.children[0].value
    assert history.count("<b>you:</b>") == 1                       # one Enter, one message
    assert box.text.value == ""
    # the notes: the demo world has no film under 58 minutes, so the runtime wish was relaxed
    assert demo.items["runtime"].min() > 30
    assert "I had to relax: runtime" in history
    assert "I will not recommend: " + title.replace("'", "&#x27;") in history
    assert "No Such Film (2099) (exclude_titles)" in history and "Space Opera (genres)" in history
    assert "LLM call failed" not in history
    # a failed call says so
    box.send("anything")
    history = box.children[0].value
    assert history.count("<b>you:</b>") == 2 and "the LLM call failed" in history
    # busy while each call ran, idle after
    assert [(b, t) for b, t, _ in llm.seen_while_busy] == [(True, True), (True, True)]
    assert all("thinking..." in s for _, _, s in llm.seen_while_busy)
    assert not box.send_button.disabled and "thinking" not in box.status.value
    assert "scripted test model" in box.status.value


def test_a_clean_turn_has_no_notes_and_the_newest_reply_is_kept_in_view(demo):
    holder = {}
    llm = ScriptedLLM([{**EMPTY_UPDATE, "genres": ["Drama"]}] * 2, holder)
    box = holder["box"] = chat_box(Conversation(llm, demo, k=3))
    box.send("a drama")
    box.send("another drama")
    history = box.children[0].value
    assert "note:" not in history
    # the pane lays its content out bottom-up: it opens scrolled to the end, the newest reply
    assert "flex-direction:column-reverse" in history and "overflow-y:auto" in history
    assert history.index("another drama") > history.index("a drama</p>")


def test_a_failing_call_leaves_the_box_usable(demo):
    class Broken(ScriptedLLM):
        def chat(self, messages, **kw):
            raise RuntimeError("planted failure")

    box = chat_box(Conversation(Broken([], {}), demo, k=3))
    with pytest.raises(RuntimeError):
        box.send("hello")
    assert not box.send_button.disabled and not box.text.disabled
    assert "thinking" not in box.status.value


# ------------------------------------------------------------------ ipywidgets 7.7 and 8
BUILD_EVERY_WIDGET = textwrap.dedent("""
    import json, warnings
    import pandas as pd
    import ipywidgets
    from perso_kit import widgets as W
    from perso_kit.data.demo import make_world
    from perso_kit.llm import get_llm
    from perso_kit.roles.conversation import Conversation

    warnings.simplefilter("error", DeprecationWarning)   # nothing deprecated in either version
    key = W.api_key_box()
    table = pd.DataFrame({"user_id": [1, 1], "item_id": [5, 5], "title": ["Alpha", "Alpha"],
                          "source": ["template", "LLM"], "explanation": ["because", "since"],
                          "bad_citations": [[], ["Beta"]], "bad_attributes": [[], []],
                          "call_ok": [True, True]})
    explorer = W.explanation_explorer(table)
    chat = W.chat_box(Conversation(get_llm(cache_path="off"), make_world(seed=0).dataset, k=3))
    chat.text.value = "a comedy from the 90s, no horror"      # Enter, as the browser sends it
    chat.text._handle_string_msg(None, {"event": "submit"}, None)
    print(json.dumps({"version": ipywidgets.__version__,
                      "key_box": [type(c).__name__ for c in key.children],
                      "explorer": "not in history: Beta" in explorer.children[1].value,
                      "chat_messages": chat.children[0].value.count("<b>you:</b>")}))
""")


def build_every_widget(extra_path: str | None = None) -> dict:
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([extra_path, str(REPO)])
    run = subprocess.run([sys.executable, "-c", BUILD_EVERY_WIDGET], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def ipywidgets_7_folder() -> Path:
    """ipywidgets 7.7 (Colab's major version) and the one module it needs that 8 dropped,
    installed once into the cache (``PERSO_KIT_CACHE_DIR``); the other packages it imports
    (traitlets, ipykernel, IPython) are the environment's."""
    from perso_kit.config import cache_dir

    folder = cache_dir() / "ipywidgets-7.7"
    if (folder / "ipywidgets").is_dir():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    run = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--retries", "0", "--timeout", "20", "--target", str(partial),
                          "ipywidgets==7.7.*", "ipython_genutils==0.2.0"],
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.skip("ipywidgets 7.7 could not be installed (no package index reachable?): "
                    + (run.stderr.strip().splitlines() or ["pip failed"])[-1])
    partial.rename(folder)
    return folder


def test_every_widget_builds_and_enter_sends_under_ipywidgets_8():
    facts = build_every_widget()
    assert facts["version"].startswith("8.")
    assert facts["key_box"] == ["Dropdown", "Password", "Text", "Text", "FloatText", "Button",
                                "HTML"]
    assert facts["explorer"] is True and facts["chat_messages"] == 1


def test_every_widget_builds_and_enter_sends_under_ipywidgets_7():
    facts = build_every_widget(str(ipywidgets_7_folder()))
    assert facts["version"].startswith("7.7")
    assert facts["key_box"] == ["Dropdown", "Password", "Text", "Text", "FloatText", "Button",
                                "HTML"]
    assert facts["explorer"] is True and facts["chat_messages"] == 1


def test_pyproject_allows_ipywidgets_7_7_and_the_lock_keeps_8():
    import tomllib

    course = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["course"]
    assert "ipywidgets>=7.7" in course
    lock = (REPO / "requirements-lock.txt").read_text().splitlines()
    assert any(line.startswith("ipywidgets==8.") for line in lock)


# ------------------------------------------------------------------ static snapshots
def saved_state(*models):
    return {mid: {"model_name": name, "state": state} for mid, name, state in models}


def test_a_snapshot_shows_what_each_part_showed_and_never_a_password():
    state = saved_state(
        ("box", "VBoxModel", {"children": ["IPY_MODEL_pick", "IPY_MODEL_key", "IPY_MODEL_row"]}),
        ("pick", "DropdownModel", {"description": "Backend", "index": 1,
                                   "_options_labels": ["OpenAI", "Azure OpenAI"]}),
        ("key", "PasswordModel", {"description": "API key", "value": "sk-planted-secret"}),
        ("row", "HBoxModel", {"children": ["IPY_MODEL_go", "IPY_MODEL_msg"]}),
        ("go", "ButtonModel", {"description": "Connect"}),
        ("msg", "HTMLModel", {"value": "<i>Not connected</i>"}))
    page = snapshot_html(state, "box")
    assert "<b>Backend</b>" in page and "Azure OpenAI" in page and ">OpenAI<" not in page
    assert "<b>API key</b>" in page and "planted" not in page
    assert ">Connect</span>" in page and "<i>Not connected</i>" in page
    assert "flex-direction:row" in page                              # the HBox stays a row
    assert "was not saved" in snapshot_html(state, "missing")


def test_snapshot_widgets_replaces_views_and_drops_the_state():
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("box")
    view = {"model_id": "go", "version_major": 2, "version_minor": 0}
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": view, "text/plain": "Button(...)"})]
    progress = nbformat.v4.new_code_cell("bar")
    progress.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {**view, "model_id": "bar"}})]
    nb.cells = [cell, progress, nbformat.v4.new_code_cell("1")]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": saved_state(("go", "ButtonModel", {"description": "Go"}),
                             ("bar", "FloatProgressModel", {"value": 3, "max": 4}))}}
    assert snapshot_widgets(nb) == 2
    assert "widgets" not in nb.metadata
    html = cell.outputs[0]["data"]["text/html"]
    assert ">Go</span>" in html and "interactive in Jupyter" in html
    bar = progress.outputs[0]["data"]["text/html"]
    assert "<progress value='3' max='4'>" in bar and "interactive" not in bar   # no control
    assert "application/vnd.jupyter.widget-view+json" not in json.dumps(nb)


def test_offline_llm_label_reaches_the_status_line(demo):
    box = chat_box(Conversation(get_llm(cache_path="off"), demo, k=3))
    assert "not an LLM" in box.status.value
