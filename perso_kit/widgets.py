"""ipywidgets front ends for the notebooks. One function per widget.

:func:`api_key_box`
    a password box for an API key (OpenAI, Azure OpenAI or an OpenAI-compatible server) that
    connects the kit to that backend. The key goes to memory only
    (:func:`perso_kit.llm.set_api_key`): the box clears itself as soon as the key is read, so
    the key is never in the notebook file, its widget state or any output.
:func:`explanation_explorer`
    recommendations with template and LLM explanations side by side, failed checks in red.
:func:`chat_box`
    a chat with a conversational recommender: Enter sends, a busy mark, the system's notes.
:func:`snapshot_widgets`
    for static pages: each widget of an executed notebook drawn as HTML from its saved state
    (no script), as the tour's pages show them.

They use only controls that exist in ipywidgets 7.7 (Colab's) and 8.
"""
from __future__ import annotations

import html


def api_key_box(on_connect=None, backend: str = "openai", budget_usd: float | None = 1.0):
    """A small form to connect to an LLM backend with a key typed in a password field.

    Parameters
    ----------
    on_connect : callable, optional
        Called with the new :class:`~perso_kit.llm.client.LLM` after a successful connect.
    backend : {"openai", "azure", "compatible"}
        The backend selected at first.
    budget_usd : float or None
        The spending cap pre-filled in the form (0 or empty: no cap).

    Returns
    -------
    ipywidgets.VBox
        Display it; after "Connect", ``box.llm`` holds the client (None before).

    Example
    -------
    >>> box = api_key_box()          # doctest: +SKIP
    >>> box                          # shows the form; type the key, press Connect  # doctest: +SKIP
    >>> llm = box.llm                # the connected client (the key is not printed anywhere)  # doctest: +SKIP
    """
    import ipywidgets as w

    from .llm import get_llm, set_api_key
    from .llm.backends import scrub

    style = {"description_width": "9em"}
    layout = w.Layout(width="34em")
    choice = w.Dropdown(options=[("OpenAI", "openai"), ("Azure OpenAI", "azure"),
                                 ("OpenAI-compatible server (Ollama, vLLM, ...)", "compatible")],
                        value=backend, description="Backend", style=style, layout=layout)
    key = w.Password(description="API key", placeholder="stays in memory; never saved",
                     style=style, layout=layout)
    url = w.Text(description="URL (optional)", style=style, layout=layout,
                 placeholder="http://localhost:11434/v1, or https://<resource>.openai.azure.com")
    model = w.Text(description="Model (optional)", style=style, layout=layout,
                   placeholder="gpt-4o-mini, an Azure deployment, llama3.2 ...")
    budget = w.FloatText(description="Budget (USD)", value=budget_usd or 0.0, style=style)
    button = w.Button(description="Connect", button_style="primary", icon="plug")
    status = w.HTML("<i>Not connected: the notebooks use the offline stand-in.</i>")
    box = w.VBox([choice, key, url, model, budget, button, status])
    box.llm = None

    def connect(_=None):
        typed, key.value = key.value, ""  # read once, then clear the field and its state
        if typed:
            set_api_key(typed, choice.value)
        kw = {}
        if url.value.strip():
            kw["azure_endpoint" if choice.value == "azure" else "base_url"] = url.value.strip()
        try:
            llm = get_llm(choice.value, model=model.value.strip() or None,
                          budget_usd=budget.value if budget.value and budget.value > 0 else None,
                          **kw)
        except (ValueError, TypeError) as e:
            status.value = (f"<span style='color:#b00020'>Could not connect: "
                            f"{html.escape(scrub(str(e), [typed]))}</span>")
            return
        box.llm = llm
        status.value = llm.banner()._repr_html_()
        if on_connect is not None:
            on_connect(llm)

    button.on_click(connect)
    box.connect = connect
    return box


