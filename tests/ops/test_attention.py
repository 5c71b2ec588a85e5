"""`keras_attention.ops.scaled_dot_product_attention` against NumPy."""

import keras
import numpy as np
import pytest
from backend_utils import to_numpy
from keras import ops

from keras_attention.ops import attention_combine
from keras_attention.ops import attention_logits
from keras_attention.ops import masked_softmax
from keras_attention.ops import padding_mask
from keras_attention.ops import scaled_dot_product_attention


def reference_attention(q, k, v, mask=None, bias=None, scale=None):
    """softmax(Q K^T * scale + bias) V in float64, masked rows -> zeros.

    q: (B, T, H, D); k: (B, S, K, D); v: (B, S, K, Dv). K/V heads are
    repeated `H // K` times (head h reads K/V head h // (H // K)).
    Returns (output (B, T, H, Dv), weights (B, H, T, S)).
    """
    q, k, v = (np.asarray(x, dtype="float64") for x in (q, k, v))
    groups = q.shape[2] // k.shape[2]
    k = np.repeat(k, groups, axis=2)
    v = np.repeat(v, groups, axis=2)
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[-1])
    logits = np.einsum("bthd,bshd->bhts", q, k) * scale
    if bias is not None:
        logits = logits + np.asarray(bias, dtype="float64")
    if mask is None:
        mask = np.ones(logits.shape, bool)
    mask = np.broadcast_to(np.asarray(mask, bool), logits.shape)
    logits = np.where(mask, logits, -np.inf)
    row_max = np.max(logits, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    unnorm = np.where(mask, np.exp(logits - row_max), 0.0)
    total = unnorm.sum(-1, keepdims=True)
    weights = np.divide(unnorm, total, out=np.zeros_like(unnorm), where=total > 0)
    return np.einsum("bhts,bshd->bthd", weights, v), weights


def _qkv(rng, b=2, t=4, s=6, h=2, k=None, d=8, dv=None):
    k = h if k is None else k
    dv = d if dv is None else dv
    q = rng.standard_normal((b, t, h, d)).astype("float32")
    key = rng.standard_normal((b, s, k, d)).astype("float32")
    value = rng.standard_normal((b, s, k, dv)).astype("float32")
    return q, key, value


def test_no_mask_matches_reference():
    rng = np.random.default_rng(0)
    q, k, v = _qkv(rng, dv=5)
    out, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    ref_out, ref_w = reference_attention(q, k, v)
    assert tuple(out.shape) == (2, 4, 2, 5)
    assert tuple(w.shape) == (2, 2, 4, 6)
    np.testing.assert_allclose(to_numpy(out, "float32"), ref_out, atol=1e-5)
    np.testing.assert_allclose(to_numpy(w, "float32"), ref_w, atol=1e-5)


def test_padding_mask_matches_reference():
    rng = np.random.default_rng(1)
    q, k, v = _qkv(rng)
    keep = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    mask = padding_mask(keep)  # (B, 1, 1, S)
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    ref_out, ref_w = reference_attention(q, k, v, mask=keep[:, None, None, :])
    np.testing.assert_allclose(to_numpy(out, "float32"), ref_out, atol=1e-5)
    np.testing.assert_allclose(to_numpy(w, "float32"), ref_w, atol=1e-5)
    assert np.all(to_numpy(w, "float32")[0, :, :, 3:] == 0)


@pytest.mark.parametrize("t,s", [(5, 5), (3, 6), (6, 3)])
def test_causal_matches_reference(t, s):
    rng = np.random.default_rng(2)
    q, k, v = _qkv(rng, t=t, s=s)
    out, w = scaled_dot_product_attention(q, k, v, causal=True, return_weights=True)
    # Top-left aligned triangle: query i sees keys j <= i.
    tri = np.arange(s)[None, :] <= np.arange(t)[:, None]
    ref_out, ref_w = reference_attention(q, k, v, mask=tri)
    np.testing.assert_allclose(to_numpy(out, "float32"), ref_out, atol=1e-5)
    np.testing.assert_allclose(to_numpy(w, "float32"), ref_w, atol=1e-5)


def test_padding_causal_bias_and_attention_mask_combined():
    rng = np.random.default_rng(3)
    b, t, s, h = 2, 5, 5, 2
    q, k, v = _qkv(rng, b=b, t=t, s=s, h=h)
    keep = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], bool)
    attn = rng.random((b, h, t, s)) > 0.3
    bias = rng.standard_normal((1, h, t, s)).astype("float32")
    out, w = scaled_dot_product_attention(
        q,
        k,
        v,
        mask=np.logical_and(attn, keep[:, None, None, :]),
        bias=bias,
        causal=True,
        return_weights=True,
    )
    tri = np.tril(np.ones((t, s), bool))
    full = attn & keep[:, None, None, :] & tri
    ref_out, ref_w = reference_attention(q, k, v, mask=full, bias=bias)
    np.testing.assert_allclose(to_numpy(out, "float32"), ref_out, atol=1e-5)
    np.testing.assert_allclose(to_numpy(w, "float32"), ref_w, atol=1e-5)


