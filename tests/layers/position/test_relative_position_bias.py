import keras
import numpy as np
import pytest
from keras import ops

from harness import run_layer_test
from keras_attention.layers import RelativePositionBias
from keras_attention.layers.position.position_math import t5_relative_position_bucket
from keras_attention.ops import scaled_dot_product_attention

QUERY = np.random.rand(1, 4, 6).astype("float32")
KEY = np.random.rand(1, 7, 6).astype("float32")


def test_harness_bidirectional():
    # The bias is float32 under every policy (declared via float32_outputs).
    run_layer_test(
        RelativePositionBias,
        {"num_heads": 3, "num_buckets": 8, "max_distance": 6, "bidirectional": True},
        {"query": QUERY, "key": KEY},
        expected_output_shape=(1, 3, 4, 7),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
        float32_outputs=(0,),
    )


def test_harness_causal_with_start_index():
    run_layer_test(
        RelativePositionBias,
        {
            "num_heads": 2,
            "bidirectional": False,
            "embeddings_initializer": keras.initializers.RandomNormal(seed=2),
        },
        {"query": QUERY, "key": KEY},
        call_kwargs={"start_index": 3},
        expected_output_shape=(1, 2, 4, 7),
        expected_num_trainable_weights=1,
        float32_outputs=(0,),
    )


def _layer(**kwargs):
    layer = RelativePositionBias(**kwargs)
    layer.build((None, None, 4))
    table = np.random.randn(layer.num_buckets, layer.num_heads).astype("float32")
    layer.embeddings.assign(table)
    return layer, table


def reference(table, query_length, key_length, start, bidirectional, num_buckets, max_distance):
    """bias[0, h, i, j] = table[bucket(j - (start + i)), h], by loops."""
    heads = table.shape[1]
    out = np.zeros((1, heads, query_length, key_length), "float32")
    for i in range(query_length):
        for j in range(key_length):
            rel = np.array([j - (start + i)])
            b = int(ops.convert_to_numpy(t5_relative_position_bucket(rel, bidirectional, num_buckets, max_distance))[0])
            out[0, :, i, j] = table[b]
    return out


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("query_length,key_length,start", [(5, 9, 0), (3, 9, 6), (6, 6, 0)])
def test_equals_table_lookup_of_buckets(bidirectional, query_length, key_length, start):
    layer, table = _layer(num_heads=3, num_buckets=16, max_distance=20, bidirectional=bidirectional)
    out = layer(
        np.zeros((2, query_length, 4), "float32"),
        np.zeros((2, key_length, 4), "float32"),
        start_index=start,
    )
    expected = reference(table, query_length, key_length, start, bidirectional, 16, 20)
    np.testing.assert_array_equal(ops.convert_to_numpy(out), expected)


def test_hand_derived_decoding_row():
    # T5 defaults (32 buckets, max distance 128), bidirectional, one query at
    # absolute position 20 over 22 keys: key j has relative position j - 20.
    layer, table = _layer(num_heads=2)
    out = ops.convert_to_numpy(
        layer(np.zeros((1, 1, 4), "float32"), np.zeros((1, 22, 4), "float32"), start_index=20)
    )
    # j=20: bucket 0; j=19: 1; j=12 (8 back): 8; j=0 (20 back): 10;
    # j=21 (1 ahead): 16 + 1 = 17.
    for j, bucket in {20: 0, 19: 1, 12: 8, 0: 10, 21: 17}.items():
        np.testing.assert_array_equal(out[0, :, 0, j], table[bucket])


def test_causal_future_keys_share_bucket_zero():
    layer, table = _layer(num_heads=2, bidirectional=False)
    out = ops.convert_to_numpy(layer(np.zeros((1, 5, 4), "float32")))
    for i in range(5):
        for j in range(i, 5):
            np.testing.assert_array_equal(out[0, :, i, j], table[0])
        if i > 0:
            np.testing.assert_array_equal(out[0, :, i, i - 1], table[1])


def test_decoding_steps_match_full_pass():
    layer, _ = _layer(num_heads=2, bidirectional=False, num_buckets=8, max_distance=16)
    full = ops.convert_to_numpy(layer(np.zeros((1, 10, 4), "float32")))
    for t in range(10):
        step = layer(
            np.zeros((1, 1, 4), "float32"),
            np.zeros((1, t + 1, 4), "float32"),
            start_index=ops.convert_to_tensor(t),
        )
        np.testing.assert_array_equal(ops.convert_to_numpy(step), full[:, :, t : t + 1, : t + 1])