def explanation_explorer(table, user_ids=None):
    """Pick a user; see their recommendations with the template and LLM explanations side by
    side, failed faithfulness checks highlighted in red.

    Parameters
    ----------
    table : DataFrame
        From :func:`perso_kit.roles.explainer.explain_recommendations` (columns ``user_id,
        item_id, title, source, explanation, bad_citations, bad_attributes, call_ok`` ...).
    user_ids : list, optional
        Users offered in the drop-down (default: every user in ``table``).

    Returns
    -------
    ipywidgets.VBox
    """
    import ipywidgets as w

    users = list(dict.fromkeys(table["user_id"])) if user_ids is None else list(user_ids)
    sources = list(dict.fromkeys(table["source"]))
    pick = w.Dropdown(options=users, description="user")
    out = w.HTML()

    def cell(row) -> str:
        if row is None:
            return "<td>-</td>"
        problems = []
        if not row.get("call_ok", True):
            problems.append("no usable answer")
        problems += [f"not in history: {html.escape(str(t))}" for t in row["bad_citations"]]
        problems += [f"not true of the item: {html.escape(str(a))}"
                     for a in row["bad_attributes"]]
        problems += [f"not shared: {html.escape(str(t))} is not {html.escape(str(a))}"
                     for t, a in row.get("bad_relations", None) or []]
        style = "background:#fde0e0" if problems else "background:#e6f4e6"
        note = ("<br><small><b>failed:</b> " + "; ".join(problems) + "</small>"
                if problems else "<br><small>checks passed</small>")
        return f"<td style='{style};vertical-align:top'>{html.escape(row['explanation'])}{note}</td>"

    def show(_=None):
        sub = table[table["user_id"] == pick.value]
        head = "".join(f"<th>{html.escape(str(s))}</th>" for s in sources)
        body = []
        for item_id, g in sub.groupby("item_id", sort=False):
            by_src = {r["source"]: r for r in g.to_dict("records")}
            title = html.escape(str(g["title"].iloc[0]))
            drivers = g["drivers"].iloc[0] if "drivers" in g else None
            drv = (f"<br><small>kNN drivers: {html.escape(', '.join(drivers))}</small>"
                   if isinstance(drivers, list) and drivers else "")
            body.append(f"<tr><td style='vertical-align:top'><b>{title}</b>{drv}</td>"
                        + "".join(cell(by_src.get(s)) for s in sources) + "</tr>")
        out.value = (f"<table style='border-collapse:collapse'><tr><th>recommended</th>{head}"
                     f"</tr>{''.join(body)}</table>")

    pick.observe(show, names="value")
    show()
    return w.VBox([pick, out])


