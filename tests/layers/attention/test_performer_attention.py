"""PerformerAttention: harness, FAVOR+ against a NumPy reference of the
paper's formula, the random features, approximation error vs the number of
features, feature redraw, masks and argument checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from backend_utils import gradients
from harness import run_layer_test

from keras_attention.layers import PerformerAttention
from keras_attention.layers import RotaryEmbedding
from keras_attention.layers.attention import efficient_math
from keras_attention.ops import scaled_dot_product_attention

RNG = np.random.default_rng(0)
fn = keras.ops.convert_to_numpy


def _rand(*shape, scale=1.0):
    return (scale * RNG.normal(size=shape)).astype("float32")


def test_harness_cross_attention():
    run_layer_test(
        PerformerAttention,
        {"num_heads": 2, "key_dim": 4, "num_random_features": 8, "seed": 3},
        {"query": _rand(2, 5, 8), "value": _rand(2, 7, 8)},
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=1,
    )


def test_harness_causal_redraw_grouped_rotary():
    # The compiled fit step runs the redraw path (training=True).
    run_layer_test(
        PerformerAttention,
        {
            "num_heads": 4,
            "key_dim": 4,
            "num_random_features": 6,
            "redraw_features": True,
            "num_key_value_heads": 2,
            "rotary_embedding": RotaryEmbedding(),
        },
        {"query": _rand(2, 6, 8), "value": _rand(2, 4, 8)},
        call_kwargs={"use_causal_mask": True},
        expected_output_shape=(2, 6, 8),
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=1,
    )


# ---------------------------------------------------------------------------
# NumPy reference of FAVOR+ (Choromanski et al. 2021, eq. 4-5 and Lemma 1).
# ---------------------------------------------------------------------------


def _phi(x, w):
    """exp(w^T x - |x|^2 / 2) / sqrt(m) on x scaled by d^-1/4, float64."""
    x = x.astype("float64") * x.shape[-1] ** -0.25
    return np.exp(x @ w.T - 0.5 * np.sum(x**2, -1, keepdims=True)) / np.sqrt(len(w))


def _favor_numpy(q, k, v, w, causal=False, q_mask=None, k_mask=None):
    """q (T, D), k (S, D), v (S, Dv) for one head: the approximate attention."""
    kernel = _phi(q, w) @ _phi(k, w).T  # (T, S) estimate of exp(q.k / sqrt(d))
    if k_mask is not None:
        kernel = kernel * k_mask[None, :]
    if causal:
        kernel = kernel * np.tril(np.ones_like(kernel))
    den = kernel.sum(-1, keepdims=True)
    out = np.where(den > 0, kernel @ v / np.where(den > 0, den, 1), 0.0)
    if q_mask is not None:
        out = out * q_mask[:, None]
    return out


def _projections(layer, query, value):
    q = fn(layer.query_dense(query))  # (B, T, H, D)
    k = fn(layer.key_dense(value))  # (B, S, K, D)
    v = fn(layer.value_dense(value))  # (B, S, K, Dv)
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("t,s,kv_heads", [(6, 6, None), (5, 9, 1), (9, 4, 2)])
def test_layer_matches_numpy_favor(causal, t, s, kv_heads):
    layer = PerformerAttention(num_heads=4, key_dim=8, num_random_features=16,
                               num_key_value_heads=kv_heads, seed=1)
    query, value = _rand(2, t, 16, scale=0.5), _rand(2, s, 16, scale=0.5)
    q_mask = RNG.random((2, t)) > 0.2
    k_mask = RNG.random((2, s)) > 0.2
    out = fn(layer(query, value, query_mask=q_mask, value_mask=k_mask,
                   use_causal_mask=causal))
    q, k, v = _projections(layer, query, value)
    w = fn(layer.random_projection).astype("float64")
    group = 4 // (kv_heads or 4)
    attended = np.zeros((2, t, 4, 8))
    for b in range(2):
        for h in range(4):
            kk, vv = k[b, :, h // group], v[b, :, h // group]
            if causal:  # top-left aligned: keys past T never seen
                kk, vv, km = kk[:t], vv[:t], k_mask[b, :t]
            else:
                km = k_mask[b]
            attended[b, :, h] = _favor_numpy(q[b, :, h], kk, vv, w, causal,
                                             q_mask[b], km)
    expected = fn(layer.output_dense(attended.astype("float32")))
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_causal_chunks_match_the_prefix_sum_formula():
    # T = 150 spans three chunks of 64 (the last one partial).
    rng = np.random.default_rng(1)
    q = (0.5 * rng.normal(size=(1, 150, 1, 4))).astype("float32")
    k = (0.5 * rng.normal(size=(1, 150, 1, 4))).astype("float32")
    v = rng.normal(size=(1, 150, 1, 3)).astype("float32")
    w = fn(efficient_math.orthogonal_random_features(8, 4, seed=0))
    out = fn(efficient_math.favor_attention(q, k, v, w, causal=True))
    expected = _favor_numpy(q[0, :, 0], k[0, :, 0], v[0, :, 0], w.astype("float64"),
                            causal=True)
    np.testing.assert_allclose(out[0, :, 0], expected, atol=1e-5)


def _numerical_gradient(f, x, step=1e-6):
    """Central differences of the scalar `f` at float64 `x`."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        shifted = [x.copy(), x.copy()]
        shifted[0][index] += step
        shifted[1][index] -= step
        grad[index] = (f(shifted[0]) - f(shifted[1])) / (2 * step)
    return grad


