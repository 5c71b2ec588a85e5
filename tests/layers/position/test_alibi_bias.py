import keras
import numpy as np
import pytest
from keras import ops

from harness import run_layer_test
from keras_attention.layers import ALiBiBias
from keras_attention.ops import causal_mask
from keras_attention.ops import scaled_dot_product_attention

QUERY = np.random.rand(1, 4, 6).astype("float32")
KEY = np.random.rand(1, 7, 6).astype("float32")

# Hand-derived slopes (Press et al. 2022, sec. 3): 8 heads, 2^-1 .. 2^-8;
# 12 heads, the 8-head slopes then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5.
SLOPES_8 = [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]
SLOPES_12 = SLOPES_8 + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]


def test_harness():
    # The bias is float32 under every policy (declared via float32_outputs).
    run_layer_test(
        ALiBiBias,
        {"num_heads": 3},
        {"query": QUERY, "key": KEY},
        expected_output_shape=(1, 3, 4, 7),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        float32_outputs=(0,),
    )


def reference(slopes, query_length, key_length, start=0):
    """bias[0, h, i, j] = -m_h * |(start + i) - j|, by loops."""
    out = np.zeros((1, len(slopes), query_length, key_length))
    for h, m in enumerate(slopes):
        for i in range(query_length):
            for j in range(key_length):
                out[0, h, i, j] = -m * abs(start + i - j)
    return out


@pytest.mark.parametrize("num_heads,slopes", [(8, SLOPES_8), (12, SLOPES_12)])
def test_slopes_and_bias_match_the_paper(num_heads, slopes):
    layer = ALiBiBias(num_heads)
    np.testing.assert_allclose(layer.slopes, slopes, rtol=1e-7)
    out = layer(np.zeros((2, 5, 4), "float32"), np.zeros((2, 9, 4), "float32"))
    np.testing.assert_allclose(ops.convert_to_numpy(out), reference(slopes, 5, 9), rtol=1e-6)


def test_causal_rows_are_paper_linear_penalty():
    # Visible keys j <= i get -m (i - j): 0 on the diagonal, -m, -2m, ...
    out = ops.convert_to_numpy(ALiBiBias(8)(np.zeros((1, 4, 2), "float32")))
    np.testing.assert_allclose(out[0, 0, 3], [-1.5, -1.0, -0.5, 0.0])
    np.testing.assert_allclose(out[0, 7, 3, :4], [-3 / 256, -2 / 256, -1 / 256, 0.0])


def test_start_index_decoding_matches_full_pass():
    layer = ALiBiBias(4)
    full = ops.convert_to_numpy(layer(np.zeros((1, 8, 2), "float32")))
    for t in range(8):
        step = layer(
            np.zeros((1, 1, 2), "float32"),
            np.zeros((1, t + 1, 2), "float32"),
            start_index=ops.convert_to_tensor(t),
        )
        np.testing.assert_array_equal(ops.convert_to_numpy(step), full[:, :, t : t + 1, : t + 1])
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(np.zeros((1, 2, 2)), np.zeros((1, 9, 2)), start_index=5)),
        reference([2**-2, 2**-4, 2**-6, 2**-8], 2, 9, start=5),
    )


def test_large_distances_stay_exact_under_mixed_precision():
    # -m |i - j| for distances near 2000: float16/bfloat16 would round them.
    layer = ALiBiBias(2, dtype="mixed_bfloat16")
    out = layer(np.zeros((1, 1, 2), "float32"), np.zeros((1, 2049, 2), "float32"), start_index=2048)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(
        ops.convert_to_numpy(out)[0, 0, 0, :3], [-2048 / 16, -2047 / 16, -2046 / 16]
    )
    symbolic = ALiBiBias(2, dtype="mixed_float16")(keras.Input((3, 2)), keras.Input((5, 2)))
    assert keras.backend.standardize_dtype(symbolic.dtype) == "float32"
    assert tuple(symbolic.shape) == (1, 2, 3, 5)


def test_causal_attention_with_alibi_equals_numpy():
    q = np.random.rand(2, 4, 2, 3).astype("float32")  # (B, T, H, D)
    kv = np.random.rand(2, 4, 2, 3).astype("float32")
    bias = ALiBiBias(2)(q, kv)
    out = scaled_dot_product_attention(q, kv, kv, bias=bias, causal=True)
    logits = np.einsum("bthd,bshd->bhts", q, kv) / np.sqrt(3) + ops.convert_to_numpy(bias)
    logits = np.where(ops.convert_to_numpy(causal_mask(4)), logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = np.einsum("bhts,bshd->bthd", weights, kv)
    np.testing.assert_allclose(ops.convert_to_numpy(out), expected, atol=1e-5)


def test_query_mask_does_not_leak_onto_the_bias():
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True)(ids)
    bias = ALiBiBias(2)(x)
    assert getattr(bias, "_keras_mask", None) is None


@pytest.mark.parametrize("bad", [0, -4, 2.0, None])
def test_invalid_num_heads(bad):
    with pytest.raises(
        ValueError, match=rf"`num_heads`, expected a positive integer. Received: num_heads={bad!r}"
    ):
        ALiBiBias(bad)


def test_invalid_rank_and_start_index():
    with pytest.raises(ValueError, match=r"`query`, expected a tensor of rank >= 2"):
        ALiBiBias(2)(np.zeros((3,), "float32"))
    with pytest.raises(ValueError, match=r"`key`, expected a tensor of rank >= 2"):
        ALiBiBias(2)(keras.Input((3,)), keras.Input(()))
    with pytest.raises(ValueError, match=r"`start_index`, expected a non-negative integer"):
        ALiBiBias(2)(np.zeros((1, 3), "float32"), start_index=-1)
