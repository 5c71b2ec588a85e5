"""LocalAttention: harness, equality with exact attention under the banded
mask (same weights), masks, dropout, dynamic lengths and argument checks."""

import keras
import numpy as np
import pytest
from backend_utils import gradients
from harness import run_layer_test

from keras_attention.layers import LocalAttention
from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import RotaryEmbedding

RNG = np.random.default_rng(0)
fn = keras.ops.convert_to_numpy


def _rand(*shape):
    return RNG.normal(size=shape).astype("float32")


def test_harness_cross_attention_with_scores():
    # T=7 queries, S=11 keys: the window is aligned at position 0.
    run_layer_test(
        LocalAttention,
        {"num_heads": 2, "key_dim": 4, "window_size": 2},
        {"query": _rand(2, 7, 8), "value": _rand(2, 11, 8)},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=[(2, 7, 8), (2, 2, 7, 11)],
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
    )


def test_harness_causal_grouped_rotary_dropout():
    run_layer_test(
        LocalAttention,
        {
            "num_heads": 4,
            "key_dim": 4,
            "window_size": 3,
            "num_key_value_heads": 2,
            "dropout": 0.1,
            "seed": 2,
            "rotary_embedding": RotaryEmbedding(),
        },
        {"query": _rand(2, 9, 8), "value": _rand(2, 9, 8)},
        call_kwargs={"use_causal_mask": True},
        expected_output_shape=(2, 9, 8),
        expected_num_trainable_weights=8,
    )


def _band(t, s, window, causal, num_global=0):
    """The NumPy (T, S) mask: `|i - j| <= w or i < g or j < g` (and
    `j <= i` when causal)."""
    i, j = np.arange(t)[:, None], np.arange(s)[None, :]
    band = (np.abs(i - j) <= window) | (i < num_global) | (j < num_global)
    return band & (i >= j) if causal else band


def _exact_with_band(layer, query, value, window, causal, num_global=0, **kwargs):
    """MultiHeadAttention with the same weights and the banded mask."""
    exact = MultiHeadAttention(
        num_heads=layer.num_heads,
        key_dim=layer.key_dim,
        num_key_value_heads=layer.num_key_value_heads,
    )
    exact(query, value)
    exact.set_weights(layer.get_weights())
    t, s = query.shape[1], value.shape[1]
    band = _band(t, s, window, causal, num_global)
    explicit = kwargs.pop("attention_mask", None)
    mask = np.broadcast_to(band, (query.shape[0], 1, t, s))
    if explicit is not None:
        explicit = explicit if explicit.ndim == 4 else explicit[:, None]
        mask = mask & explicit
    return exact(query, value, attention_mask=mask, return_attention_scores=True,
                 **kwargs)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "t,s,window,num_global,kv_heads",
    [(10, 10, 2, 0, None), (7, 12, 3, 0, 1), (13, 5, 4, 0, 2), (5, 5, 9, 0, None),
     (16, 16, 1, 0, 2),
     # Global tokens: fewer than, more than and beyond a block; past T and
     # S; T != S both ways.
     (10, 10, 2, 1, None), (13, 13, 2, 5, 2), (7, 12, 3, 2, 1), (12, 7, 2, 3, None),
     (4, 4, 1, 6, None), (16, 16, 4, 4, 2)],
)
def test_equals_exact_attention_with_banded_mask(causal, t, s, window, num_global,
                                                 kv_heads):
    layer = LocalAttention(
        num_heads=4, key_dim=8, window_size=window, num_global_tokens=num_global,
        num_key_value_heads=kv_heads,
    )
    query, value = _rand(2, t, 16), _rand(2, s, 16)
    value_mask = RNG.random((2, s)) > 0.3
    query_mask = RNG.random((2, t)) > 0.2
    out, scores = layer(query, value, value_mask=value_mask, query_mask=query_mask,
                        use_causal_mask=causal, return_attention_scores=True)
    ref, ref_scores = _exact_with_band(
        layer, query, value, window, causal, num_global, value_mask=value_mask,
        query_mask=query_mask,
    )
    np.testing.assert_allclose(fn(out), fn(ref), atol=1e-5)
    np.testing.assert_allclose(fn(scores), fn(ref_scores), atol=1e-6)
    if num_global:
        # Without masks every global pair beyond the window gets weight.
        _, free = layer(query, value, use_causal_mask=causal,
                        return_attention_scores=True)
        outside = ~_band(t, s, window, causal) & _band(t, s, window, causal,
                                                       num_global)
        assert outside.any() and np.all(fn(free)[:, :, outside] > 0)


