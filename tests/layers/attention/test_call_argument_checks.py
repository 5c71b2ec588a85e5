"""Bad call arguments get a ValueError naming them, not a backend error.

Each case used to fail inside the backend (an `AttributeError` on a float
`cache_index`, a dtype conversion error on a float cache size, a matmul
shape error for inputs unlike the built weights) or was silently accepted
(`batch_size=True` gave a batch of 1).
"""

import re

import keras
import numpy as np
import pytest

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import MultiplicativeAttention
from keras_attention.layers import PositionEmbedding


def _rand(*shape):
    return np.random.default_rng(0).normal(size=shape).astype("float32")


@pytest.mark.parametrize(
    "cache_index, received",
    [
        (1.5, "cache_index=1.5 of type float"),
        (np.float32(1.0), "cache_index.shape=(), cache_index.dtype=float32"),
        (np.array(1.0, "float32"), "cache_index.shape=(), cache_index.dtype=float32"),
        (np.array([1], "int32"), "cache_index.shape=(1,), cache_index.dtype=int32"),
    ],
)
def test_cache_index_must_be_an_int_or_scalar_integer_tensor(cache_index, received):
    layer = MultiHeadAttention(2, 4)
    x = _rand(2, 1, 8)
    cache = layer.get_initial_cache(2, 5)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`cache_index`, expected an int or a scalar integer tensor. "
            f"Received: {received}"
        ),
    ):
        layer(x, x, cache=cache, cache_index=cache_index)


def test_an_integer_tensor_cache_index_still_works():
    layer = MultiHeadAttention(2, 4)
    x = _rand(2, 1, 8)
    cache = layer.get_initial_cache(2, 5)
    by_int, _ = layer(x, x, cache=cache, cache_index=1)  # (output, new cache)
    by_tensor, _ = layer(x, x, cache=cache, cache_index=keras.ops.convert_to_tensor(1))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(by_int), keras.ops.convert_to_numpy(by_tensor)
    )


@pytest.mark.parametrize(
    "sizes, name",
    [((2, 3.5), "max_length"), ((2.0, 3), "batch_size"), ((True, 3), "batch_size")],
)
def test_initial_cache_sizes_must_be_ints(sizes, name):
    with pytest.raises(
        ValueError,
        match=re.escape(f"`{name}`, expected a positive int or a scalar integer tensor"),
    ):
        MultiHeadAttention(2, 4).get_initial_cache(*sizes)


@pytest.mark.parametrize("score", ["general", "concat", "location"])
def test_multiplicative_inputs_must_fit_the_built_weights(score):
    kwargs = {"sequence_length": 5} if score == "location" else {}
    layer = MultiplicativeAttention(score=score, **kwargs)
    layer(_rand(2, 3, 4), _rand(2, 5, 4))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`query`, expected the last axis to have size 4. "
            "Received: query.shape=(2, 3, 6)"
        ),
    ):
        layer(_rand(2, 3, 6), _rand(2, 5, 4))
    with pytest.raises(ValueError, match=re.escape("`key`, expected the last axis to have size 4")):
        layer(_rand(2, 3, 4), _rand(2, 5, 6))


def test_dot_score_needs_one_feature_size_at_every_call():
    layer = MultiplicativeAttention(score="dot")
    layer(_rand(2, 3, 4), _rand(2, 5, 4))
    layer(_rand(2, 3, 6), _rand(2, 5, 6))  # no weights: any one size
    with pytest.raises(ValueError, match=re.escape("the same feature size (last axis)")):
        layer(_rand(2, 3, 4), _rand(2, 5, 6))


def test_position_embedding_inputs_must_fit_the_built_table():
    layer = PositionEmbedding(sequence_length=4)
    layer(_rand(2, 2, 4))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`inputs`, expected the last axis to have size 4. "
            "Received: inputs.shape=(2, 2, 6)"
        ),
    ):
        layer(_rand(2, 2, 6))
