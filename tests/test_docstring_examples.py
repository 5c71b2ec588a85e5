"""Every public docstring's `Example:` block runs (CI also runs this file
with `KERAS_BACKEND=jax` and `KERAS_BACKEND=torch`)."""

import keras
import matplotlib
import pytest

import api_inventory

matplotlib.use("Agg")

OBJECTS = [
    (name, obj)
    for name, obj in api_inventory.public_objects()
    if api_inventory.example_blocks(obj.__doc__)
]


# Examples that need TensorFlow itself on other backends (DESIGN.md: the
# distributed trainer is tf.distribute, the serving pipelines are
# tf.function programs over tensorflow-text), and SavedModel export, which
# reaches TensorFlow from JAX (jax2tf) but not from PyTorch.
TENSORFLOW_ONLY = {
    "keras_attention.distribute.trainer.DistributedTrainer": ("jax", "torch"),
    "keras_attention.export.pipelines.ClassifierPipeline": ("jax", "torch"),
    "keras_attention.export.pipelines.FillMaskPipeline": ("jax", "torch"),
    "keras_attention.export.pipelines.GeneratorPipeline": ("jax", "torch"),
    "keras_attention.export.pipelines.TranslatorPipeline": ("jax", "torch"),
    "keras_attention.export.serving.export_for_serving": ("torch",),
}


def test_examples_were_found():
    assert len(OBJECTS) > 0
    assert set(TENSORFLOW_ONLY) <= {name for name, _ in OBJECTS}


@pytest.mark.parametrize("name,obj", OBJECTS, ids=[n for n, _ in OBJECTS])
def test_docstring_example_runs(name, obj):
    backend = keras.backend.backend()
    if backend in TENSORFLOW_ONLY.get(name, ()):
        pytest.skip(f"needs TensorFlow, not the {backend} backend")
    for block in api_inventory.example_blocks(obj.__doc__):
        exec(compile(block, f"<{name} example>", "exec"), {"__name__": "__example__"})