@pytest.mark.parametrize("mask_heads", [1, 4])
def test_explicit_mask_and_bias_are_gathered_in_the_window(mask_heads):
    t, s, window = 9, 11, 2
    layer = LocalAttention(num_heads=4, key_dim=8, window_size=window)
    query, value = _rand(2, t, 16), _rand(2, s, 16)
    attention_mask = RNG.random((2, mask_heads, t, s)) > 0.3
    bias = _rand(1, 4, t, s)
    out, scores = layer(query, value, attention_mask=attention_mask,
                        attention_bias=bias, return_attention_scores=True)
    ref, ref_scores = _exact_with_band(
        layer, query, value, window, False, attention_mask=attention_mask,
        attention_bias=bias,
    )
    np.testing.assert_allclose(fn(out), fn(ref), atol=1e-5)
    np.testing.assert_allclose(fn(scores), fn(ref_scores), atol=1e-6)


def test_numpy_reference_of_the_window():
    # An independent reference: per-query softmax over keys |i - j| <= w.
    t, window = 8, 2
    layer = LocalAttention(num_heads=1, key_dim=4, window_size=window,
                           use_bias=False)
    x = _rand(1, t, 4)
    out = keras.ops.convert_to_numpy(layer(x, x))
    wq, wk, wv, wo = layer.get_weights()  # (F, 1, D) x 3, (1, D, F)
    q, k, v = x[0] @ wq[:, 0], x[0] @ wk[:, 0], x[0] @ wv[:, 0]
    expected = np.zeros_like(q)
    for i in range(t):
        js = [j for j in range(t) if abs(i - j) <= window]
        logits = q[i] @ k[js].T / np.sqrt(4)
        p = np.exp(logits - logits.max())
        expected[i] = (p / p.sum()) @ v[js]
    np.testing.assert_allclose(out[0], expected @ wo[0], atol=1e-5)


def test_fully_masked_rows_return_a_zero_context():
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=1,
                           bias_initializer="ones")
    x = _rand(1, 8, 8)
    value_mask = np.array([[True, True, False, False, False, False, True, True]])
    out, scores = layer(x, x, value_mask=value_mask, return_attention_scores=True)
    out = keras.ops.convert_to_numpy(out)
    # Query 3 and 4 see keys 2..4 and 3..5: all masked -> zero context, so
    # the output is the output projection's bias (ones).
    np.testing.assert_allclose(out[0, 3:5], np.ones((2, 8)), atol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(scores)[0, :, 3:5], 0.0)
    assert np.all(np.isfinite(out))


def test_dropout_only_in_training():
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=2, dropout=0.5,
                           seed=1)
    x = _rand(2, 6, 8)
    a, b = layer(x, x), layer(x, x, training=False)
    np.testing.assert_allclose(fn(a), fn(b))
    c = layer(x, x, training=True)
    difference = keras.ops.convert_to_numpy(c) - keras.ops.convert_to_numpy(a)
    assert np.abs(difference).max() > 1e-3


def test_dynamic_length_in_a_compiled_model_matches_eager():
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=2)
    inputs = keras.Input((None, 8))
    model = keras.Model(inputs, layer(inputs, inputs, use_causal_mask=True))
    for length in (5, 9):
        x = _rand(2, length, 8)
        compiled = model.predict(x, verbose=0)
        np.testing.assert_allclose(compiled, fn(layer(x, x, use_causal_mask=True)),
                                   atol=1e-5)


