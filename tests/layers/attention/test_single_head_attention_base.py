"""The shared base of the classic attention layers: a subclass that writes
only a score function gets masks, dropout, scores, shapes and config."""

import keras
import numpy as np
import pytest
from attention_test_utils import np_attention
from backend_utils import to_numpy
from keras import ops

from keras_attention.layers.attention.single_head_attention_base import (
    SingleHeadAttentionBase,
)


class DotAttention(SingleHeadAttentionBase):
    """Unscaled dot-product scores: the smallest possible subclass."""

    def build(self, query_shape, value_shape, key_shape=None):
        self._check_input_shapes(query_shape, value_shape, key_shape)
        self.built = True

    def _logits(self, query, key):
        return ops.einsum("btd,bsd->bts", query, key)  # (B, T, S)


def _data(rng, b=2, t=3, s=5, d=4, dv=6):
    q = rng.standard_normal((b, t, d)).astype("float32")
    k = rng.standard_normal((b, s, d)).astype("float32")
    v = rng.standard_normal((b, s, dv)).astype("float32")
    return q, k, v


def test_score_only_subclass_matches_reference_with_all_masks():
    q, k, v = _data(np.random.default_rng(0), t=4)
    query_mask = np.array([[1, 1, 0, 1], [1, 1, 1, 1]], bool)
    value_mask = np.array([[1, 1, 1, 0, 1], [0, 1, 1, 1, 1]], bool)
    attention_mask = np.random.default_rng(1).random((2, 4, 5)) > 0.2
    out, scores = DotAttention()(
        q,
        v,
        key=k,
        query_mask=query_mask,
        value_mask=value_mask,
        attention_mask=attention_mask,
        use_causal_mask=True,
        return_attention_scores=True,
    )
    tri = np.arange(5)[None, :] <= np.arange(4)[:, None]
    mask = query_mask[:, :, None] & value_mask[:, None, :] & attention_mask & tri
    ref_out, ref_w = np_attention(np.einsum("btd,bsd->bts", q, k), mask, v)
    np.testing.assert_allclose(to_numpy(scores), ref_w, atol=1e-5)
    np.testing.assert_allclose(to_numpy(out), ref_out, atol=1e-5)
    assert np.all(to_numpy(out)[0, 2] == 0)  # padded query row


def test_dropout_in_training_only_scores_before_dropout():
    q, k, v = _data(np.random.default_rng(2))
    layer = DotAttention(dropout=0.5, seed=1)
    plain_out, plain_w = np_attention(np.einsum("btd,bsd->bts", q, k), True, v)
    out = layer(q, v, key=k)
    np.testing.assert_allclose(to_numpy(out), plain_out, atol=1e-5)
    out, scores = layer(q, v, key=k, training=True, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(scores), plain_w, atol=1e-5)
    assert not np.allclose(to_numpy(out), plain_out, atol=1e-3)


def test_symbolic_shapes_and_query_mask_propagation():
    out, scores = DotAttention()(
        keras.Input((2, 4)), keras.Input((6, 3)), key=keras.Input((6, 4)),
        return_attention_scores=True,
    )
    assert tuple(out.shape) == (None, 2, 3)
    assert tuple(scores.shape) == (None, 2, 6)
    tokens = np.array([[1, 2, 0], [3, 0, 0]])
    x = keras.layers.Embedding(5, 4, mask_zero=True)(tokens)
    out = DotAttention()(x, x)
    np.testing.assert_array_equal(to_numpy(out._keras_mask), tokens != 0)


def test_config_holds_dropout_and_seed():
    layer = DotAttention(dropout=0.25, seed=np.int64(3), name="dot")
    config = layer.get_config()
    assert config["dropout"] == 0.25 and type(config["seed"]) is int
    assert DotAttention.from_config(config).get_config() == config


def test_subclass_without_a_score_raises():
    class NoScore(SingleHeadAttentionBase):
        pass

    q, k, v = _data(np.random.default_rng(3))
    with pytest.raises(NotImplementedError, match=r"NoScore must implement `_logits\(query, key\)`"):
        NoScore()(q, v)
