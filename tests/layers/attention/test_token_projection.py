"""TokenProjection / fused_projections against keras.layers.EinsumDense."""

import keras
import numpy as np
import pytest
from keras import ops

from backend_utils import gradients

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers.attention.token_projection import TokenProjection
from keras_attention.layers.attention.token_projection import matmul_layout

RNG = np.random.default_rng(0)
X3 = RNG.standard_normal((2, 5, 6)).astype("float32")
X4 = RNG.standard_normal((2, 5, 3, 4)).astype("float32")

# (equation, output_shape, bias_axes, input)
CASES = [
    ("btf,fnh->btnh", (None, 3, 4), "nh", X3),  # query/key/value projection
    ("btf,fnh->btnh", (None, 3, 4), "h", X3),  # bias on some output axes
    ("btf,fnh->btnh", (None, 3, 4), None, X3),
    ("btnh,nhz->btz", (None, 7), "z", X4),  # output projection
    ("abc,cd->abd", (None, 7), "d", X3),
    ("btf,hf->bth", (None, 7), "h", X3),  # not a per-token map: einsum path
]
IDS = [f"{c[0]}-{c[2]}" for c in CASES]


def _pair(equation, output_shape, bias_axes, x):
    """A TokenProjection and an EinsumDense with the same weights."""
    kwargs = dict(output_shape=output_shape, bias_axes=bias_axes,
                  bias_initializer="random_normal")
    ours, peer = TokenProjection(equation, **kwargs), keras.layers.EinsumDense(equation, **kwargs)
    ours.build(x.shape)
    peer.build(x.shape)
    peer.set_weights(ours.get_weights())
    return ours, peer


def _grads(layer, x):
    """Gradients of a weighted sum of a training call's output (the 2-D
    product serves training calls) w.r.t. the input and the weights."""
    size = int(np.prod(ops.shape(layer(x))))
    weights = np.sin(np.arange(size, dtype="float32"))

    def loss(x):
        y = layer(x, training=True)
        return ops.sum(ops.reshape(y, (-1,)) * weights)

    return gradients(loss, [x], layer.trainable_weights)


@pytest.mark.parametrize(
    "equation,expected",
    [
        ("btf,fnh->btnh", (2, 1)),
        ("btnh,nhz->btz", (2, 2)),
        ("abc,cd->abd", (2, 1)),
        ("bf,fh->bh", (1, 1)),
        ("bf,hf->bh", None),  # kernel's last axis contracted
        ("btf,fnh->bnth", None),  # output axes reordered
        ("...f,fh->...h", None),  # ellipsis
        ("bf,fh->h", None),  # batch axis summed
        ("bt,tf->btf", None),  # nothing contracted
    ],
)
def test_matmul_layout(equation, expected):
    assert matmul_layout(equation) == expected


@pytest.mark.parametrize("equation,output_shape,bias_axes,x", CASES, ids=IDS)
def test_equals_einsum_dense_forward_and_gradients(equation, output_shape, bias_axes, x):
    ours, peer = _pair(equation, output_shape, bias_axes, x)
    for training in (True, False):
        np.testing.assert_allclose(ours(x, training=training), peer(x), rtol=1e-5, atol=1e-6)
    for got, want in zip(_grads(ours, x), _grads(peer, x)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.tf_only(reason="inspects the TensorFlow gradient graph")
def test_kernel_gradient_is_one_matrix_product():
    # The reason for the layer: EinsumDense's TF gradient forms a batched
    # product with the kernel broadcast over the batch; ours has none.
    import tensorflow as tf

    def graph_ops(layer):
        x = tf.constant(X3)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x, training=True))
            return tape.gradient(loss, layer.trainable_weights)

        return {op.type for op in step.get_concrete_function().graph.get_operations()}

    ours, peer = _pair("btf,fnh->btnh", (None, 3, 4), "nh", X3)
    assert "BatchMatMulV2" in graph_ops(peer)
    assert "BatchMatMulV2" not in graph_ops(ours)
    assert "MatMul" in graph_ops(ours)


