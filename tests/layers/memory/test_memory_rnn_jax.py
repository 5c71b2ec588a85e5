"""NTM / DNC on JAX: the time loop is one `jax.jit` function of the weights;
the layers export as SavedModels with gradients.

Keras' JAX loop scans a closure made anew at every call; run op by op (a
`fit` with `jit_compile=False`), JAX compiled it and its linearization at
every step, and XLA crashed the process within 150 steps (jax 0.10.2).
These tests pin the loop to one trace per layer and input signature and
check that the jitted loop gives Keras' loop's outputs and gradients.
"""

import keras
import numpy as np
import pytest
from backend_utils import BACKEND
from backend_utils import assert_exported_model_serves
from backend_utils import gradients

from keras_attention.layers import DNC
from keras_attention.layers import NTM
from keras_attention.layers.memory.memory_rnn import MemoryRNN

pytestmark = pytest.mark.skipif(
    BACKEND != "jax", reason="the jitted loop is JAX-only; other backends run Keras' loop"
)

LAYERS = {
    "ntm": lambda: NTM(8, 6, 4, output_dim=3, return_sequences=True),
    "dnc": lambda: DNC(
        controller_units=8, memory_size=6, memory_width=4, num_read_heads=2,
        output_dim=3, return_sequences=True,
    ),
}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 5, 4)).astype("float32")
    y = rng.standard_normal((8, 5, 3)).astype("float32")
    return x, y


def _count_loop_traces(monkeypatch):
    traces = []
    loop = MemoryRNN._loop

    def counted(self, *args):
        traces.append(args[-1])  # the `training` flag
        return loop(self, *args)

    monkeypatch.setattr(MemoryRNN, "_loop", counted)
    return traces


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_uncompiled_fit_traces_the_loop_once(name, monkeypatch):
    traces = _count_loop_traces(monkeypatch)
    x, y = _data()
    model = keras.Sequential([keras.Input((5, 4)), LAYERS[name]()])
    model.compile("adam", "mse", jit_compile=False)
    before = [w.copy() for w in model.get_weights()]
    model.fit(x[:2], y[:2], batch_size=2, epochs=1, verbose=0)  # one step, op by op
    assert True in traces, traces
    first = len(traces)
    model.fit(x, y, batch_size=2, epochs=2, verbose=0)  # 8 more steps
    # No new trace; Keras' loop traced (and JAX compiled) at every step.
    assert len(traces) == first, traces
    model.predict(x, batch_size=2, verbose=0)
    model.predict(x, batch_size=2, verbose=0)
    assert len(traces) <= first + 1, traces
    # The steps trained the weights (the loop read the step's values).
    moved = [not np.allclose(b, a) for b, a in zip(before, model.get_weights())]
    assert all(moved), moved


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_jitted_loop_equals_keras_loop(name, monkeypatch):
    x, _ = _data(1)
    mask = np.ones((8, 5), bool)
    mask[:3, 3:] = False
    layer = LAYERS[name]()
    layer(x)

    def loss(inputs):
        out = layer(inputs, mask=mask, training=True)
        return keras.ops.sum(out * keras.ops.arange(1, 4, dtype="float32"))

    outputs = keras.ops.convert_to_numpy(layer(x, mask=mask))
    grads = gradients(loss, [x], layer.trainable_weights)
    # Keras' loop itself, as before the jit (`_loop` is the un-jitted body).
    monkeypatch.setattr(MemoryRNN, "inner_loop", MemoryRNN._loop)
    expected_outputs = keras.ops.convert_to_numpy(layer(x, mask=mask))
    expected_grads = gradients(loss, [x], layer.trainable_weights)
    np.testing.assert_allclose(outputs, expected_outputs, rtol=1e-5, atol=1e-6)
    assert len(grads) == len(expected_grads) == 1 + len(layer.trainable_weights)
    for got, want in zip(grads, expected_grads):
        assert np.abs(want).max() > 0
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_exports_as_a_saved_model_with_gradients(name, tmp_path):
    # `model.export` on JAX traces the gradient with a symbolic batch size,
    # which `ops.prod` cannot take (the products use `halving_product`).
    inputs = keras.Input((None, 4), name="x")
    model = keras.Model(inputs, LAYERS[name]()(inputs))
    x, _ = _data(2)
    assert_exported_model_serves(model, tmp_path, [x[:3]])