@pytest.mark.parametrize("causal,num_global", [(True, 0), (False, 2)])
def test_mixed_float16_close_to_float32(causal, num_global):
    x = _rand(2, 12, 8)
    ref = LocalAttention(num_heads=2, key_dim=4, window_size=3,
                         num_global_tokens=num_global)
    ref_out = ref(x, x, use_causal_mask=causal)
    half = LocalAttention(num_heads=2, key_dim=4, window_size=3,
                          num_global_tokens=num_global, dtype="mixed_float16")
    half(x, x)
    half.set_weights(ref.get_weights())
    out, scores = half(x, x, use_causal_mask=causal, return_attention_scores=True)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert keras.backend.standardize_dtype(scores.dtype) == "float16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")), fn(ref_out), atol=2e-2
    )
    if causal:
        # Cached decoding through the float16 rolling cache (it wraps).
        cache = half.get_initial_cache(batch_size=2, max_length=12)
        assert keras.backend.standardize_dtype(cache[0].dtype) == "float16"
        decoded = _decode(half, x, 12, prefill=5)
        np.testing.assert_allclose(decoded.astype("float32"), fn(ref_out), atol=2e-2)


def test_long_sequence_compiled():
    # Blockwise: a 4096-long sequence with window 4 runs compiled and agrees
    # with a per-row NumPy computation on a few rows.
    t, window = 4096, 4
    layer = LocalAttention(num_heads=1, key_dim=4, window_size=window,
                           use_bias=False)
    x = _rand(1, t, 4)
    layer(x[:, :8], x[:, :8])
    out = fn(keras.Model(*(lambda i: (i, layer(i, i)))(keras.Input((t, 4)))).predict(
        x, verbose=0))
    wq, wk, wv, wo = (fn(w) for w in layer.weights)
    q, k, v = x[0] @ wq[:, 0], x[0] @ wk[:, 0], x[0] @ wv[:, 0]
    for i in (0, 1, 2047, 4095):
        js = np.arange(max(0, i - window), min(t, i + window + 1))
        logits = q[i] @ k[js].T / 2.0
        p = np.exp(logits - logits.max())
        np.testing.assert_allclose(out[0, i], (p / p.sum()) @ v[js] @ wo[0], atol=1e-5)


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("window", [0, -1, 2.5, None])
def test_invalid_window_size(window):
    with pytest.raises(ValueError, match="argument `window_size`, expected a positive"):
        LocalAttention(num_heads=2, key_dim=4, window_size=window)


def _decode(layer, x, max_length, prefill, **kwargs):
    """Prefill `prefill` tokens through a fresh cache, then one token per
    step: the `(B, T, E)` outputs of every position."""
    cache = layer.get_initial_cache(batch_size=x.shape[0], max_length=max_length)
    out, cache = layer(x[:, :prefill], x[:, :prefill], use_causal_mask=True,
                       cache=cache, cache_index=0, **kwargs)
    outputs = [fn(out)]
    for i in range(prefill, x.shape[1]):
        out, cache = layer(x[:, i:i + 1], x[:, i:i + 1], use_causal_mask=True,
                           cache=cache, cache_index=i, **kwargs)
        outputs.append(fn(out))
    return np.concatenate(outputs, axis=1)


@pytest.mark.parametrize("window,kv_heads,rotary", [
    (1, None, False), (3, 1, True), (8, None, True)])
