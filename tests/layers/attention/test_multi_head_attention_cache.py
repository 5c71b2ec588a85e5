"""MultiHeadAttention KV cache: compiled token-by-token decoding equals one full
causal pass (also with grouped heads and rotary), chunked prefill, the
cross-attention cache, symbolic output specs, and cache misuse errors.
"""

import re

import keras
import numpy as np
import pytest
from keras import ops

from backend_utils import compiled, to_numpy
from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import RotaryEmbedding

RNG = np.random.default_rng(11)
ATOL = 1e-5


def _rand(*shape):
    return RNG.normal(size=shape).astype("float32")


class PositionShift(keras.layers.Layer):
    """Test-local hook with the rotary interface: adds `rate * position`."""

    def __init__(self, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.built = True

    def call(self, inputs, start_index=0):
        length = ops.shape(inputs)[1]
        pos = ops.cast(ops.arange(length) + start_index, self.compute_dtype)
        return inputs + self.rate * ops.reshape(pos, (1, -1, 1, 1))  # (B, T, H, D)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


def decode_compiled(layer, x):
    """Feed `x` one token at a time through the cache in a compiled while_loop."""
    batch, length, features = x.shape
    out_features = layer.compute_output_shape(x.shape, x.shape)[-1]

    @compiled
    def run(x):
        cache = layer.get_initial_cache(batch, length)
        outputs = ops.zeros((batch, length, out_features), layer.compute_dtype)

        def body(i, cache, outputs):
            token = ops.slice(x, (0, i, 0), (batch, 1, features))  # (B, 1, F)
            step, cache = layer(
                token, token, use_causal_mask=True, cache=cache, cache_index=i
            )
            outputs = ops.slice_update(outputs, (0, i, 0), step)
            return i + 1, cache, outputs

        _, cache, outputs = ops.while_loop(
            lambda i, cache, outputs: i < length,
            body,
            (ops.convert_to_tensor(0, "int32"), cache, outputs),
        )
        return outputs, cache

    return run(ops.convert_to_tensor(x))


CONFIGS = {
    "mha": dict(num_heads=4, key_dim=4),
    "gqa": dict(num_heads=4, key_dim=4, num_key_value_heads=2, value_dim=3),
    "mqa_rotary": dict(
        num_heads=4, key_dim=4, num_key_value_heads=1,
        rotary_embedding=RotaryEmbedding(max_wavelength=100),
    ),
    "gqa_rotary": dict(
        num_heads=4, key_dim=6, num_key_value_heads=2,
        rotary_embedding=RotaryEmbedding(),
    ),
    "test_local_hook": dict(
        num_heads=2, key_dim=4, num_key_value_heads=1,
        rotary_embedding=PositionShift(0.3),
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_compiled_while_loop_decoding_equals_full_causal_pass(name):
    x = _rand(2, 6, 8)
    layer = MultiHeadAttention(**CONFIGS[name])
    full = layer(x, x, use_causal_mask=True)
    decoded, (key_cache, value_cache) = decode_compiled(layer, x)
    np.testing.assert_allclose(to_numpy(decoded, "float64"), to_numpy(full, "float64"), atol=ATOL)
    # The cache holds the (rotated) projected keys and the projected values.
    keys = layer.key_dense(x)
    if layer.rotary_embedding is not None:
        keys = layer.rotary_embedding(keys)
    np.testing.assert_allclose(to_numpy(key_cache, "float64"), to_numpy(keys, "float64"), atol=ATOL)
    np.testing.assert_allclose(
        to_numpy(value_cache, "float64"), to_numpy(layer.value_dense(x), "float64"), atol=ATOL
    )


def test_chunked_prefill_then_steps_with_int_and_tensor_index():
    x = _rand(2, 7, 8)
    layer = MultiHeadAttention(4, 4, num_key_value_heads=2,
                               rotary_embedding=RotaryEmbedding())
    full = to_numpy(layer(x, x, use_causal_mask=True), "float64")
    cache = layer.get_initial_cache(2, 7)
    prefill, cache = layer(x[:, :3], x[:, :3], use_causal_mask=True,
                           cache=cache, cache_index=0)
    np.testing.assert_allclose(to_numpy(prefill, "float64"), full[:, :3], atol=ATOL)
    chunk, cache = layer(x[:, 3:5], x[:, 3:5], use_causal_mask=True, cache=cache,
                         cache_index=ops.convert_to_tensor(3, "int32"))
    np.testing.assert_allclose(to_numpy(chunk, "float64"), full[:, 3:5], atol=ATOL)
    for i in (5, 6):
        step, cache = layer(x[:, i:i + 1], x[:, i:i + 1], use_causal_mask=True,
                            cache=cache, cache_index=i)
        np.testing.assert_allclose(to_numpy(step, "float64")[:, 0], full[:, i], atol=ATOL)


def test_cache_without_causal_mask_attends_every_filled_position():
    x = _rand(2, 5, 8)
    layer = MultiHeadAttention(2, 4)
    cache = layer.get_initial_cache(2, 8)  # longer than needed
    _, cache = layer(x[:, :2], x[:, :2], cache=cache, cache_index=0)
    out, scores, cache = layer(x[:, 2:5], x[:, 2:5], cache=cache, cache_index=2,
                               return_attention_scores=True)
    # Queries 2..4 see keys 0..4 (the filled part), nothing beyond.
    np.testing.assert_allclose(
        to_numpy(out, "float64"), to_numpy(layer(x[:, 2:5], x), "float64"), atol=ATOL
    )
    assert tuple(scores.shape) == (2, 2, 3, 8)
    np.testing.assert_array_equal(to_numpy(scores, "float64")[..., 5:], 0.0)


def test_unfilled_cache_positions_never_matter():
    x = _rand(2, 4, 8)
    layer = MultiHeadAttention(2, 4, num_key_value_heads=1)
    layer(x, x)
    clean = layer.get_initial_cache(2, 6)
    garbage = (_rand(2, 6, 1, 4) * 100, _rand(2, 6, 1, 4) * 100)
    for i in range(4):
        token = x[:, i:i + 1]
        a, clean = layer(token, token, use_causal_mask=True, cache=clean, cache_index=i)
        b, garbage = layer(token, token, use_causal_mask=True, cache=garbage,
                           cache_index=i)
        np.testing.assert_array_equal(to_numpy(a, "float64"), to_numpy(b, "float64"))


def test_cache_with_explicit_masks_and_bias_over_the_cache():
    # Padding of cached positions comes in as a (B, S_max) value_mask; an
    # attention bias covers (1, H, T, S_max).
    x = _rand(2, 5, 8)
    layer = MultiHeadAttention(2, 4)
    pad = np.array([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], bool)  # left padding
    bias = _rand(1, 2, 5, 5)
    full = to_numpy(
        layer(x, x, use_causal_mask=True, value_mask=pad, attention_bias=bias), "float64"
    )
    cache = layer.get_initial_cache(2, 5)
    for i in range(5):
        token = x[:, i:i + 1]
        step, cache = layer(token, token, cache=cache, cache_index=i,
                            use_causal_mask=True, value_mask=pad,
                            attention_bias=bias[:, :, i:i + 1])
        np.testing.assert_allclose(to_numpy(step, "float64")[:, 0], full[:, i], atol=ATOL)


def test_cross_attention_cache_equals_no_cache():
    q, enc = _rand(2, 3, 8), _rand(2, 5, 6)
    layer = MultiHeadAttention(4, 4, num_key_value_heads=2, value_dim=3)
    enc_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    full, full_scores = layer(q, enc, value_mask=enc_mask, return_attention_scores=True)
    cache = layer.compute_cross_attention_cache(enc)
    out, scores, same = layer(q, enc, value_mask=enc_mask, cache=cache,
                              return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(out, "float64"), to_numpy(full, "float64"), atol=ATOL)
    np.testing.assert_allclose(
        to_numpy(scores, "float64"), to_numpy(full_scores, "float64"), atol=ATOL
    )
    for a, b in zip(same, cache):
        # returned unchanged
        np.testing.assert_array_equal(to_numpy(a, "float64"), to_numpy(b, "float64"))


def test_cross_attention_cache_in_a_compiled_loop():
    q, enc = _rand(2, 4, 8), _rand(2, 5, 8)
    layer = MultiHeadAttention(2, 4, rotary_embedding=RotaryEmbedding())
    layer(q, enc)
    cache = layer.compute_cross_attention_cache(enc)

    @compiled
    def run(q, enc, cache):
        outputs = ops.zeros((2, 4, 8))

        def body(i, outputs):
            token = ops.slice(q, (0, i, 0), (2, 1, 8))
            step, _ = layer(token, enc, cache=cache)
            return i + 1, ops.slice_update(outputs, (0, i, 0), step)

        return ops.while_loop(lambda i, o: i < 4, body, (0, outputs))[1]

    # Rotary positions start at 0 for each step query (cross-attention keeps
    # no query position), so compare step by step with the uncached call.
    expected = np.concatenate(
        [to_numpy(layer(q[:, i:i + 1], enc), "float64") for i in range(4)], axis=1
    )
    np.testing.assert_allclose(to_numpy(run(q, enc, cache), "float64"), expected, atol=ATOL)


def test_mixed_precision_cache_dtype():
    x = _rand(2, 3, 8)
    layer = MultiHeadAttention(2, 4, dtype="mixed_float16")
    cache = layer.get_initial_cache(2, 3)
    assert all(keras.backend.standardize_dtype(c.dtype) == "float16" for c in cache)
    full = to_numpy(layer(x, x, use_causal_mask=True), "float64")
    for i in range(3):
        step, cache = layer(x[:, i:i + 1], x[:, i:i + 1], use_causal_mask=True,
                            cache=cache, cache_index=i)
        assert keras.backend.standardize_dtype(step.dtype) == "float16"
        np.testing.assert_allclose(to_numpy(step, "float64")[:, 0], full[:, i], atol=5e-3)
    assert all(keras.backend.standardize_dtype(c.dtype) == "float16" for c in cache)


# ---------------------------------------------------------------------------
# Symbolic output structure and shapes (T != S) for every cache mode.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("mode", ["self", "cross"])
def test_symbolic_output_spec_matches_eager(mode, scores):
    layer = MultiHeadAttention(4, 4, num_key_value_heads=2, value_dim=3, output_shape=5)
    t, s = 2, 6
    query = _rand(3, t, 8)
    value = _rand(3, t if mode == "self" else s, 8)
    layer(query, value)
    if mode == "self":
        cache = layer.get_initial_cache(3, s)
        kwargs = dict(cache=cache, cache_index=1, use_causal_mask=True)
    else:
        cache = layer.compute_cross_attention_cache(value)
        kwargs = dict(cache=cache)
    eager = layer(query, value, return_attention_scores=scores, **kwargs)

    sym_cache = tuple(keras.Input(tuple(c.shape)[1:]) for c in cache)
    sym = layer(
        keras.Input(query.shape[1:]), keras.Input(value.shape[1:]),
        return_attention_scores=scores, **{**kwargs, "cache": sym_cache},
    )
    assert keras.tree.map_structure(lambda _: 0, sym) == keras.tree.map_structure(
        lambda _: 0, eager
    )
    for a, b in zip(keras.tree.flatten(sym), keras.tree.flatten(eager)):
        assert tuple(a.shape)[1:] == tuple(b.shape)[1:]
    if scores:
        assert tuple(eager[1].shape) == (3, 4, t, s)


def test_functional_decode_step_model():
    layer = MultiHeadAttention(2, 4, num_key_value_heads=1)
    token = keras.Input((1, 8))
    k_in, v_in = keras.Input((5, 1, 4)), keras.Input((5, 1, 4))
    out, (k_out, v_out) = layer(token, token, use_causal_mask=True,
                                cache=(k_in, v_in), cache_index=0)
    model = keras.Model([token, k_in, v_in], [out, k_out, v_out])
    x = _rand(2, 1, 8)
    zeros = np.zeros((2, 5, 1, 4), "float32")
    y, k, _ = model.predict([x, zeros, zeros], verbose=0)
    np.testing.assert_allclose(y, to_numpy(layer(x, x), "float64"), atol=ATOL)
    np.testing.assert_allclose(k[:, 0], to_numpy(layer.key_dense(x), "float64")[:, 0], atol=ATOL)


# ---------------------------------------------------------------------------
# Misuse.
# ---------------------------------------------------------------------------


def _layer():
    layer = MultiHeadAttention(4, 4, num_key_value_heads=2, value_dim=3)
    layer(_rand(2, 1, 8), _rand(2, 1, 8))
    return layer


def _cache(batch=2, length=6, kv=2, dk=4, dv=3):
    return (np.zeros((batch, length, kv, dk), "float32"),
            np.zeros((batch, length, kv, dv), "float32"))


_CACHE = "Received an invalid value for argument `cache`, expected "


@pytest.mark.parametrize(
    "cache, message",
    [
        (_cache(kv=4), _CACHE + "`key_cache` of shape (batch, max_length, 2, 4). "
         "Received: key_cache.shape=(2, 6, 4, 4)"),
        (_cache(dk=3), _CACHE + "`key_cache` of shape (batch, max_length, 2, 4). "
         "Received: key_cache.shape=(2, 6, 2, 3)"),
        (_cache(dv=4), _CACHE + "`value_cache` of shape (batch, max_length, 2, 3). "
         "Received: value_cache.shape=(2, 6, 2, 4)"),
        ((np.zeros((2, 6, 8), "float32"), _cache()[1]),
         _CACHE + "`key_cache` of shape (batch, max_length, 2, 4). "
         "Received: key_cache.shape=(2, 6, 8)"),
        ((_cache()[0], _cache(length=5)[1]),
         _CACHE + "`key_cache` and `value_cache` with the same batch size and "
         "length. Received: key_cache.shape=(2, 6, 2, 4), "
         "value_cache.shape=(2, 5, 2, 3)"),
        (_cache(batch=3), _CACHE + "batch size 2 (the query's). "
         "Received: key_cache.shape=(3, 6, 2, 4)"),
    ],
)
def test_cache_with_mismatched_shapes(cache, message):
    x = _rand(2, 1, 8)
    with pytest.raises(ValueError, match=re.escape(message)):
        _layer()(x, x, cache=cache, cache_index=0)


def test_cache_must_be_a_pair():
    x = _rand(2, 1, 8)
    with pytest.raises(
        ValueError,
        match=re.escape(_CACHE + "a tuple (key_cache, value_cache). Received: "
                        "cache of type") + r" \w+",
    ):
        _layer()(x, x, cache=_cache() + _cache(), cache_index=0)


def test_cache_index_without_cache():
    x = _rand(2, 1, 8)
    with pytest.raises(
        ValueError,
        match=re.escape("argument `cache_index`, expected None when no `cache` "
                        "is given. Received: cache_index=0"),
    ):
        _layer()(x, x, cache_index=0)


@pytest.mark.parametrize("index, t", [(6, 1), (-1, 1), (5, 2)])
def test_cache_index_out_of_range(index, t):
    x = _rand(2, t, 8)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "argument `cache_index`, expected 0 <= cache_index <= max_length - "
            f"query_length = 6 - {t}. Received: cache_index={index}"
        ),
    ):
        _layer()(x, x, cache=_cache(), cache_index=index)


def test_cache_index_must_be_scalar():
    x = _rand(2, 1, 8)
    with pytest.raises(
        ValueError,
        match=re.escape("argument `cache_index`, expected an int or a scalar "
                        "integer tensor. Received: cache_index.shape=(1,)"),
    ):
        _layer()(x, x, cache=_cache(), cache_index=ops.convert_to_tensor([1]))


def test_cross_attention_cache_length_must_match_value():
    x, enc = _rand(2, 1, 8), _rand(2, 5, 8)
    with pytest.raises(
        ValueError,
        match=re.escape(_CACHE + "a cross-attention cache as long as `value` "
                        "(5). Received: cache length 6"),
    ):
        _layer()(x, enc, cache=_cache())


def test_new_token_mask_cannot_mask_the_cache():
    # On the self-attention cache path, key masks must cover the cache.
    x = _rand(2, 1, 8)
    with pytest.raises(
        ValueError,
        match=re.escape("argument `value_mask`, expected key_length=6 on axis 1. "
                        "Received: value_mask.shape=(2, 1)"),
    ):
        _layer()(x, x, cache=_cache(), cache_index=0,
                 value_mask=np.ones((2, 1), bool))


def test_cross_attention_cache_needs_a_built_layer():
    with pytest.raises(ValueError, match="must be built .* before "
                       "`compute_cross_attention_cache`"):
        MultiHeadAttention(2, 4).compute_cross_attention_cache(_rand(2, 5, 8))


@pytest.mark.parametrize("kwargs, name, value", [
    ({"batch_size": 0, "max_length": 4}, "batch_size", 0),
    ({"batch_size": 2, "max_length": -1}, "max_length", -1),
])
def test_initial_cache_sizes(kwargs, name, value):
    with pytest.raises(
        ValueError,
        match=re.escape(f"argument `{name}`, expected a positive integer. "
                        f"Received: {name}={value}"),
    ):
        MultiHeadAttention(2, 4).get_initial_cache(**kwargs)


def test_decoding_with_alibi_bias_equals_full_pass():
    """The additive-bias hook with a real producer, full pass vs. cached steps."""
    from keras_attention.layers import ALiBiBias

    x = _rand(2, 5, 8)
    layer = MultiHeadAttention(4, 4, num_key_value_heads=2)
    alibi = ALiBiBias(num_heads=4)
    full = to_numpy(layer(x, x, use_causal_mask=True, attention_bias=alibi(x)), "float64")
    cache = layer.get_initial_cache(2, 5)
    for i in range(5):
        token = x[:, i:i + 1]
        bias = alibi(token, cache[0], start_index=i)  # (1, H, 1, S_max)
        step, cache = layer(token, token, use_causal_mask=True, cache=cache,
                            cache_index=i, attention_bias=bias)
        np.testing.assert_allclose(to_numpy(step, "float64")[:, 0], full[:, i], atol=ATOL)
    # The bias matters: without it the full pass differs.
    assert np.max(np.abs(full - to_numpy(layer(x, x, use_causal_mask=True), "float64"))) > 1e-3