@pytest.mark.parametrize("causal", [False, True])
def test_long_queries_and_keys_neither_underflow_nor_lose_their_gradients(causal):
    # Queries and keys of norm 16: |x|^2 / 2 = 64 after the D^-1/4 scaling,
    # so every feature is exp(w.x - 64) with |w.x| below about 25, and the
    # denominator phi(q) . sum_j phi(k_j) is below exp(-75) -- zero in
    # float32 unless the stabilizers take the norms and the key sums in.
    # Zero denominators gave zero outputs and NaN gradients (a Performer
    # classifier's training went NaN after 600 steps this way, with
    # denominators near 1e-20). Two query heads share one key/value head.
    rng = np.random.default_rng(7)

    def long_vectors(shape):
        x = rng.normal(size=shape)
        return (16 * x / np.linalg.norm(x, axis=-1, keepdims=True)).astype("float32")

    q, k = long_vectors((1, 6, 2, 4)), long_vectors((1, 6, 1, 4))
    v = rng.normal(size=(1, 6, 1, 3)).astype("float32")
    r = rng.normal(size=(1, 6, 2, 3))  # the loss: sum(out * r)
    w = fn(efficient_math.orthogonal_random_features(16, 4, seed=2))
    w64 = w.astype("float64")

    def reference(q, k, v):  # float64 NumPy: the formula, no stabilizers
        heads = [_favor_numpy(q[0, :, h], k[0, :, 0], v[0, :, 0], w64, causal)
                 for h in range(2)]
        return np.stack(heads, axis=1)[None]  # (1, T, H, Dv)

    inputs64 = [a.astype("float64") for a in (q, k, v)]
    np.testing.assert_allclose(
        fn(efficient_math.favor_attention(q, k, v, w, causal=causal)),
        reference(*inputs64), rtol=1e-4, atol=1e-6)

    def loss(q, k, v):
        out = efficient_math.favor_attention(q, k, v, w, causal=causal)
        return keras.ops.sum(keras.ops.multiply(out, r.astype("float32")))

    grads = gradients(loss, (q, k, v))
    for i, grad in enumerate(grads):
        def loss64(x, i=i):
            args = list(inputs64)
            args[i] = x
            return float(np.sum(reference(*args) * r))

        expected = _numerical_gradient(loss64, inputs64[i])
        # float32 exponents near 64 carry ~1e-5 absolute error: compare
        # against 1% of the largest entry.
        np.testing.assert_allclose(grad, expected, rtol=1e-2,
                                   atol=1e-2 * np.abs(expected).max())