def test_cached_decoding_equals_exact_attention_in_the_window(window, kv_heads, rotary):
    # Reference: MultiHeadAttention with the same weights and the causal
    # band 0 <= i - j <= w written out in NumPy, on the whole sequence.
    keras.utils.set_random_seed(0)
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=window,
                           num_key_value_heads=kv_heads,
                           rotary_embedding=RotaryEmbedding() if rotary else None)
    x = _rand(2, 7, 8)
    layer(x, x)
    exact = MultiHeadAttention(num_heads=2, key_dim=4, num_key_value_heads=kv_heads,
                               rotary_embedding=RotaryEmbedding() if rotary else None)
    exact(x, x)
    exact.set_weights(layer.get_weights())
    i, j = np.arange(7)[:, None], np.arange(7)[None, :]
    band = (i - j >= 0) & (i - j <= window)
    expected = fn(exact(x, x, attention_mask=band[None]))
    np.testing.assert_allclose(_decode(layer, x, 9, prefill=3), expected, atol=1e-5)
    np.testing.assert_allclose(fn(layer(x, x, use_causal_mask=True)), expected, atol=1e-5)


def test_cached_decoding_combines_an_attention_mask_with_the_window():
    keras.utils.set_random_seed(0)
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=2)
    x = _rand(1, 5, 8)
    layer(x, x)
    exact = MultiHeadAttention(num_heads=2, key_dim=4)
    exact(x, x)
    exact.set_weights(layer.get_weights())
    cache = layer.get_initial_cache(batch_size=1, max_length=6)
    hidden = np.ones((1, 5, 6), bool)
    hidden[:, :, 3] = False  # nobody sees position 3
    out, _ = layer(x, x, use_causal_mask=True, cache=cache, cache_index=0,
                   attention_mask=hidden)
    i, j = np.arange(5)[:, None], np.arange(5)[None, :]
    band = (i - j >= 0) & (i - j <= 2) & (j != 3)
    np.testing.assert_allclose(fn(out), fn(exact(x, x, attention_mask=band[None])), atol=1e-5)


def test_cache_errors():
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=2)
    x = _rand(1, 3, 8)
    layer(x, x)
    cache = layer.get_initial_cache(batch_size=1, max_length=3)
    assert cache[0].shape == (1, 3, 2, 4)  # g + w + 1 = 3 slots: a ring
    with pytest.raises(ValueError, match=r"argument `cache_index`, expected the "
                       r"position of the new tokens in a self-attention cache"):
        layer(x, x, cache=cache)
    with pytest.raises(ValueError, match="argument `cache_index`, expected None"):
        layer(x, x, cache_index=0)
    with pytest.raises(ValueError, match=r"LocalAttention does not support a cross-attention "
                       r"cache \(its window is over the positions of one sequence\), so "
                       r"`compute_cross_attention_cache`"):
        layer.compute_cross_attention_cache(x)
    with pytest.raises(ValueError, match=r"argument `cache_index`, expected 0 <= "
                       r"cache_index. Received: cache_index=-1"):
        layer(x, x, cache=cache, cache_index=-1)
    # A ring takes any position; a cache shorter than g + w holds every
    # position in order, so it bounds the decoded length.
    layer(x, x, cache=cache, cache_index=5, use_causal_mask=True)
    short = layer.get_initial_cache(batch_size=1, max_length=1)
    assert short[0].shape == (1, 1, 2, 4)
    with pytest.raises(ValueError, match="argument `cache_index`, expected 0 <= "
                       r"cache_index <= max_length - query_length = 1 - 1"):
        layer(x[:, :1], x[:, :1], cache=short, cache_index=1)
    # Masks and bias cover the sequence's positions, not the cache slots.
    with pytest.raises(ValueError, match=r"argument `value_mask`, expected its "
                       r"last axis to cover the sequence's positions 0 \.\. 7 "):
        layer(x, x, cache=cache, cache_index=5, value_mask=np.ones((1, 6), bool))
    with pytest.raises(ValueError, match=r"argument `attention_bias`, expected its "
                       r"last axis to cover the sequence's positions 0 \.\. 4 "):
        layer(x, x, cache=cache, cache_index=2,
              attention_bias=np.zeros((1, 2, 3, 4), "float32"))
    # Scores are over the cache slots: only while they hold the positions
    # in order.
    layer(x, x, cache=cache, cache_index=0, return_attention_scores=True)
    with pytest.raises(ValueError, match=r"argument `return_attention_scores`, "
                       r"expected False with a rolling cache once it may have "
                       r"wrapped .* cache length = 3"):
        layer(x, x, cache=cache, cache_index=1, return_attention_scores=True)


