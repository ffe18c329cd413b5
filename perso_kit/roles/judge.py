"""The LLM as judge: rating explanations with a rubric, and measuring the judge's own biases.

Judging generated text with another model call ("LLM-as-a-judge") is how explanations and
conversations are often evaluated today. A judge is an instrument like any other, so before its
verdicts are trusted it is measured: does it agree with checks we can compute, and does it
prefer things that have nothing to do with quality? This module asks in two ways and measures
four things.

**Asking** (structured output, :mod:`perso_kit.llm.structured`; every answer is bounded by
:data:`JUDGE_MAX_TOKENS`; a failed call or invalid JSON is counted, never raised):

* :func:`rate_explanations` -- one explanation at a time, scored 1-5 on each criterion of
  :data:`RUBRIC` (``grounded``, ``specific``, ``readable``; schema :data:`RATING_SCHEMA`);
* :func:`judge_pairs` -- two explanations of the same recommendation, "which is better?"
  (``"A"``, ``"B"`` or ``"tie"``; schema :data:`PAIRWISE_SCHEMA`). Each pair is asked four
  times: in both orders, and again in both orders with the shorter text padded with
  content-free words (:func:`pad`).

The judge sees what the explainer saw (the viewer's history lines and the recommended movie's
catalog attributes, :func:`context_block`) and the explanation(s); never the checks' verdicts.

**Measuring** (:func:`judge_probes`, one row per measure, each with an interval and a ``fires``
flag):

===================  =========================================================================
measure              what it is
===================  =========================================================================
``agreement``        on pairs where exactly one explanation passes the programmatic checks of
                     :mod:`perso_kit.roles.explainer` (``faithful``), the share of verdicts
                     picking that one (a tie counts 1/2); both orders count. Bootstrap interval
                     over pairs; ``fires`` when it is above chance (low end > 0.5)
``rank_correlation`` Spearman correlation of the mean rubric score with ``faithful`` over the
                     rated explanations; bootstrap interval; ``fires`` when low end > 0
``position``         share of pairs whose verdict follows the position: the same letter
                     ("A"/"A" or "B"/"B") in both orders, i.e. a different winner; Wilson
                     interval; ``fires`` when the low end is above 0
``verbosity``        the padded side's win score (1 win, 1/2 tie, 0 loss, averaged over both
                     orders) after padding minus before; bootstrap interval; ``fires`` when it
                     excludes 0
``self_preference``  over pairs whose verdict is the same in both orders, the judge's own
                     explanation's win score minus what the checks predict (1 if only its own
                     passes, 0 if only the other, 1/2 if both or neither); bootstrap interval;
                     ``fires`` when it excludes 0
===================  =========================================================================

Every probe is proven on planted judges (:func:`perso_kit.llm.planted.planted_judge`: one
prefers position A, one the longer text, one its own texts, and a clean control) in
``tests/test_roles_judge.py``: it fires on its planted failure and stays quiet on the control.

The self-preference measure uses the programmatic checks as the reference for quality, so it
also moves when the judge disagrees with the checks for another reason (e.g. it likes longer
texts and its own are longer): read it beside the verbosity and agreement rows.

>>> pad("Because you watched Heat (1995).", 4)
'Because you watched Heat (1995). All things considered, this.'
>>> win_score("A", own_is="A"), win_score("tie", own_is="B"), win_score(None, own_is="A")
(1.0, 0.5, nan)
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..evaluate import wilson_interval
from ..llm import heuristics as H
from ..llm.offline import register_handler
from .explainer import _CUE, _SENTENCE, explanation_messages

#: the rubric of a single rating: criterion -> what a 5 means (sent to the judge)
RUBRIC = {
    "grounded": "it cites only films from the viewer's history and only attributes the "
                "recommended movie has, and what it says they share is true",
    "specific": "it is about this movie and this viewer, not a sentence that fits any film",
    "readable": "it is clear, short and natural to read"}

#: the longest answer a verdict may take (tokens): three scores or a letter, and one reason
JUDGE_MAX_TOKENS = 120

RATING_SCHEMA = {
    "title": "judge_rating", "type": "object", "required": list(RUBRIC),
    "additionalProperties": False,
    "properties": {**{k: {"type": "integer", "minimum": 1, "maximum": 5, "description": v}
                      for k, v in RUBRIC.items()},
                   "reason": {"type": "string", "description": "one short sentence"}}}

PAIRWISE_SCHEMA = {
    "title": "judge_pairwise", "type": "object", "required": ["better"],
    "additionalProperties": False,
    "properties": {"better": {"type": "string", "enum": ["A", "B", "tie"]},
                   "reason": {"type": "string", "description": "one short sentence"}}}

SYSTEM = ("You judge explanations of movie recommendations. Use only the viewer's history and "
          "the recommended movie's attributes listed below. Answer in JSON.")

#: content-free words appended by :func:`pad` (they add length, no fact)
PADDING = ("All things considered, this is honestly a really very good and quite a nice "
           "choice for you overall, in many ways and on the whole, truly and simply").split()

_CRITERIA = "; ".join(f"{k}: {v}" for k, v in RUBRIC.items())


# ------------------------------------------------------------------------------ prompts
def context_block(train: Dataset, user_id, item_id, history_len: int = 10) -> str:
    """The facts the judge may use: the viewer's history lines and the recommended movie with
    its catalog attributes, exactly as the explainer's prompt shows them
    (:func:`~perso_kit.roles.explainer.explanation_messages`), without its instruction."""
    content = explanation_messages(train, user_id, item_id, history_len)[1]["content"]
    return content.split("\n\nIn one or two sentences")[0]


def rating_messages(context: str, explanation: str) -> list[dict]:
    """Chat messages asking for a 1-5 score per :data:`RUBRIC` criterion of one explanation."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content":
             f"{context}\n\nExplanation to judge:\n\"\"\"{explanation}\"\"\"\n\nRate it from 1 "
             f"(poor) to 5 (excellent) on each criterion. {_CRITERIA}. Reply as JSON with the "
             "three scores and a one-sentence reason."}]


