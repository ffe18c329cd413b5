"""Embeddings: how :meth:`LLM.embed <perso_kit.llm.client.LLM.embed>` answers, and the offline
embedder it falls back on.

:func:`embed_texts` (behind ``LLM.embed``) takes one of three paths:

=====================================  =========================================================
when                                   the vectors come from
=====================================  =========================================================
the backend is the offline stand-in    the stand-in's :class:`OfflineEmbedder`, asked through
                                       its in-process ``/embeddings`` endpoint
                                       (:func:`embed_by_stand_in`)
another backend, no embedding model    a local :class:`OfflineEmbedder`, with a notice saying so
set (``PERSO_KIT_EMBED_MODEL``)        once (:func:`embed_locally`): a chat-only server still
                                       gets vectors, labelled as not from an LLM
another backend with an embedding      the server's embeddings endpoint (:func:`embed_remote`):
model                                  vectors cached per text, budget booked per batch
=====================================  =========================================================

Each successful call adds one record to the client's :class:`~perso_kit.llm.ledger.Ledger`
(a failed one raises :class:`~perso_kit.llm.reply.LLMError`).

The offline embedder: TF-IDF followed by a truncated SVD (LSA), from scikit-learn. It is a
**local text vectorizer, not an LLM embedding model**: texts that share words get similar
vectors, texts that mean the same in other words do not.

Design, so that vectors of different calls are comparable: the embedder has *one* vector space,
fitted once on a corpus (:meth:`OfflineEmbedder.fit`) and then frozen; every later call is
projected into that same space. ``LLM.embed(texts, fit=True)`` (re)fits on ``texts`` first --
do it once, on the largest text collection you have (e.g. all item descriptions), then embed
queries and profiles without ``fit``. If the embedder was never fitted, the first call fits it
on the texts it is given (with a warning when they are few). Refitting starts a new space
(``space_id`` changes) and invalidates vectors from before.

>>> e = OfflineEmbedder(dim=2).fit(["space war film", "space horror film", "romantic comedy",
...                                  "love comedy in paris"])
>>> v = e.transform(["space film", "romantic love"])
>>> v.shape, bool(abs((v[0] * v[0]).sum() - 1) < 1e-5)
((2, 2), True)
"""
from __future__ import annotations

import hashlib
import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from . import ledger
from .cache import request_key
from .pricing import estimate_tokens
from .reply import LLMError

if TYPE_CHECKING:  # scikit-learn is imported on first use (it takes a second to import)
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer


class OfflineEmbedder:
    """TF-IDF + TruncatedSVD vectors, L2-normalized (see the module docstring).

    Parameters
    ----------
    dim : int
        Requested dimension; the fitted one (``dim_``) is at most ``min(vocabulary, corpus) - 1``.
    seed : int
        Seed of the randomized SVD: the same corpus gives the same space.
    """

    label = "offline TF-IDF+SVD vectorizer (not an LLM)"

    def __init__(self, dim: int = 128, seed: int = 0):
        self.dim = dim
        self.seed = seed
        self.vectorizer_: TfidfVectorizer | None = None
        self.svd_: TruncatedSVD | None = None
        self.dim_ = 0
        self.space_id = ""

    @property
    def fitted(self) -> bool:
        return self.vectorizer_ is not None

    def fit(self, corpus: list[str]) -> "OfflineEmbedder":
        """Fit the vector space on ``corpus`` (deterministic for a given corpus and seed)."""
        corpus = [str(t) for t in corpus]
        if not corpus:
            raise ValueError("cannot fit the offline embedder on an empty corpus")
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=1,
                              token_pattern=r"(?u)\b\w\w+\b")
        try:
            X = vec.fit_transform(corpus)
        except ValueError:  # only stop words: keep them
            vec = TfidfVectorizer(sublinear_tf=True, min_df=1, token_pattern=r"(?u)\b\w+\b")
            X = vec.fit_transform(corpus)
        k = min(self.dim, X.shape[1] - 1, X.shape[0] - 1)
        with np.errstate(divide="ignore", invalid="ignore"):  # degenerate corpora: no variance
            self.svd_ = (TruncatedSVD(n_components=k, random_state=self.seed).fit(X)
                         if k >= 1 else None)
        self.vectorizer_ = vec
        self.dim_ = k if k >= 1 else X.shape[1]
        digest = hashlib.sha256("\x1e".join(corpus).encode()).hexdigest()[:12]
        self.space_id = f"tfidf-svd-{self.dim_}-{digest}"
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts`` in the fitted space (fits on ``texts`` if never fitted)."""
        texts = [str(t) for t in texts]
        if not self.fitted:
            if len(texts) < 20:
                warnings.warn(f"the offline embedder was fitted on only {len(texts)} texts; "
                              "fit it once on a larger corpus (llm.embed(corpus, fit=True))",
                              RuntimeWarning, stacklevel=2)
            self.fit(texts)
        if not texts:
            return np.zeros((0, self.dim_), dtype=np.float32)
        from sklearn.preprocessing import normalize

        X = self.vectorizer_.transform(texts)
        Z = self.svd_.transform(X) if self.svd_ is not None else X.toarray()
        return normalize(np.asarray(Z, dtype=np.float64)).astype(np.float32)

    def __repr__(self) -> str:
        state = f"fitted, dim={self.dim_}, space={self.space_id}" if self.fitted else "not fitted"
        return f"OfflineEmbedder({state})"


# ------------------------------------------------------------------------- LLM.embed's paths
def embed_texts(llm, texts: str | list[str], fit: bool = False, batch_size: int = 256,
                model: str | None = None) -> np.ndarray:
    """Vectors of ``texts`` for the client ``llm`` (see :meth:`perso_kit.llm.client.LLM.embed`
    and the table of the module docstring)."""
    texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
    if llm.backend != "offline" and not (model or llm.settings.embed_model):
        return embed_locally(llm, texts, fit)
    if llm.backend == "offline":
        return embed_by_stand_in(llm, texts, fit, batch_size)
    return embed_remote(llm, texts, batch_size, model or llm.settings.embed_model)


def embed_by_stand_in(llm, texts: list[str], fit: bool, batch_size: int) -> np.ndarray:
    """The offline backend: the stand-in's embedder, through its ``/embeddings`` endpoint
    (``fit=True`` refits its space on ``texts`` first)."""
    embedder = llm.stand_in.embedder
    if fit:
        embedder.fit(texts)
    elif not embedder.fitted:
        embedder.transform(texts)  # fits (and warns if few)
    out = []
    for i in range(0, len(texts), batch_size):
        payload, kind, error, _ = llm._send(
            {"model": "offline-embedder", "input": texts[i:i + batch_size],
             "encoding_format": "float"}, endpoint="embeddings")
        if payload is None:
            raise LLMError(f"offline embedding failed: {error}", kind or "error")
        out += [d["embedding"] for d in sorted(payload["data"], key=lambda d: d["index"])]
    llm.ledger.log_call(ledger.embedding_record(
        "offline", embedder.label, True, sum(estimate_tokens(t) for t in texts)))
    return np.asarray(out, dtype=np.float32).reshape(len(texts), embedder.dim_)


def embed_locally(llm, texts: list[str], fit: bool) -> np.ndarray:
    """No embedding model is set (a chat-only server): the offline TF-IDF+SVD vectorizer
    embeds instead, and says so once; its vectors are labelled as not from an LLM."""
    if getattr(llm, "_local_embedder", None) is None:
        llm._local_embedder = OfflineEmbedder()
        llm._notice("embed", "no embedding model is set (PERSO_KIT_EMBED_MODEL): texts are "
                             f"embedded by the {OfflineEmbedder.label} instead")
    emb = llm._local_embedder
    if fit or not emb.fitted:
        emb.fit(texts)
    vectors = emb.transform(texts)
    llm.ledger.log_call(ledger.embedding_record(
        "offline", emb.label, True, sum(estimate_tokens(t) for t in texts)))
    return np.asarray(vectors, dtype=np.float32)


def embed_remote(llm, texts: list[str], batch_size: int, model: str | None) -> np.ndarray:
    """The server's embeddings endpoint: cached vectors first (replay may not miss), then the
    rest in batches of ``batch_size``, each booked on the budget before it is sent."""
    if not model:
        raise LLMError("no embedding model: set PERSO_KIT_EMBED_MODEL (e.g. "
                       "nomic-embed-text for Ollama, text-embedding-3-small for OpenAI)")
    keys = [request_key({"embedding_model": model, "input": t}) for t in texts]
    vectors: list[np.ndarray | None] = [None] * len(texts)
    if llm.cache is not None:
        for i, k in enumerate(keys):
            vectors[i] = llm.cache.get_embedding(k)
    todo = [i for i, v in enumerate(vectors) if v is None]
    if todo and llm.backend == "replay":
        raise LLMError(f"{len(todo)} texts are not in the recorded file; record them with a "
                       "real backend and PERSO_KIT_LLM_CACHE=<the file>", "replay_miss")
    price = llm._price(model)
    tokens = cost = 0
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        batch = [texts[i] for i in idx]
        body = {"model": model, "input": batch, "encoding_format": "float"}
        reserved = ledger.reserve_embedding(llm.budget, batch, price, model)
        llm._record_sent(body)
        payload, kind, error, _ = llm._send(body, endpoint="embeddings")
        if payload is None:
            llm.budget.settle(reserved, 0.0)
            raise LLMError(f"embedding failed: {error}", kind or "error")
        used = int((payload.get("usage") or {}).get("prompt_tokens") or 0)
        c = price.cost(used, 0) if price else math.nan
        llm.budget.settle(reserved, c)
        tokens, cost = tokens + used, cost + c
        for i, d in zip(idx, sorted(payload["data"], key=lambda d: d["index"])):
            vectors[i] = np.asarray(d["embedding"], dtype=np.float32)
            if llm.cache is not None:
                llm.cache.put_embedding(keys[i], vectors[i], model)
    llm.ledger.log_call(ledger.embedding_record(llm.backend, model, False, tokens, cost,
                                                cached=not todo))
    return np.vstack(vectors) if vectors else np.zeros((0, 0), np.float32)
