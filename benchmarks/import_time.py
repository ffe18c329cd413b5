"""How long does importing the kit take in a fresh process? Prints a table (a benchmark, not a
test).

Protocol: each statement runs in a new ``python -c`` process, ``REPEATS`` times after one
warm-up run (so the files are in the OS cache, as on a second start); wall seconds around the
process and its CPU seconds (user + system, ``getrusage(RUSAGE_CHILDREN)``); the table gives the
median and the minimum. ``python -c pass`` is the interpreter's own start, for reference.
``sklearn loaded`` says whether scikit-learn was imported by the statement.

    python benchmarks/import_time.py
"""
from __future__ import annotations

import platform
import resource
import statistics
import subprocess
import sys
import time

REPEATS = 7
STATEMENTS = {
    "python -c pass": "pass",
    "import perso_kit": "import perso_kit",
    "import perso_kit.llm": "import perso_kit.llm",
    "get_llm() (offline stand-in)": "from perso_kit.llm import get_llm; get_llm(cache_path='off')",
    "one offline chat call": "from perso_kit.llm import get_llm; "
                             "get_llm(cache_path='off').chat('Recommend 3 movies like Alien.')",
    "import perso_kit.widgets": "import perso_kit.widgets",
}
PROBE = "; import sys; print('sklearn' in sys.modules)"


def measure(code: str) -> tuple[list[float], list[float], bool]:
    """Wall and CPU seconds of ``REPEATS`` fresh processes running ``code``, and whether it
    loaded scikit-learn."""
    walls, cpus, loaded = [], [], False
    for i in range(REPEATS + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code + PROBE], capture_output=True,
                             text=True, check=True).stdout
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        loaded = out.strip().splitlines()[-1] == "True"
        if i:  # the first run warms the file cache
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus, loaded


def main() -> None:
    print(f"{time.strftime('%Y-%m-%d')}; {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}; {REPEATS} runs each after one warm-up\n")
    print("| statement | wall s median | wall s min | CPU s median | sklearn loaded |")
    print("| --- | --- | --- | --- | --- |")
    for name, code in STATEMENTS.items():
        walls, cpus, loaded = measure(code)
        print(f"| `{name}` | {statistics.median(walls):.2f} | {min(walls):.2f} | "
              f"{statistics.median(cpus):.2f} | {'yes' if loaded else 'no'} |")


if __name__ == "__main__":
    main()
