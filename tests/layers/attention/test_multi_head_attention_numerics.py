"""MultiHeadAttention numerics: equals keras.layers.MultiHeadAttention given the
same weights, grouped/multi-query heads, additive bias and the rotary hook
against an independent NumPy reference, dropout in training only.
"""

import math

import keras
import numpy as np
import pytest
from backend_utils import to_numpy
from harness import run_layer_test
from keras import ops

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import RotaryEmbedding

RNG = np.random.default_rng(7)
ATOL = 1e-5


def _rand(*shape):
    return RNG.normal(size=shape).astype("float32")


# ---------------------------------------------------------------------------
# A NumPy reference of the paper's formula, with K/V heads repeated for GQA.
# ---------------------------------------------------------------------------


def np_rope(x, start=0, max_wavelength=10000.0):
    """RoFormer rotation of interleaved pairs; positions on axis 1."""
    d = x.shape[-1]
    pos = np.arange(start, start + x.shape[1], dtype="float64")
    theta = max_wavelength ** (-2.0 * np.arange(d // 2) / d)
    ang = pos[:, None] * theta[None, :]  # (T, D/2)
    cos = np.cos(ang)[None, :, None, :]
    sin = np.sin(ang)[None, :, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def np_mha(layer, query, value, key=None, mask=None, bias=None, causal=False,
           rope=None):
    """softmax(Q K^T / sqrt(D) + bias) V per head, then the output projection.

    `mask` broadcasts to (B, H, T, S), True = may attend. Rows with no
    attendable key get zero weights (this library's convention).
    """
    wq, bq, wk, bk, wv, bv, wo, bo = [np.asarray(w, "float64") for w in layer.get_weights()]
    key = value if key is None else key
    q = np.einsum("btf,fnh->btnh", query, wq) + bq
    k = np.einsum("bsf,fnh->bsnh", key, wk) + bk
    v = np.einsum("bsf,fnh->bsnh", value, wv) + bv
    if rope is not None:
        q, k = rope(q), rope(k)
    heads, kv_heads = q.shape[2], k.shape[2]
    k = np.repeat(k, heads // kv_heads, axis=2)  # query head h reads kv head h // G
    v = np.repeat(v, heads // kv_heads, axis=2)
    logits = np.einsum("bthd,bshd->bhts", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    b, t, s = query.shape[0], query.shape[1], key.shape[1]
    allowed = np.ones((b, heads, t, s), bool)
    if mask is not None:
        allowed &= np.broadcast_to(mask, allowed.shape)
    if causal:
        allowed &= np.tril(np.ones((t, s), bool))
    logits = np.where(allowed, logits, -np.inf)
    row_max = np.max(np.where(allowed, logits, -1e300), axis=-1, keepdims=True)
    e = np.where(allowed, np.exp(logits - row_max), 0.0)
    denom = e.sum(-1, keepdims=True)
    weights = np.divide(e, denom, out=np.zeros_like(e), where=denom > 0)
    out = np.einsum("bhts,bshd->bthd", weights, v)
    return np.einsum("bthd,hdo->bto", out, wo) + bo, weights


def _randomize_biases(layer):
    """Non-zero biases so that a zero context is told apart from anything else."""
    layer.set_weights([w if w.ndim > 1 else _rand(*w.shape) for w in layer.get_weights()])


# ---------------------------------------------------------------------------
# Equal to keras.layers.MultiHeadAttention given the same weights.
# ---------------------------------------------------------------------------


def _pair(num_heads=2, key_dim=4, value_dim=None, query=None, value=None, key=None):
    ours = MultiHeadAttention(num_heads, key_dim, value_dim=value_dim)
    theirs = keras.layers.MultiHeadAttention(num_heads, key_dim, value_dim=value_dim)
    theirs(query, value, key=key)
    ours(query, value, key=key)
    _randomize_biases(theirs)
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@pytest.mark.tf_only(
    reason="keras.layers.MultiHeadAttention itself fails on JAX when value_dim "
    "!= key_dim (Keras' dot_product_attention fallback reshapes with key_dim)"
)
@pytest.mark.parametrize("t, s", [(3, 5), (5, 3)])
def test_equals_keras_without_mask(t, s):
    q, v, k = _rand(2, t, 8), _rand(2, s, 6), _rand(2, s, 7)
    ours, theirs = _pair(value_dim=3, query=q, value=v, key=k)
    np.testing.assert_allclose(
        to_numpy(ours(q, v, key=k), "float64"), to_numpy(theirs(q, v, key=k), "float64"), atol=ATOL
    )
    o_out, o_scores = ours(q, v, key=k, return_attention_scores=True)
    t_out, t_scores = theirs(q, v, key=k, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(o_out, "float64"), to_numpy(t_out, "float64"), atol=ATOL)
    np.testing.assert_allclose(
        to_numpy(o_scores, "float64"), to_numpy(t_scores, "float64"), atol=ATOL
    )


@pytest.mark.parametrize("t, s", [(3, 5), (5, 3), (4, 4)])
@pytest.mark.parametrize("scores", [False, True])
def test_equals_keras_with_causal_mask(t, s, scores):
    q, v = _rand(2, t, 8), _rand(2, s, 8)
    ours, theirs = _pair(query=q, value=v)
    o = ours(q, v, use_causal_mask=True, return_attention_scores=scores)
    r = theirs(q, v, use_causal_mask=True, return_attention_scores=scores)
    for a, b in zip(keras.tree.flatten(o), keras.tree.flatten(r)):
        np.testing.assert_allclose(to_numpy(a, "float64"), to_numpy(b, "float64"), atol=ATOL)


def test_equals_keras_with_key_padding_mask_and_causal():
    q, v = _rand(2, 3, 8), _rand(2, 5, 8)
    value_mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0]], bool)
    ours, theirs = _pair(query=q, value=v)
    for kwargs in ({}, {"use_causal_mask": True}, {"return_attention_scores": True}):
        o = ours(q, v, value_mask=value_mask, **kwargs)
        r = theirs(q, v, value_mask=value_mask, **kwargs)
        for a, b in zip(keras.tree.flatten(o), keras.tree.flatten(r)):
            np.testing.assert_allclose(to_numpy(a, "float64"), to_numpy(b, "float64"), atol=ATOL)


def test_equals_keras_with_explicit_attention_mask():
    q, v = _rand(2, 3, 8), _rand(2, 5, 8)
    mask = RNG.random((2, 3, 5)) > 0.4
    mask[..., 0] = True  # no fully masked row here (see the test below)
    ours, theirs = _pair(query=q, value=v)
    np.testing.assert_allclose(
        to_numpy(ours(q, v, attention_mask=mask), "float64"),
        to_numpy(theirs(q, v, attention_mask=mask), "float64"),
        atol=ATOL,
    )


def test_equals_keras_with_implicit_masks():
    emb = keras.layers.Embedding(10, 8, mask_zero=True)
    tokens_q = np.array([[1, 2, 3], [4, 5, 0]])
    tokens_v = np.array([[1, 2, 3, 0, 0], [4, 0, 6, 0, 0]])  # padded keys

    def inputs():
        # Fresh tensors each call: keras.layers.MultiHeadAttention deletes
        # the implicit masks of the tensors it is given.
        return emb(tokens_q), emb(tokens_v)

    q, v = inputs()
    assert q._keras_mask is not None and v._keras_mask is not None
    ours, theirs = _pair(query=q, value=v)
    ours_out = to_numpy(ours(*inputs()), "float64")
    real = tokens_q > 0  # padded query rows are fully masked: see below
    np.testing.assert_allclose(
        ours_out[real], to_numpy(theirs(*inputs()), "float64")[real], atol=ATOL
    )
    # Ours equals the reference with the padding as explicit masks.
    mask = (tokens_q > 0)[:, None, :, None] & (tokens_v > 0)[:, None, None, :]
    q, v = inputs()
    ref, _ = np_mha(ours, to_numpy(q, "float64"), to_numpy(v, "float64"), mask=mask)
    np.testing.assert_allclose(ours_out, ref, atol=ATOL)


def test_fully_masked_rows_deliberately_differ_from_keras():
    """Documented difference: a query row with no attendable key.

    Ours: zero attention weights and a zero context, so the layer outputs the
    output-projection bias. Keras: uniform weights over all (masked) keys, so
    the output is the projection of the mean value.
    """
    q, v = _rand(2, 3, 8), _rand(2, 5, 8)
    value_mask = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool)  # batch 1 empty
    ours, theirs = _pair(query=q, value=v)
    wq, bq, wk, bk, wv, bv, wo, bo = [np.asarray(w, "float64") for w in theirs.get_weights()]

    out, scores = ours(q, v, value_mask=value_mask, return_attention_scores=True)
    np.testing.assert_array_equal(to_numpy(scores, "float64")[1], 0.0)
    np.testing.assert_allclose(to_numpy(out, "float64")[1], np.broadcast_to(bo, (3, 8)), atol=ATOL)
    # The batch row with real keys still equals Keras.
    np.testing.assert_allclose(
        to_numpy(out, "float64")[0],
        to_numpy(theirs(q, v, value_mask=value_mask), "float64")[0],
        atol=ATOL,
    )

    values = np.einsum("sf,fnh->snh", v[1].astype("float64"), wv) + bv  # (S, H, Dv)
    uniform = np.einsum("nh,nho->o", values.mean(0), wo) + bo
    keras_out = to_numpy(theirs(q, v, value_mask=value_mask), "float64")[1]
    np.testing.assert_allclose(keras_out, np.broadcast_to(uniform, (3, 8)), atol=ATOL)

    # Padded queries (implicit query mask) are fully masked rows too.
    query_mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    out = to_numpy(ours(q, v, query_mask=query_mask), "float64")
    np.testing.assert_allclose(out[0, 2], bo, atol=ATOL)
    ref, _ = np_mha(ours, q, v, mask=query_mask[:, None, :, None])
    np.testing.assert_allclose(out, ref, atol=ATOL)


# ---------------------------------------------------------------------------
# Grouped-query and multi-query heads against the repeat-heads reference.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_grouped_heads_equal_repeated_kv_reference(kv_heads):
    q, v = _rand(2, 3, 8), _rand(2, 5, 6)
    layer = MultiHeadAttention(4, 4, value_dim=3, num_key_value_heads=kv_heads)
    layer(q, v)
    _randomize_biases(layer)
    assert tuple(layer.key_dense.kernel.shape) == (6, kv_heads, 4)
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], bool)
    out, scores = layer(q, v, value_mask=mask, use_causal_mask=True,
                        return_attention_scores=True)
    ref, ref_w = np_mha(layer, q, v, mask=mask[:, None, None, :], causal=True)
    np.testing.assert_allclose(to_numpy(out, "float64"), ref, atol=ATOL)
    np.testing.assert_allclose(to_numpy(scores, "float64"), ref_w, atol=ATOL)


