import math

import keras
import numpy as np
import pytest
from backend_utils import to_numpy
from harness import run_layer_test

from keras_attention.layers import FeedForward


def test_harness_plain_relu():
    run_layer_test(
        FeedForward,
        {"intermediate_dim": 8, "dropout": 0.1},
        np.random.default_rng(0).normal(size=(2, 5, 6)).astype("float32"),
        expected_output_shape=(2, 5, 6),
        expected_num_trainable_weights=4,
        expected_num_non_trainable_weights=0,
    )


def test_harness_gated_swiglu_with_hidden_dim():
    run_layer_test(
        FeedForward,
        {"intermediate_dim": 8, "hidden_dim": 3, "activation": "swiglu"},
        np.random.default_rng(1).normal(size=(2, 5, 6)).astype("float32"),
        expected_output_shape=(2, 5, 3),
        expected_num_trainable_weights=6,
        expected_num_non_trainable_weights=0,
    )


def test_harness_gelu_no_bias():
    run_layer_test(
        FeedForward,
        {"intermediate_dim": 4, "activation": "gelu", "use_bias": False},
        np.random.default_rng(2).normal(size=(3, 2, 5)).astype("float32"),
        expected_output_shape=(3, 2, 5),
        expected_num_trainable_weights=2,
    )


# ---------------------------------------------------------------- NumPy refs


def _np_relu(x):
    return np.maximum(x, 0.0)


def _np_gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_silu(x):
    return x * _np_sigmoid(x)


def _weights(dense):
    w = [np.asarray(v, dtype="float64") for v in dense.get_weights()]
    return w[0], (w[1] if len(w) > 1 else 0.0)


def _random_biases(layer, rng):
    # Zero-initialised biases would hide a missing or misplaced bias.
    for dense in (layer.intermediate_dense, layer.gate_dense, layer.output_dense):
        if dense is not None and dense.use_bias:
            kernel, bias = dense.get_weights()
            dense.set_weights([kernel, rng.normal(size=bias.shape).astype("float32")])


@pytest.mark.parametrize(
    "activation, np_fn",
    [("relu", _np_relu), ("gelu", _np_gelu), ("silu", _np_silu)],
)
def test_plain_matches_paper_formula(activation, np_fn):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 6)).astype("float32")
    layer = FeedForward(intermediate_dim=10, hidden_dim=5, activation=activation)
    layer.build(x.shape)
    _random_biases(layer, rng)
    w1, b1 = _weights(layer.intermediate_dense)
    w2, b2 = _weights(layer.output_dense)
    expected = np_fn(x.astype("float64") @ w1 + b1) @ w2 + b2
    got = to_numpy(layer(x, training=False))
    assert layer.gate_dense is None and not layer.gated
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "variant, gate_fn",
    [
        ("swiglu", _np_silu),
        ("geglu", _np_gelu),
        ("reglu", _np_relu),
        ("glu", _np_sigmoid),
        ("bilinear", lambda z: z),
    ],
)
def test_gated_matches_shazeer_formula(variant, gate_fn):
    # FFN_variant(x) = (g(xW + b) * (xV + c)) W2 + b2  (Shazeer 2020).
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 2, 6)).astype("float32")
    layer = FeedForward(intermediate_dim=7, activation=variant)
    layer.build(x.shape)
    _random_biases(layer, rng)
    w, b = _weights(layer.gate_dense)
    v, c = _weights(layer.intermediate_dense)
    w2, b2 = _weights(layer.output_dense)
    x64 = x.astype("float64")
    expected = (gate_fn(x64 @ w + b) * (x64 @ v + c)) @ w2 + b2
    got = to_numpy(layer(x))
    assert layer.gated
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_swiglu_without_bias_has_three_matrices_only():
    layer = FeedForward(intermediate_dim=8, activation="swiglu", use_bias=False)
    layer.build((None, 4))
    shapes = sorted(tuple(w.shape) for w in layer.trainable_weights)
    assert shapes == [(4, 8), (4, 8), (8, 4)]


def test_rank_two_and_rank_four_inputs():
    rng = np.random.default_rng(5)
    layer = FeedForward(intermediate_dim=3)
    x2 = rng.normal(size=(4, 6)).astype("float32")
    assert tuple(layer(x2).shape) == (4, 6)
    x4 = rng.normal(size=(2, 3, 4, 6)).astype("float32")
    # Position-wise: a rank-4 input equals the rank-2 computation row by row.
    np.testing.assert_allclose(
        to_numpy(layer(x4)).reshape(-1, 6),
        to_numpy(layer(x4.reshape(-1, 6))),
        rtol=1e-6,
        atol=1e-6,
    )


# ---------------------------------------------------------------- dropout