def test_symbolic_cached_call():
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=2)
    x = keras.Input((1, 8))
    cache = (keras.Input((5, 2, 4)), keras.Input((5, 2, 4)))
    out, new_cache = layer(x, x, cache=cache, cache_index=2, use_causal_mask=True)
    assert tuple(out.shape) == (None, 1, 8)
    assert tuple(new_cache[0].shape) == (None, 5, 2, 4)


def test_bad_mask_shape_is_rejected():
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=2)
    x = _rand(1, 3, 8)
    with pytest.raises(ValueError, match="argument `attention_mask`"):
        layer(x, x, attention_mask=np.ones((1, 3, 4), bool))


@pytest.mark.parametrize("window,num_global", [(2, 0), (1, 2)])
def test_gradients_equal_exact_attention_with_banded_mask(window, num_global):
    t = 9
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=window,
                           num_global_tokens=num_global)
    x = _rand(2, t, 8)
    layer(x, x)
    exact = MultiHeadAttention(num_heads=2, key_dim=4)
    exact(x, x)
    exact.set_weights(layer.get_weights())
    band = _band(t, t, window, False, num_global)
    target = _rand(2, t, 8)

    def grads(model, **kwargs):
        def loss(x):
            return keras.ops.sum(keras.ops.multiply(model(x, x, **kwargs), target))

        return gradients(loss, [x], model.trainable_weights)

    for ours, ref in zip(grads(layer), grads(exact, attention_mask=band[None])):
        np.testing.assert_allclose(ours, ref, atol=1e-5)



# ---------------------------------------------------------------------------
# Global tokens (Longformer's global attention; attention sinks when causal)
# ---------------------------------------------------------------------------


def test_harness_with_global_tokens():
    run_layer_test(
        LocalAttention,
        {"num_heads": 2, "key_dim": 4, "window_size": 2, "num_global_tokens": 2},
        {"query": _rand(2, 9, 8), "value": _rand(2, 9, 8)},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=[(2, 9, 8), (2, 2, 9, 9)],
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
    )


@pytest.mark.parametrize("causal", [False, True])
def test_global_tokens_with_explicit_mask_and_bias(causal):
    t, s, window, num_global = 11, 11, 2, 2
    layer = LocalAttention(num_heads=4, key_dim=8, window_size=window,
                           num_global_tokens=num_global)
    query, value = _rand(2, t, 16), _rand(2, s, 16)
    attention_mask = RNG.random((2, 4, t, s)) > 0.3
    bias = _rand(1, 4, t, s)
    out, scores = layer(query, value, attention_mask=attention_mask,
                        attention_bias=bias, use_causal_mask=causal,
                        return_attention_scores=True)
    ref, ref_scores = _exact_with_band(
        layer, query, value, window, causal, num_global,
        attention_mask=attention_mask, attention_bias=bias,
    )
    np.testing.assert_allclose(fn(out), fn(ref), atol=1e-5)
    np.testing.assert_allclose(fn(scores), fn(ref_scores), atol=1e-6)


def test_numpy_reference_of_global_tokens():
    # Independent of MultiHeadAttention: per-query softmax over the keys of
    # Longformer's rule, |i - j| <= w or i < g or j < g.
    t, window, num_global = 9, 1, 2
    layer = LocalAttention(num_heads=1, key_dim=4, window_size=window,
                           num_global_tokens=num_global, use_bias=False)
    x = _rand(1, t, 4)
    out = fn(layer(x, x))
    wq, wk, wv, wo = layer.get_weights()
    q, k, v = x[0] @ wq[:, 0], x[0] @ wk[:, 0], x[0] @ wv[:, 0]
    expected = np.zeros_like(q)
    for i in range(t):
        js = [j for j in range(t)
              if abs(i - j) <= window or i < num_global or j < num_global]
        logits = q[i] @ k[js].T / np.sqrt(4)
        p = np.exp(logits - logits.max())
        expected[i] = (p / p.sum()) @ v[js]
    np.testing.assert_allclose(out[0], expected @ wo[0], atol=1e-5)