def test_orthogonal_random_features():
    w = fn(efficient_math.orthogonal_random_features(20, 8, seed=5))
    assert w.shape == (20, 8)
    for start in (0, 8):  # rows within a block of D are orthogonal
        block = w[start:start + 8]
        gram = block @ block.T
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-4)
    # Rows are marginally N(0, I): squared norms average D.
    many = fn(efficient_math.orthogonal_random_features(8192, 8, seed=6))
    assert abs(np.mean(np.sum(many**2, -1)) - 8) < 0.3
    # ... and directions are unbiased (mean direction ~ 0).
    directions = many / np.linalg.norm(many, axis=-1, keepdims=True)
    assert np.abs(directions.mean(0)).max() < 0.05


def test_features_estimate_the_softmax_kernel_without_bias():
    # E[phi(x) . phi(y)] = exp(x . y / sqrt(d)), averaged over 40 draws.
    rng = np.random.default_rng(2)
    x = (0.5 * rng.normal(size=(1, 3, 1, 4))).astype("float32")
    y = (0.5 * rng.normal(size=(1, 3, 1, 4))).astype("float32")
    estimates = []
    for seed in range(40):
        w = efficient_math.orthogonal_random_features(64, 4, seed=seed)
        # is_query=True for both: row-wise stabilizers undone below.
        fx, shift_x = efficient_math.positive_random_features(
            x, w, True, return_stabilizer=True)
        fy, shift_y = efficient_math.positive_random_features(
            y, w, True, return_stabilizer=True)
        shift_x, shift_y = fn(shift_x)[0, :, 0, 0], fn(shift_y)[0, :, 0, 0]
        kernel = fn(fx)[0, :, 0] @ fn(fy)[0, :, 0].T
        estimates.append(kernel * np.exp(shift_x[:, None] + shift_y[None, :]))
    exact = np.exp(fn(x)[0, :, 0] @ fn(y)[0, :, 0].T / 2.0)
    estimates = np.array(estimates)
    standard_error = estimates.std(0) / np.sqrt(len(estimates))
    # Unbiased: the mean is within 4 standard errors (and within 6%).
    assert np.all(np.abs(estimates.mean(0) - exact) < 4 * standard_error + 1e-6)
    np.testing.assert_allclose(estimates.mean(0), exact, rtol=0.06)


def _relative_error(num_features, seeds=6, causal=False):
    rng = np.random.default_rng(3)
    q = (0.5 * rng.normal(size=(2, 32, 2, 16))).astype("float32")
    k = (0.5 * rng.normal(size=(2, 32, 2, 16))).astype("float32")
    v = rng.normal(size=(2, 32, 2, 16)).astype("float32")
    exact = fn(scaled_dot_product_attention(q, k, v, causal=causal))
    errors = []
    for seed in range(seeds):
        w = efficient_math.orthogonal_random_features(num_features, 16, seed=seed)
        approx = fn(efficient_math.favor_attention(q, k, v, w, causal=causal))
        errors.append(np.linalg.norm(approx - exact) / np.linalg.norm(exact))
    return float(np.mean(errors))


@pytest.mark.parametrize("causal", [False, True])
def test_error_shrinks_with_more_features(causal):
    errors = {m: _relative_error(m, causal=causal) for m in (16, 128, 1024)}
    # Monte-Carlo error ~ 1/sqrt(M): each 8x step should cut it clearly.
    assert errors[128] < 0.7 * errors[16], errors
    assert errors[1024] < 0.7 * errors[128], errors
    assert errors[1024] < 0.15, errors


