"""Every public docstring's `Example:` block runs."""

import matplotlib
import pytest

import api_inventory

matplotlib.use("Agg")

OBJECTS = [
    (name, obj)
    for name, obj in api_inventory.public_objects()
    if api_inventory.example_blocks(obj.__doc__)
]


def test_examples_were_found():
    assert len(OBJECTS) > 0


@pytest.mark.parametrize("name,obj", OBJECTS, ids=[n for n, _ in OBJECTS])
def test_docstring_example_runs(name, obj):
    for block in api_inventory.example_blocks(obj.__doc__):
        exec(compile(block, f"<{name} example>", "exec"), {"__name__": "__example__"})
