"""Install files agree with each other (requirements.txt, pyproject.toml, the lock, binder/,
.ci/run), the library imports without the Jupyter stack, and a wheel built from the repository
works when installed in a fresh environment in another folder."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
JUPYTER_STACK = {"jupyterlab", "ipykernel", "ipywidgets", "nbformat", "nbclient", "nbconvert",
                 "papermill"}


def requirement_lines(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return sorted(line for line in lines if line and not line.startswith(("#", "-")))


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def read_lock(path: Path = REPO / "requirements-lock.txt") -> dict[str, str]:
    """The lock's pins, ``{canonical name: version}``."""
    pins = {}
    for line in requirement_lines(path):
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{path.name}: {line!r} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def unsatisfied(requirements: list[str], pins: dict[str, str]) -> list[str]:
    """Loose requirements that the pinned versions do not satisfy (or do not pin at all)."""
    bad = []
    for line in requirements:
        req = Requirement(line)
        version = pins.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            bad.append(f"{line} (lock: {version or 'missing'})")
    return bad


# ------------------------------------------------------------------------------- the files agree
def test_requirements_install_the_kit_with_the_course_extra():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    assert "-e .[course]" in lines
    assert requirement_lines(REPO / "requirements.txt") == []   # the ranges live in pyproject


def test_the_jupyter_stack_is_an_extra_and_the_library_stays_light():
    assert not names(PYPROJECT["dependencies"]) & JUPYTER_STACK
    assert names(PYPROJECT["optional-dependencies"]["course"]) == JUPYTER_STACK
    assert {"pandas", "matplotlib", "openai", "implicit", "lightgbm",
            "scikit-learn"} <= names(PYPROJECT["dependencies"])


def test_the_lock_satisfies_every_loose_requirement():
    loose = PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["course"]
    assert unsatisfied(loose, read_lock()) == []


def test_the_lock_check_catches_a_pin_outside_a_range_and_a_missing_pin():
    pins = read_lock()
    assert unsatisfied(["numpy>=1.24", "pandas>=2.0"], {**pins, "numpy": "1.21.0"}) == \
        ["numpy>=1.24 (lock: 1.21.0)"]
    assert unsatisfied(["lightgbm>=4.0"], {k: v for k, v in pins.items() if k != "lightgbm"}) \
        == ["lightgbm>=4.0 (lock: missing)"]


def test_the_lock_says_how_to_regenerate_it():
    head = (REPO / "requirements-lock.txt").read_text().split("\n\n")[0]
    assert "pip install --dry-run --ignore-installed" in head
    assert "-r requirements.txt" in head and "> requirements-lock.txt" in head


def test_binder_installs_the_lock_on_the_python_ci_runs():
    binder = REPO / "binder"
    assert "-r ../requirements-lock.txt" in (binder / "requirements.txt").read_text().splitlines()
    assert requirement_lines(binder / "requirements.txt") == []
    runtime = (binder / "runtime.txt").read_text().strip()
    assert runtime == f"python-{sys.version_info.major}.{sys.version_info.minor}", \
        f"binder/runtime.txt says {runtime}; the tests run on {sys.version.split()[0]}"
    assert "pip install --no-deps -e ." in (binder / "postBuild").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = re.search(r"# The README's test command:\n(.+)\n", ci).group(1).strip()
    assert command in readme


def test_the_local_extra_matches_requirements_local():
    extra = PYPROJECT["optional-dependencies"]["local"]
    assert sorted(extra) == requirement_lines(REPO / "requirements-local.txt")
    assert "-r requirements-local.txt" in (REPO / "requirements-test.txt").read_text()
    assert "pip install -r requirements-local.txt" in (REPO / "binder" / "postBuild").read_text()


def test_licence_and_typing_marker():
    assert PYPROJECT["license"] == "MIT"
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert (REPO / "perso_kit" / "py.typed").exists()


# ------------------------------------------------------------------------------- light imports
BLOCKER = textwrap.dedent("""
    import sys
    BLOCKED = {blocked!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked: not installed")
            return None

    sys.meta_path.insert(0, Blocker())
""")