def test_padded_keys_have_no_effect():
    layer = PerformerAttention(num_heads=2, key_dim=4, num_random_features=16)
    query, value = _rand(2, 5, 8), _rand(2, 7, 8)
    mask = np.array([[True] * 4 + [False] * 3, [True] * 7])
    out = fn(layer(query, value, value_mask=mask))
    changed = value.copy()
    changed[0, 4:] = 100.0 * _rand(3, 8)
    np.testing.assert_allclose(fn(layer(query, changed, value_mask=mask)), out,
                               atol=1e-5)
    np.testing.assert_allclose(fn(layer(query[:1], value[:1, :4])), out[:1], atol=1e-5)


def test_fully_masked_rows_return_a_zero_context():
    layer = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8,
                               bias_initializer="ones")
    x = _rand(2, 5, 8)
    query_mask = np.array([[True] * 5, [True, True, False, False, False]])
    value_mask = np.array([[False] * 5, [True] * 5])
    out = fn(layer(x, x, query_mask=query_mask, value_mask=value_mask))
    np.testing.assert_allclose(out[0], 1.0, atol=1e-6)  # no key at all
    np.testing.assert_allclose(out[1, 2:], 1.0, atol=1e-6)  # padded queries
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("causal", [False, True])
def test_a_fully_padded_example_leaves_the_others_gradients_alone(causal):
    # Example 1 has no valid token (an empty text in a padded batch). It
    # must contribute nothing: every gradient equals that of example 0
    # alone. Before, its keys' features were `exp(x + 1e30) * 0` = NaN, and
    # NaN reached every weight's gradient.
    layer = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8)
    x = _rand(2, 5, 8)
    mask = np.array([[True, True, True, False, False], [False] * 5])
    layer(x, x)

    def loss(x, mask):
        out = layer(x, x, query_mask=mask, value_mask=mask, use_causal_mask=causal)
        # Padded outputs are bias only.
        return keras.ops.sum(keras.ops.multiply(out, mask[:, :, None]))

    weights = layer.trainable_weights
    both = gradients(lambda x: loss(x, mask), (x,), weights)
    alone = gradients(lambda x: loss(x, mask[:1]), (x[:1],), weights)
    for g in both:
        assert np.all(np.isfinite(g))
    np.testing.assert_allclose(both[0][1], 0.0)
    np.testing.assert_allclose(both[0][:1], alone[0], rtol=1e-5, atol=1e-6)
    for g_both, g_alone in zip(both[1:], alone[1:]):
        np.testing.assert_allclose(g_both, g_alone, rtol=1e-5, atol=1e-6)


def test_feature_redraw():
    x = _rand(2, 6, 8)
    fixed = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8, seed=1)
    np.testing.assert_allclose(fn(fixed(x, x, training=True)),
                               fn(fixed(x, x, training=True)))
    redraw = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8,
                                redraw_features=True, seed=1)
    a, b = fn(redraw(x, x, training=True)), fn(redraw(x, x, training=True))
    assert np.abs(a - b).max() > 1e-4, "no new features in training"
    # Inference uses the stored features.
    np.testing.assert_allclose(fn(redraw(x, x)), fn(redraw(x, x, training=False)))
    redraw_weights = fn(redraw.random_projection)
    redraw(x, x, training=True)
    np.testing.assert_array_equal(fn(redraw.random_projection), redraw_weights)


def test_features_come_from_the_seed():
    x = _rand(1, 4, 8)
    a = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8, seed=7)
    b = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8, seed=7)
    a(x, x), b(x, x)
    np.testing.assert_array_equal(fn(a.random_projection), fn(b.random_projection))


def test_mixed_float16_close_to_float32():
    x = _rand(2, 12, 8)
    ref = PerformerAttention(num_heads=2, key_dim=4, num_random_features=16)
    ref_out = fn(ref(x, x, use_causal_mask=True))
    half = PerformerAttention(num_heads=2, key_dim=4, num_random_features=16,
                              dtype="mixed_float16")
    half(x, x)
    half.set_weights(ref.get_weights())
    out = half(x, x, use_causal_mask=True)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    np.testing.assert_allclose(fn(keras.ops.cast(out, "float32")), ref_out, atol=2e-2)


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


