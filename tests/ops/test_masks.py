"""`keras_attention.ops` mask builders and fill values."""

import ml_dtypes
import numpy as np
import pytest
from backend_utils import to_numpy
from keras import ops

from keras_attention.ops import causal_mask
from keras_attention.ops import mask_fill_value
from keras_attention.ops import merge_masks
from keras_attention.ops import padding_mask


def test_causal_mask_square():
    m = to_numpy(causal_mask(4))
    assert m.dtype == bool
    np.testing.assert_array_equal(m, np.tril(np.ones((4, 4), bool)))


@pytest.mark.parametrize("t,s", [(2, 5), (5, 2)])
def test_causal_mask_rectangular_is_top_left_aligned(t, s):
    m = to_numpy(causal_mask(t, s))
    expected = np.array([[j <= i for j in range(s)] for i in range(t)])
    np.testing.assert_array_equal(m, expected)


@pytest.mark.parametrize("offset", [0, 2, 3])
def test_causal_mask_offset(offset):
    # Queries at absolute positions offset..offset+T-1 over S keys.
    m = to_numpy(causal_mask(2, 6, offset=offset))
    expected = np.array([[j <= offset + i for j in range(6)] for i in range(2)])
    np.testing.assert_array_equal(m, expected)


def test_causal_mask_tensor_arguments():
    m = causal_mask(
        ops.convert_to_tensor(1),
        ops.convert_to_tensor(4),
        offset=ops.convert_to_tensor(2, "int32"),
    )
    np.testing.assert_array_equal(to_numpy(m), [[True, True, True, False]])


def test_padding_mask_keys_only():
    keep = np.array([[1, 1, 0], [1, 0, 0]])  # 0/1 ints are accepted
    m = to_numpy(padding_mask(keep))
    assert m.shape == (2, 1, 1, 3) and m.dtype == bool
    np.testing.assert_array_equal(m[:, 0, 0], keep.astype(bool))


def test_padding_mask_with_query_mask():
    keys = np.array([[True, True, False], [True, True, True]])
    queries = np.array([[True, False], [True, True]])
    m = to_numpy(padding_mask(keys, queries))
    assert m.shape == (2, 1, 2, 3)
    expected = queries[:, :, None] & keys[:, None, :]
    np.testing.assert_array_equal(m[:, 0], expected)
    # A padded query row attends nothing.
    assert not m[0, 0, 1].any()


def test_padding_mask_bad_rank():
    with pytest.raises(
        ValueError,
        match=r"argument `key_mask`, expected a rank-2 tensor of shape "
        r"\(batch, key_length\). Received: key_mask.shape=\(3,\)",
    ):
        padding_mask(np.ones((3,), bool))
    with pytest.raises(
        ValueError,
        match=r"argument `query_mask`, expected a rank-2 tensor of shape "
        r"\(batch, query_length\). Received: query_mask.shape=\(2, 1, 3\)",
    ):
        padding_mask(np.ones((2, 3), bool), np.ones((2, 1, 3), bool))


def test_merge_masks_none():
    assert merge_masks() is None
    assert merge_masks(None, None) is None


def test_merge_masks_single_is_cast_to_bool():
    m = to_numpy(merge_masks(None, np.array([[1, 0]])))
    assert m.dtype == bool
    np.testing.assert_array_equal(m, [[True, False]])


def test_merge_masks_broadcasts_causal_and_padding():
    keep = np.array([[1, 1, 0], [1, 1, 1]], bool)
    heads = np.random.default_rng(0).random((2, 2, 3, 3)) > 0.3
    m = to_numpy(merge_masks(causal_mask(3), padding_mask(keep), None, heads))
    assert m.shape == (2, 2, 3, 3)
    expected = np.tril(np.ones((3, 3), bool)) & keep[:, None, None, :] & heads
    np.testing.assert_array_equal(m, expected)


def test_merge_masks_errors():
    with pytest.raises(
        ValueError,
        match=r"argument `masks`, expected boolean tensors of rank <= 4 .* "
        r"Received: a mask of shape \(1, 1, 1, 2, 2\)",
    ):
        merge_masks(np.ones((2, 2), bool), np.ones((1, 1, 1, 2, 2), bool))
    with pytest.raises(
        ValueError,
        match=r"argument `masks`, expected shapes that broadcast together. "
        r"Received: shapes \[\(3, 3\), \(2, 1, 1, 4\)\] \(axis -1 has sizes \[3, 4\]\)",
    ):
        merge_masks(causal_mask(3), np.ones((2, 1, 1, 4), bool))


@pytest.mark.parametrize(
    "dtype,np_dtype",
    [
        ("float16", np.float16),
        ("bfloat16", ml_dtypes.bfloat16),
        ("float32", np.float32),
    ],
)
def test_mask_fill_value_is_finite_and_very_negative(dtype, np_dtype):
    fill = mask_fill_value(dtype)
    as_dtype = np.asarray(fill, dtype=np_dtype)
    assert np.isfinite(as_dtype)
    # Far below any real logit, and a moderate negative bias (ALiBi, T5)
    # added on top still does not overflow to -inf.
    assert float(as_dtype) <= -3e4
    biased = np.asarray(fill, np_dtype) + np.asarray(-1000.0, np_dtype)
    assert np.isfinite(biased)
    # exp(fill - max_logit) underflows to an exact zero.
    assert np.exp(np.float32(fill) - np.float32(10.0)) == 0.0


def test_mask_fill_value_float16_overflow_guard():
    # -1e9 would overflow float16 (keras PR #17571): half of the most
    # negative finite float16 is used instead, for any spelling of the dtype.
    assert mask_fill_value("float16") == -32752.0
    assert mask_fill_value(np.dtype("float16")) == -32752.0
    assert mask_fill_value(ops.convert_to_tensor(np.zeros(1, "float16")).dtype) == -32752.0


@pytest.mark.parametrize("module", ["torch", "jax.numpy"])
def test_mask_fill_value_takes_other_backends_dtypes(module):
    # Layers pass their tensors' dtypes: `torch.float16` has no `.name`.
    lib = pytest.importorskip(module)
    assert mask_fill_value(lib.float16) == -32752.0
    assert mask_fill_value(lib.float32) == -1e9