def test_multi_query_has_fewer_key_value_parameters():
    full = MultiHeadAttention(4, 8)
    mqa = MultiHeadAttention(4, 8, num_key_value_heads=1)
    x = _rand(1, 2, 16)
    full(x, x)
    mqa(x, x)
    assert full.key_dense.kernel.shape[1] == 4 and mqa.key_dense.kernel.shape[1] == 1
    assert mqa.count_params() < full.count_params()


# ---------------------------------------------------------------------------
# Additive attention bias and the rotary hook.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bias_shape", [(1, 2, 3, 5), (2, 2, 3, 5), (2, 1, 3, 5), (1, 2, 1, 5)])
def test_attention_bias_is_added_to_the_logits(bias_shape):
    q, v = _rand(2, 3, 8), _rand(2, 5, 8)
    bias = 3.0 * _rand(*bias_shape)
    layer = MultiHeadAttention(2, 4)
    layer(q, v)
    out, scores = layer(q, v, attention_bias=bias, use_causal_mask=True,
                        return_attention_scores=True)
    ref, ref_w = np_mha(layer, q, v, bias=bias, causal=True)
    np.testing.assert_allclose(to_numpy(out, "float64"), ref, atol=ATOL)
    np.testing.assert_allclose(to_numpy(scores, "float64"), ref_w, atol=ATOL)


