"""The LLM as a content interpreter: item and user text turned into vectors, and recommenders
built on them.

Collaborative filtering knows an item only through the people who interacted with it, so a
new release (no interactions yet) is invisible to it. A *content interpreter* reads what the
item is -- title, genres, description, attributes an LLM added (:mod:`perso_kit.roles.knowledge`)
-- and places it in a vector space; a user becomes the average of the vectors of what they
watched (or the vector of a profile written in words). Then:

==========================  ==================================================================
:func:`item_text`           the text that stands for an item (title, year, genres, description,
                            optional LLM attributes)
:func:`embed_items`         vectors of those texts: an LLM's embeddings, or the offline TF-IDF+SVD
                            vectorizer (a classic text model, not an LLM)
:class:`ContentRecommender` score = cosine between the user's profile vector and each item
:class:`HybridRecommender`  CF score blended with content similarity; items CF has never seen
                            get a content-only score
:func:`content_features`    content similarity and attribute matches as features for the
                            LightGBM ranker (:class:`~perso_kit.recommenders.ltr.TwoStageRanker`)
:func:`cold_start_table`    recall and NDCG on new items, on users with few interactions and on
                            warm users, plus the share of new items in full-catalog lists
==========================  ==================================================================

>>> from perso_kit import load_dataset
>>> from perso_kit.split import new_items
>>> split = new_items(load_dataset("demo"))
>>> model = ContentRecommender().fit(split.train)
>>> model.recommend(users=[1], k=3, items=split.train.meta["new_item_ids"])["rank"].tolist()
[1, 2, 3]
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..llm.embeddings import OfflineEmbedder
from ..recommenders.base import Recommender
from ..split import Split

_ATTRIBUTE_FIELDS = ("genres", "mood", "themes", "audience", "keywords", "summary")


def _as_list(value) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]


def item_text(items: pd.DataFrame, attributes: pd.DataFrame | None = None,
              description: bool = True) -> pd.Series:
    """The text that stands for each item: ``"Title (year). Genres: ... . Description"``.

    Parameters
    ----------
    items : DataFrame
        A catalog (``item_id, title, year, genres, description``).
    attributes : DataFrame, optional
        LLM attributes keyed by ``item_id`` (from
        :func:`perso_kit.roles.knowledge.enrich_items`); their mood, themes, audience,
        keywords and summary are appended where present.
    description : bool
        Include the catalog description (set False to see what title and genres alone give).

    Returns
    -------
    Series of strings, one per catalog row, indexed by ``item_id``.

    >>> items = pd.DataFrame({"item_id": [1], "title": ["Alien (1979)"], "year": [1979],
    ...                       "genres": [("Horror", "Sci-Fi")], "description": [""]})
    >>> item_text(items).iloc[0]
    'Alien (1979). Genres: Horror, Sci-Fi.'
    """
    parts = [items["title"].astype(str) + "."]
    parts.append(items["genres"].map(lambda g: f" Genres: {', '.join(_as_list(g))}."
                                     if len(_as_list(g)) else ""))
    if description:
        parts.append(items["description"].fillna("").astype(str).map(
            lambda d: f" {d}" if d else ""))
    text = parts[0]
    for p in parts[1:]:
        text = text + p
    text = pd.Series(text.to_numpy(), index=items["item_id"].to_numpy(), dtype=object)
    if attributes is not None and len(attributes):
        attrs = attributes.set_index("item_id")
        extra = []
        for iid in text.index:
            if iid not in attrs.index:
                extra.append("")
                continue
            row = attrs.loc[iid]
            bits = []
            for f in _ATTRIBUTE_FIELDS[1:]:
                vals = _as_list(row.get(f)) if f in attrs.columns else []
                if vals:
                    bits.append(f"{f.capitalize()}: {', '.join(vals)}.")
            extra.append(" " + " ".join(bits) if bits else "")
        text = text + pd.Series(extra, index=text.index)
    return text.str.strip()


def embed_items(texts, embedder=None, dim: int = 128, seed: int = 0) -> np.ndarray:
    """L2-normalized vectors of item texts (one row per text, same order).

    Parameters
    ----------
    texts : sequence of str
        Usually :func:`item_text` of the whole catalog.
    embedder : None, an :class:`~perso_kit.llm.client.LLM`, or an object with ``fit`` and
        ``transform``
        None: the offline TF-IDF+SVD vectorizer (a classic text model, not an LLM), fitted on
        ``texts``. An LLM: ``llm.embed(texts, fit=True)`` (an embeddings endpoint, or the same
        offline vectorizer when the LLM is the offline stand-in).
    dim, seed : int
        Size and seed of the offline vectorizer.
    """
    texts = [str(t) for t in texts]
    if embedder is None:
        embedder = OfflineEmbedder(dim=dim, seed=seed)
    if hasattr(embedder, "embed"):
        V = np.asarray(embedder.embed(texts, fit=True), dtype=np.float64)
    else:
        V = np.asarray(embedder.fit(texts).transform(texts), dtype=np.float64)
    return _normalize(V)


def _normalize(V: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    return np.divide(V, norms, out=np.zeros_like(V, dtype=np.float64), where=norms > 0)


def user_vectors(train: Dataset, item_vectors: np.ndarray, centered: bool = True) -> np.ndarray:
    """Each user's profile vector: the normalized sum of the vectors of their training items.

    With ``centered=True`` each item is weighted by ``1 + (rating - user mean)/2`` (clipped at
    0.1), so items a user rated above their own average count more.
    """
    X = train.matrix("rating").tocsr().astype(np.float64)
    if centered and X.nnz:
        n = np.diff(X.indptr)
        means = np.divide(np.asarray(X.sum(axis=1)).ravel(), n, out=np.zeros(len(n)),
                          where=n > 0)
        X.data = np.clip(1 + (X.data - np.repeat(means, n)) / 2, 0.1, None)
    else:
        X.data = np.ones_like(X.data)
    return _normalize(np.asarray(X @ item_vectors))


class ContentRecommender(Recommender):
    """Recommend items whose text is closest to what the user watched.

    ``score(u, i) = cos(profile_u, v_i)`` with ``v_i`` the item's text vector and
    ``profile_u`` the (rating-weighted) mean of the vectors of ``u``'s training items, plus,
    if given, the vector of a profile written in words.

    Parameters
    ----------
    vectors : array (n_items x d), optional
        Precomputed item vectors in catalog order (e.g. from :func:`embed_items`); computed
        from :func:`item_text` at ``fit`` when omitted.
    embedder : optional
        What turns texts into vectors when ``vectors`` is omitted (see :func:`embed_items`).
    attributes : DataFrame, optional
        LLM attributes to add to the item texts (see :func:`item_text`).
    profiles : Series user_id -> text, optional
        Profiles in words (:func:`perso_kit.roles.knowledge.user_profiles`), embedded in the
        item space and mixed into the user vector with weight ``profile_weight``. Needs an
        ``embedder`` that can embed new texts in the fitted space (the default vectorizer can).
    profile_weight : float
    dim, seed : int
        Settings of the default offline vectorizer.

    Attributes
    ----------
    item_vectors_ : array (n_items x d)
    user_vectors_ : array (n_users x d)
    """

    def __init__(self, vectors: np.ndarray | None = None, embedder=None,
                 attributes: pd.DataFrame | None = None, profiles: pd.Series | None = None,
                 profile_weight: float = 0.5, dim: int = 128, seed: int = 0,
                 name: str | None = None):
        self.vectors = vectors
        self.embedder = embedder
        self.attributes = attributes
        self.profiles = profiles
        self.profile_weight = float(profile_weight)
        self.dim = int(dim)
        self.seed = int(seed)
        self._name = name or "Content"

    def __repr__(self) -> str:
        return (f"ContentRecommender(vectors={'given' if self.vectors is not None else None}, "
                f"profiles={'given' if self.profiles is not None else None}, dim={self.dim})")

    def fit(self, train: Dataset) -> "ContentRecommender":
        super().fit(train)
        if self.vectors is not None:
            V = np.asarray(self.vectors, dtype=np.float64)
            if V.shape[0] != train.n_items:
                raise ValueError(f"vectors has {V.shape[0]} rows but the catalog has "
                                 f"{train.n_items} items; give one row per catalog item, in "
                                 "catalog order (embed_items(item_text(ds.items)))")
            self.item_vectors_ = _normalize(V)
            self._embedder_ = self.embedder
        else:
            texts = item_text(train.items, self.attributes).tolist()
            self._embedder_ = self.embedder or OfflineEmbedder(dim=self.dim, seed=self.seed)
            self.item_vectors_ = embed_items(texts, self._embedder_)
        U = user_vectors(train, self.item_vectors_)
        if self.profiles is not None and len(self.profiles):
            U = U + self.profile_weight * self._profile_vectors(train)
        self.user_vectors_ = _normalize(U)
        return self

    def _profile_vectors(self, train: Dataset) -> np.ndarray:
        emb = self._embedder_
        if emb is None or not (hasattr(emb, "embed") or hasattr(emb, "transform")):
            raise ValueError("profiles need an embedder that embeds new texts in the item "
                             "space: pass embedder= (an LLM or a fitted OfflineEmbedder)")
        prof = self.profiles.dropna()
        prof = prof[prof.index.isin(train.user_ids)]
        P = np.zeros((train.n_users, self.item_vectors_.shape[1]))
        if len(prof):
            texts = prof.astype(str).tolist()
            Z = emb.embed(texts) if hasattr(emb, "embed") else emb.transform(texts)
            P[train.user_index(prof.index.to_numpy())] = _normalize(np.asarray(Z, float))
        return P

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_vectors_[user_idx] @ self.item_vectors_.T


def _zscore(S: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Standardize each row (mean 0, sd 1), the statistics taken over ``mask`` columns."""
    ref = S if mask is None else S[:, mask]
    mu = ref.mean(axis=1, keepdims=True)
    sd = ref.std(axis=1, keepdims=True)
    return (S - mu) / np.where(sd > 0, sd, 1.0)