def test_explicit_scale():
    rng = np.random.default_rng(4)
    q, k, v = _qkv(rng)
    out = scaled_dot_product_attention(q, k, v, scale=0.7)
    ref_out, _ = reference_attention(q, k, v, scale=0.7)
    np.testing.assert_allclose(to_numpy(out, "float32"), ref_out, atol=1e-5)


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_query_matches_repeated_heads(kv_heads):
    # H = 4 query heads; K = 1 (multi-query) and K = H / 2 (grouped).
    rng = np.random.default_rng(5)
    q, k, v = _qkv(rng, t=3, s=5, h=4, k=kv_heads, dv=6)
    keep = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 1, 1]], bool)
    mask = keep[:, None, None, :]
    out, w = scaled_dot_product_attention(
        q, k, v, mask=mask, causal=True, return_weights=True
    )
    tri = np.arange(5)[None, :] <= np.arange(3)[:, None]
    ref_out, ref_w = reference_attention(q, k, v, mask=mask & tri)
    assert tuple(out.shape) == (2, 3, 4, 6)
    np.testing.assert_allclose(to_numpy(out, "float32"), ref_out, atol=1e-5)
    np.testing.assert_allclose(to_numpy(w, "float32"), ref_w, atol=1e-5)
    # Same as running the non-grouped kernel on explicitly repeated heads.
    groups = 4 // kv_heads
    full = scaled_dot_product_attention(
        q,
        np.repeat(k, groups, axis=2),
        np.repeat(v, groups, axis=2),
        mask=mask,
        causal=True,
    )
    np.testing.assert_allclose(to_numpy(out, "float32"), to_numpy(full, "float32"), atol=1e-6)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_causal_offset_equals_rows_of_full_pass(as_tensor):
    rng = np.random.default_rng(6)
    q, k, v = _qkv(rng, t=6, s=6)
    full = to_numpy(scaled_dot_product_attention(q, k, v, causal=True), "float32")
    offset = ops.convert_to_tensor(3, "int32") if as_tensor else 3
    chunk = scaled_dot_product_attention(
        q[:, 3:5], k, v, causal=True, causal_offset=offset
    )
    np.testing.assert_allclose(to_numpy(chunk, "float32"), full[:, 3:5], atol=1e-6)
    # One new token against a cache of 4 earlier tokens plus itself.
    step = scaled_dot_product_attention(
        q[:, 4:5], k[:, :5], v[:, :5], causal=True, causal_offset=4
    )
    np.testing.assert_allclose(to_numpy(step, "float32"), full[:, 4:5], atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_fully_masked_rows_are_finite_zeros(dtype):
    rng = np.random.default_rng(7)
    q, k, v = (ops.cast(x, dtype) for x in _qkv(rng, t=3, s=4))
    mask = np.ones((2, 1, 3, 4), bool)
    mask[0, :, 1, :] = False  # one query row sees nothing
    mask[1] = False  # a whole batch element sees nothing
    bias = np.full((1, 1, 3, 4), -5.0, "float32")
    out, w = scaled_dot_product_attention(
        q, k, v, mask=mask, bias=bias, return_weights=True
    )
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    out, w = to_numpy(out, "float32"), to_numpy(w, "float32")
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(w))
    assert np.all(out[0, 1] == 0) and np.all(w[0, :, 1] == 0)
    assert np.all(out[1] == 0) and np.all(w[1] == 0)
    # The other rows still sum to one.
    np.testing.assert_allclose(w[0, :, [0, 2]].sum(-1), 1.0, atol=1e-2)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_large_logits_do_not_overflow(dtype):
    rng = np.random.default_rng(8)
    q, k, v = _qkv(rng, t=3, s=5, d=4)
    # Logits up to ~ +-4 * 40 * 40 / 2 = 3200: representable in float16 but
    # exp() of them is not; the softmax must run in float32.
    q, k = 40 * np.sign(q), 40 * np.sign(k)
    keep = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)[:, None, None, :]
    out, w = scaled_dot_product_attention(
        ops.cast(q, dtype),
        ops.cast(k, dtype),
        ops.cast(v, dtype),
        mask=keep,
        bias=np.full((1, 1, 1, 5), 100.0, "float32"),
        causal=True,
        return_weights=True,
    )
    out, w = to_numpy(out, "float32"), to_numpy(w, "float32")
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(w))
    tri = np.tril(np.ones((3, 5), bool))
    ref_out, ref_w = reference_attention(q, k, v, mask=keep & tri)
    np.testing.assert_allclose(w, ref_w, atol=2e-2)
    np.testing.assert_allclose(out, ref_out, atol=5e-2)