def test_rotary_embedding_rotates_queries_and_keys():
    x = _rand(2, 6, 8)
    layer = MultiHeadAttention(4, 4, num_key_value_heads=2,
                               rotary_embedding=RotaryEmbedding(max_wavelength=50))
    out = layer(x, x, use_causal_mask=True)
    ref, _ = np_mha(layer, x, x, causal=True,
                    rope=lambda t: np_rope(t, max_wavelength=50.0))
    np.testing.assert_allclose(to_numpy(out, "float64"), ref, atol=ATOL)
    # The rotation matters: without it the result differs.
    plain, _ = np_mha(layer, x, x, causal=True)
    assert np.max(np.abs(plain - ref)) > 1e-3


def test_harness_rotary_embedding():
    run_layer_test(
        MultiHeadAttention,
        {
            "num_heads": 2,
            "key_dim": 4,
            "num_key_value_heads": 1,
            "rotary_embedding": RotaryEmbedding(max_wavelength=100),
        },
        {"query": _rand(2, 4, 8), "value": _rand(2, 4, 8)},
        call_kwargs={"use_causal_mask": True, "return_attention_scores": True},
        expected_output_shape=[(2, 4, 8), (2, 2, 4, 4)],
        expected_num_trainable_weights=8,
    )


@keras.saving.register_keras_serializable(package="test_mha")
class PositionScale(keras.layers.Layer):
    """Test-local rotary-style hook: scales position p by (1 + rate * p)."""

    def __init__(self, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.built = True

    def call(self, inputs, start_index=0):
        length = ops.shape(inputs)[1]
        pos = ops.cast(ops.arange(length) + start_index, self.compute_dtype)
        scale = 1.0 + self.rate * pos  # (T,)
        return inputs * ops.reshape(scale, (1, -1, 1, 1))  # (B, T, H, D)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


def np_position_scale(x, start=0, rate=0.1):
    pos = np.arange(start, start + x.shape[1], dtype="float64")
    return x * (1.0 + rate * pos)[None, :, None, None]


def test_rotary_hook_accepts_any_layer_with_the_interface():
    x = _rand(2, 5, 8)
    layer = MultiHeadAttention(2, 4, rotary_embedding=PositionScale(0.2))
    out = layer(x, x, use_causal_mask=True)
    ref, _ = np_mha(layer, x, x, causal=True,
                    rope=lambda t: np_position_scale(t, rate=0.2))
    np.testing.assert_allclose(to_numpy(out, "float64"), ref, atol=ATOL)


def test_harness_with_a_test_local_rotary_hook():
    run_layer_test(
        MultiHeadAttention,
        {"num_heads": 2, "key_dim": 4, "rotary_embedding": PositionScale(0.1)},
        {"query": _rand(2, 3, 8), "value": _rand(2, 3, 8)},
        call_kwargs={"use_causal_mask": True},
        expected_output_shape=(2, 3, 8),
        run_training=False,
    )


# ---------------------------------------------------------------------------
# Dropout on the attention weights, in training only.
# ---------------------------------------------------------------------------


def test_dropout_in_training_only():
    q, v = _rand(2, 4, 8), _rand(2, 6, 8)
    layer = MultiHeadAttention(2, 4, dropout=0.5, seed=1)
    layer(q, v)
    ref, ref_w = np_mha(layer, q, v)
    for training in (None, False):
        out, w = layer(q, v, training=training, return_attention_scores=True)
        np.testing.assert_allclose(to_numpy(out, "float64"), ref, atol=ATOL)
    out, w = layer(q, v, training=True, return_attention_scores=True)
    assert np.max(np.abs(to_numpy(out, "float64") - ref)) > 1e-3
    np.testing.assert_allclose(to_numpy(w, "float64"), ref_w, atol=ATOL)  # scores before dropout
    # Inverted dropout is unbiased: over many independent draws (a batch of
    # copies of the same example) the mean output is the reference.
    copies = 400
    out = to_numpy(layer(np.repeat(q[:1], copies, 0), np.repeat(v[:1], copies, 0),
                    training=True), "float64")
    assert np.unique(out[:, 0, 0]).size > copies // 2  # independent draws
    np.testing.assert_allclose(out.mean(0), ref[0], atol=0.2)