def test_invalid_constructor_arguments():
    with pytest.raises(ValueError, match="argument `num_random_features`, expected"):
        PerformerAttention(num_heads=2, key_dim=4, num_random_features=0)
    with pytest.raises(ValueError, match=r"argument `dropout`, expected 0 \(Perf"):
        PerformerAttention(num_heads=2, key_dim=4, dropout=0.1)
    with pytest.raises(ValueError, match="argument `dropout`, expected a float"):
        PerformerAttention(num_heads=2, key_dim=4, dropout=1.5)
    with pytest.raises(TypeError, match="argument `redraw_features`, expected a bool"):
        PerformerAttention(num_heads=2, key_dim=4, redraw_features="yes")


@pytest.mark.parametrize("symbolic", [False, True])
def test_unsupported_call_arguments(symbolic):
    layer = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8)
    if symbolic:
        x = keras.Input((3, 8))
        mask, bias = keras.Input((3, 3), dtype="bool"), keras.Input((2, 3, 3))
    else:
        x = _rand(1, 3, 8)
        mask, bias = np.ones((1, 3, 3), bool), np.zeros((1, 2, 3, 3), "float32")
    with pytest.raises(ValueError, match="argument `attention_mask`, expected None"):
        layer(x, x, attention_mask=mask)
    with pytest.raises(ValueError, match="argument `attention_bias`, expected None"):
        layer(x, x, attention_bias=bias)
    with pytest.raises(ValueError, match="argument `return_attention_scores`, expec"):
        layer(x, x, return_attention_scores=True)
    with pytest.raises(ValueError, match="argument `cache_index`, expected None"):
        layer(x, x, cache_index=0)


