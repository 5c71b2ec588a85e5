"""Meta-tests: every public layer is harness-tested, documented and registered."""

import inspect
import pathlib
import re

import keras
import numpy as np
import pytest
from keras import ops

import api_inventory
import harness

TESTS_DIR = pathlib.Path(__file__).parent
LAYERS = api_inventory.public_layers()
OBJECTS = api_inventory.public_objects()  # every public class and function

# Qualified names of public objects allowed, for now, to lack a runnable
# `Example:` section; each entry needs a comment saying why. Empty: every
# public object is documented with an example (tests/test_docstring_examples.py
# runs them). An entry whose object gains an example fails
# `test_missing_example_list_is_current`, so the list only shrinks.
MISSING_EXAMPLES = frozenset()
HARNESS_CALL = re.compile(r"run_layer_test\(\s*(?:[\w.]+\.)?(\w+)\s*,")


def _harness_tested_names():
    names = set()
    for path in TESTS_DIR.rglob("test_*.py"):
        names.update(HARNESS_CALL.findall(path.read_text()))
    return names


def test_the_package_exposes_layers():
    assert len(LAYERS) > 0


@pytest.mark.parametrize("layer_cls", LAYERS, ids=lambda c: c.__name__)
def test_layer_has_a_harness_test(layer_cls):
    name = layer_cls.__name__
    tested = _harness_tested_names()
    if hasattr(layer_cls, "get_initial_state") and name.endswith("Cell"):
        # An RNN cell runs inside its RNN layer: the layer must be
        # harness-tested with the cell built from the same arguments.
        name = name[: -len("Cell")]
    assert name in tested, f"no test calls run_layer_test({name}, ...)"


@pytest.mark.parametrize("layer_cls", LAYERS, ids=lambda c: c.__name__)
def test_docstring_args_match_constructor(layer_cls):
    params = [
        p
        for p in inspect.signature(layer_cls.__init__).parameters
        if p not in ("self", "kwargs")
    ]
    documented = api_inventory.documented_args(layer_cls.__doc__)
    assert documented is not None, f"{layer_cls.__name__} has no Args: section"
    assert documented == params, (
        f"{layer_cls.__name__} docstring Args {documented} != constructor {params}"
    )


@pytest.mark.parametrize("layer_cls", LAYERS, ids=lambda c: c.__name__)
def test_docstring_sections(layer_cls):
    doc = layer_cls.__doc__
    for header in ("Example:", "References:"):
        assert api_inventory.docstring_section(doc, header) is not None, (
            f"{layer_cls.__name__} docstring has no {header} section"
        )
    assert api_inventory.example_blocks(doc), f"{layer_cls.__name__}: no code example"


def test_inventory_covers_every_subpackage():
    """Objects are collected from the layer subpackages too, not only from
    the top-level modules listed in `api_inventory.PUBLIC_MODULES`."""
    modules = api_inventory.public_modules()
    for name in (
        "keras_attention.ops",
        "keras_attention.layers.attention",
        "keras_attention.layers.memory",
        "keras_attention.layers.position",
        "keras_attention.layers.transformer",
        "keras_attention.models",
        "keras_attention.generation",
        "keras_attention.training",
        "keras_attention.data",
        "keras_attention.export",
        "keras_attention.distribute",
        "keras_attention.tuning",
    ):
        assert name in modules, f"{name} is not inspected by the meta-tests"
    assert len(OBJECTS) > len(LAYERS)


@pytest.mark.parametrize("name,obj", OBJECTS, ids=[n for n, _ in OBJECTS])
def test_public_object_has_an_example(name, obj):
    if name in MISSING_EXAMPLES:
        pytest.skip(f"{name} is on the MISSING_EXAMPLES list")
    assert api_inventory.docstring_section(obj.__doc__, "Example:") is not None, (
        f"{name} docstring has no Example: section"
    )
    assert api_inventory.example_blocks(obj.__doc__), (
        f"{name}: its Example: section has no code block"
    )


