"""Query, key and value with different batch sizes are rejected up front.

Before the check, the blockwise path (`ops.blockwise_attention` and
`MultiHeadAttention(attention_implementation="blockwise")`) returned a
batch-2 output for a batch-2 query and batch-3 keys, and the other paths
failed inside the backend's matmul with no argument named.
"""

import re

import numpy as np
import pytest

from keras_attention import layers
from keras_attention import ops

MESSAGE = "expected the same batch size (axis 0). Received: "


def _rand(*shape):
    return np.random.default_rng(0).normal(size=shape).astype("float32")


@pytest.mark.parametrize("op", ["scaled_dot_product_attention", "blockwise_attention"])
def test_ops_reject_a_key_batch_unlike_the_query_batch(op):
    query, key = _rand(2, 3, 1, 4), _rand(3, 5, 1, 4)
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"Received incompatible arguments `query` and `key`, {MESSAGE}"
            "query.shape=(2, 3, 1, 4), key.shape=(3, 5, 1, 4)"
        ),
    ):
        getattr(ops, op)(query, key, key)


def test_ops_reject_a_value_batch_unlike_the_query_batch():
    with pytest.raises(ValueError, match=re.escape("`query` and `value`, " + MESSAGE)):
        ops.scaled_dot_product_attention(
            _rand(2, 3, 1, 4), _rand(2, 5, 1, 4), _rand(3, 5, 1, 4)
        )


LAYERS = {
    "mha_full": lambda: layers.MultiHeadAttention(2, 4),
    "mha_blockwise": lambda: layers.MultiHeadAttention(
        2, 4, attention_implementation="blockwise"
    ),
    "performer": lambda: layers.PerformerAttention(2, 4, num_random_features=8),
    "local": lambda: layers.LocalAttention(2, 4, window_size=2),
    "scaled_dot_product": layers.ScaledDotProductAttention,
    "additive": layers.AdditiveAttention,
    "multiplicative": layers.MultiplicativeAttention,
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_reject_a_value_batch_unlike_the_query_batch(name):
    layer = LAYERS[name]()
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"Received incompatible arguments `query` and `value`, {MESSAGE}"
            "query.shape=(2, 3, 4), value.shape=(3, 5, 4)"
        ),
    ):
        layer(_rand(2, 3, 4), _rand(3, 5, 4))


@pytest.mark.parametrize("name", ["mha_full", "scaled_dot_product"])
def test_layers_reject_a_key_batch_unlike_the_query_batch(name):
    layer = LAYERS[name]()
    with pytest.raises(ValueError, match=re.escape("`query` and `key`, " + MESSAGE)):
        layer(_rand(2, 3, 4), _rand(2, 5, 4), key=_rand(3, 5, 4))


def test_a_built_layer_checks_every_call():
    layer = layers.AdditiveAttention()
    layer(_rand(2, 3, 4), _rand(2, 5, 4))  # builds
    with pytest.raises(ValueError, match=re.escape(MESSAGE)):
        layer(_rand(2, 3, 4), _rand(3, 5, 4))


def test_unknown_batch_sizes_pass():
    import keras

    query = keras.Input((3, 4))
    value = keras.Input((5, 4))
    output = layers.MultiHeadAttention(2, 4)(query, value)
    model = keras.Model([query, value], output)
    assert model.predict([_rand(2, 3, 4), _rand(2, 5, 4)], verbose=0).shape == (2, 3, 4)
