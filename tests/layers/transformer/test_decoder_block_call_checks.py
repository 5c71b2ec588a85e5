"""Decoder-block calls that used to give wrong outputs silently.

- A `self_attention_cache` without `cache_index` was taken for a
  cross-attention cache: the zero cache served as keys and values (or the
  error spoke of cross-attention).
- A decoder-only block ignored an `encoder_sequence`.
- A rotary head size that is odd was accepted until the first forward pass.
"""

import re

import keras
import numpy as np
import pytest

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import RotaryEmbedding
from keras_attention.layers import TransformerDecoderBlock
from keras_attention.layers import TransformerEncoderBlock


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_a_self_attention_cache_needs_its_cache_index():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=8)
    x = _rand(2, 4, 8)
    block(x)
    cache = block.self_attention.get_initial_cache(2, 4)
    with pytest.raises(
        ValueError,
        match=re.escape("`cache_index`, expected the position of the first new token"),
    ):
        block(x, self_attention_cache=cache)


def test_a_decoder_only_block_rejects_an_encoder_sequence():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=8)
    x = _rand(2, 4, 8)
    block(x)  # built without cross-attention
    with pytest.raises(
        ValueError,
        match=re.escape("`encoder_sequence`, expected None for a decoder-only block"),
    ):
        block(x, _rand(2, 3, 8))


def test_rotary_needs_an_even_head_size():
    with pytest.raises(
        ValueError,
        match=re.escape("`key_dim`, expected an even head size with a `rotary_embedding`"),
    ):
        MultiHeadAttention(2, 3, rotary_embedding=RotaryEmbedding())
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=8, position_scheme="rotary")
    with pytest.raises(ValueError, match=re.escape("Received: key_dim=3")):
        block(keras.Input((4, 6)))  # head size 6 / 2 = 3, found when built


def test_symbolic_cache_outputs_keep_each_entry_dtype():
    # The spec gave every cache entry the compute dtype: Performer's int32
    # count came out float32 in symbolic calls.
    block = TransformerDecoderBlock(
        num_heads=2, intermediate_dim=8, attention_kernel="performer",
        attention_kernel_options={"num_random_features": 4},
    )
    x = _rand(2, 1, 8)
    block(x)
    cache = block.self_attention.get_initial_cache(2, 4)
    eager = block(x, self_attention_cache=cache, cache_index=0)[-1]
    symbolic = block.compute_output_spec(
        keras.KerasTensor((2, 1, 8)),
        self_attention_cache=tuple(keras.KerasTensor(c.shape, c.dtype) for c in cache),
        cache_index=0,
    )[-1]
    standardize = keras.backend.standardize_dtype
    assert [standardize(c.dtype) for c in symbolic] == [standardize(c.dtype) for c in eager]
    assert "int32" in [standardize(c.dtype) for c in symbolic]


def test_scores_of_the_sub_layers_that_form_them():
    # A Performer self-attention forms no weights; the cross-attention does,
    # and its weights are returned (they used to be unreachable).
    block = TransformerDecoderBlock(
        num_heads=2, intermediate_dim=8, attention_kernel="performer",
        attention_kernel_options={"num_random_features": 4},
        cross_attention_kernel="dot_product",
    )
    x, encoded = _rand(2, 3, 8), _rand(2, 5, 8, seed=1)
    output, scores = block(x, encoded, return_attention_scores=True)
    assert list(scores) == ["cross_attention"]
    weights = keras.ops.convert_to_numpy(scores["cross_attention"])
    assert weights.shape == (2, 2, 3, 5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    spec = block.compute_output_spec(
        keras.KerasTensor((2, 3, 8)), keras.KerasTensor((2, 5, 8)),
        return_attention_scores=True,
    )
    assert list(spec[1]) == ["cross_attention"]


def test_functional_decoder_with_an_encoder_input_still_builds():
    decoder_in, encoder_in = keras.Input((3, 8)), keras.Input((5, 8))
    output = TransformerDecoderBlock(num_heads=2, intermediate_dim=8)(decoder_in, encoder_in)
    model = keras.Model([decoder_in, encoder_in], output)
    assert model.predict([_rand(2, 3, 8), _rand(2, 5, 8)], verbose=0).shape == (2, 3, 8)