def test_missing_example_list_is_current():
    documented = {
        name for name, obj in OBJECTS if api_inventory.example_blocks(obj.__doc__)
    }
    unknown = MISSING_EXAMPLES - {name for name, _ in OBJECTS}
    assert not unknown, f"not public objects: {sorted(unknown)}"
    fixed = MISSING_EXAMPLES & documented
    assert not fixed, f"now have examples, remove from MISSING_EXAMPLES: {sorted(fixed)}"


@pytest.mark.parametrize("layer_cls", LAYERS, ids=lambda c: c.__name__)
def test_layer_is_registered_and_in_its_own_file(layer_cls):
    registered = keras.saving.get_registered_name(layer_cls)
    assert registered == f"keras_attention>{layer_cls.__name__}"
    source = pathlib.Path(inspect.getsourcefile(layer_cls)).stem
    assert source.replace("_", "") == layer_cls.__name__.lower(), (
        f"{layer_cls.__name__} lives in {source}"
    )


def test_harness_grep_finds_calls():
    """The regex the meta-test relies on recognises both call layouts."""
    text = "run_layer_test(\n        layers.FooBar,\n  {})\nrun_layer_test(Baz, {})"
    assert HARNESS_CALL.findall(text) == ["FooBar", "Baz"]


def test_docstring_parsers_on_a_known_docstring():
    doc = '''Summary.

    Args:
        alpha: first.
            continued.
        beta: second.

    Example:

    ```python
    x = 1
    ```
    '''
    assert api_inventory.documented_args(doc) == ["alpha", "beta"]
    assert api_inventory.example_blocks(doc) == ["x = 1"]
    no_example = "Summary.\n\n    Args:\n        alpha: first.\n"
    assert api_inventory.docstring_section(no_example, "Example:") is None
    assert api_inventory.example_blocks(no_example) == []
    prose_only = "Summary.\n\n    Example:\n        Call it with one argument.\n"
    assert api_inventory.example_blocks(prose_only) == []


class _SpecUsesKeyLength(keras.layers.Layer):
    """A layer whose output spec wrongly takes the key length S for T."""

    def call(self, query, value):
        return query + ops.mean(value, axis=1, keepdims=True)  # (B, T, F)

    def compute_output_shape(self, query_shape, value_shape):
        return value_shape  # the bug: (B, S, F)


def test_harness_symbolic_check_compares_every_known_dimension():
    harness._check_symbolic_shapes([(None, 3, 4)], [(2, 3, 4)])
    with pytest.raises(AssertionError, match="axis 1"):
        harness._check_symbolic_shapes([(None, None, 4)], [(2, 3, 4)])
    with pytest.raises(AssertionError, match="axis 2"):
        harness._check_symbolic_shapes([(None, 3, 5)], [(2, 3, 4)])
    with pytest.raises(AssertionError, match="rank"):
        harness._check_symbolic_shapes([(None, 3)], [(2, 3, 4)])


def test_harness_checks_query_value_layers_with_different_lengths():
    x = np.zeros((2, 3, 4), "float32")
    # T == S hides the bug in the eager-vs-symbolic comparison ...
    sym = _SpecUsesKeyLength()(keras.Input((3, 4)), keras.Input((3, 4)))
    harness._check_symbolic_shapes([tuple(sym.shape)], [(2, 3, 4)])
    # ... so the harness derives S = T + 1 itself, and catches it.
    with pytest.raises(AssertionError, match="axis 1"):
        harness._check_cross_lengths(
            _SpecUsesKeyLength, {}, {"query": x, "value": x}, {}
        )
    # A causal call is taken as self-attention.
    harness._check_cross_lengths(
        _SpecUsesKeyLength, {}, {"query": x, "value": x}, {"use_causal_mask": True}
    )
    # With masks it cannot derive S != T: the caller must pass T != S.
    with pytest.raises(AssertionError, match="T != S"):
        harness._check_cross_lengths(
            _SpecUsesKeyLength,
            {},
            {"query": x, "value": x, "value_mask": np.ones((2, 3), bool)},
            {},
        )
