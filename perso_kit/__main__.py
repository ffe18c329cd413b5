"""Command line: ``python -m perso_kit tour | fetch | local-llm``.

``tour``       execute every notebook headless on the embedded defaults (demo world, offline
               stand-in) and write executed copies and HTML pages to ``build/tour``
``fetch``      download and verify a MovieLens data set into the cache
``local-llm``  start a local model server (llama.cpp) that outlives the command, and print how
               to use it from another process; ``--stop`` stops it, ``--list`` lists presets
``record``     run the Act-3 notebooks with the local model and store its answers and numbers
               as the shipped recording (``data/recordings/``)
``notebooks``  copy the course's notebooks into a folder (from an installed kit: they ship
               inside the package), to open them with Jupyter
``student-edition``  write the student edition of the notebooks into a folder: no solution
               cells, no written solutions, no outputs (``perso_kit.edition``)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


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
    tour.add_argument("--only", nargs="*",
                      help="run only notebooks whose name contains these (e.g. 01,02 or 01 02)")
    tour.add_argument("--out", default=None, help="output folder (default build/tour)")
    tour.add_argument("--no-html", action="store_true", help="skip the HTML pages")
    fetch = sub.add_parser("fetch", help="download and verify a MovieLens data set")
    fetch.add_argument("name", help="ml-100k, ml-1m, ml-latest-small, ml-20m or ml-25m")
    local = sub.add_parser("local-llm", help="start (or stop) a local model server")
    local.add_argument("--model", default=None,
                       help="a preset name or a .gguf path (default: PERSO_KIT_LOCAL_MODEL, "
                            "else smollm2-135m)")
    local.add_argument("--stop", action="store_true", help="stop the running server")
    local.add_argument("--list", action="store_true", help="list the model presets")
    rec = sub.add_parser("record", help="remake the shipped local-model recording")
    rec.add_argument("--model", default=None, help="a preset name or a .gguf path")
    rec.add_argument("--name", default=None, help="recording name (default smollm2-135m)")
    rec.add_argument("--only", default=None,
                     help="notebook numbers, comma-separated (default: all of Act 3)")
    nbs = sub.add_parser("notebooks", help="copy the course's notebooks into a folder")
    nbs.add_argument("dest", help="the folder to copy them into (created if missing)")
    nbs.add_argument("--force", action="store_true", help="overwrite notebooks already there")
    stu = sub.add_parser("student-edition",
                         help="write the notebooks without solutions or outputs into a folder")
    stu.add_argument("dest", help="the folder to write them into (created if missing)")
    stu.add_argument("--force", action="store_true", help="overwrite notebooks already there")
    args = parser.parse_args(argv)

    if args.command == "notebooks":
        return _copy_notebooks(Path(args.dest), force=args.force)
    if args.command == "student-edition":
        return _student_edition(Path(args.dest), force=args.force)

    if args.command == "record":
        from . import recording
        from .tour import split_names
        only = tuple(split_names(args.only)) if args.only else recording.ACT3
        summary = recording.make_recording(args.model, args.name or recording.DEFAULT_RECORDING,
                                           notebooks=only)
        print(summary.to_string(index=False))
        print(f"\nrecording written to {recording.RECORDING_DIR}")
        return 0
    if args.command == "local-llm":
        return _local_llm(args)

    if args.command == "fetch":
        return _fetch(args.name)

    from . import tour as tour_module
    from .tour import REPO_DIR, run_tour
    if args.backend:
        os.environ["PERSO_KIT_LLM_BACKEND"] = args.backend
    params = {}
    if args.dataset:
        params["DATASET"] = args.dataset
    if args.small:
        params["SMALL"] = True
    if args.out is None and not (REPO_DIR / "notebooks").is_dir():
        args.out = Path("build") / "tour"  # an installed kit: write beside the caller
    out = Path(args.out or REPO_DIR / "build" / "tour").resolve()
    options = {k: v for k, v in (("dataset", args.dataset), ("backend", args.backend),
                                 ("small", args.small or None),
                                 ("only", " ".join(args.only or []) or None)) if v}
    try:
        summary = run_tour(out, parameters=params, only=args.only, html=not args.no_html,
                           options=options, folder=tour_module.NOTEBOOK_DIR)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.to_string(index=False))
    skipped = summary[summary["status"] == "skipped"]
    if len(skipped):
        print(f"\nskipped {len(skipped)} notebook(s) that need the demo world (they run without "
              "--dataset)")
    print(f"\nexecuted notebooks and HTML pages in {out}\nopen {out / 'index.html'} in a "
          f"browser (or: python -m http.server -d {out}, then http://localhost:8000)")
    failed = summary[summary["status"] == "failed"]
    return 1 if len(failed) else 0


def _copy_notebooks(dest: Path, force: bool = False) -> int:
    """``notebooks``: copy the course's notebooks into ``dest``; a notebook already there (maybe
    with a student's work in it) is kept unless ``force``."""
    from .edition import copy_docs, docs_beside
    from .tour import NOTEBOOK_DIR, notebooks

    paths = notebooks(NOTEBOOK_DIR)
    if not paths:
        print(f"error: no notebooks in {NOTEBOOK_DIR}; reinstall the kit", file=sys.stderr)
        return 2
    there = [p.name for p in paths if (dest / p.name).exists()]
    if there and not force:
        print(f"error: {dest} already holds {', '.join(there)}; choose another folder, or add "
              "--force to overwrite them", file=sys.stderr)
        return 2
    dest.mkdir(parents=True, exist_ok=True)
    for p in paths:  # their links to the glossary and syllabus point at dest/docs/
        (dest / p.name).write_text(docs_beside(p.read_text(encoding="utf-8")), encoding="utf-8")
    copy_docs(dest)
    print(f"copied {len(paths)} notebooks to {dest}\nopen them with: jupyter lab "
          f"{dest / paths[0].name}")
    return 0


def _student_edition(dest: Path, force: bool = False) -> int:
    """``student-edition``: the notebooks without solutions or outputs, into ``dest``."""
    from .edition import write_student_edition
    try:
        paths = write_student_edition(dest, force=force)
    except (OSError, ValueError) as e:  # a folder that holds notebooks, no notebooks, the source
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote the student edition of {len(paths)} notebooks to {dest} (no solution cells, "
          f"no written solutions, no outputs)\nopen them with: jupyter lab {paths[0]}")
    return 0


def _fetch(name: str) -> int:
    """``fetch``: download and verify one data set; one clear line on failure, no traceback."""
    from .data import load_dataset
    try:
        print(load_dataset(name))
    except (OSError, ValueError, RuntimeError) as e:  # no network, a bad name, a bad file
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _local_llm(args) -> int:
    from .llm import local

    if args.list:
        print(local.describe())
        return 0
    try:
        if args.stop:
            stopped = local.stop_detached(args.model)
            print("stopped the local model server" if stopped else "no local model server ran")
            return 0
        server = local.start_server(args.model, detached=True)
    except local.LocalModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"model:  {server.alias} ({server.model_path})\nport:   {server.port}\n"
          f"log:    {server.log_path}\n\nUse it from another process with:\n  "
          f"{server.env_line()}\nStop it with: python -m perso_kit local-llm --stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