def chat_box(conversation):
    """A chat with a :class:`~perso_kit.roles.conversation.Conversation`: history pane, text
    box, Send and Reset; each answer shows its picks as a small table (title, year, genres)
    and the system's notes (wishes it had to relax, values it could not use, titles it will
    not recommend again, a failed LLM call).

    Enter in the text box sends, as Send does. While a message is being read the box and
    the buttons are disabled and the status line says "thinking...". The history keeps the
    newest reply in view: it scrolls from the bottom (a column laid out bottom-up), so no
    script is needed, in JupyterLab, Notebook 7, VS Code or Colab alike.

    Parameters
    ----------
    conversation : perso_kit.roles.conversation.Conversation

    Returns
    -------
    ipywidgets.VBox
        Display it. ``box.send(text)`` sends a message from code (what Send and Enter do);
        ``box.text``, ``box.send_button``, ``box.status`` are its parts.

    Example
    -------
    >>> box = chat_box(Conversation(get_llm(), dataset, k=5))   # doctest: +SKIP
    >>> box                                       # type, press Enter or Send  # doctest: +SKIP
    """
    import ipywidgets as w

    history = w.HTML()
    text = w.Text(placeholder="e.g. a comedy from the 90s, no horror, under two hours",
                  layout=w.Layout(width="34em"))
    send_button = w.Button(description="Send", button_style="primary")
    reset_button = w.Button(description="Reset")
    label = getattr(conversation.llm, "label", "")
    idle = f"<small>Understanding by: {html.escape(str(label))}</small>"
    status = w.HTML(idle)
    parts: list[str] = []

    def show(body: str) -> None:
        history.value = _chat_history_html(body)

    def send(message: str | None = None):
        message = (text.value if message is None else message).strip()
        text.value = ""
        if not message:
            return None
        controls = (text, send_button, reset_button)
        for c in controls:
            c.disabled = True
        status.value = "<small><i>thinking...</i></small>"
        try:
            turn = conversation.send(message)
        finally:
            for c in controls:
                c.disabled = False
            status.value = idle
        parts.append(f"<p><b>you:</b> {html.escape(message)}</p>")
        parts.append(chat_reply_html(turn))
        show("".join(parts))
        return turn

    def reset(_=None):
        conversation.reset()
        parts.clear()
        show("<i>New conversation.</i>")

    send_button.on_click(lambda _: send())
    reset_button.on_click(reset)
    _on_enter(text, send)
    reset()
    box = w.VBox([history, w.HBox([text, send_button, reset_button]), status])
    box.send, box.text, box.send_button, box.status = send, text, send_button, status
    return box


def _on_enter(text, send) -> None:
    """Make Enter in ``text`` call ``send()``, the way ipywidgets 7.7 and 8 both recommend
    (``on_submit`` is deprecated in both): with ``continuous_update`` off, the typed value
    reaches the kernel once, on Enter (or when the box loses focus, as when Send is clicked).
    ``send`` clears the box; the change to "" sends nothing."""
    text.continuous_update = False
    text.observe(lambda change: send() if change["new"].strip() else None, names="value")


def _chat_history_html(body: str) -> str:
    """The history pane: a box that scrolls and starts at its bottom (``column-reverse``),
    so the newest reply is the one in view."""
    return ("<div style='max-height:28em;overflow-y:auto;display:flex;"
            "flex-direction:column-reverse;border:1px solid #ddd;padding:4px'>"
            f"<div class='perso-chat-log'>{body}</div></div>")


def _text(value) -> str:
    """A table cell: sequences (genres) as "A, B", missing values as "-"."""
    if isinstance(value, (list, tuple, set)):
        return ", ".join(map(str, value))
    try:
        if value is None or value != value:  # None or NaN
            return "-"
    except (TypeError, ValueError):
        pass
    return str(value)


def _minutes(value) -> str:
    return "-" if _text(value) == "-" else f"{_text(value)} min"


def chat_reply_html(turn) -> str:
    """One system reply of the chat as HTML: the notes first (what it relaxed, what it could
    not use, what it will not recommend, a failed call), then the picks and the question.

    Parameters
    ----------
    turn : perso_kit.roles.conversation.Turn
    """
    esc = html.escape
    notes = []
    if not turn.reply_ok:
        notes.append("the LLM call failed: nothing new was understood")
    if turn.relaxed:
        notes.append("I had to relax: " + esc(", ".join(map(str, turn.relaxed)))
                     + " (too few films matched everything)")
    refused = [t for key in ("disliked_titles", "exclude_titles")
               for t in (turn.update.get(key) or [])
               if (key, t) not in set(map(tuple, turn.dropped))]
    if refused:
        notes.append("I will not recommend: " + esc(", ".join(map(str, refused))))
    if turn.dropped:
        notes.append("I could not use: " + esc(", ".join(f"{v} ({k})" for k, v in turn.dropped)))
    note = "".join(f"<div class='perso-chat-note' style='color:#8a4b00'><small>note: {n}"
                   "</small></div>" for n in notes)
    rows = "".join(f"<tr><td>{i + 1}</td><td>{esc(_text(r.title))}</td>"
                   f"<td>{esc(_text(r.year))}</td><td>{esc(_text(r.genres))}</td>"
                   f"<td>{esc(_text(getattr(r, 'mood', None)))}</td>"
                   f"<td>{esc(_minutes(getattr(r, 'runtime', None)))}</td></tr>"
                   for i, r in enumerate(turn.recommendations.itertuples()))
    table = ("<table style='font-size:90%'><tr><th>#</th><th>title</th><th>year</th>"
             f"<th>genres</th><th>mood</th><th>runtime</th></tr>{rows}</table>")
    ask = ""
    if turn.question:
        ask = ("Which " + esc(str(turn.question["attribute"])) + ": "
               + esc(" or ".join(map(str, turn.question["options"]))) + "?")
    return f"<div><b>system:</b>{note}{table}<p>{ask}</p></div>"


