"""Every docstring example of the package runs and shows what it says (the examples are the
first code a student copies)."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import perso_kit

MODULES = sorted(m.name for m in pkgutil.walk_packages(perso_kit.__path__, "perso_kit.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