@pytest.mark.parametrize("kv_heads,rotary", [(None, False), (1, True)])
def test_cached_decoding_equals_the_causal_prefix_sum_pass(kv_heads, rotary):
    # The running state (a 3-token prefill, then one token at a time) and
    # the whole-sequence path (chunked prefix sums) compute the same FAVOR+
    # estimate with the layer's fixed random features.
    keras.utils.set_random_seed(0)
    layer = PerformerAttention(num_heads=2, key_dim=4, num_random_features=16,
                               num_key_value_heads=kv_heads,
                               rotary_embedding=RotaryEmbedding() if rotary else None)
    x = _rand(2, 7, 8)
    full = fn(layer(x, x, use_causal_mask=True))
    cache = layer.get_initial_cache(batch_size=2, max_length=9)
    out, cache = layer(x[:, :3], x[:, :3], use_causal_mask=True, cache=cache,
                       cache_index=0)
    steps = [fn(out)]
    for i in range(3, 7):
        out, cache = layer(x[:, i:i + 1], x[:, i:i + 1], use_causal_mask=True,
                           cache=cache, cache_index=i)
        steps.append(fn(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    # A fixed-size state: M = 16 features, Dv + 1 = 5 columns; 7 keys each.
    summary, stabilizer, count = cache
    assert summary.shape == (2, kv_heads or 2, 16, 5)
    assert stabilizer.shape == (2, kv_heads or 2)
    np.testing.assert_array_equal(fn(count), [7, 7])


def test_padded_rows_and_re_decoded_positions_as_the_generators_use_them():
    # Right-padded rows of lengths 5 and 2 prefilled together (the value
    # mask covers the whole sequence), then decoding re-runs positions 1..4
    # (as the generators do from the shortest prompt on) and goes on. Each
    # row's output where it is new equals the causal pass over that row
    # alone; re-run positions below the row's count leave the state as is.
    keras.utils.set_random_seed(0)
    layer = PerformerAttention(num_heads=2, key_dim=4, num_random_features=16)
    x = _rand(2, 7, 8)
    lengths = np.array([5, 2])
    mask = np.arange(7)[None, :] < lengths[:, None]  # (2, 7)
    cache = layer.get_initial_cache(batch_size=2, max_length=7)
    _, cache = layer(x[:, :5], x[:, :5], use_causal_mask=True, value_mask=mask,
                     cache=cache, cache_index=0)
    np.testing.assert_array_equal(fn(cache[2]), [5, 2])
    outputs = {}
    for i in range(1, 7):
        mask[:, i] = True  # a token is real once decoded (row 1 from 2 on)
        out, cache = layer(x[:, i:i + 1], x[:, i:i + 1], use_causal_mask=True,
                           value_mask=mask, cache=cache, cache_index=i)
        outputs[i] = fn(out)[:, 0]
    np.testing.assert_array_equal(fn(cache[2]), [7, 7])
    full = fn(layer(x, x, use_causal_mask=True))  # (2, 7, 8)
    # Row 0: positions 4.. (its last prompt token on); row 1: 1.. .
    for row, first in ((0, 4), (1, 1)):
        for i in range(first, 7):
            np.testing.assert_allclose(outputs[i][row], full[row, i], atol=1e-5)


@pytest.mark.parametrize("norm", [None, 16.0])
def test_running_state_matches_the_kernel_formula(norm):
    # favor_running_attention against NumPy: a state holding 3 keys, then
    # 3 new tokens whose key 1 is left out (attended by none, not added); weights
    # phi(q).phi(k) over the state's keys and the valid new keys s <= t,
    # normalized per row. Large stabilizers in the state are rescaled
    # exactly (key 0 is far larger than the rest). With `norm`, every query
    # and key has that norm: features near exp(-64), which underflow
    # without stabilizers that take the norms and the key sums in.
    query, key, value = _rand(1, 6, 2, 4), _rand(1, 6, 2, 4), _rand(1, 6, 2, 3)
    if norm is None:
        key[0, 0] *= 6.0
    else:
        query, key = (norm * x / np.linalg.norm(x, axis=-1, keepdims=True)
                      for x in (query, key))
    projection = fn(efficient_math.orthogonal_random_features(8, 4, seed=1))
    state = (np.zeros((1, 2, 8, 4), "float32"),
             np.full((1, 2), efficient_math.NO_STABILIZER, "float32"))
    _, state = efficient_math.favor_running_attention(
        query[:, :3], key[:, :3], value[:, :3], projection, state,
        np.ones((1, 3), bool))
    valid = np.array([[True, False, True]])
    out, _ = efficient_math.favor_running_attention(
        query[:, 3:], key[:, 3:], value[:, 3:], projection, state, valid)
    out = fn(out)

    def phi(x):
        x = x.astype("float64") * 4 ** -0.25
        return np.exp(x @ projection.T - 0.5 * (x ** 2).sum(-1, keepdims=True))

    keys = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 1]], bool)
    for h in range(2):
        weights = phi(query[0, 3:, h]) @ phi(key[0, :, h]).T * keys  # (3, 6)
        expected = weights @ value[0, :, h] / weights.sum(-1, keepdims=True)
        np.testing.assert_allclose(out[0, :, h], expected, rtol=1e-4, atol=1e-6)


def test_cache_errors():
    layer = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8)
    x = _rand(1, 3, 8)
    layer(x, x)
    cache = layer.get_initial_cache(batch_size=1, max_length=3)
    with pytest.raises(ValueError, match=r"argument `cache_index`, expected the "
                       r"position of the new tokens in a self-attention cache"):
        layer(x, x, cache=cache)
    with pytest.raises(ValueError, match="PerformerAttention does not support a "
                       "cross-attention cache, so `compute_cross_attention_cache`"):
        layer.compute_cross_attention_cache(x)