# ------------------------------------------------------------------ widgets in static pages
#: how an output refers to a widget, and where an executed notebook keeps every widget's state
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SNAPSHOT_NOTE = "a snapshot of the widget as the run left it; interactive in Jupyter"


def snapshot_html(state: dict, model_id: str) -> str:
    """A static HTML picture of a saved widget: what its parts showed when the notebook
    finished (labels, values, choices, buttons, HTML panes), with no script.

    Parameters
    ----------
    state : dict
        ``{model_id: {"model_name": ..., "state": {...}}}``, the ``state`` of the widget
        state an executed notebook keeps in ``metadata.widgets``.
    model_id : str
        The widget to draw (an output's ``application/vnd.jupyter.widget-view+json``).

    A password box is drawn empty whatever its state says.

    >>> state = {"b": {"model_name": "ButtonModel", "state": {"description": "Send"}},
    ...          "t": {"model_name": "TextModel", "state": {"description": "Ask", "value": "hi"}},
    ...          "v": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_t", "IPY_MODEL_b"]}}}
    >>> print(snapshot_html(state, "v"))  # doctest: +NORMALIZE_WHITESPACE
    <div style='display:flex;flex-direction:column;gap:4px'><div><b>Ask</b>
    <span style='border:1px solid #bbb;padding:1px 6px;display:inline-block;min-width:8em'>hi</span></div><div><span
    style='border:1px solid #999;border-radius:3px;padding:1px 10px;background:#eee'>Send</span></div></div>
    """
    return _snapshot(state, model_id, 0)


_BOXES = {"VBoxModel": "column", "BoxModel": "column", "GridBoxModel": "column",
          "AccordionModel": "column", "TabModel": "column", "StackModel": "column",
          "HBoxModel": "row"}
_SELECTIONS = {"DropdownModel", "SelectModel", "RadioButtonsModel", "ToggleButtonsModel",
               "SelectionSliderModel", "SelectionRangeSliderModel", "SelectMultipleModel"}