def test_global_tokens_compiled_with_dynamic_length():
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=2, num_global_tokens=1)
    inputs = keras.Input((None, 8))
    model = keras.Model(inputs, layer(inputs, inputs))
    model.compile(jit_compile=keras.backend.backend() != "tensorflow" or None)
    for length in (5, 9):
        x = _rand(2, length, 8)
        np.testing.assert_allclose(model.predict(x, verbose=0), fn(layer(x, x)),
                                   atol=1e-5)


@pytest.mark.parametrize("num_global,kv_heads", [(1, None), (3, 1)])
def test_cached_decoding_with_global_tokens(num_global, kv_heads):
    # Cached steps attend the window and the leading positions ("attention
    # sinks"); they equal the full causal pass and MultiHeadAttention with
    # the NumPy mask.
    keras.utils.set_random_seed(0)
    window = 2
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=window,
                           num_global_tokens=num_global, num_key_value_heads=kv_heads)
    x = _rand(2, 9, 8)
    full = fn(layer(x, x, use_causal_mask=True))
    exact = MultiHeadAttention(num_heads=2, key_dim=4, num_key_value_heads=kv_heads)
    exact(x, x)
    exact.set_weights(layer.get_weights())
    mask = _band(9, 9, window, True, num_global)
    np.testing.assert_allclose(full, fn(exact(x, x, attention_mask=mask[None])), atol=1e-5)
    np.testing.assert_allclose(_decode(layer, x, 11, prefill=2), full, atol=1e-5)


def test_global_tokens_config_round_trip():
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=3, num_global_tokens=2)
    assert layer.get_config()["num_global_tokens"] == 2
    clone = LocalAttention.from_config(layer.get_config())
    assert clone.num_global_tokens == 2
    assert LocalAttention(num_heads=2, key_dim=4).num_global_tokens == 0


@pytest.mark.parametrize("num_global", [-1, 1.5, "1", None])
def test_invalid_num_global_tokens(num_global):
    with pytest.raises((ValueError, TypeError),
                       match="argument `num_global_tokens`, expected a non-negative"):
        LocalAttention(num_heads=2, key_dim=4, window_size=2,
                       num_global_tokens=num_global)


@pytest.mark.parametrize("num_global,kv_heads,causal", [
    (0, None, True), (2, 1, True), (2, None, False)])
def test_rolling_cache_equals_a_cache_of_every_position(num_global, kv_heads, causal):
    # get_initial_cache keeps g + w + 1 slots (a ring) however long the
    # sequence; chunks of up to 4 tokens (more than the ring's 3 slots) and
    # single steps give what the same calls over a 30-position cache of
    # every position give (MultiHeadAttention's cached attention with the
    # band, through return_attention_scores=True). Value mask holes, an
    # explicit mask and a bias over the sequence's positions apply.
    keras.utils.set_random_seed(0)
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=2,
                           num_global_tokens=num_global, num_key_value_heads=kv_heads)
    x = _rand(2, 12, 8)
    layer(x, x)
    value_mask = np.ones((2, 30), bool)
    value_mask[0, [1, 6]] = False
    chunks = ((0, 4), (4, 5), (5, 9), (9, 10), (10, 11), (11, 12))
    explicit = {c: RNG.random((2, c[1] - c[0], 30)) > 0.2 for c in chunks}
    kv = kv_heads or 2
    outputs = {True: [], False: []}
    for every_position in (True, False):
        if every_position:
            cache = (np.zeros((2, 30, kv, 4), "float32"),) * 2
        else:
            cache = layer.get_initial_cache(batch_size=2, max_length=30)
            assert tuple(cache[0].shape) == (2, num_global + 3, kv, 4)
        for start, stop in chunks:
            t = stop - start
            bias = np.linspace(-1, 1, 2 * t * 30).reshape(1, 2, t, 30).astype("float32")
            result = layer(x[:, start:stop], x[:, start:stop], use_causal_mask=causal,
                           value_mask=value_mask,
                           attention_mask=explicit[(start, stop)],
                           attention_bias=bias, cache=cache, cache_index=start,
                           return_attention_scores=every_position)
            out, cache = (result[0], result[2]) if every_position else result
            outputs[every_position].append(fn(out))
    np.testing.assert_allclose(np.concatenate(outputs[False], axis=1),
                               np.concatenate(outputs[True], axis=1), atol=1e-5)