@pytest.mark.parametrize("kv_heads", [None, 1])
def test_causal_masked_layer_in_a_compiled_fit_with_unknown_batch(kv_heads):
    # A traced call with a dynamic batch and a padding mask: the grouped
    # features keep a static group axis for the chunked prefix sums.
    keras.utils.set_random_seed(0)
    ids = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(10, 8, mask_zero=True)(ids)  # Keras mask: ids != 0
    layer = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8,
                               num_key_value_heads=kv_heads)
    model = keras.Model(ids, layer(x, x, use_causal_mask=True))
    model.compile(optimizer="adam", loss="mse", jit_compile=False)
    data = np.array([[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 9, 1]] * 2, dtype="int32")
    # Batched with an unknown batch size (NumPy inputs get a static one).
    dataset = tf.data.Dataset.from_tensor_slices(
        (data, np.zeros((4, 6, 8), "float32"))).batch(2)
    history = model.fit(dataset, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_cached_decoding_under_mixed_precision_and_symbolically():
    # float16 outputs, a float32 running state; the symbolic call reports
    # the same dtypes and shapes.
    keras.utils.set_random_seed(0)
    ref = PerformerAttention(num_heads=2, key_dim=4, num_random_features=16)
    x = _rand(1, 6, 8)
    expected = fn(ref(x, x, use_causal_mask=True))
    half = PerformerAttention(num_heads=2, key_dim=4, num_random_features=16,
                              dtype="mixed_float16")
    half(x, x)
    half.set_weights(ref.get_weights())
    cache = half.get_initial_cache(batch_size=1, max_length=6)
    assert [keras.backend.standardize_dtype(c.dtype) for c in cache] == [
        "float32", "float32", "int32"]
    steps = []
    for i in range(6):
        out, cache = half(x[:, i:i + 1], x[:, i:i + 1], use_causal_mask=True,
                          cache=cache, cache_index=i)
        steps.append(fn(keras.ops.cast(out, "float32")))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), expected, atol=2e-2)
    symbolic = keras.Input((1, 8), batch_size=1)
    spec_out, spec_cache = half.compute_output_spec(
        symbolic, symbolic, cache=tuple(keras.KerasTensor(c.shape, c.dtype)
                                        for c in cache), cache_index=2)
    assert keras.backend.standardize_dtype(spec_out.dtype) == "float16"
    assert [tuple(c.shape) for c in spec_cache] == [(1, 2, 16, 5), (1, 2), (1,)]
    assert [c.dtype for c in spec_cache] == ["float32", "float32", "int32"]


def test_running_state_errors():
    layer = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8)
    x = _rand(1, 1, 8)
    layer(x, x)
    keys = np.zeros((1, 3, 2, 4), "float32")  # MultiHeadAttention's format
    with pytest.raises(ValueError, match=r"expected the tuple \(summary, "
                       r"stabilizer, count\) of `get_initial_cache`. Received: "
                       r"cache of type tuple with 2 entries"):
        layer(x, x, cache=(keys, keys), cache_index=0, use_causal_mask=True)
    summary, stabilizer, count = layer.get_initial_cache(1, max_length=4)
    with pytest.raises(ValueError, match=r"expected `summary` of shape "
                       r"\(1, 2, 8, 5\)"):
        layer(x, x, cache=(summary[..., :4], stabilizer, count), cache_index=0)
    with pytest.raises(ValueError, match="argument `cache_index`, expected a "
                       "position >= 0. Received: cache_index=-1"):
        layer(x, x, cache=(summary, stabilizer, count), cache_index=-1)
    with pytest.raises(ValueError, match=r"argument `value_mask`, expected a "
                       r"\(batch, sequence_length\) mask over every position"):
        layer(x, x, cache=(summary, stabilizer, count), cache_index=2,
              value_mask=np.ones((1, 1), bool))
    with pytest.raises(ValueError, match=r"argument `key_mask`, expected a "
                       r"\(batch, sequence_length\) mask over every position"):
        layer(x, x, cache=(summary, stabilizer, count), cache_index=0,
              key_mask=np.ones((4,), bool))
    with pytest.raises(ValueError, match="argument `max_length`"):
        layer.get_initial_cache(1, max_length=0)