def _snapshot(state: dict, model_id: str, depth: int) -> str:
    esc = html.escape
    model = state.get(model_id)
    if model is None or depth > 20:
        return "<i>(a widget whose state was not saved)</i>"
    name, s = model.get("model_name", ""), model.get("state", {})
    desc = s.get("description") or ""
    label = f"<b>{esc(str(desc))}</b> " if desc else ""
    field = ("<span style='border:1px solid #bbb;padding:1px 6px;display:inline-block;"
             "min-width:8em'>{}</span>")
    if name in _BOXES:
        kids = [c[len("IPY_MODEL_"):] if str(c).startswith("IPY_MODEL_") else str(c)
                for c in s.get("children", [])]
        titles = s.get("titles") or s.get("_titles") or {}
        if isinstance(titles, dict):
            titles = [titles.get(str(i), "") for i in range(len(kids))]
        inner = "".join(
            f"<div>{f'<b>{esc(str(titles[i]))}</b><br>' if i < len(titles) and titles[i] else ''}"
            f"{_snapshot(state, k, depth + 1)}</div>" for i, k in enumerate(kids))
        return (f"<div style='display:flex;flex-direction:{_BOXES[name]};gap:4px'>"
                f"{inner}</div>")
    if name in ("HTMLModel", "HTMLMathModel"):
        return f"{label}{s.get('value', '')}"
    if name == "LabelModel":
        return f"{label}{esc(str(s.get('value', '')))}"
    if name == "ButtonModel":
        return ("<span style='border:1px solid #999;border-radius:3px;padding:1px 10px;"
                f"background:#eee'>{esc(str(desc))}</span>")
    if name == "PasswordModel":
        return label + field.format("&nbsp;")
    if name in _SELECTIONS:
        labels = list(s.get("_options_labels", []))
        index = s.get("index")
        picked = [labels[i] for i in (index if isinstance(index, (list, tuple)) else [index])
                  if isinstance(i, int) and 0 <= i < len(labels)]
        return label + field.format(esc(", ".join(map(str, picked))))
    if name in ("FloatProgressModel", "IntProgressModel"):
        return (f"{label}<progress value='{esc(str(s.get('value', 0)))}' "
                f"max='{esc(str(s.get('max', 100)))}'></progress>")
    if name == "OutputModel":
        return "".join(_snapshot_output(o) for o in s.get("outputs", []))
    if "value" in s or name.endswith(("TextModel", "TextareaModel", "SliderModel",
                                      "CheckboxModel", "ProgressModel")):
        value = s.get("value", "")
        shown = esc(str(value)) if value not in ("", None) else \
            f"<span style='color:#999'>{esc(str(s.get('placeholder') or '')) or '&nbsp;'}</span>"
        return label + field.format(shown)
    return f"{label}<i>[{esc(name.removesuffix('Model'))}]</i>"


def _snapshot_output(output: dict) -> str:
    """An output captured by an ``Output`` widget, as HTML (HTML, PNG or text)."""
    data = output.get("data", {})
    if output.get("output_type") == "stream":
        return f"<pre>{html.escape(''.join(output.get('text', '')))}</pre>"
    if "text/html" in data:
        return "".join(data["text/html"])
    if "image/png" in data:
        return f"<img src='data:image/png;base64,{''.join(data['image/png']).strip()}'>"
    if "text/plain" in data:
        return f"<pre>{html.escape(''.join(data['text/plain']))}</pre>"
    return ""


def snapshot_widgets(nb) -> int:
    """Replace every widget output of an executed notebook (``nbformat`` node, changed in
    place) by :func:`snapshot_html` and a note saying it is a snapshot, and drop the saved
    widget state: a page converted from it needs no widget script. Returns how many
    widget outputs were replaced."""
    widgets = nb.metadata.pop("widgets", {}) or {}
    state = widgets.get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            model_id = view.get("model_id", "")
            note = (f"<div style='color:#777;font-size:85%;margin-top:4px'>({SNAPSHOT_NOTE})"
                    "</div>" if _has_controls(state, model_id) else "")
            output["data"] = {
                "text/html": ("<div class='perso-widget-snapshot' style='border:1px dashed #bbb;"
                              f"padding:6px'>{snapshot_html(state, model_id)}{note}</div>"),
                "text/plain": output["data"].get("text/plain", "")}
            replaced += 1
    return replaced


def _has_controls(state: dict, model_id: str, depth: int = 0) -> bool:
    """Does the saved widget hold something to type in, pick or press (not only text and
    progress bars, as a progress bar does)?"""
    model = state.get(model_id)
    if model is None or depth > 20:
        return False
    name = model.get("model_name", "")
    if name in _BOXES:
        return any(_has_controls(state, str(c).removeprefix("IPY_MODEL_"), depth + 1)
                   for c in model.get("state", {}).get("children", []))
    return name not in ("HTMLModel", "HTMLMathModel", "LabelModel", "FloatProgressModel",
                        "IntProgressModel", "OutputModel")