def test_dropout_acts_on_hidden_units_in_training_only():
    # With W2 = I and b2 = 0 the output is dropout(relu(x W1 + b1)), so each
    # entry is either 0 or relu(.) / (1 - rate).
    rate = 0.5
    x = np.random.default_rng(6).normal(size=(4, 8, 6)).astype("float32")
    layer = FeedForward(intermediate_dim=6, dropout=rate)
    layer.build(x.shape)
    layer.output_dense.set_weights([np.eye(6, dtype="float32"), np.zeros(6, "float32")])
    w1, b1 = _weights(layer.intermediate_dense)
    hidden = _np_relu(x.astype("float64") @ w1 + b1)

    np.testing.assert_allclose(to_numpy(layer(x)), hidden, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(layer(x, training=False)), hidden, rtol=1e-5, atol=1e-6
    )

    got = np.asarray(to_numpy(layer(x, training=True)), dtype="float64")
    kept = np.isclose(got, hidden / (1 - rate), rtol=1e-4, atol=1e-6)
    dropped = got == 0.0
    assert np.all(kept | dropped)
    active = hidden > 0
    frac_dropped = np.mean(dropped[active])
    assert 0.3 < frac_dropped < 0.7, frac_dropped


# ---------------------------------------------------------------- masks, shapes


def test_keras_mask_passes_through():
    tokens = np.array([[3, 4, 0, 0], [5, 0, 0, 0]])
    inputs = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(10, 6, mask_zero=True)(inputs)
    layer = FeedForward(intermediate_dim=8)
    y = layer(x)
    # The functional graph propagates the mask to the output.
    assert getattr(y, "_keras_mask", None) is not None
    mask = layer.compute_mask(np.zeros((2, 4, 6)), tokens != 0)
    np.testing.assert_array_equal(to_numpy(mask), tokens != 0)
    assert layer.supports_masking


def test_compute_output_shape():
    assert FeedForward(4).compute_output_shape((None, 7, 5)) == (None, 7, 5)
    assert FeedForward(4, hidden_dim=3).compute_output_shape((2, 7, 5)) == (2, 7, 3)


def test_seeded_initializer_reproducible_and_projections_differ():
    init = keras.initializers.GlorotUniform(seed=7)
    a = FeedForward(8, activation="swiglu", kernel_initializer=init)
    b = FeedForward(8, activation="swiglu", kernel_initializer=init)
    a.build((None, 8))
    b.build((None, 8))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    gate = a.gate_dense.get_weights()[0]
    linear = a.intermediate_dense.get_weights()[0]
    assert not np.allclose(gate, linear)


def test_callable_activation_round_trips():
    layer = FeedForward(4, activation=keras.activations.gelu)
    config = layer.get_config()
    assert config["activation"] == "gelu"
    revived = FeedForward.from_config(config)
    x = np.random.default_rng(8).normal(size=(2, 3)).astype("float32")
    layer.build(x.shape)
    revived.build(x.shape)
    revived.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(revived(x)), to_numpy(layer(x)))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("value", [0, -3, 2.5, None])
def test_invalid_intermediate_dim(value):
    with pytest.raises(
        ValueError,
        match=r"argument `intermediate_dim`, expected a positive integer\. "
        rf"Received: intermediate_dim={value!r}",
    ):
        FeedForward(value)


def test_invalid_hidden_dim():
    with pytest.raises(
        ValueError, match=r"`hidden_dim`, expected a positive integer.*hidden_dim=0"
    ):
        FeedForward(4, hidden_dim=0)


@pytest.mark.parametrize("value", ["nope", "SwiGLU", 3])
def test_invalid_activation(value):
    with pytest.raises(
        ValueError,
        match=r"argument `activation`, expected a Keras activation .* "
        r"\['bilinear', 'geglu', 'glu', 'reglu', 'swiglu'\]\. "
        rf"Received: activation={value!r}",
    ):
        FeedForward(4, activation=value)


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_invalid_dropout(value):
    with pytest.raises(
        ValueError,
        match=rf"argument `dropout`, expected a float in \[0, 1\)\. "
        rf"Received: dropout={value!r}",
    ):
        FeedForward(4, dropout=value)


def test_invalid_use_bias_type():
    with pytest.raises(TypeError, match=r"argument `use_bias`, expected a bool"):
        FeedForward(4, use_bias=1)


def test_unknown_feature_axis_raises_in_build():
    with pytest.raises(
        ValueError,
        match=r"argument `inputs`, expected a tensor of rank >= 2 with a known "
        r"last axis.*Received: inputs\.shape=\(2, None\)",
    ):
        FeedForward(4).build((2, None))
    with pytest.raises(ValueError, match=r"inputs\.shape=\(5,\)"):
        FeedForward(4).build((5,))
