"""TokenProjection / fused_projections against keras.layers.EinsumDense."""

import keras
import numpy as np
import pytest
from keras import ops

from backend_utils import gradients, to_numpy

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers.attention.token_projection import TokenDense
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
        return ops.sum(ops.multiply(ops.reshape(y, (-1,)), weights))

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
        np.testing.assert_allclose(to_numpy(ours(x, training=training)), to_numpy(peer(x)),
                                   rtol=1e-5, atol=1e-6)
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
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    np.testing.assert_allclose(ops.convert_to_numpy(y).astype("float32"), to_numpy(ours(X3)),
                               rtol=1e-2, atol=1e-2)


def test_lora_update_is_included():
    ours, peer = _pair("btf,fnh->btnh", (None, 3, 4), "nh", X3)
    for layer in (ours, peer):
        layer.enable_lora(2, b_initializer="ones")
    peer.lora_kernel_a.assign(ours.lora_kernel_a)
    before = ops.convert_to_numpy(ours(X3, training=True))
    np.testing.assert_allclose(before, to_numpy(peer(X3)), rtol=1e-5, atol=1e-5)
    ours.lora_kernel_b.assign(ours.lora_kernel_b * 2)
    assert not np.allclose(to_numpy(ours(X3, training=True)), before)  # the LoRA factors are read


def test_int8_quantized_layer_keeps_working():
    ours, peer = _pair("btf,fnh->btnh", (None, 3, 4), "nh", X3)
    ours.quantize("int8")
    peer.quantize("int8")
    np.testing.assert_allclose(to_numpy(ours(X3)), to_numpy(peer(X3)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("block", ["attention", "feed_forward"])
def test_model_quantize_reaches_the_projections(block):
    # keras.Model.quantize skips layers whose quantize raises; ours must not:
    # MultiHeadAttention's four TokenProjections, FeedForward's two TokenDense.
    from keras_attention.layers import FeedForward

    inputs = keras.Input((5, 6))
    if block == "attention":
        outputs, kind, count = MultiHeadAttention(num_heads=2, key_dim=4)(inputs, inputs), TokenProjection, 4
    else:
        outputs, kind, count = FeedForward(intermediate_dim=8)(inputs), TokenDense, 2
    model = keras.Model(inputs, outputs)
    before = model.predict(X3, verbose=0)
    model.quantize("int8")
    projections = [layer for layer in model._flatten_layers() if isinstance(layer, kind)]
    assert len(projections) == count
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


# TokenDense: keras.layers.Dense whose compiled training product routes its
# kernel gradient through `canonical_matmul`.


def _dense_pair(x, **kwargs):
    """A TokenDense and a keras Dense with the same weights."""
    kwargs = dict(dict(units=7, bias_initializer="random_normal"), **kwargs)
    ours, peer = TokenDense(**kwargs), keras.layers.Dense(**kwargs)
    ours.build(x.shape)
    peer.build(x.shape)
    peer.set_weights(ours.get_weights())
    return ours, peer


def _dense_grads(layer, x, jit):
    """Input and weight gradients of a weighted sum of a training call,
    compiled with XLA on TensorFlow when `jit`."""
    size = int(np.prod(ops.shape(layer(x))))
    weights = np.sin(np.arange(size, dtype="float32"))
    if not jit:
        return [to_numpy(layer(x, training=True))] + gradients(
            lambda x: ops.sum(ops.multiply(ops.reshape(layer(x, training=True), (-1,)),
                                           weights)),
            [x], layer.trainable_weights,
        )
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.reshape(y, (-1,)) * weights)
        return [y] + tape.gradient(loss, [x] + layer.trainable_weights)

    return step(tf.constant(x))


@pytest.mark.parametrize("x", [X3, X3[0], X4], ids=["rank3", "rank2", "rank4"])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_token_dense_equals_dense_forward_and_gradients(x, activation):
    ours, peer = _dense_pair(x, activation=activation)
    for training in (True, False):
        np.testing.assert_allclose(to_numpy(ours(x, training=training)), to_numpy(peer(x)),
                                   rtol=1e-5, atol=1e-6)
    for got, want in zip(_dense_grads(ours, x, False), _dense_grads(peer, x, False)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.tf_only(reason="the route serves TensorFlow's XLA compilation")
@pytest.mark.parametrize("use_bias", [True, False])
def test_token_dense_compiled_training_equals_dense(use_bias):
    ours, peer = _dense_pair(X3, use_bias=use_bias, activation="gelu")
    got, want = _dense_grads(ours, X3, True), _dense_grads(peer, X3, True)
    assert len(got) == len(want) == 3 + use_bias
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.tf_only(reason="inspects XLA's optimized HLO")
def test_token_dense_compiled_kernel_gradient_is_a_canonical_dot():
    import tensorflow as tf
    from hlo_utils import dots
    from hlo_utils import gradient_hlo
    from hlo_utils import token_axis_dots

    x = tf.constant(RNG.standard_normal((4, 64, 16)), "float32")

    def kernel_gradient_dots(layer):
        hlo = gradient_hlo(lambda x: tf.reduce_sum(tf.sin(layer(x, training=True))),
                           x, layer.trainable_weights)
        assert dots(hlo)
        return token_axis_dots(hlo)

    ours, peer = _dense_pair(x, units=32)
    assert len(kernel_gradient_dots(peer)) == 1  # Dense: dW = X^T dY as it is
    assert kernel_gradient_dots(ours) == []


def test_token_dense_fit_keras_file_and_masks(tmp_path):
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 6, mask_zero=True)(inputs)
    x = TokenDense(4, activation="relu")(x)
    outputs = keras.layers.GlobalAveragePooling1D()(x)  # reads the mask
    model = keras.Model(inputs, outputs)
    ids = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]], "int32")
    model.compile("adam", "mse", jit_compile=True)
    history = model.fit(ids, np.ones((2, 4), "float32"), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # The mask passes through: padding does not reach the pooled mean.
    padded = model.predict(ids, verbose=0)
    trimmed = keras.Model(inputs, model.layers[2].output).predict(ids, verbose=0)
    np.testing.assert_allclose(padded[0], trimmed[0, :3].mean(axis=0), rtol=1e-5, atol=1e-6)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.layers[2]) is TokenDense
    np.testing.assert_allclose(loaded.predict(ids, verbose=0), padded, rtol=1e-6)


def test_token_dense_mixed_precision_lora_and_int8():
    ours, peer = _dense_pair(X3)
    half = TokenDense(7, dtype="mixed_bfloat16")
    half.build(X3.shape)
    half.set_weights(ours.get_weights())
    y = half(X3, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    np.testing.assert_allclose(ops.convert_to_numpy(ops.cast(y, "float32")), to_numpy(ours(X3)),
                               rtol=3e-2, atol=3e-2)
    for layer in (ours, peer):
        layer.enable_lora(2, b_initializer="ones")
    peer.lora_kernel_a.assign(ours.lora_kernel_a)
    np.testing.assert_allclose(to_numpy(ours(X3, training=True)), to_numpy(peer(X3)),
                               rtol=1e-5, atol=1e-5)
    quantized, reference = _dense_pair(X3)
    quantized.quantize("int8")
    reference.quantize("int8")
    np.testing.assert_allclose(to_numpy(quantized(X3, training=True)), to_numpy(reference(X3)),
                               rtol=1e-6, atol=1e-6)