def test_mixed_precision_bias_is_float32_and_exact():
    layer = RelativePositionBias(num_heads=2, dtype="mixed_float16")
    q = np.zeros((1, 3, 4), "float32")
    out = layer(q)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    table = ops.convert_to_numpy(layer.embeddings)
    assert table.dtype == np.float32
    np.testing.assert_array_equal(ops.convert_to_numpy(out)[0, :, 1, 0], table[1])


def test_bias_feeds_attention_with_different_lengths():
    layer, _ = _layer(num_heads=2)
    q = np.random.rand(2, 3, 2, 4).astype("float32")  # (B, T, H, D)
    kv = np.random.rand(2, 5, 2, 4).astype("float32")  # (B, S, H, D)
    bias = layer(q, kv)
    out = scaled_dot_product_attention(q, kv, kv, bias=bias)
    logits = np.einsum("bthd,bshd->bhts", q, kv) / 2.0 + ops.convert_to_numpy(bias)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = np.einsum("bhts,bshd->bthd", weights, kv)
    np.testing.assert_allclose(ops.convert_to_numpy(out), expected, atol=1e-5)


def test_query_mask_does_not_leak_onto_the_bias():
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True)(ids)
    bias = RelativePositionBias(num_heads=2)(x)
    assert getattr(bias, "_keras_mask", None) is None
    out = keras.Model(ids, bias)(np.array([[1, 2, 0]]))
    assert tuple(out.shape) == (1, 2, 3, 3)


def test_compute_output_shape():
    layer = RelativePositionBias(num_heads=4)
    assert layer.compute_output_shape((None, 3, 8), (None, 5, 8)) == (1, 4, 3, 5)
    assert layer.compute_output_shape((None, 3, 8)) == (1, 4, 3, 3)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"num_heads": 0}, r"`num_heads`, expected a positive integer. Received: num_heads=0"),
        ({"num_buckets": 1, "bidirectional": False}, r"`num_buckets`, expected an integer >= 2 when bidirectional=False. Received: num_buckets=1"),
        ({"num_buckets": 2}, r"`num_buckets`, expected an even integer >= 4 \(half per direction\) when bidirectional=True. Received: num_buckets=2"),
        ({"num_buckets": 9}, r"Received: num_buckets=9"),
        ({"num_buckets": 8.0}, r"Received: num_buckets=8.0"),
        ({"max_distance": 0}, r"`max_distance`, expected a positive integer. Received: max_distance=0"),
        ({"num_buckets": 32, "max_distance": 8}, r"`max_distance`, expected an integer > 8 \(the number of exact buckets for num_buckets=32, bidirectional=True\). Received: max_distance=8"),
        ({"num_buckets": 8, "max_distance": 4, "bidirectional": False}, r"expected an integer > 4 .*Received: max_distance=4"),
    ],
)
def test_invalid_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        RelativePositionBias(**{"num_heads": 2, **kwargs})


def test_non_bool_bidirectional():
    with pytest.raises(TypeError, match=r"`bidirectional`, expected a bool. Received: bidirectional='yes'"):
        RelativePositionBias(num_heads=2, bidirectional="yes")


def test_invalid_query_rank_and_start_index():
    with pytest.raises(ValueError, match=r"`query`, expected a tensor of rank >= 2.*query.shape=\(3,\)"):
        RelativePositionBias(num_heads=2)(np.zeros((3,), "float32"))
    with pytest.raises(ValueError, match=r"`key`, expected a tensor of rank >= 2"):
        RelativePositionBias(num_heads=2)(np.zeros((1, 3), "float32"), np.zeros((3,), "float32"))
    with pytest.raises(ValueError, match=r"`start_index`, expected a non-negative integer"):
        RelativePositionBias(num_heads=2)(np.zeros((1, 3), "float32"), start_index=-1)


def test_symbolic_output_is_float32_under_mixed_precision():
    q = keras.Input((3, 4))
    k = keras.Input((5, 4))
    out = RelativePositionBias(num_heads=2, dtype="mixed_float16")(q, k)
    assert tuple(out.shape) == (1, 2, 3, 5)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