def test_fit_and_keras_file_round_trip(tmp_path):
    # (The shared harness is for our own layers' constructor arguments;
    # this one takes EinsumDense's, `activity_regularizer` among them.)
    inputs = keras.Input((5, 6))
    x = TokenProjection("btf,fnh->btnh", output_shape=(None, 2, 4), bias_axes="nh")(inputs)
    outputs = TokenProjection("btnh,nhz->btz", output_shape=(None, 6), bias_axes="z")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse", jit_compile=True)
    history = model.fit(X3, X3, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.layers[1], TokenProjection)
    np.testing.assert_allclose(loaded.predict(X3, verbose=0), model.predict(X3, verbose=0))


def test_mixed_precision_matches_float32():
    ours, _ = _pair("btf,fnh->btnh", (None, 3, 4), "nh", X3)
    half = TokenProjection("btf,fnh->btnh", output_shape=(None, 3, 4), bias_axes="nh",
                           dtype="mixed_float16")
    half.build(X3.shape)
    half.set_weights(ours.get_weights())
    y = half(X3, training=True)
    assert y.dtype == "float16"
    np.testing.assert_allclose(ops.convert_to_numpy(y).astype("float32"), ours(X3),
                               rtol=1e-2, atol=1e-2)


def test_lora_update_is_included():
    ours, peer = _pair("btf,fnh->btnh", (None, 3, 4), "nh", X3)
    for layer in (ours, peer):
        layer.enable_lora(2, b_initializer="ones")
    peer.lora_kernel_a.assign(ours.lora_kernel_a)
    before = ops.convert_to_numpy(ours(X3, training=True))
    np.testing.assert_allclose(before, peer(X3), rtol=1e-5, atol=1e-5)
    ours.lora_kernel_b.assign(ours.lora_kernel_b * 2)
    assert not np.allclose(ours(X3, training=True), before)  # the LoRA factors are read


def test_int8_quantized_layer_keeps_working():
    ours, peer = _pair("btf,fnh->btnh", (None, 3, 4), "nh", X3)
    ours.quantize("int8")
    peer.quantize("int8")
    np.testing.assert_allclose(ours(X3), peer(X3), rtol=1e-6, atol=1e-6)


def test_model_quantize_reaches_attention_projections():
    # keras.Model.quantize skips layers whose quantize raises; ours must not.
    inputs = keras.Input((5, 6))
    outputs = MultiHeadAttention(num_heads=2, key_dim=4)(inputs, inputs)
    model = keras.Model(inputs, outputs)
    before = model.predict(X3, verbose=0)
    model.quantize("int8")
    projections = [layer for layer in model._flatten_layers() if isinstance(layer, TokenProjection)]
    assert len(projections) == 4
    assert all(layer.quantization_mode == "int8" for layer in projections)
    np.testing.assert_allclose(model.predict(X3, verbose=0), before, atol=0.05)



def test_fit_reaches_the_projections_with_training_true(monkeypatch):
    # The 2-D product is taken in training calls: Keras must pass
    # `training=True` from `fit` down to MultiHeadAttention's projections.
    seen = []
    call = TokenProjection.call

    def recording_call(self, inputs, training=None):
        seen.append(training)
        return call(self, inputs, training=training)

    monkeypatch.setattr(TokenProjection, "call", recording_call)
    inputs = keras.Input((5, 6))
    model = keras.Model(inputs, MultiHeadAttention(num_heads=2, key_dim=4)(inputs, inputs))
    seen.clear()
    model.compile("adam", "mse")
    model.fit(X3, X3, epochs=1, verbose=0)
    # (On JAX, fit also builds its state with a symbolic training=False call.)
    assert True in seen
    seen.clear()
    model.predict(X3, verbose=0)
    assert seen and True not in seen
