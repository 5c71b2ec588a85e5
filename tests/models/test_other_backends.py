"""The model builders on the JAX and PyTorch backends: each builder trains
in `fit` (compiled with XLA on JAX; eager on PyTorch, where the layer tests
already compile every layer's `fit` with `torch.compile`), and its `.keras`
file reloads with `safe_mode=True` to the same predictions.

CI runs this file with `KERAS_BACKEND=jax` and `KERAS_BACKEND=torch`; on
TensorFlow the rest of `tests/models` covers the builders."""

import os

import keras
import numpy as np
import pytest
from backend_utils import BACKEND
from backend_utils import to_numpy

import keras_attention as ka

pytestmark = pytest.mark.skipif(
    BACKEND == "tensorflow", reason="the rest of tests/models covers TensorFlow"
)

V, T = 23, 10
SIZES = dict(num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16)


def _case(name):
    """(model, x, y, loss) of one builder on small generated data."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, (8, T))
    ids[4:, 7:] = 0  # padding
    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if name == "causal_lm":
        model = ka.models.causal_lm(
            vocabulary_size=V, sequence_length=T, position_scheme="rotary", **SIZES
        )
        return model, ids, ids, sparse
    if name == "masked_lm":
        return ka.models.masked_lm(vocabulary_size=V, sequence_length=T, **SIZES), ids, ids, sparse
    if name == "classifier":
        model = ka.models.transformer_classifier(
            vocabulary_size=V, sequence_length=T, num_classes=3,
            position_scheme="alibi", **SIZES,
        )
        return model, ids, rng.integers(0, 3, (8,)), sparse
    if name == "translator":
        model = ka.models.transformer_translator(vocabulary_size=V, sequence_length=T, **SIZES)
        return model, [ids, ids], ids, sparse
    model = ka.models.memory_model(
        4, 3, memory=name, controller_units=8, memory_size=6, memory_width=4
    )
    signals = rng.standard_normal((8, 5, 4)).astype("float32")
    bits = (rng.random((8, 5, 3)) > 0.5).astype("float32")
    return model, signals, bits, keras.losses.BinaryCrossentropy(from_logits=True)


@pytest.mark.parametrize(
    "name", ["causal_lm", "masked_lm", "classifier", "translator", "ntm", "dnc"]
)
def test_builder_trains_and_reloads(name, tmp_path):
    model, x, y, loss = _case(name)
    before = [to_numpy(w).copy() for w in model.trainable_weights]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=loss, jit_compile=BACKEND == "jax"
    )
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    moved = [not np.allclose(b, to_numpy(w)) for b, w in zip(before, model.trainable_weights)]
    assert sum(moved) > len(moved) // 2, (sum(moved), len(moved))
    path = os.path.join(tmp_path, name + ".keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        to_numpy(reloaded.predict(x, verbose=0)),
        to_numpy(model.predict(x, verbose=0)),
        rtol=1e-5, atol=1e-5,
    )