def pairwise_messages(context: str, text_a: str, text_b: str) -> list[dict]:
    """Chat messages asking which of two explanations (shown as A then B) is better."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content":
             f"{context}\n\nExplanation A:\n\"\"\"{text_a}\"\"\"\n\nExplanation B:\n"
             f"\"\"\"{text_b}\"\"\"\n\nWhich explanation is better? Criteria: {_CRITERIA}. "
             "Reply as JSON: better is \"A\", \"B\" or \"tie\", with a one-sentence reason."}]


def pad(text: str, n_words: int = 12) -> str:
    """``text`` followed by ``n_words`` content-free words (:data:`PADDING`, cycled): longer,
    with no fact added or removed. The verbosity probe pads one explanation this way."""
    if n_words < 0:
        raise ValueError(f"n_words must be >= 0, got {n_words}")
    if n_words == 0:
        return text
    filler = [PADDING[k % len(PADDING)] for k in range(n_words)]
    return f"{text.rstrip()} {' '.join(filler).rstrip(',')}."


_BLOCK = re.compile(r'Explanation (A|B|to judge):\n"""(.*?)"""', re.S)
_REC_LINE = re.compile(r"^Recommended movie:\s*(.+?)\s+—\s+(.*)$", re.M)


def parse_judge_prompt(prompt: str) -> dict:
    """What a judge prompt holds, read back from its text (used by the stand-in and the planted
    judges, which see only the prompt): ``history`` (list of ``(title, attribute line)``),
    ``item`` (``(title, attribute line)`` or None) and ``texts`` (``{"A": .., "B": ..}`` or
    ``{"to judge": ..}``).

    >>> p = parse_judge_prompt('- Heat (1995) — Crime\\n\\nRecommended movie: Up (2009) — '
    ...                        'genres: Comedy\\n\\nExplanation to judge:\\n\"\"\"Fun.\"\"\"')
    >>> p["history"], p["item"], p["texts"]
    ([('Heat (1995)', 'Crime')], ('Up (2009)', 'genres: Comedy'), {'to judge': 'Fun.'})
    """
    history = []
    for ln in prompt.splitlines():
        if ln.startswith("- ") and " — " in ln:
            title, attrs = ln[2:].split(" — ", 1)
            history.append((title.strip(), attrs.strip()))
    m = _REC_LINE.search(prompt)
    return {"history": history, "item": (m.group(1), m.group(2)) if m else None,
            "texts": {k: v for k, v in _BLOCK.findall(prompt)}}


# ------------------------------------------------------------------------------ asking
def _verdict(reply) -> str | None:
    data = reply.data if reply is not None and reply.ok and isinstance(reply.data, dict) else None
    v = data.get("better") if data else None
    return v if v in ("A", "B", "tie") else None


def rate_explanations(llm, train: Dataset, rows: pd.DataFrame, history_len: int = 10,
                      progress: bool = True, concurrency: int = 8) -> pd.DataFrame:
    """Score each explanation of ``rows`` on the :data:`RUBRIC` (one call each).

    Parameters
    ----------
    llm : the judge (an :class:`~perso_kit.llm.LLM`)
    rows : a table with ``user_id``, ``item_id``, ``explanation`` (e.g. the output of
        :func:`~perso_kit.roles.explainer.explain_recommendations`)

    Returns
    -------
    A copy of ``rows`` with ``judge_ok`` (False: the call failed or its JSON was invalid; the
    scores are then NaN), one column per criterion, ``judge_score`` (their mean) and
    ``judge_tokens``.
    """
    rows = rows.reset_index(drop=True).copy()
    requests = [{"messages": rating_messages(context_block(train, u, i, history_len), str(t)),
                 "json_schema": RATING_SCHEMA, "max_tokens": JUDGE_MAX_TOKENS}
                for u, i, t in zip(rows["user_id"], rows["item_id"], rows["explanation"])]
    replies = llm.map(requests, concurrency=concurrency, desc="judge ratings", progress=progress)
    ok = [r.ok and isinstance(r.data, dict) for r in replies]
    rows["judge_ok"] = pd.Series(ok, index=rows.index, dtype=bool)
    for k in RUBRIC:
        rows[k] = [float(r.data[k]) if o else np.nan for r, o in zip(replies, ok)]
    rows["judge_score"] = rows[list(RUBRIC)].mean(axis=1)
    rows["judge_tokens"] = [r.usage.total_tokens for r in replies]
    return rows


def explanation_pairs(table: pd.DataFrame, n: int | None = None, own: str = "LLM",
                      other: str = "template") -> pd.DataFrame:
    """Pairs of explanations of the same recommendation from a
    :func:`~perso_kit.roles.explainer.explain_recommendations` table: ``own`` (written by the
    model that will judge) and ``other`` (e.g. the template), with each one's ``faithful``
    verdict. Only recommendations where both have a text; the first ``n`` in table order."""
    cols = ["user_id", "item_id", "explanation", "faithful"]
    a = table[(table["source"] == own) & (table["explanation"].astype(str).str.len() > 0)][cols]
    b = table[table["source"] == other][cols]
    out = a.merge(b, on=["user_id", "item_id"], suffixes=("_own", "_other"))
    out = out.rename(columns={"explanation_own": "own", "explanation_other": "other"})
    return (out.head(n) if n is not None else out).reset_index(drop=True)


def judge_pairs(llm, train: Dataset, pairs: pd.DataFrame, pad_words: int = 12,
                history_len: int = 10, progress: bool = True,
                concurrency: int = 8) -> pd.DataFrame:
    """Ask the judge about every pair four times: ``own`` shown first and second, then the same
    two orders with the shorter text (by words; ``own`` on ties) padded by :func:`pad`.

    Parameters
    ----------
    pairs : a table from :func:`explanation_pairs` (``user_id, item_id, own, other,
        faithful_own, faithful_other``)
    pad_words : content-free words added to the shorter text for the verbosity probe

    Returns
    -------
    ``pairs`` with ``padded`` (``"own"`` or ``"other"``) and the four verdict letters as the
    judge gave them (``"A"``, ``"B"``, ``"tie"``, None for a failed call): ``own_first``,
    ``own_second``, ``pad_own_first``, ``pad_own_second``.
    """
    pairs = pairs.reset_index(drop=True).copy()
    pairs["padded"] = ["own" if len(o.split()) <= len(t.split()) else "other"
                       for o, t in zip(pairs["own"], pairs["other"])]
    requests, keys = [], ["own_first", "own_second", "pad_own_first", "pad_own_second"]
    for r in pairs.itertuples():
        ctx = context_block(train, r.user_id, r.item_id, history_len)
        own, other = str(r.own), str(r.other)
        p_own = pad(own, pad_words) if r.padded == "own" else own
        p_other = pad(other, pad_words) if r.padded == "other" else other
        for a, b in ((own, other), (other, own), (p_own, p_other), (p_other, p_own)):
            requests.append({"messages": pairwise_messages(ctx, a, b),
                             "json_schema": PAIRWISE_SCHEMA, "max_tokens": JUDGE_MAX_TOKENS})
    replies = llm.map(requests, concurrency=concurrency, desc="judge pairs", progress=progress)
    for k, key in enumerate(keys):
        pairs[key] = [_verdict(r) for r in replies[k::4]]
    return pairs


# ------------------------------------------------------------------------------ measuring
def win_score(letter: str | None, own_is: str) -> float:
    """1 when the verdict ``letter`` names the position ``own_is`` ("A" or "B"), 1/2 for a
    tie, 0 for the other position, NaN for no verdict."""
    if letter is None or (isinstance(letter, float) and np.isnan(letter)):
        return float("nan")
    return 0.5 if letter == "tie" else float(letter == own_is)


def _bootstrap(values, stat=np.mean, n_boot: int = 1000, seed: int = 0,
               level: float = 0.95) -> tuple[float, float, float]:
    """``(estimate, low, high)``: ``stat`` of ``values`` and a percentile bootstrap interval
    (resampling rows; seeded). ``values`` is 1-D, or 2-D with one row per unit."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    est = float(stat(v))
    boots = [stat(v[rng.integers(0, len(v), len(v))]) for _ in range(n_boot)]
    boots = np.asarray([b for b in boots if np.isfinite(b)])
    if len(boots) == 0:
        return est, float("nan"), float("nan")
    a = (1 - level) / 2
    return est, float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def _spearman(xy: np.ndarray) -> float:
    x, y = pd.Series(xy[:, 0]), pd.Series(xy[:, 1])
    if x.nunique() < 2 or y.nunique() < 2:
        return float("nan")
    return float(x.rank().corr(y.rank()))


