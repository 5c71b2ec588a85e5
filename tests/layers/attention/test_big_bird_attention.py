"""BigBirdAttention: harness, equality with exact attention under the
equivalent sparse mask built in NumPy, the block pattern, masks, padding
to `sequence_length`, cached decoding and argument checks."""

import keras
import numpy as np
import pytest
from backend_utils import gradients, to_numpy
from harness import run_layer_test

from keras_attention.layers import BigBirdAttention
from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import RotaryEmbedding

RNG = np.random.default_rng(0)


def _rand(*shape):
    return RNG.normal(size=shape).astype("float32")


def test_harness_cross_attention_with_scores():
    # T=10 queries, S=14 keys, blocks of 2: 1 global block, 1 random block.
    run_layer_test(
        BigBirdAttention,
        {
            "num_heads": 2,
            "key_dim": 4,
            "block_size": 2,
            "num_global_blocks": 1,
            "num_random_blocks": 1,
            "pattern_seed": 5,
        },
        {"query": _rand(2, 10, 8), "value": _rand(2, 14, 8)},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=[(2, 10, 8), (2, 2, 10, 14)],
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
    )


def test_harness_sequence_length_pads_shorter_inputs():
    # Lengths 10 (queries) and 7 (keys) padded to the pattern of length 16.
    run_layer_test(
        BigBirdAttention,
        {
            "num_heads": 2,
            "key_dim": 4,
            "block_size": 2,
            "num_global_blocks": 1,
            "num_random_blocks": 1,
            "sequence_length": 16,
        },
        {"query": _rand(2, 10, 8), "value": _rand(2, 7, 8)},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=[(2, 10, 8), (2, 2, 10, 7)],
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
    )


def test_harness_causal_grouped_rotary_dropout():
    run_layer_test(
        BigBirdAttention,
        {
            "num_heads": 4,
            "key_dim": 4,
            "block_size": 3,
            "num_global_blocks": 1,
            "num_random_blocks": 2,
            "num_key_value_heads": 2,
            "dropout": 0.1,
            "seed": 4,
            "rotary_embedding": RotaryEmbedding(),
        },
        {"query": _rand(2, 20, 8), "value": _rand(2, 20, 8)},
        call_kwargs={"use_causal_mask": True},
        expected_output_shape=(2, 20, 8),
        expected_num_trainable_weights=8,
    )


def _sparse_mask(layer, t, s, causal):
    """The BigBird mask (H, T, S) in NumPy: global rows/columns, the 3-block
    window, and the layer's random blocks."""
    b, g, heads = layer.block_size, layer.num_global_blocks, layer.num_heads
    g_q = min(g, -(-t // b))
    g_k = min(g, -(-s // b))
    bt, bs = np.arange(t) // b, np.arange(s) // b
    mask = np.zeros((heads, t, s), bool)
    mask |= (bt[:, None] < g_q)[None]
    mask |= (bs[None, :] < g_k)[None]
    mask |= (np.abs(bt[:, None] - bs[None, :]) <= 1)[None]
    blocks, valid = layer.block_pattern(t, s, causal)
    for h in range(heads):
        for i in range(t):
            if bt[i] < g_q:
                continue
            row = bt[i] - g_q
            for j, ok in zip(blocks[h, row], valid[h, row]):
                if ok:
                    mask[h, i, bs == j] = True
    return mask


def _exact(layer, query, value, mask, **kwargs):
    exact = MultiHeadAttention(
        num_heads=layer.num_heads,
        key_dim=layer.key_dim,
        num_key_value_heads=layer.num_key_value_heads,
    )
    exact(query, value)
    exact.set_weights(layer.get_weights())
    return exact(query, value, attention_mask=mask, return_attention_scores=True,
                 **kwargs)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "t,s,block,global_blocks,random_blocks,kv_heads",
    [
        (24, 24, 3, 1, 2, None),
        (17, 30, 4, 2, 1, 1),
        (30, 9, 4, 1, 1, 2),
        (5, 5, 4, 2, 1, None),  # every query block global: dense
        (40, 40, 4, 0, 2, None),  # no global blocks
    ],
)
def test_equals_exact_attention_with_sparse_mask(
    causal, t, s, block, global_blocks, random_blocks, kv_heads
):
    heads = 4
    layer = BigBirdAttention(
        num_heads=heads, key_dim=8, block_size=block,
        num_global_blocks=global_blocks, num_random_blocks=random_blocks,
        num_key_value_heads=kv_heads,
    )
    query, value = _rand(2, t, 16), _rand(2, s, 16)
    value_mask = RNG.random((2, s)) > 0.2
    query_mask = RNG.random((2, t)) > 0.2
    attention_mask = RNG.random((2, 1, t, s)) > 0.1
    bias = _rand(1, heads, t, s)
    out, scores = layer(query, value, value_mask=value_mask, query_mask=query_mask,
                        attention_mask=attention_mask, attention_bias=bias,
                        use_causal_mask=causal, return_attention_scores=True)
    mask = _sparse_mask(layer, t, s, causal)[None] & attention_mask
    ref, ref_scores = _exact(layer, query, value, mask, value_mask=value_mask,
                             query_mask=query_mask, attention_bias=bias,
                             use_causal_mask=causal)
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref), atol=1e-5)
    np.testing.assert_allclose(to_numpy(scores), to_numpy(ref_scores), atol=1e-6)
    if t >= 4 * block and s >= 4 * block and global_blocks > 0:
        # The pattern is really sparse: some pairs get exactly zero weight.
        assert not _sparse_mask(layer, t, s, causal).all()


def test_per_head_explicit_mask():
    layer = BigBirdAttention(num_heads=2, key_dim=4, block_size=2,
                             num_global_blocks=1, num_random_blocks=1)
    query, value = _rand(1, 12, 8), _rand(1, 12, 8)
    attention_mask = RNG.random((1, 2, 12, 12)) > 0.3
    out = layer(query, value, attention_mask=attention_mask)
    mask = _sparse_mask(layer, 12, 12, False)[None] & attention_mask
    ref, _ = _exact(layer, query, value, mask)
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref), atol=1e-5)