@pytest.mark.parametrize("num_global", [0, 1])
def test_rolling_cache_decodes_past_max_length_in_constant_memory(num_global):
    # A cache made for 4 positions (g + w + 1 = 3 or 4 slots) decodes 16: every
    # step equals the full causal pass, under XLA on JAX, in a cache whose
    # size never changes (attention sinks plus a sliding window, as in
    # streaming decoding).
    keras.utils.set_random_seed(0)
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=2,
                           num_global_tokens=num_global,
                           rotary_embedding=RotaryEmbedding())
    x = _rand(2, 16, 8)
    full = fn(layer(x, x, use_causal_mask=True))
    cache = layer.get_initial_cache(batch_size=2, max_length=4)
    shape = tuple(cache[0].shape)
    assert shape == (2, num_global + 3, 2, 4)
    step = layer
    if keras.backend.backend() == "jax":
        import jax

        step = jax.jit(lambda q, c, i: layer(q, q, use_causal_mask=True, cache=c,
                                             cache_index=i))
    outputs = []
    for i in range(16):
        if step is layer:
            out, cache = layer(x[:, i:i + 1], x[:, i:i + 1], use_causal_mask=True,
                               cache=cache, cache_index=i)
        else:
            out, cache = step(x[:, i:i + 1], cache, i)
        assert tuple(cache[0].shape) == shape
        outputs.append(fn(out))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)


@pytest.mark.parametrize("num_global", [0, 1])
def test_rolling_cache_rewinds_up_to_rewind_positions(num_global):
    # Prefill positions 0 .. 5, then decode again from position 2 with
    # other tokens (a rewind of 3, as CausalLMGenerator does after
    # prefilling ragged prompts): with rewind=3 the steps equal the full
    # causal pass over the final sequence; with one slot fewer (rewind 2,
    # or 1 when position 0 is global and needs no ring slot) the ring has
    # overwritten a position the first step needs.
    keras.utils.set_random_seed(0)
    layer = LocalAttention(num_heads=2, key_dim=4, window_size=2,
                           num_global_tokens=num_global)
    x, y = _rand(2, 6, 8), _rand(2, 10, 8)
    final = np.concatenate([x[:, :2], y[:, 2:]], axis=1)
    expected = fn(layer(final, final, use_causal_mask=True))[:, 2:]
    results = {}
    short = 2 - num_global
    for rewind in (3, short):
        cache = layer.get_initial_cache(batch_size=2, max_length=10, rewind=rewind)
        assert cache[0].shape[1] == num_global + 3 + rewind
        _, cache = layer(x, x, use_causal_mask=True, cache=cache, cache_index=0)
        steps = []
        for i in range(2, 10):
            out, cache = layer(y[:, i:i + 1], y[:, i:i + 1], use_causal_mask=True,
                               cache=cache, cache_index=i)
            steps.append(fn(out))
        results[rewind] = np.concatenate(steps, axis=1)
    np.testing.assert_allclose(results[3], expected, atol=1e-5)
    assert not np.allclose(results[short][:, 0], expected[:, 0], atol=1e-3)
    with pytest.raises(ValueError, match="argument `rewind`, expected a non-negative"):
        layer.get_initial_cache(batch_size=2, max_length=10, rewind=-1)
