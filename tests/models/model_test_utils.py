"""Checks shared by the model-builder tests (imported by path)."""

import json
import os
import tempfile

import keras
import numpy as np

from keras_attention.models import BuilderModel


def check_config_round_trip(model):
    """The config is JSON and rebuilds the same architecture."""
    config = model.get_config()
    config = json.loads(json.dumps(config))
    rebuilt = BuilderModel.from_config(config)
    assert rebuilt.builder == model.builder
    assert rebuilt.arguments == model.arguments
    assert [w.path for w in rebuilt.weights] == [w.path for w in model.weights]
    assert [tuple(w.shape) for w in rebuilt.weights] == [
        tuple(w.shape) for w in model.weights
    ]
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(model)
    )
    assert isinstance(restored, BuilderModel)


def check_save_load_and_train(model, x, y, loss, sample_weight=None):
    """fit, save, load with safe_mode: same outputs, ties kept, trains on."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=False)
    model.fit(x, y, sample_weight=sample_weight, epochs=1, batch_size=len(y), verbose=0)
    expected = keras.ops.convert_to_numpy(model(x))
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), expected)
    assert len(loaded.weights) == len(model.weights)
    before = [keras.ops.convert_to_numpy(w) for w in loaded.trainable_weights]
    history = loaded.fit(
        x, y, sample_weight=sample_weight, epochs=1, batch_size=len(y), verbose=0
    )
    assert np.isfinite(history.history["loss"][-1])
    after = [keras.ops.convert_to_numpy(w) for w in loaded.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    return loaded


def loss_falls(model, x, y, loss, steps, factor, sample_weight=None, lr=3e-3):
    """`steps` full-batch Adam steps; the loss must drop below `factor` x start.

    Graph mode without XLA keeps the test fast; XLA-compatibility of every
    layer is checked by the layer harness.
    """
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, jit_compile=False)
    batch = len(y)
    start = model.evaluate(x, y, sample_weight=sample_weight, verbose=0, batch_size=batch)

    def tile(a):
        return None if a is None else np.concatenate([a] * steps)

    model.fit(
        keras.tree.map_structure(tile, x), tile(y), sample_weight=tile(sample_weight),
        epochs=1, batch_size=batch, shuffle=False, verbose=0,
    )
    end = model.evaluate(x, y, sample_weight=sample_weight, verbose=0, batch_size=batch)
    assert end < factor * start, (start, end)
    return start, end
