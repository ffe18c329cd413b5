"""Command line: ``python -m perso_kit tour | fetch``.

``tour``   execute every notebook headless on the embedded defaults (demo world, offline
           stand-in) and write executed copies and HTML pages to ``build/tour``
``fetch``  download and verify a MovieLens data set into the cache
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perso_kit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tour = sub.add_parser("tour", help="run every notebook headless and summarize")
    tour.add_argument("--dataset", default=None, help="dataset for every notebook (default demo)")
    tour.add_argument("--backend", default=None,
                      help="LLM backend (offline, openai, azure, compatible, replay); "
                           "default: from the environment, else offline")
    tour.add_argument("--small", action="store_true", help="run every notebook at a small size")
    tour.add_argument("--only", nargs="*", help="run only notebooks whose name contains these")
    tour.add_argument("--out", default=None, help="output folder (default build/tour)")
    tour.add_argument("--no-html", action="store_true", help="skip the HTML pages")
    fetch = sub.add_parser("fetch", help="download and verify a MovieLens data set")
    fetch.add_argument("name", help="ml-100k, ml-1m or ml-latest-small")
    args = parser.parse_args(argv)

    if args.command == "fetch":
        from .data import load_dataset
        print(load_dataset(args.name))
        return 0

    from .tour import REPO_DIR, run_tour
    if args.backend:
        os.environ["PERSO_KIT_LLM_BACKEND"] = args.backend
    params = {}
    if args.dataset:
        params["DATASET"] = args.dataset
    if args.small:
        params["SMALL"] = True
    out = args.out or REPO_DIR / "build" / "tour"
    summary = run_tour(out, parameters=params, only=args.only, html=not args.no_html)
    print(summary.to_string(index=False))
    print(f"\nexecuted notebooks and HTML pages in {out}")
    failed = summary[summary["status"] != "ok"]
    return 1 if len(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
