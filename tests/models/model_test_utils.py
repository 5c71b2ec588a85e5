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


def check_xla_fit_and_mixed_precision(build, x, y, loss, sample_weight=None):
    """An XLA fit step matches the graph one; mixed_float16 runs and trains.

    `build` makes a fresh model (no dropout). Reference: the same SGD step
    in graph mode without XLA, from the same initial weights -- the weights
    after the compiled (`jit_compile=True`) step must match it. Under the
    `mixed_float16` policy the model computes in float16 with float32
    variables, its outputs match the float32 model's, and a fit step (loss
    scaled by `compile`) is finite and changes the weights.
    """
    batch = len(y)
    fit = dict(sample_weight=sample_weight, epochs=1, batch_size=batch,
               shuffle=False, verbose=0)
    reference = build()
    initial = reference.get_weights()
    expected = keras.ops.convert_to_numpy(reference(x))
    reference.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, run_eagerly=True)
    reference.fit(x, y, **fit)
    xla = build()
    xla.set_weights(initial)
    xla.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, jit_compile=True)
    history = xla.fit(x, y, **fit)
    assert np.isfinite(history.history["loss"][-1])
    changed = False
    for before, after, graph in zip(initial, xla.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(after, graph, rtol=1e-4, atol=1e-5)
        changed = changed or not np.array_equal(before, after)
    assert changed

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = build()
    finally:
        keras.mixed_precision.set_global_policy(policy)
    mixed.set_weights(initial)
    assert all(w.dtype == "float32" for w in mixed.weights)
    assert mixed.get_layer("embedding").compute_dtype == "float16"
    outputs = keras.ops.convert_to_numpy(keras.ops.cast(mixed(x), "float32"))
    np.testing.assert_allclose(outputs, expected, rtol=2e-2, atol=2e-2)
    # A small initial loss scale: with the default 2**15 the first step of
    # a float16 model can overflow and be skipped (weights unchanged).
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(1e-3), initial_scale=2.0**7
    )
    mixed.compile(optimizer=optimizer, loss=loss, run_eagerly=True)
    history = mixed.fit(x, y, **fit)
    assert np.isfinite(history.history["loss"][-1])
    assert any(
        not np.array_equal(before, after)
        for before, after in zip(initial, mixed.get_weights())
    )
