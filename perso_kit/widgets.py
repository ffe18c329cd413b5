"""ipywidgets front ends for the notebooks. One function per widget.

:func:`api_key_box`
    a password box for an API key (OpenAI, Azure OpenAI or an OpenAI-compatible server) that
    connects the kit to that backend. The key goes to memory only
    (:func:`perso_kit.llm.set_api_key`): the box clears itself as soon as the key is read, so
    the key is never in the notebook file, its widget state or any output.
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
    box, Send and Reset; each answer shows its picks as a small table (title, year, genres).

    Parameters
    ----------
    conversation : perso_kit.roles.conversation.Conversation

    Returns
    -------
    ipywidgets.VBox
        Display it. ``box.send(text)`` sends a message from code (what the buttons do).

    Example
    -------
    >>> box = chat_box(Conversation(get_llm(), dataset, k=5))   # doctest: +SKIP
    >>> box                                                    # type, press Send  # doctest: +SKIP
    """
    import ipywidgets as w

    history = w.HTML(layout=w.Layout(max_height="28em", overflow="auto",
                                     border="1px solid #ddd", padding="4px"))
    text = w.Text(placeholder="e.g. a comedy from the 90s, no horror, under two hours",
                  layout=w.Layout(width="34em"))
    send_button = w.Button(description="Send", button_style="primary")
    reset_button = w.Button(description="Reset")
    label = getattr(conversation.llm, "label", "")
    status = w.HTML(f"<small>Understanding by: {html.escape(str(label))}</small>")
    parts: list[str] = []

    def picks(recs) -> str:
        rows = "".join(f"<tr><td>{i + 1}</td><td>{html.escape(str(r.title))}</td>"
                       f"<td>{r.year}</td><td>{html.escape(', '.join(r.genres))}</td>"
                       f"<td>{html.escape(str(r.mood))}</td><td>{r.runtime} min</td></tr>"
                       for i, r in enumerate(recs.itertuples()))
        return ("<table style='font-size:90%'><tr><th>#</th><th>title</th><th>year</th>"
                f"<th>genres</th><th>mood</th><th>runtime</th></tr>{rows}</table>")

    def send(message: str | None = None):
        message = (text.value if message is None else message).strip()
        text.value = ""
        if not message:
            return None
        turn = conversation.send(message)
        note = "" if turn.reply_ok else " <i>(the LLM call failed: no new constraints)</i>"
        ask = ""
        if turn.question:
            ask = ("Which " + turn.question["attribute"] + ": "
                   + html.escape(" or ".join(map(str, turn.question["options"]))) + "?")
        parts.append(f"<p><b>you:</b> {html.escape(message)}</p>")
        parts.append(f"<div><b>system:</b>{note} {picks(turn.recommendations)}"
                     f"<p>{ask}</p></div>")
        history.value = "".join(parts)
        return turn

    def reset(_=None):
        conversation.reset()
        parts.clear()
        history.value = "<i>New conversation.</i>"

    send_button.on_click(lambda _: send())
    reset_button.on_click(reset)
    reset()
    box = w.VBox([history, w.HBox([text, send_button, reset_button]), status])
    box.send = send
    return box