def run_without_jupyter(code: str) -> subprocess.CompletedProcess:
    blocked = sorted(JUPYTER_STACK | {"IPython", "jupyter_client", "jupyter_core", "notebook"})
    script = BLOCKER.format(blocked=blocked) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_the_library_imports_without_jupyter_and_the_llm_layer_without_sklearn():
    run = run_without_jupyter("""
        import perso_kit, perso_kit.llm
        assert "sklearn" not in sys.modules, "perso_kit.llm imported scikit-learn"
        ds = perso_kit.load_dataset("demo")
        reply = perso_kit.llm.get_llm(cache_path="off").chat("Recommend 3 movies like Alien.")
        assert reply.stand_in and reply.text
        print("ok", ds.n_users)
    """)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ok", "1000"]


def test_the_import_probe_sees_a_blocked_module_and_an_eager_sklearn_import():
    run = run_without_jupyter("""
        try:
            import ipywidgets
        except ImportError:
            print("blocked")
        import perso_kit.llm.heuristics          # imports scikit-learn: the probe must see it
        print("sklearn" in sys.modules)
    """)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["blocked", "True"]


# ------------------------------------------------------------------------------- the wheel
@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel from a copy of the repository (with a planted file in data/cache/) and
    install it with --no-deps in a fresh venv whose other packages come from this one."""
    import shutil
    import site

    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    (src / "data" / "cache").mkdir(parents=True, exist_ok=True)
    (src / "data" / "cache" / "planted-cache-file.txt").write_text("must not ship")
    wheels = root / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q",
                            "-w", str(wheels)], capture_output=True, text=True, cwd=root,
                           timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("perso_kit-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True,
                             check=True).stdout.strip()
    # the project's packages, as a plain path: their .pth files (the editable kit) are not run
    Path(purelib, "_project_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                              "--no-deps", "--no-index", "-q", str(wheel)]
                             if _pip_has_python_option() else
                             [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                              "-q", "--target", purelib, str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PERSO_KIT_", "OPENAI_", "AZURE_OPENAI_", "PYTHON"))}
    env.update(PERSO_KIT_CACHE_DIR=str(root / "cache"), PATH=f"{venv / 'bin'}:{env['PATH']}",
               # the borrowed packages' data files (nbconvert's templates) stay in this venv
               JUPYTER_PATH=str(Path(sys.prefix) / "share" / "jupyter"))
    return {"wheel": wheel, "python": python, "cwd": elsewhere, "env": env, "venv": venv}


def _pip_has_python_option() -> bool:
    """pip 22.3 and later can install into another environment (``pip --python``)."""
    import pip
    return tuple(int(x) for x in pip.__version__.split(".")[:2]) >= (22, 3)


def run_installed(installed, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["python"]), *args], capture_output=True, text=True,
                          cwd=installed["cwd"], env=installed["env"], timeout=timeout)


def test_the_wheel_carries_the_data_and_notebooks_but_no_cache(installed):
    files = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for name in ("perso_kit/_data/demo_vocabulary.json", "perso_kit/_data/llm_prices.csv",
                 "perso_kit/_data/recordings/smollm2-135m.sqlite", "perso_kit/_data/agent_tasks.json",
                 "perso_kit/_notebooks/00_start_here.ipynb", "perso_kit/_docs/GLOSSARY.md",
                 "perso_kit/_docs/SYLLABUS.md", "perso_kit/py.typed"):
        assert name in files, f"the wheel lacks {name}"
    shipped_notebooks = {Path(f).name for f in files if f.startswith("perso_kit/_notebooks/")}
    assert shipped_notebooks == {p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert not [f for f in files if f.startswith("perso_kit/_data/cache")
                or "planted-cache-file" in f]
    meta = next(f for f in files if f.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(installed["wheel"]).read(meta).decode()
    assert "License-Expression: MIT" in text
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files)


def test_the_installed_kit_loads_the_demo_and_answers_offline_from_another_folder(installed):
    run = run_installed(installed, "-c", textwrap.dedent("""
        import perso_kit
        from perso_kit.llm import get_llm
        print(perso_kit.__file__)
        print(perso_kit.load_dataset("demo").n_items)
        reply = get_llm().chat("Recommend 3 movies like Alien (1979).")
        print(reply.stand_in, bool(reply.text), reply.cost_usd >= 0)
    """))
    assert run.returncode == 0, run.stderr
    location, n_items, answered = run.stdout.strip().splitlines()
    assert location.startswith(str(installed["venv"])), f"imported the kit from {location}"
    assert n_items == "1800"
    assert answered == "True True True"


def test_the_installed_kit_copies_its_notebooks_out(installed, tmp_path):
    run = run_installed(installed, "-m", "perso_kit", "notebooks", str(tmp_path / "course"))
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "course").glob("*.ipynb")) == \
        sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    again = run_installed(installed, "-m", "perso_kit", "notebooks", str(tmp_path / "course"))
    assert again.returncode == 2 and "--force" in again.stderr   # a student's copy is kept
    # the glossary and syllabus come along, and the notebooks' links to them resolve
    links = [m for nb in (tmp_path / "course").glob("*.ipynb")
             for m in re.findall(r"\]\(([^)#\s]*docs/[^)#\s]+)", nb.read_text(encoding="utf-8"))]
    assert links and not [m for m in links if m.startswith("../")]
    assert all((tmp_path / "course" / m).is_file() for m in links), links


@pytest.mark.notebook
def test_the_installed_kit_runs_the_tour(installed):
    run = run_installed(installed, "-m", "perso_kit", "tour", "--small", "--only", "00")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "00_start_here.ipynb" in run.stdout and " ok" in run.stdout
    executed = installed["cwd"] / "build" / "tour" / "00_start_here.ipynb"
    assert executed.exists()
    assert str(REPO) not in executed.read_text(encoding="utf-8")  # nothing came from the checkout


# ------------------------------------------------------------------------------- Colab
#: the repository the README's Binder badge builds, and what every notebook installs from it
BINDER_REPO = re.search(r"mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/",
                        (REPO / "README.md").read_text()).group(1)
INSTALL_LINE = f'%pip install -q "perso-kit[course] @ git+https://github.com/{BINDER_REPO}@main"'


def course_notebooks() -> list[Path]:
    return sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def first_code_cell(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def run_install_cell(source: str, importable: bool) -> list[tuple]:
    """Run a notebook's install cell as IPython would, with ``%pip`` recorded instead of run;
    ``importable=False`` plants a machine without the kit (Colab). Returns the magics run."""
    from IPython.core.inputtransformer2 import TransformerManager

    ran = []
    shell = type("Shell", (), {"run_line_magic": lambda self, *a: ran.append(a)})()
    code = TransformerManager().transform_cell(source)
    saved = sys.modules.get("perso_kit")
    if not importable:
        sys.modules["perso_kit"] = None      # `import perso_kit` now raises ImportError
    try:
        exec(compile(code, "install-cell", "exec"), {"get_ipython": lambda: shell})
    finally:
        if saved is not None:
            sys.modules["perso_kit"] = saved
        else:
            sys.modules.pop("perso_kit", None)
    return ran


def test_every_notebook_installs_the_kit_first_where_it_is_missing():
    pytest.importorskip("IPython")
    assert BINDER_REPO == "perso-kit/perso-kit"
    sources = {p.name: first_code_cell(p) for p in course_notebooks()}
    assert len(sources) == 14
    for name, source in sources.items():
        assert INSTALL_LINE in source, name
        assert len(source.splitlines()) <= 5, name
        # where the kit is installed (here, Binder, the tour) the cell does nothing ...
        assert run_install_cell(source, importable=True) == [], name
        # ... and where it is not (planted), it installs it from the repository, quietly
        assert run_install_cell(source, importable=False) == [("pip", INSTALL_LINE[5:])], name


def test_readme_and_notebook_00_link_to_colab():
    colab = f"https://colab.research.google.com/github/{BINDER_REPO}/blob/main/notebooks/"
    readme = (REPO / "README.md").read_text()
    assert colab + "00_start_here.ipynb" in readme
    start = (REPO / "notebooks" / "00_start_here.ipynb").read_text()
    assert colab + "00_start_here.ipynb" in start
    for link in re.findall(re.escape(colab) + r"([\w.]+\.ipynb)", readme + start):
        assert (REPO / "notebooks" / link).exists(), link
