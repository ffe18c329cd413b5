"""Cold start on MovieLens 100K: ALS against content and hybrid recommenders.

Three scenarios, each model refitted on each split's training part (see
:func:`perso_kit.roles.interpreter.cold_start_table`):

* **new items** -- ``cold_start_items``: every interaction with a random 10% of the rated
  movies is held out (those movies have no training data); lists are restricted to them.
  ``new_item_share`` is the share of list slots they get when recommending from the whole
  catalog.
* **users <=5** -- ``cold_start_users(n_visible=5)``: 10% of the users keep only their first
  five ratings for training.
* **warm users** -- ``random_per_user``: 25% of each user's ratings held out.

Item text: MovieLens 100K has no descriptions, so the content model reads title, year and
genres, embedded with the offline TF-IDF+SVD vectorizer (a classic text model, not an LLM) --
unless a real LLM is configured (``get_llm()`` is not the offline stand-in): then its
embeddings are used and, with ``--attributes``, the attributes it gives each movie are added to
the text (cached; costs tokens).

    PERSO_KIT_DATA_DIR=/path/with/ml-100k python benchmarks/cold_start_movielens.py
    python benchmarks/cold_start_movielens.py --dataset ml-latest-small --k 20
"""
from __future__ import annotations

import argparse
import platform
import time

import pandas as pd


def run(dataset: str = "ml-100k", k: int = 10, seed: int = 42, attributes: bool = False,
        content_weight: float = 0.1) -> pd.DataFrame:
    import perso_kit as pk
    from perso_kit.llm import get_llm
    from perso_kit.recommenders import ALS
    from perso_kit.roles.interpreter import (ContentRecommender, HybridRecommender,
                                             cold_start_table, embed_items, item_text)
    from perso_kit.split import cold_start_items, cold_start_users, random_per_user

    ds = pk.load_dataset(dataset)
    llm = get_llm()
    attrs = None
    if attributes and not llm.is_offline:
        from perso_kit.roles.knowledge import enrich_items
        attrs = enrich_items(llm, ds.items)
    texts = item_text(ds.items, attrs)
    vectors = embed_items(texts, None if llm.is_offline else llm)
    item_split = cold_start_items(ds, fraction=0.1, seed=seed)
    new = item_split.test.interactions["item_id"].unique()
    models = {"ALS": ALS(), "Content": ContentRecommender(vectors=vectors),
              "Hybrid": HybridRecommender(content=ContentRecommender(vectors=vectors),
                                          content_weight=content_weight)}
    table = cold_start_table(models, item_split, new,
                             user_split=cold_start_users(ds, fraction=0.1, n_visible=5,
                                                         seed=seed),
                             warm_split=random_per_user(ds, seed=seed), k=k)
    table.attrs["embedder"] = ("offline TF-IDF+SVD vectorizer (not an LLM)" if llm.is_offline
                               else llm.label)
    table.attrs["text"] = "title, year, genres" + (" + LLM attributes" if attrs is not None
                                                   else "")
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--attributes", action="store_true",
                   help="add LLM attributes to the item text (only with a real LLM)")
    p.add_argument("--content-weight", type=float, default=0.1)
    a = p.parse_args()
    t0 = time.perf_counter()
    table = run(a.dataset, a.k, a.seed, a.attributes, a.content_weight)
    print(f"Cold start on {a.dataset} (k={a.k}, seed {a.seed}); item text: "
          f"{table.attrs['text']}; vectors: {table.attrs['embedder']}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\n{time.perf_counter() - t0:.1f} s on {platform.processor() or platform.machine()}")


if __name__ == "__main__":
    main()