def test_block_pattern_structure():
    layer = BigBirdAttention(num_heads=3, key_dim=4, block_size=2,
                             num_global_blocks=2, num_random_blocks=3,
                             pattern_seed=11)
    t = s = 40  # 20 blocks
    for causal in (False, True):
        blocks, valid = layer.block_pattern(t, s, causal)
        assert blocks.shape == valid.shape == (3, 18, 2 + 3 + 3)
        for h in range(3):
            for row in range(18):
                i = row + 2
                chosen = list(blocks[h, row][valid[h, row]])
                assert len(chosen) == len(set(chosen)), "duplicate key blocks"
                assert chosen[:2] == [0, 1]  # global key blocks
                window = [j for j in (i - 1, i, i + 1) if 2 <= j < 20]
                assert chosen[2: 2 + len(window)] == window
                randoms = chosen[2 + len(window):]
                candidates = [j for j in range(2, 20)
                              if j not in window and (not causal or j < i)]
                assert len(randoms) == min(3, len(candidates))
                assert set(randoms) <= set(candidates)
    # Heads draw different random blocks.
    blocks, _ = layer.block_pattern(t, s)
    assert not np.array_equal(blocks[0], blocks[1])


def test_pattern_is_a_function_of_the_seed():
    kwargs = dict(num_heads=2, key_dim=4, block_size=2, num_random_blocks=2)
    a = BigBirdAttention(pattern_seed=3, **kwargs).block_pattern(30, 30)[0]
    b = BigBirdAttention(pattern_seed=3, **kwargs).block_pattern(30, 30)[0]
    c = BigBirdAttention(pattern_seed=4, **kwargs).block_pattern(30, 30)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # The config carries the seed, so a revived layer has the same pattern.
    layer = BigBirdAttention(pattern_seed=3, **kwargs)
    revived = BigBirdAttention.from_config(layer.get_config())
    np.testing.assert_array_equal(revived.block_pattern(30, 30)[0], a)


def test_fully_masked_rows_return_a_zero_context():
    layer = BigBirdAttention(num_heads=2, key_dim=4, block_size=2,
                             num_global_blocks=1, num_random_blocks=1,
                             bias_initializer="ones")
    x = _rand(1, 10, 8)
    out, scores = layer(x, x, value_mask=np.zeros((1, 10), bool),
                        return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(out), np.ones((1, 10, 8)), atol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(scores), 0.0)


def test_dropout_only_in_training():
    layer = BigBirdAttention(num_heads=2, key_dim=4, block_size=2, dropout=0.5,
                             num_global_blocks=1, num_random_blocks=1, seed=1)
    x = _rand(2, 12, 8)
    a, b = layer(x, x), layer(x, x, training=False)
    np.testing.assert_allclose(to_numpy(a), to_numpy(b))
    c = layer(x, x, training=True)
    difference = keras.ops.convert_to_numpy(c) - keras.ops.convert_to_numpy(a)
    assert np.abs(difference).max() > 1e-3


