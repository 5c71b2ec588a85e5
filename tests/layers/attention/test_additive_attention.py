"""AdditiveAttention (Bahdanau): harness, the paper's formula, peer, errors."""

import keras
import numpy as np
import pytest
from attention_test_utils import np_attention
from backend_utils import to_numpy
from harness import run_layer_test

from keras_attention.layers import AdditiveAttention


def bahdanau_logits(q, k, w_q, w_k, b, v):
    """score(q_t, k_s) = v^T tanh(W_q q_t + W_k k_s + b), looped."""
    batch, t, s = q.shape[0], q.shape[1], k.shape[1]
    out = np.zeros((batch, t, s))
    for i in range(batch):
        for a in range(t):
            for c in range(s):
                out[i, a, c] = v @ np.tanh(q[i, a] @ w_q + k[i, c] @ w_k + b)
    return out


def _data(rng, b=2, t=3, s=5, dq=4, dk=6, dv=7):
    q = rng.standard_normal((b, t, dq)).astype("float32")
    k = rng.standard_normal((b, s, dk)).astype("float32")
    v = rng.standard_normal((b, s, dv)).astype("float32")
    return q, k, v


def test_layer_contract():
    q, k, v = _data(np.random.default_rng(0))
    run_layer_test(
        AdditiveAttention,
        {"units": 8},
        {"query": q, "value": v, "key": k},
        expected_output_shape=(2, 3, 7),
        expected_num_trainable_weights=4,  # W_q, W_k, b, v
    )


def test_layer_contract_scores_dropout_no_bias():
    q, k, v = _data(np.random.default_rng(1), t=4, s=2, dk=7)
    run_layer_test(
        AdditiveAttention,
        {
            "use_bias": False,
            "dropout": 0.2,
            "seed": 3,
            "kernel_initializer": keras.initializers.HeNormal(seed=1),
        },
        {"query": q, "value": v},
        call_kwargs={"return_attention_scores": True, "use_causal_mask": True},
        expected_output_shape=[(2, 4, 7), (2, 4, 2)],
        expected_num_trainable_weights=3,  # W_q, W_k, v (units = Dk = 7)
    )


def test_matches_bahdanau_formula_with_masks():
    rng = np.random.default_rng(2)
    q, k, v = _data(rng)
    layer = AdditiveAttention(units=5, bias_initializer="random_normal")
    layer(q, v, key=k)  # build
    w_q = to_numpy(layer.query_dense.kernel)
    w_k = to_numpy(layer.key_dense.kernel)
    b = to_numpy(layer.key_dense.bias)
    vec = to_numpy(layer.score_vector)
    assert w_q.shape == (4, 5) and w_k.shape == (6, 5) and vec.shape == (5,)
    assert np.any(b != 0)
    query_mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    value_mask = np.array([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    out, scores = layer(
        q,
        v,
        key=k,
        query_mask=query_mask,
        value_mask=value_mask,
        return_attention_scores=True,
    )
    logits = bahdanau_logits(q, k, w_q, w_k, b, vec)
    ref_out, ref_w = np_attention(
        logits, query_mask[:, :, None] & value_mask[:, None, :], v
    )
    np.testing.assert_allclose(to_numpy(scores), ref_w, atol=1e-5)
    np.testing.assert_allclose(to_numpy(out), ref_out, atol=1e-5)
    assert np.all(to_numpy(out)[0, 2] == 0)  # padded query row


def test_equals_keras_additive_attention_with_identity_projections():
    # With W_q = W_k = I, b = 0 and v = 1 the Bahdanau score reduces to
    # sum(tanh(q + k)), the score of keras.layers.AdditiveAttention.
    rng = np.random.default_rng(3)
    q, k, v = _data(rng, dq=4, dk=4, dv=3)
    layer = AdditiveAttention(units=4)
    layer(q, v, key=k)
    layer.query_dense.kernel.assign(np.eye(4))
    layer.key_dense.kernel.assign(np.eye(4))
    layer.score_vector.assign(np.ones(4))
    value_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    ours = layer(q, v, key=k, value_mask=value_mask)
    peer = keras.layers.AdditiveAttention(use_scale=False)(
        [q, v, k], mask=[None, value_mask]
    )
    np.testing.assert_allclose(to_numpy(ours), to_numpy(peer), atol=1e-5)


def test_dropout_only_in_training():
    q, k, v = _data(np.random.default_rng(4))
    layer = AdditiveAttention(units=4, dropout=0.5, seed=1)
    inference = layer(q, v, key=k)
    out, scores = layer(q, v, key=k, training=True, return_attention_scores=True)
    _, clean = layer(q, v, key=k, return_attention_scores=True)
    assert not np.allclose(to_numpy(out), to_numpy(inference))
    np.testing.assert_allclose(to_numpy(scores), to_numpy(clean), atol=1e-6)
    # Without training the output is the plain weighted average.
    np.testing.assert_allclose(
        to_numpy(inference), np.einsum("bts,bsd->btd", to_numpy(clean), v), atol=1e-5
    )


def test_symbolic_scores_shape_when_t_differs_from_s():
    out, scores = AdditiveAttention(units=3)(
        keras.Input((2, 4)), keras.Input((6, 5)), return_attention_scores=True
    )
    assert tuple(out.shape) == (None, 2, 5)
    assert tuple(scores.shape) == (None, 2, 6)


def test_padding_from_embedding_mask():
    tokens = np.array([[3, 5, 0, 0], [4, 1, 1, 7]])
    keep = tokens != 0
    x = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
    layer = AdditiveAttention(units=6)
    out = layer(x, x)
    explicit = layer(x, x, query_mask=keep, value_mask=keep)
    np.testing.assert_allclose(to_numpy(out), to_numpy(explicit), atol=1e-6)
    assert np.all(to_numpy(out)[0, 2:] == 0)
    np.testing.assert_array_equal(to_numpy(out._keras_mask), keep)


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"units": 0}, r"argument `units`, expected a positive integer. Received: units=0"),
        ({"units": 2.5}, r"argument `units`, expected a positive integer. Received: units=2.5"),
        ({"dropout": 1}, r"argument `dropout`, expected a float in \[0, 1\). Received: dropout=1"),
        ({"seed": 1.5}, r"argument `seed`, expected an integer or None. Received: seed=1.5"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        AdditiveAttention(**kwargs)


def test_bad_use_bias_type():
    with pytest.raises(TypeError, match=r"argument `use_bias`, expected a bool. Received: use_bias=1"):
        AdditiveAttention(use_bias=1)


def test_bad_shapes():
    q, k, v = _data(np.random.default_rng(5))
    with pytest.raises(ValueError, match=r"argument `query`, expected a tensor of rank 3. Received: query.shape=\(2, 3\)"):
        AdditiveAttention(units=2)(q[..., 0], v)
    with pytest.raises(ValueError, match=r"argument `key`, expected a tensor of rank 3. Received: key.shape=\(2, 5\)"):
        AdditiveAttention(units=2)(q, v, key=k[..., 0])
    with pytest.raises(ValueError, match=r"`key` and `value`, expected the same length \(axis 1\). Received: key.shape=\(2, 5, 6\), value.shape=\(2, 4, 7\)"):
        AdditiveAttention(units=2)(q, v[:, :4], key=k)
    with pytest.raises(ValueError, match=r"argument `value_mask`, expected key_length=5 on axis 1"):
        AdditiveAttention(units=2)(q, v, value_mask=np.ones((2, 3), bool))
