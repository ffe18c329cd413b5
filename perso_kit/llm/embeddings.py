"""The offline embedder: TF-IDF followed by a truncated SVD (LSA), from scikit-learn.

It is a **local text vectorizer, not an LLM embedding model**: texts that share words get
similar vectors, texts that mean the same in other words do not.

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
import warnings

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize


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
        X = self.vectorizer_.transform(texts)
        Z = self.svd_.transform(X) if self.svd_ is not None else X.toarray()
        return normalize(np.asarray(Z, dtype=np.float64)).astype(np.float32)

    def __repr__(self) -> str:
        state = f"fitted, dim={self.dim_}, space={self.space_id}" if self.fitted else "not fitted"
        return f"OfflineEmbedder({state})"