def test_dropout_only_in_training_and_unbiased():
    rng = np.random.default_rng(9)
    q, k, v = _qkv(rng, b=1, t=2, s=3, h=1, d=4)
    ref = to_numpy(scaled_dot_product_attention(q, k, v), "float32")
    not_training = scaled_dot_product_attention(q, k, v, dropout=0.5, seed=3)
    np.testing.assert_array_equal(to_numpy(not_training, "float32"), ref)
    reps = 4000
    qr, kr, vr = (np.repeat(x, reps, axis=0) for x in (q, k, v))
    out, w = scaled_dot_product_attention(
        qr, kr, vr, dropout=0.5, seed=3, training=True, return_weights=True
    )
    out = to_numpy(out, "float32")
    # Weights are returned before dropout.
    np.testing.assert_allclose(
        to_numpy(w, "float32")[0], reference_attention(q, k, v)[1][0], atol=1e-5
    )
    assert not np.allclose(out[0], ref[0], atol=1e-3)
    # Inverted dropout keeps the expectation.
    np.testing.assert_allclose(out.mean(0), ref[0], atol=0.1)


def test_helpers_compose_to_the_kernel():
    rng = np.random.default_rng(10)
    q, k, v = _qkv(rng, h=4, k=2)
    logits = attention_logits(q, k, 0.5)  # (B, H, T, S)
    weights = masked_softmax(logits, np.array([True, True, False, True, True, True]))
    out = attention_combine(weights, v)
    ref_out, ref_w = reference_attention(
        q, k, v, scale=0.5, mask=np.array([True, True, False, True, True, True])
    )
    np.testing.assert_allclose(to_numpy(weights, "float32"), ref_w, atol=1e-5)
    np.testing.assert_allclose(to_numpy(out, "float32"), ref_out, atol=1e-5)


def test_masked_softmax_fully_masked_row_is_zero():
    logits = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "float32")
    mask = np.array([[True, False, True], [False, False, False]])
    w = to_numpy(masked_softmax(logits, mask), "float32")
    e = np.exp([1.0, 3.0])
    np.testing.assert_allclose(w[0], [e[0] / e.sum(), 0, e[1] / e.sum()], atol=1e-6)
    np.testing.assert_array_equal(w[1], [0, 0, 0])


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize("dropout", [1.0, -0.1, "0.1", 1])
def test_bad_dropout(dropout):
    q, k, v = _qkv(np.random.default_rng(0))
    with pytest.raises(
        ValueError,
        match=r"argument `dropout`, expected a float in \[0, 1\). Received: dropout=",
    ):
        scaled_dot_product_attention(q, k, v, dropout=dropout)


@pytest.mark.parametrize("name", ["query", "key", "value"])
def test_bad_rank(name):
    args = dict(zip(("query", "key", "value"), _qkv(np.random.default_rng(0))))
    args[name] = args[name][:, :, 0]
    with pytest.raises(
        ValueError,
        match=rf"argument `{name}`, expected a rank-4 tensor .* "
        rf"Received: {name}.shape=\(2, \d, \d\)",
    ):
        scaled_dot_product_attention(**args)


def test_mismatched_shapes():
    rng = np.random.default_rng(0)
    q, k, v = _qkv(rng, h=4, k=2)
    with pytest.raises(ValueError, match=r"`query` and `key`, expected the same head size"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match=r"`key` and `value`, expected the same number of heads"):
        scaled_dot_product_attention(q, k, v[:, :, :1])
    with pytest.raises(ValueError, match=r"`key` and `value`, expected the same length"):
        scaled_dot_product_attention(q, k, v[:, :3])
    q3 = rng.standard_normal((2, 4, 3, 8)).astype("float32")
    with pytest.raises(ValueError, match=r"Received: 3 query heads and 2 key/value heads"):
        scaled_dot_product_attention(q3, k, v)


def test_bad_mask_and_bias_shapes():
    q, k, v = _qkv(np.random.default_rng(0))  # scores (2, 2, 4, 6)
    with pytest.raises(ValueError, match=r"argument `mask`, expected a tensor of rank <= 4"):
        scaled_dot_product_attention(q, k, v, mask=np.ones((1, 2, 2, 4, 6), bool))
    with pytest.raises(
        ValueError,
        match=r"argument `mask`, expected shapes that broadcast together.*axis -1 has sizes \[5, 6\]",
    ):
        scaled_dot_product_attention(q, k, v, mask=np.ones((2, 1, 1, 5), bool))
    with pytest.raises(
        ValueError,
        match=r"argument `bias`, expected shapes that broadcast together.*axis -2 has sizes \[3, 4\]",
    ):
        scaled_dot_product_attention(q, k, v, bias=np.zeros((3, 6), "float32"))


def test_single_key_gets_full_weight_without_warning():
    import warnings

    rng = np.random.default_rng(11)
    q, k, v = _qkv(rng, t=3, s=1)
    keep = np.array([[True], [False]])[:, None, None, :]  # (B, 1, 1, S=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # keras warns on a size-1 softmax
        out, w = scaled_dot_product_attention(q, k, v, mask=keep, return_weights=True)
    ref_out, ref_w = reference_attention(q, k, v, mask=keep)
    np.testing.assert_allclose(to_numpy(w, "float32"), ref_w, atol=1e-6)
    np.testing.assert_allclose(to_numpy(out, "float32"), ref_out, atol=1e-5)
    assert np.all(to_numpy(w, "float32")[0] == 1) and np.all(to_numpy(w, "float32")[1] == 0)