class HybridRecommender(Recommender):
    """Collaborative filtering blended with content similarity.

    For each user, both scores are standardized (z-scores over the catalog, the CF one over the
    items CF knows); then

    * an item with training interactions scores ``(1 - w) * z_cf + w * z_content``;
    * an item nobody interacted with in training (CF has no signal for it) scores
      ``(1 - w) * cold_prior + w_cold * z_content``: content alone decides among new items,
      and ``cold_prior`` (a z-value) says how good an unseen item is assumed to be compared
      with the items CF knows.

    Parameters
    ----------
    cf : Recommender, optional
        Unfitted collaborative model (default :class:`~perso_kit.recommenders.ALS`); a copy is
        fitted.
    content : Recommender, optional
        Unfitted content model (default :class:`ContentRecommender`); a copy is fitted.
    content_weight : float
        ``w``, the weight of content on items CF knows (0: CF only).
    cold_weight : float
        ``w_cold``, the weight of content on items CF has never seen.
    cold_prior : float
        The z-value standing in for the CF score of unseen items.

    >>> from perso_kit import load_dataset
    >>> from perso_kit.split import new_items
    >>> split = new_items(load_dataset("demo"))
    >>> hybrid = HybridRecommender().fit(split.train)
    >>> len(hybrid.recommend(users=[1], k=10))
    10
    """

    def __init__(self, cf: Recommender | None = None, content: Recommender | None = None,
                 content_weight: float = 0.1, cold_weight: float = 1.0,
                 cold_prior: float = 0.0, name: str | None = None):
        if not 0 <= content_weight <= 1:
            raise ValueError(f"content_weight must be between 0 and 1, got {content_weight}")
        self.cf = cf
        self.content = content
        self.content_weight = float(content_weight)
        self.cold_weight = float(cold_weight)
        self.cold_prior = float(cold_prior)
        self._name = name or "Hybrid"

    def fit(self, train: Dataset) -> "HybridRecommender":
        super().fit(train)
        if self.cf is None:
            from ..recommenders import ALS
            cf = ALS()
        else:
            cf = copy.deepcopy(self.cf)
        content = copy.deepcopy(self.content) if self.content is not None \
            else ContentRecommender()
        self.cf_ = cf.fit(train)
        self.content_ = content.fit(train)
        self.cold_items_ = train.item_popularity().to_numpy() == 0
        return self

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        warm = ~self.cold_items_
        w = self.content_weight
        cf = np.asarray(self.cf_._score(user_idx), dtype=np.float64)
        zc = _zscore(cf, warm) if warm.any() else np.zeros_like(cf)
        zt = _zscore(np.asarray(self.content_._score(user_idx), dtype=np.float64))
        out = (1 - w) * zc + w * zt
        out[:, self.cold_items_] = ((1 - w) * self.cold_prior
                                    + self.cold_weight * zt[:, self.cold_items_])
        return out


