"""`compute_attention_mask`: the one merge of implicit, explicit and causal masks."""

import numpy as np
import pytest
from keras import ops

from keras_attention.layers.attention.attention_mask import compute_attention_mask

B, T, S = 2, 3, 5
QUERY = np.zeros((B, T, 4), "float32")
VALUE = np.zeros((B, S, 6), "float32")


def _full(mask):
    """Broadcast a returned mask to (B, 1, T, S) as NumPy."""
    return np.broadcast_to(ops.convert_to_numpy(mask), (B, 1, T, S))


def test_nothing_to_mask_returns_none():
    assert compute_attention_mask(QUERY, VALUE) is None


def test_every_source_merges_by_logical_and():
    rng = np.random.default_rng(0)
    query_mask = rng.random((B, T)) > 0.3
    value_mask = rng.random((B, S)) > 0.3
    key_mask = rng.random((B, S)) > 0.3
    attention_mask = rng.random((B, T, S)) > 0.3
    m = compute_attention_mask(
        QUERY,
        VALUE,
        query_mask=query_mask,
        value_mask=value_mask,
        key_mask=key_mask,
        attention_mask=attention_mask,
        use_causal_mask=True,
    )
    tri = np.arange(S)[None, :] <= np.arange(T)[:, None]
    expected = (
        query_mask[:, :, None]
        & value_mask[:, None, :]
        & key_mask[:, None, :]
        & attention_mask
        & tri
    )
    np.testing.assert_array_equal(_full(m)[:, 0], expected)


def test_padded_query_rows_attend_nothing():
    query_mask = np.array([[1, 1, 0], [1, 0, 0]])  # 0/1 ints are accepted
    m = _full(compute_attention_mask(QUERY, VALUE, query_mask=query_mask))
    assert not m[0, 0, 2].any() and not m[1, 0, 1:].any()
    assert m[0, 0, :2].all()


def test_four_dimensional_attention_mask_keeps_heads():
    attention_mask = np.random.default_rng(1).random((B, 4, T, S)) > 0.5
    m = ops.convert_to_numpy(
        compute_attention_mask(QUERY, VALUE, attention_mask=attention_mask)
    )
    np.testing.assert_array_equal(m, attention_mask)


def test_causal_offset():
    m = compute_attention_mask(
        QUERY, VALUE, use_causal_mask=True, causal_offset=2
    )
    expected = np.arange(S)[None, :] <= 2 + np.arange(T)[:, None]
    np.testing.assert_array_equal(ops.convert_to_numpy(m), expected)


@pytest.mark.parametrize(
    "name,mask,pattern",
    [
        ("query_mask", np.ones((B, T, 1)), r"argument `query_mask`, expected a rank-2 tensor of shape \(batch, query_length\). Received: query_mask.shape=\(2, 3, 1\)"),
        ("query_mask", np.ones((B, T + 1)), r"argument `query_mask`, expected query_length=3 on axis 1. Received: query_mask.shape=\(2, 4\)"),
        ("value_mask", np.ones((B, S - 1)), r"argument `value_mask`, expected key_length=5 on axis 1. Received: value_mask.shape=\(2, 4\)"),
        ("key_mask", np.ones((S,)), r"argument `key_mask`, expected a rank-2 tensor of shape \(batch, key_length\). Received: key_mask.shape=\(5,\)"),
        ("attention_mask", np.ones((T, S)), r"argument `attention_mask`, expected a boolean tensor of shape \(batch, query_length, key_length\) or \(batch, heads, query_length, key_length\). Received: attention_mask.shape=\(3, 5\)"),
        ("attention_mask", np.ones((B, T, S + 1)), r"argument `attention_mask`, expected key_length=5 on axis -1. Received: attention_mask.shape=\(2, 3, 6\)"),
        ("attention_mask", np.ones((B, 1, T + 2, S)), r"argument `attention_mask`, expected query_length=3 on axis -2. Received: attention_mask.shape=\(2, 1, 5, 5\)"),
    ],
)
def test_bad_masks(name, mask, pattern):
    with pytest.raises(ValueError, match=pattern):
        compute_attention_mask(QUERY, VALUE, **{name: mask})