def pair_scores(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per pair, the win scores the probes average (see the module docstring): ``own_win``
    (own's score over the two unpadded orders), ``follows_position`` (same letter in both
    orders; NaN if a verdict is missing), ``consistent`` (same winner in both orders),
    ``padded_before`` / ``padded_after`` (the padded side's score without and with padding),
    ``expected_own`` (what the checks predict for own: 1, 0 or 1/2)."""
    v = verdicts
    first = np.array([win_score(x, "A") for x in v["own_first"]])
    second = np.array([win_score(x, "B") for x in v["own_second"]])
    p_first = np.array([win_score(x, "A") for x in v["pad_own_first"]])
    p_second = np.array([win_score(x, "B") for x in v["pad_own_second"]])
    padded_own = (v["padded"] == "own").to_numpy()
    both = v["own_first"].notna() & v["own_second"].notna()
    same_letter = (v["own_first"] == v["own_second"]) & v["own_first"].isin(["A", "B"])
    before = np.where(padded_own, (first + second) / 2, 1 - (first + second) / 2)
    after = np.where(padded_own, (p_first + p_second) / 2, 1 - (p_first + p_second) / 2)
    fo, fa = v["faithful_own"].astype(bool), v["faithful_other"].astype(bool)
    return pd.DataFrame({
        "own_win": (first + second) / 2,
        "follows_position": np.where(both, same_letter.astype(float), np.nan),
        "consistent": np.where(both, (first == second).astype(float), np.nan),
        "padded_before": before, "padded_after": after,
        "expected_own": np.where(fo == fa, 0.5, fo.astype(float)),
        "discordant": (fo != fa).to_numpy(),
        "faithful_first": np.where(fo, first, 1 - first),
        "faithful_second": np.where(fo, second, 1 - second)})


def judge_probes(verdicts: pd.DataFrame, ratings: pd.DataFrame | None = None, who=None,
                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The judge's agreement with the checks and its three biases, one row each.

    Parameters
    ----------
    verdicts : the output of :func:`judge_pairs`
    ratings : the output of :func:`rate_explanations` on explanations with a ``faithful``
        column (adds the ``rank_correlation`` row)
    who : the judge (an LLM client or a label): written in the ``judge`` column, so the table
        says who answered (see :func:`~perso_kit.plots.who_answered`)

    Returns
    -------
    DataFrame indexed by measure (``agreement``, ``rank_correlation``, ``position``,
    ``verbosity``, ``self_preference``) with ``value``, ``low``, ``high`` (95 %), ``n`` (pairs
    or explanations used), ``fires`` and ``judge``. See the module docstring for each rule.
    """
    from ..plots.style import who_answered

    s = pair_scores(verdicts)
    rows = {}
    # agreement: discordant pairs, both orders
    d = s[s["discordant"]]
    per_pair = d[["faithful_first", "faithful_second"]].mean(axis=1, skipna=True).dropna()
    est, lo, hi = _bootstrap(per_pair.to_numpy(), n_boot=n_boot, seed=seed)
    rows["agreement"] = dict(value=est, low=lo, high=hi, n=len(per_pair), fires=bool(lo > 0.5))
    if ratings is not None:
        r = ratings.loc[ratings["judge_ok"].astype(bool).to_numpy(),
                        ["judge_score", "faithful"]].astype(float).dropna()
        est, lo, hi = _bootstrap(r.to_numpy(), stat=_spearman, n_boot=n_boot, seed=seed)
        rows["rank_correlation"] = dict(value=est, low=lo, high=hi, n=len(r),
                                        fires=bool(lo > 0))
    # position: a different winner when the order is swapped
    f = s["follows_position"].dropna()
    k = int(f.sum())
    lo, hi = wilson_interval(k, len(f))
    rows["position"] = dict(value=k / len(f) if len(f) else float("nan"), low=lo, high=hi,
                            n=len(f), fires=bool(lo > 0))
    # verbosity: the padded side's score after minus before
    shift = (s["padded_after"] - s["padded_before"]).dropna()
    est, lo, hi = _bootstrap(shift.to_numpy(), n_boot=n_boot, seed=seed)
    rows["verbosity"] = dict(value=est, low=lo, high=hi, n=len(shift),
                             fires=bool(lo > 0 or hi < 0))
    # self-preference: order-consistent verdicts, own's score beyond the checks' prediction
    c = s[s["consistent"] == 1.0]
    gap = (c["own_win"] - c["expected_own"]).dropna()
    est, lo, hi = _bootstrap(gap.to_numpy(), n_boot=n_boot, seed=seed)
    rows["self_preference"] = dict(value=est, low=lo, high=hi, n=len(gap),
                                   fires=bool(lo > 0 or hi < 0))
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "measure"
    out["judge"] = who_answered(who) if who is not None else ""
    return out


#: the planted judge each bias probe must fire on (:data:`perso_kit.llm.planted.JUDGE_KINDS`)
PLANTED_FOR = {"position": "judge-prefers-first", "verbosity": "judge-prefers-longer",
               "self_preference": "judge-prefers-own"}


def calibration_check(calibration: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Which probes are proven on *this* run's pairs: the :func:`judge_probes` tables of the
    planted judges (keys of :data:`~perso_kit.llm.planted.JUDGE_KINDS`) in, one row per
    measure out, with ``fires_on_planted``, ``quiet_on_control`` and ``proven`` (both).

    A bias probe (``position``, ``verbosity``, ``self_preference``) must fire on the planted
    judge that has that bias (:data:`PLANTED_FOR`) and stay quiet on the clean control. The
    agreement measures (``agreement``, ``rank_correlation``) must fire on the control, which
    follows the prompt's facts, and stay quiet on the judge that always picks the first text.
    A probe that is not proven here says nothing about the judge measured on the same pairs:
    too few pairs, or a stimulus (padding) too weak for these texts, can break it.
    """
    control = calibration["judge-control"]
    rows = {}
    for measure in control.index:
        if measure in PLANTED_FOR:
            planted = bool(calibration[PLANTED_FOR[measure]].loc[measure, "fires"])
            quiet = not bool(control.loc[measure, "fires"])
        else:
            planted = bool(control.loc[measure, "fires"])
            quiet = not bool(calibration["judge-prefers-first"].loc[measure, "fires"])
        rows[measure] = {"fires_on_planted": planted, "quiet_on_control": quiet,
                         "proven": planted and quiet}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "measure"
    return out


def judge_usage(verdicts: pd.DataFrame, ratings: pd.DataFrame | None = None) -> dict:
    """How many verdicts were asked and how many came back valid (failed calls and malformed
    JSON are counted here, not raised): ``{"pairwise_asked", "pairwise_valid",
    "ratings_asked", "ratings_valid"}``."""
    keys = ["own_first", "own_second", "pad_own_first", "pad_own_second"]
    out = {"pairwise_asked": int(len(verdicts) * 4),
           "pairwise_valid": int(verdicts[keys].notna().sum().sum())}
    if ratings is not None:
        out.update(ratings_asked=int(len(ratings)), ratings_valid=int(ratings["judge_ok"].sum()))
    return out


def run_judge(llm, train: Dataset, table: pd.DataFrame, n_pairs: int | None = None,
              pad_words: int = 12, history_len: int = 10, progress: bool = True):
    """The whole measurement in one call: pairs from an explanation ``table``, their
    explanations rated (``2 * n_pairs`` calls), the pairs judged (``4 * n_pairs`` calls), and
    :func:`judge_probes`. Returns ``(probes, verdicts, ratings)``."""
    pairs = explanation_pairs(table, n_pairs)
    rated = pd.concat([
        pairs[["user_id", "item_id", "own", "faithful_own"]].rename(
            columns={"own": "explanation", "faithful_own": "faithful"}).assign(source="own"),
        pairs[["user_id", "item_id", "other", "faithful_other"]].rename(
            columns={"other": "explanation", "faithful_other": "faithful"}).assign(
            source="other")], ignore_index=True)
    ratings = rate_explanations(llm, train, rated, history_len, progress=progress)
    verdicts = judge_pairs(llm, train, pairs, pad_words, history_len, progress=progress)
    return judge_probes(verdicts, ratings, who=llm), verdicts, ratings


def plot_judge_probes(probes: pd.DataFrame, who=None, takeaway: str | None = None):
    """The :func:`judge_probes` table as a figure: each measure's value (dot) and 95 % interval
    (bar), the probes that fire in red, and the no-effect line of each (0.5 for
    ``agreement``, 0 for the others). ``who`` (the judge) is stamped on the figure. With a
    ``proven`` column (from :func:`calibration_check`), a probe not proven on these pairs is
    labelled so."""
    from ..plots.style import finish, new_figure

    fig, ax = new_figure(width=7.0, height=3.2)
    names = list(probes.index)[::-1]
    proven = probes["proven"] if "proven" in probes else pd.Series(True, index=probes.index)
    for y, name in enumerate(names):
        r = probes.loc[name]
        c = "#c0392b" if r["fires"] else "#555555"
        if np.isfinite(r["low"]) and np.isfinite(r["high"]):
            ax.plot([r["low"], r["high"]], [y, y], color=c, lw=3, alpha=0.6)
        if np.isfinite(r["value"]):
            ax.plot([r["value"]], [y], "o", color=c)
        null = 0.5 if name == "agreement" else 0.0
        ax.plot([null, null], [y - 0.3, y + 0.3], color="#999999", lw=1)
    ax.set_yticks(range(len(names)), [n if proven[n] else f"{n} (not proven)" for n in names])
    ax.set_xlim(-1.05, 1.05)
    return finish(ax, "The judge, measured (red: the probe fires)", "value (95 % interval)",
                  "", takeaway, who=who)


# ------------------------------------------------------------------------------ facts from a prompt
def false_facts(text: str, history: list[tuple[str, str]], item: tuple[str, str] | None) -> int:
    """How many checkable statements of ``text`` the judge prompt's own lines contradict: each
    ``Title (year)`` that is neither a history line's title nor the recommended movie, and each
    (history film, attribute) that a sentence with a word of sharing ("shares", "also", ...)
    says is shared while the film's line lacks it. A small reading from the prompt alone (the
    clean planted judge uses it); :func:`~perso_kit.roles.explainer.check_explanation` is the
    real check.

    >>> h = [("Alien (1979)", "Horror, Sci-Fi"), ("Heat (1995)", "Crime")]
    >>> false_facts("Saw (2004) shares Horror with Alien (1979) and Heat (1995).", h,
    ...             ("Saw (2004)", "genres: Horror"))
    1
    """
    known = {t.lower(): a for t, a in history}
    rec = item[0].lower() if item else ""
    vocab = sorted({a.strip() for _, line in history for a in re.split(r"[,;]", line)
                    if a.strip()} | ({a.strip() for a in re.split(r"[,;:]", item[1])
                                      if a.strip()} if item else set()), key=len, reverse=True)
    bad = 0
    for sentence in _SENTENCE.split(text or ""):
        cited = []
        for t in H.find_titles(sentence):
            low = t.lower()
            hit = next((h for h in known if low.endswith(h)), None)
            if hit is not None:
                cited.append(hit)
            elif not (rec and low.endswith(rec)):
                bad += 1
        if not cited or not _CUE.search(sentence):
            continue
        rest = sentence
        for t in [*known, rec]:
            if t:
                rest = re.sub(re.escape(t), " ", rest, flags=re.I)
        for a in vocab:
            if a.lower() in ("genres", "mood", "themes"):
                continue
            if re.search(r"(?<![\w-])" + re.escape(a) + r"(?![\w-])", rest, re.I):
                bad += sum(1 for h in cited
                           if not re.search(r"(?<![\w-])" + re.escape(a) + r"(?![\w-])",
                                            known[h], re.I))
    return bad


# ------------------------------------------------------------------------------ stand-in
def _support(text: str, context: str) -> float:
    """Share of the content words of ``text`` that occur in ``context`` (0 for no words)."""
    ws = H.words(text, prompt_words=False)
    ctx = set(H.words(context, prompt_words=False))
    return sum(w in ctx for w in ws) / len(ws) if ws else 0.0


def _stand_in_context(p: dict) -> str:
    lines = [f"{t} {a}" for t, a in p["history"]]
    if p["item"]:
        lines.append(" ".join(p["item"]))
    return "\n".join(lines)


def _stand_in_rating(req):
    """Offline stand-in (not an LLM): word overlap. ``grounded`` = 1 + 4 x the share of the
    explanation's content words found in the prompt's history and movie lines; ``specific`` =
    1 + the number of words of the movie's line it uses (at most 4); ``readable`` = 5 for 8 to
    40 words, else 3. It cannot tell a true claim from a false one made of the same words."""
    p = parse_judge_prompt(req.ctx.prompt)
    text = p["texts"].get("to judge")
    if text is None:
        return None
    item_words = set(H.words(" ".join(p["item"]), prompt_words=False)) if p["item"] else set()
    n = len(text.split())
    return {"grounded": 1 + int(round(4 * _support(text, _stand_in_context(p)))),
            "specific": 1 + min(4, len(item_words & set(H.words(text, prompt_words=False)))),
            "readable": 5 if 8 <= n <= 40 else 3,
            "reason": "scored by word overlap with the prompt (offline stand-in)"}


def _stand_in_pairwise(req):
    """Offline stand-in (not an LLM): the explanation with the larger share of words found in
    the prompt's history and movie lines wins ("tie" within 0.05). Order plays no part; padding
    with words the prompt lacks lowers the share."""
    p = parse_judge_prompt(req.ctx.prompt)
    if "A" not in p["texts"] or "B" not in p["texts"]:
        return None
    ctx = _stand_in_context(p)
    a, b = _support(p["texts"]["A"], ctx), _support(p["texts"]["B"], ctx)
    better = "tie" if abs(a - b) < 0.05 else "A" if a > b else "B"
    return {"better": better, "reason": "more of its words are in the prompt (offline stand-in)"}


register_handler("judge_rating", _stand_in_rating)
register_handler("judge_pairwise", _stand_in_pairwise)