def content_features(item_vectors: np.ndarray, attributes: pd.DataFrame | None = None):
    """A feature function for :class:`~perso_kit.recommenders.ltr.TwoStageRanker` built on
    item text vectors (and, if given, LLM attributes).

    Returns ``fn(pairs, history)`` adding, per (user, candidate) pair:

    ``text_sim_profile``
        cosine between the candidate's vector and the user's profile vector (the rating-weighted
        mean of their *history* items; see :func:`user_vectors`);
    ``text_sim_max``
        the largest cosine between the candidate and any single history item;
    ``mood_match`` (with attributes)
        share of the user's history items whose LLM mood equals the candidate's;
    ``llm_genre_match`` (with attributes)
        mean share of the user's history carrying each of the candidate's LLM genres.

    Only ``history`` (what the ranker may see) enters the profiles, never the labels.

    >>> from perso_kit.recommenders import TwoStageRanker      # doctest: +SKIP
    >>> ranker = TwoStageRanker(extra_features=[content_features(V)])  # doctest: +SKIP
    """
    V = _normalize(np.asarray(item_vectors, dtype=np.float64))

    def text_features(pairs: pd.DataFrame, history: Dataset) -> dict:
        if V.shape[0] != history.n_items:
            raise ValueError(f"item_vectors has {V.shape[0]} rows, the catalog {history.n_items}")
        u = history.user_index(pairs["user_id"].to_numpy())
        i = history.item_index(pairs["item_id"].to_numpy())
        U = user_vectors(history, V)
        out = {"text_sim_profile": np.einsum("ij,ij->i", U[u], V[i])}
        X = history.matrix().tocsr()
        best = np.full(len(pairs), np.nan)
        order = np.argsort(u, kind="stable")
        bounds = np.flatnonzero(np.diff(u[order])) + 1
        for rows in np.split(order, bounds):
            if not len(rows):
                continue
            seen = X.indices[X.indptr[u[rows[0]]]:X.indptr[u[rows[0]] + 1]]
            if len(seen):
                best[rows] = (V[i[rows]] @ V[seen].T).max(axis=1)
        out["text_sim_max"] = best
        if attributes is not None and len(attributes):
            out.update(_attribute_matches(attributes, history, X, u, i))
        return out

    return text_features


