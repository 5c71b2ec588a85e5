"""Load a `benchmarks/*.py` script as a module, its `common` kept apart.

The scripts put `benchmarks/` on `sys.path` and import `common`; the examples
have a `common` module of their own, so both `sys.path` and
`sys.modules["common"]` are restored after each test.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def load_benchmark(monkeypatch):
    """`load_benchmark("generation")` -> the module `benchmarks/generation.py`."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = sys.modules.pop("common", None)

    def load(name):
        spec = importlib.util.spec_from_file_location(
            f"{name}_benchmark", REPO / "benchmarks" / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    sys.modules.pop("common", None)
    if saved is not None:
        sys.modules["common"] = saved