def test_mixed_bfloat16_close_to_float32():
    kwargs = dict(num_heads=2, key_dim=4, block_size=2, num_global_blocks=1,
                  num_random_blocks=1)
    x = _rand(2, 12, 8)
    ref = BigBirdAttention(**kwargs)
    ref_out = ref(x, x)
    half = BigBirdAttention(dtype="mixed_bfloat16", **kwargs)
    half(x, x)
    half.set_weights(ref.get_weights())
    out = half(x, x)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")), to_numpy(ref_out), atol=6e-2
    )


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("t,s", [(13, 13), (9, 17), (20, 6)])
def test_sequence_length_attends_with_the_pattern_of_that_length(causal, t, s):
    """Shorter inputs attend as the first `t` queries and `s` keys of a
    length-L input would: the sparse mask of (L, L), cut to (t, s)."""
    length, heads = 20, 2
    layer = BigBirdAttention(num_heads=heads, key_dim=4, block_size=2,
                             num_global_blocks=1, num_random_blocks=2,
                             pattern_seed=7, sequence_length=length)
    query, value = _rand(2, t, 8), _rand(2, s, 8)
    query_mask = RNG.random((2, t)) > 0.2
    value_mask = RNG.random((2, s)) > 0.2
    attention_mask = RNG.random((2, 1, t, s)) > 0.1
    bias = _rand(1, heads, 1, s)  # broadcast along the queries
    out, scores = layer(query, value, query_mask=query_mask, value_mask=value_mask,
                        attention_mask=attention_mask, attention_bias=bias,
                        use_causal_mask=causal, return_attention_scores=True)
    mask = _sparse_mask(layer, length, length, causal)[None, :, :t, :s] & attention_mask
    ref, ref_scores = _exact(layer, query, value, mask, query_mask=query_mask,
                             value_mask=value_mask, attention_bias=bias,
                             use_causal_mask=causal)
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref), atol=1e-5)
    np.testing.assert_allclose(to_numpy(scores), to_numpy(ref_scores), atol=1e-6)


def test_sequence_length_takes_unknown_lengths_fits_and_reloads(tmp_path):
    """A functional model with unknown lengths (a serving graph's case)
    trains, reloads in safe mode, and gives every length of input the
    output of the same model at its padded length."""
    tokens = keras.Input((None, 8))
    layer = BigBirdAttention(num_heads=2, key_dim=4, block_size=2, num_global_blocks=1,
                             num_random_blocks=1, sequence_length=12, name="big_bird")
    model = keras.Model(tokens, layer(tokens, tokens, use_causal_mask=True))
    model.compile("adam", "mse", jit_compile=False)
    model.fit(_rand(8, 12, 8), _rand(8, 12, 8), epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path / "big_bird.keras")
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert reloaded.get_layer("big_bird").sequence_length == 12
    x = _rand(2, 12, 8)
    full = to_numpy(model(x))
    for length in (12, 7, 1):
        # Causal: a prefix's outputs do not depend on the positions after it.
        np.testing.assert_allclose(to_numpy(reloaded(x[:, :length])), full[:, :length], atol=1e-5)


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"block_size": 0}, "argument `block_size`, expected a positive integer"),
        ({"num_global_blocks": -1},
         "argument `num_global_blocks`, expected a non-negative integer"),
        ({"num_random_blocks": 1.5},
         "argument `num_random_blocks`, expected a non-negative integer"),
        ({"pattern_seed": "x"}, "argument `pattern_seed`, expected a non-negative"),
        ({"sequence_length": 0}, "argument `sequence_length`, expected a positive integer"),
    ],
)
def test_invalid_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BigBirdAttention(num_heads=2, key_dim=4, **kwargs)


def test_unknown_length_is_rejected():
    layer = BigBirdAttention(num_heads=2, key_dim=4, block_size=2)
    x = keras.Input((None, 8))
    with pytest.raises(ValueError, match=r"argument `query`, expected a static length "
                       r".*\(or pass `sequence_length`, the length to pad to\)"):
        layer(x, x)


def test_inputs_longer_than_sequence_length_are_rejected():
    layer = BigBirdAttention(num_heads=2, key_dim=4, block_size=2, sequence_length=6)
    with pytest.raises(ValueError, match=r"argument `value`, expected at most "
                       r"sequence_length=6 positions \(axis 1\)\. Received: "
                       r"value.shape=\(1, 7, 8\)"):
        layer(_rand(1, 6, 8), _rand(1, 7, 8))


def test_block_pattern_arguments_are_checked():
    layer = BigBirdAttention(num_heads=2, key_dim=4, block_size=2)
    with pytest.raises(ValueError, match="argument `query_length`"):
        layer.block_pattern(0, 4)


def _decode(layer, x, max_length, prefill):
    """Prefill `prefill` tokens through a fresh cache, then one token per
    step: the `(B, T, E)` outputs of every position."""
    cache = layer.get_initial_cache(batch_size=x.shape[0], max_length=max_length)
    out, cache = layer(x[:, :prefill], x[:, :prefill], use_causal_mask=True,
                       cache=cache, cache_index=0)
    outputs = [to_numpy(out)]
    for i in range(prefill, x.shape[1]):
        out, cache = layer(x[:, i:i + 1], x[:, i:i + 1], use_causal_mask=True,
                           cache=cache, cache_index=i)
        outputs.append(to_numpy(out))
    return np.concatenate(outputs, axis=1)