def _attribute_matches(attributes: pd.DataFrame, history: Dataset, X, u, i) -> dict:
    attrs = attributes.set_index("item_id").reindex(history.item_ids)
    act = np.maximum(np.asarray(X.sum(axis=1)).ravel(), 1)
    out = {}
    if "mood" in attrs.columns:
        moods = attrs["mood"].fillna("").astype(str).to_numpy()
        names, code = np.unique(moods, return_inverse=True)
        M = np.zeros((len(moods), len(names)))
        M[np.arange(len(moods)), code] = 1
        M[:, names == ""] = 0
        share = np.asarray(X @ M) / act[:, None]
        out["mood_match"] = share[u, code[i]]
    if "genres" in attrs.columns:
        glists = attrs["genres"].map(_as_list)
        vocab = sorted({g for gl in glists for g in gl})
        if vocab:
            pos = {g: k for k, g in enumerate(vocab)}
            G = np.zeros((len(glists), len(vocab)))
            for r, gl in enumerate(glists):
                for g in gl:
                    G[r, pos[g]] = 1
            share = np.asarray(X @ G) / act[:, None]
            n_g = G[i].sum(axis=1)
            tot = (G[i] * share[u]).sum(axis=1)
            out["llm_genre_match"] = np.divide(tot, n_g, out=np.zeros(len(i)), where=n_g > 0)
    return out


def cold_start_table(models, item_split: Split, new_item_ids, user_split: Split | None = None,
                     warm_split: Split | None = None, k: int = 10) -> pd.DataFrame:
    """The cold-start table: each model on new items, on new users and on warm users.

    Scenarios (one row per model and scenario; each model is refitted on each split's train):

    ``new items``
        ``item_split`` (e.g. :func:`~perso_kit.split.new_items` or
        :func:`~perso_kit.split.cold_start_items`), lists restricted to ``new_item_ids``:
        can the model tell which new item a user will pick? ``new_item_share`` is the share of
        slots new items take when the model recommends from the *whole* catalog.
    ``users <=5``
        ``user_split`` (e.g. ``cold_start_users(ds, n_visible=5)``): users with at most five
        training interactions, lists from the whole catalog.
    ``warm users``
        ``warm_split`` (e.g. ``random_per_user(ds)``), all test users.

    Returns
    -------
    DataFrame ``model, scenario, users, recall@k, ndcg@k, new_item_share``.
    """
    from ..evaluate import evaluate

    new_item_ids = np.asarray(new_item_ids)
    rows = []
    t = evaluate(models, item_split, k=k, items=new_item_ids, progress=False)
    users = item_split.test_users
    for _, r in t[t["segment"] == "all"].iterrows():
        recs = models[r["model"]].recommend(users=users, k=k)
        rows.append(dict(model=r["model"], scenario="new items", users=r["users"],
                         recall=r[f"recall@{k}"], ndcg=r[f"ndcg@{k}"],
                         new_item_share=float(recs["item_id"].isin(new_item_ids).mean())))
    for name, split, seg in (("users <=5", user_split, "<=5"), ("warm users", warm_split, "all")):
        if split is None:
            continue
        t = evaluate(models, split, k=k, by="activity", progress=False)
        for _, r in t[t["segment"] == seg].iterrows():
            rows.append(dict(model=r["model"], scenario=name, users=r["users"],
                             recall=r[f"recall@{k}"], ndcg=r[f"ndcg@{k}"],
                             new_item_share=np.nan))
    out = pd.DataFrame(rows).rename(columns={"recall": f"recall@{k}", "ndcg": f"ndcg@{k}"})
    return out
