"""Row-wise LayerNormalization / RMSNormalization against the Keras layers."""

import keras
import numpy as np
import pytest
from keras import ops

from backend_utils import gradients

from keras_attention.layers.transformer.token_normalization import LayerNormalization
from keras_attention.layers.transformer.token_normalization import RMSNormalization

RNG = np.random.default_rng(0)
PAIRS = [
    (LayerNormalization, keras.layers.LayerNormalization, dict(epsilon=1e-5)),
    (LayerNormalization, keras.layers.LayerNormalization,
     dict(epsilon=1e-3, beta_initializer="random_normal", gamma_initializer="random_normal")),
    (LayerNormalization, keras.layers.LayerNormalization, dict(axis=1)),  # not rows
    (LayerNormalization, keras.layers.LayerNormalization, dict(axis=[-2, -1])),
    (RMSNormalization, keras.layers.RMSNormalization, dict(epsilon=1e-6)),
    # (keras.layers.RMSNormalization itself fails for a non-last axis of a
    # rank-3 input: its scale does not broadcast; so no such case here.)
]
IDS = ["layer", "layer-init", "layer-axis1", "layer-2axes", "rms"]


def _numpy_layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def _grads(layer, x):
    """Output, then gradients of a weighted sum of it w.r.t. the input and
    the weights."""
    weights = np.cos(np.arange(x.size, dtype="float32"))

    def loss(x):
        return ops.sum(ops.reshape(layer(x), (-1,)) * weights)

    return [ops.convert_to_numpy(layer(x))] + gradients(loss, [x], layer.trainable_weights)


@pytest.mark.parametrize("ours_cls,peer_cls,kwargs", PAIRS, ids=IDS)
@pytest.mark.parametrize("shape", [(2, 5, 8), (2, 3, 4, 8), (7, 8)], ids=["rank3", "rank4", "rank2"])
def test_equals_keras_layer(ours_cls, peer_cls, kwargs, shape):
    x = RNG.standard_normal(shape).astype("float32") * 3 + 1
    ours, peer = ours_cls(**kwargs), peer_cls(**kwargs)
    ours.build(x.shape)
    peer.build(x.shape)
    peer.set_weights(ours.get_weights())
    for got, want in zip(_grads(ours, x), _grads(peer, x)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_layer_norm_matches_the_formula():
    x = RNG.standard_normal((2, 5, 8)).astype("float32")
    layer = LayerNormalization(epsilon=1e-5, gamma_initializer="random_normal",
                               beta_initializer="random_normal")
    y = layer(x)
    gamma, beta = (w.numpy() for w in layer.weights)
    np.testing.assert_allclose(y, _numpy_layer_norm(x, gamma, beta, 1e-5), rtol=1e-5, atol=1e-5)


def test_unknown_batch_and_length_in_a_compiled_fit(tmp_path):
    inputs = keras.Input((None, 8))
    outputs = RMSNormalization()(LayerNormalization()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse", jit_compile=True)
    x = RNG.standard_normal((4, 6, 8)).astype("float32")
    model.fit(x, x, epochs=1, verbose=0)
    path = str(tmp_path / "norm.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.layers[1], LayerNormalization)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_mixed_precision_and_mask_pass_through():
    x = RNG.standard_normal((2, 5, 8)).astype("float32")
    layer = LayerNormalization(dtype="mixed_bfloat16")
    y = layer(x)
    assert y.dtype == "bfloat16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")),
        keras.layers.LayerNormalization()(x), atol=0.05,
    )
    masked = keras.layers.Masking()(np.where(x > 2, 0, x))
    assert LayerNormalization()(masked)._keras_mask is not None