@pytest.mark.parametrize("causal", [False, True])
def test_block_table_is_the_sparse_mask_by_blocks(causal):
    layer = BigBirdAttention(num_heads=3, key_dim=4, block_size=2, num_global_blocks=1,
                             num_random_blocks=2, pattern_seed=4)
    table = layer.block_table(15, causal)  # 8 blocks, the last one short
    assert table.shape == (3, 8, 8)
    by_position = np.repeat(np.repeat(table, 2, axis=1), 2, axis=2)[:, :15, :15]
    np.testing.assert_array_equal(by_position, _sparse_mask(layer, 15, 15, causal))


@pytest.mark.parametrize("sequence_length,kv_heads,rotary", [
    (None, None, False), (None, 1, True), (16, 2, True)])
def test_cached_decoding_equals_the_full_causal_pass(sequence_length, kv_heads, rotary):
    # Without `sequence_length` the pattern is that of the cache length (9):
    # the full causal pass over a 9-token buffer, whose first 7 outputs do
    # not depend on the 2 last tokens; with it, the pattern of 16 either way.
    # Independent reference: MultiHeadAttention with the same weights and
    # the BigBird mask written out in NumPy.
    keras.utils.set_random_seed(0)
    layer = BigBirdAttention(num_heads=4, key_dim=4, block_size=2, num_global_blocks=1,
                             num_random_blocks=1, num_key_value_heads=kv_heads,
                             sequence_length=sequence_length,
                             rotary_embedding=RotaryEmbedding() if rotary else None)
    buffer = _rand(2, 9, 8)
    x = buffer[:, :7]
    layer(buffer, buffer)
    decoded = _decode(layer, x, 9, prefill=3)
    full = to_numpy(layer(buffer, buffer, use_causal_mask=True))[:, :7]
    np.testing.assert_allclose(decoded, full, atol=1e-5)
    exact = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=kv_heads,
                               rotary_embedding=RotaryEmbedding() if rotary else None)
    exact(x, x)
    exact.set_weights(layer.get_weights())
    length = sequence_length or 9
    mask = _sparse_mask(layer, length, length, True)[None, :, :7, :7]
    expected = to_numpy(exact(x, x, attention_mask=mask, use_causal_mask=True))
    np.testing.assert_allclose(decoded, expected, atol=1e-5)


def test_cache_errors():
    layer = BigBirdAttention(num_heads=2, key_dim=4, block_size=2, sequence_length=4)
    x = _rand(1, 4, 8)
    layer(x, x)
    cache = layer.get_initial_cache(batch_size=1, max_length=4)
    with pytest.raises(ValueError, match=r"argument `cache_index`, expected the position "
                       r"of the new tokens in a self-attention cache"):
        layer(x, x, cache=cache)
    with pytest.raises(ValueError, match=r"argument `cache`, expected at most "
                       r"sequence_length=4 positions \(axis 1\)"):
        layer(x, x, cache=layer.get_initial_cache(batch_size=1, max_length=6),
              cache_index=0)
    with pytest.raises(ValueError, match=r"BigBirdAttention does not support a "
                       r"cross-attention cache, so `compute_cross_attention_cache`"):
        layer.compute_cross_attention_cache(x)
    step = keras.Input((1, 8))
    unknown = (keras.Input((None, 2, 4)), keras.Input((None, 2, 4)))
    with pytest.raises(ValueError, match=r"argument `cache`, expected a static length"):
        layer(step, step, cache=unknown, cache_index=0, use_causal_mask=True)


def test_gradients_equal_exact_attention_with_sparse_mask():
    t = 16
    layer = BigBirdAttention(num_heads=2, key_dim=4, block_size=2,
                             num_global_blocks=1, num_random_blocks=1)
    x = _rand(2, t, 8)
    layer(x, x)
    exact = MultiHeadAttention(num_heads=2, key_dim=4)
    exact(x, x)
    exact.set_weights(layer.get_weights())
    mask = _sparse_mask(layer, t, t, True)[None]
    target = _rand(2, t, 8)

    def grads(model, **kwargs):
        def loss(x):
            return keras.ops.sum(keras.ops.multiply(
                model(x, x, use_causal_mask=True, **kwargs), target))

        return gradients(loss, [x], model.trainable_weights)

    for ours, ref in zip(grads(layer), grads(exact, attention_mask=mask)):
        np.testing.assert_allclose(ours, ref, atol=1e-5)
