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
SHAPES = {"rank3": (2, 5, 8), "rank4": (2, 3, 4, 8), "rank2": (7, 8)}
# Keras bug: on the torch backend keras.layers.LayerNormalization (through
# keras.ops.layer_normalization) hands any contiguous axes to
# torch.nn.functional.layer_norm, which normalizes trailing axes only, so a
# non-last axis raises "Given normalized_shape=[5], expected input with
# shape [*, 5]" in the Keras layer itself (reproducible with Keras alone).
KERAS_TORCH_LAYER_NORM_AXIS_BUG = pytest.mark.xfail(
    keras.backend.backend() == "torch",
    reason="Keras bug: keras.layers.LayerNormalization(axis=1) fails on the torch "
    "backend (keras.ops.layer_normalization calls torch.nn.functional.layer_norm "
    "for a non-trailing axis: 'Given normalized_shape=[5], expected input with "
    "shape [*, 5]')",
    strict=True,
)
EQUALS_KERAS_CASES = [
    pytest.param(
        ours_cls, peer_cls, kwargs, shape, id=f"{shape_id}-{pair_id}",
        marks=(KERAS_TORCH_LAYER_NORM_AXIS_BUG
               if pair_id == "layer-axis1" and shape_id != "rank2" else ()),
    )
    for pair_id, (ours_cls, peer_cls, kwargs) in zip(IDS, PAIRS)
    for shape_id, shape in SHAPES.items()
]


def _numpy_layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def _grads(layer, x):
    """Output, then gradients of a weighted sum of it w.r.t. the input and
    the weights."""
    weights = np.cos(np.arange(x.size, dtype="float32"))

    def loss(x):
        return ops.sum(ops.multiply(ops.reshape(layer(x), (-1,)), weights))

    return [ops.convert_to_numpy(layer(x))] + gradients(loss, [x], layer.trainable_weights)


@pytest.mark.parametrize("ours_cls,peer_cls,kwargs,shape", EQUALS_KERAS_CASES)
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
    np.testing.assert_allclose(ops.convert_to_numpy(y), _numpy_layer_norm(x, gamma, beta, 1e-5),
                               rtol=1e-5, atol=1e-5)


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
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")),
        keras.ops.convert_to_numpy(keras.layers.LayerNormalization()(x)), atol=0.05,
    )
    masked = keras.layers.Masking()(np.where(x > 2, 0, x))
    assert LayerNormalization()(masked)._keras_mask is not None
