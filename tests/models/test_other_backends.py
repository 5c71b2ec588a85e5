"""The model builders on the JAX and PyTorch backends (a subprocess each:
the backend is global): every builder trains in `fit` (compiled with XLA on
JAX; eager on PyTorch, where the PyTorch layer run already compiles every
layer's `fit` with `torch.compile`), and its `.keras` file reloads with
`safe_mode=True` to the same predictions."""

import textwrap

import pytest
from backend_utils import run_on_backend

SCRIPT = textwrap.dedent(
    """
    import os, sys, tempfile
    import numpy as np, keras
    import keras_attention as ka
    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    V, T = 23, 10
    sizes = dict(num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16)
    ids = rng.integers(1, V, (8, T))
    ids[4:, 7:] = 0  # padding
    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    translator = ka.models.transformer_translator(
        vocabulary_size=V, sequence_length=T, **sizes)
    bits = (rng.random((8, 5, 3)) > 0.5).astype("float32")
    signals = rng.standard_normal((8, 5, 4)).astype("float32")
    cases = {
        "causal_lm": (ka.models.causal_lm(vocabulary_size=V, sequence_length=T,
                                          position_scheme="rotary", **sizes),
                      ids, ids, sparse),
        "masked_lm": (ka.models.masked_lm(vocabulary_size=V, sequence_length=T, **sizes),
                      ids, ids, sparse),
        "classifier": (ka.models.transformer_classifier(
                           vocabulary_size=V, sequence_length=T, num_classes=3,
                           position_scheme="alibi", **sizes),
                       ids, rng.integers(0, 3, (8,)), sparse),
        "translator": (translator, [ids, ids], ids, sparse),
        "ntm": (ka.models.memory_model(4, 3, memory="ntm", controller_units=8,
                                       memory_size=6, memory_width=4),
                signals, bits, keras.losses.BinaryCrossentropy(from_logits=True)),
        "dnc": (ka.models.memory_model(4, 3, memory="dnc", controller_units=8,
                                       memory_size=6, memory_width=4),
                signals, bits, keras.losses.BinaryCrossentropy(from_logits=True)),
    }
    for name, (model, x, y, loss) in cases.items():
        before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss,
                      jit_compile=sys.argv[1] == "jax")
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0]), name
        moved = [not np.allclose(b, keras.ops.convert_to_numpy(w))
                 for b, w in zip(before, model.trainable_weights)]
        assert sum(moved) > len(moved) // 2, (name, sum(moved), len(moved))
        path = os.path.join(tempfile.mkdtemp(), name + ".keras")
        model.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(reloaded.predict(x, verbose=0)),
            keras.ops.convert_to_numpy(model.predict(x, verbose=0)),
            rtol=1e-5, atol=1e-5, err_msg=name)
    print("ok")
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_builders_train_and_reload_on_other_backends(backend):
    run_on_backend(SCRIPT, backend)
