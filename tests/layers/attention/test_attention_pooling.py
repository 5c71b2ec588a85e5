"""AttentionPooling: harness, Yang et al. (2016) formula per head, masks, errors."""

import keras
import numpy as np
import pytest
from backend_utils import to_numpy
from harness import run_layer_test

from keras_attention.layers import AttentionPooling


def np_pooling(x, kernel, bias, context, mask=None):
    """u_t = tanh(W x_t + b); a_{h,t} = softmax_t(u_{t,h} . c_h) over real
    steps; y_h = sum_t a_{h,t} x_{t,h}. Returns (pooled (B, D), weights
    (B, H, T)); a fully masked sequence gives zeros."""
    x = np.asarray(x, "float64")
    batch, steps, dim = x.shape
    heads = context.shape[0]
    size = dim // heads
    if mask is None:
        mask = np.ones((batch, steps), bool)
    pooled = np.zeros((batch, dim))
    weights = np.zeros((batch, heads, steps))
    for i in range(batch):
        u = np.tanh(x[i] @ kernel + bias)  # (T, D)
        for h in range(heads):
            part = slice(h * size, (h + 1) * size)
            logits = u[:, part] @ context[h]  # (T,)
            real = mask[i]
            if not real.any():
                continue
            e = np.where(real, np.exp(logits - logits[real].max()), 0.0)
            weights[i, h] = e / e.sum()
            pooled[i, part] = weights[i, h] @ x[i, :, part]
    return pooled, weights


def test_layer_contract():
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype("float32")
    run_layer_test(
        AttentionPooling,
        {},
        x,
        expected_output_shape=(2, 8),
        expected_num_trainable_weights=3,  # W, b, context
    )


def test_layer_contract_heads_dropout_mask_scores():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    run_layer_test(
        AttentionPooling,
        {"num_heads": 2, "dropout": 0.1, "seed": 5, "use_bias": False},
        {"inputs": x, "mask": mask},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=[(2, 8), (2, 2, 5)],
        expected_num_trainable_weights=2,
    )


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_matches_formula(num_heads):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [1] * 6, [0, 1, 0, 1, 0, 0]], bool)
    layer = AttentionPooling(num_heads, bias_initializer="random_normal")
    pooled, scores = layer(x, mask=mask, return_attention_scores=True)
    kernel = to_numpy(layer.projection.kernel)
    bias = to_numpy(layer.projection.bias)
    context = to_numpy(layer.context)
    assert context.shape == (num_heads, 8 // num_heads)
    ref_pooled, ref_w = np_pooling(x, kernel, bias, context, mask)
    np.testing.assert_allclose(to_numpy(scores), ref_w, atol=1e-5)
    np.testing.assert_allclose(to_numpy(pooled), ref_pooled, atol=1e-5)


def test_masked_steps_have_no_influence_and_empty_sequence_pools_to_zero():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4)).astype("float32")
    mask = np.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]], bool)
    layer = AttentionPooling(2)
    pooled, scores = layer(x, mask=mask, return_attention_scores=True)
    noisy = x.copy()
    noisy[~mask] = 1e3 * rng.standard_normal((int((~mask).sum()), 4))
    pooled_noisy = layer(noisy, mask=mask)
    np.testing.assert_allclose(to_numpy(pooled), to_numpy(pooled_noisy), atol=1e-6)
    assert np.all(to_numpy(scores)[0][:, ~mask[0]] == 0)
    assert np.all(to_numpy(pooled)[1] == 0) and np.all(to_numpy(scores)[1] == 0)


def test_implicit_mask_from_embedding_is_consumed():
    tokens = np.array([[2, 3, 4, 0, 0], [5, 6, 7, 8, 9]])
    inputs = keras.Input((5,), dtype="int32")
    embedded = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    pooling = AttentionPooling(2)
    model = keras.Model(inputs, pooling(embedded))
    got = model.predict(tokens, verbose=0)
    embedding = model.layers[1]
    x = to_numpy(embedding(tokens))
    expected = pooling(x, mask=tokens != 0)
    np.testing.assert_allclose(got, to_numpy(expected), atol=1e-6)
    # No time axis is left: no mask is propagated.
    out = pooling(embedding(tokens))
    assert getattr(out, "_keras_mask", None) is None


def test_dropout_only_in_training():
    x = np.random.default_rng(4).standard_normal((2, 5, 4)).astype("float32")
    layer = AttentionPooling(dropout=0.5, seed=1)
    inference, scores = layer(x, return_attention_scores=True)
    np.testing.assert_allclose(
        to_numpy(inference), np.einsum("bt,btd->bd", to_numpy(scores)[:, 0], x), atol=1e-5
    )
    assert not np.allclose(to_numpy(layer(x, training=True)), to_numpy(inference))


def test_symbolic_shapes():
    pooled, scores = AttentionPooling(3)(
        keras.Input((None, 6)), return_attention_scores=True
    )
    assert tuple(pooled.shape) == (None, 6)
    assert tuple(scores.shape) == (None, 3, None)


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"num_heads": 0}, r"argument `num_heads`, expected a positive integer. Received: num_heads=0"),
        ({"dropout": -0.1}, r"argument `dropout`, expected a float in \[0, 1\). Received: dropout=-0.1"),
        ({"seed": 2.0}, r"argument `seed`, expected an integer or None. Received: seed=2.0"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        AttentionPooling(**kwargs)


def test_heads_must_divide_features():
    with pytest.raises(
        ValueError,
        match=r"argument `num_heads`, expected a divisor of the input feature "
        r"size 6. Received: num_heads=4",
    ):
        AttentionPooling(4)(np.zeros((2, 3, 6), "float32"))


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"argument `inputs`, expected a tensor of rank 3. Received: inputs.shape=\(2, 6\)"):
        AttentionPooling()(np.zeros((2, 6), "float32"))
    with pytest.raises(ValueError, match=r"argument `mask`, expected a boolean tensor of shape \(batch, sequence_length\) matching the inputs. Received: mask.shape=\(2, 4\), inputs.shape=\(2, 3, 6\)"):
        AttentionPooling()(np.zeros((2, 3, 6), "float32"), mask=np.ones((2, 4), bool))
