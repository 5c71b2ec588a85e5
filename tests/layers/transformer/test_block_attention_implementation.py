"""The blocks pass `attention_implementation` to their attention layers.

A block with `"blockwise"` (or `"fused"`) attention equals the same block
with `"full"` attention and the same weights, in the encoder (padding +
causal), the decoder (self + cross-attention) and cached decoding.
"""

import numpy as np
import pytest
from keras import ops

from harness import run_layer_test

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import TransformerDecoderBlock
from keras_attention.layers import TransformerEncoderBlock
from keras_attention.layers.transformer import block_components

RNG = np.random.default_rng(0)


def _rand(*shape):
    return RNG.normal(size=shape).astype("float32")


def test_harness_encoder_block_blockwise():
    run_layer_test(
        TransformerEncoderBlock,
        {
            "num_heads": 2,
            "intermediate_dim": 8,
            "position_scheme": "relative",
            "attention_implementation": "blockwise",
        },
        _rand(2, 5, 8),
        call_kwargs={"use_causal_mask": True},
        expected_output_shape=(2, 5, 8),
    )


def _same_weights(full, other):
    other.set_weights(full.get_weights())
    return full, other


@pytest.mark.parametrize("implementation", ["blockwise", "fused"])
@pytest.mark.parametrize("scheme", [None, "rotary", "relative", "alibi"])
def test_encoder_block_equals_the_full_path(implementation, scheme):
    kwargs = dict(num_heads=2, intermediate_dim=16, position_scheme=scheme)
    x = _rand(2, 6, 8)
    full = TransformerEncoderBlock(attention_implementation="full", **kwargs)
    other = TransformerEncoderBlock(attention_implementation=implementation, **kwargs)
    full(x), other(x)
    _same_weights(full, other)
    assert other.self_attention.attention_implementation == implementation
    padding = np.array([[True] * 6, [True] * 4 + [False] * 2])
    for causal in (False, True):
        np.testing.assert_allclose(
            ops.convert_to_numpy(other(x, padding_mask=padding, use_causal_mask=causal)),
            ops.convert_to_numpy(full(x, padding_mask=padding, use_causal_mask=causal)),
            atol=1e-5,
        )


def test_decoder_block_cross_attention_and_cache_equal_the_full_path():
    kwargs = dict(num_heads=2, intermediate_dim=16, num_key_value_heads=1)
    target, source = _rand(2, 5, 8), _rand(2, 7, 8)
    full = TransformerDecoderBlock(attention_implementation="full", **kwargs)
    other = TransformerDecoderBlock(attention_implementation="blockwise", **kwargs)
    full(target, source), other(target, source)
    _same_weights(full, other)
    source_padding = np.ones((2, 7), bool)
    source_padding[0, 4:] = False
    want = ops.convert_to_numpy(
        full(target, source, encoder_padding_mask=source_padding)
    )
    got = ops.convert_to_numpy(
        other(target, source, encoder_padding_mask=source_padding)
    )
    np.testing.assert_allclose(got, want, atol=1e-5)

    cache = other.get_initial_cache(2, 5)
    cross = other.compute_cross_attention_cache(source)
    steps = []
    for i in range(5):
        out, cache, cross = other(
            target[:, i : i + 1], source, self_attention_cache=cache,
            cross_attention_cache=cross, cache_index=i,
            encoder_padding_mask=source_padding,
        )
        steps.append(ops.convert_to_numpy(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), want, atol=1e-5)


def test_config_round_trip_keeps_the_implementation():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=8,
                                    attention_implementation="fused")
    config = block.get_config()
    assert config["attention_implementation"] == "fused"
    revived = TransformerDecoderBlock.from_config(config)
    assert revived.attention_implementation == "fused"
    assert TransformerEncoderBlock(2, 8).attention_implementation == "auto"


def test_blockwise_needs_no_attention_dropout():
    with pytest.raises(
        ValueError, match="the 'blockwise' implementation applies no attention"
    ):
        TransformerEncoderBlock(num_heads=2, intermediate_dim=8, dropout=0.1,
                                attention_implementation="blockwise")
    # Residual dropout alone is fine.
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=8, dropout=0.1,
                                    attention_dropout=0.0,
                                    attention_implementation="blockwise")
    block(_rand(1, 3, 8), training=True)


def test_unknown_implementation_is_rejected():
    with pytest.raises(
        ValueError, match="argument `attention_implementation`, expected one of"
    ):
        TransformerEncoderBlock(num_heads=2, intermediate_dim=8,
                                attention_implementation="flash")


def test_a_kernel_without_the_option_accepts_only_auto(monkeypatch):
    class PlainKernel(MultiHeadAttention):
        def __init__(self, num_heads, key_dim, **kwargs):
            super().__init__(num_heads=num_heads, key_dim=key_dim, **kwargs)

    monkeypatch.setitem(block_components.ATTENTION_KERNELS, "plain", PlainKernel)
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=8,
                                    attention_kernel="plain")
    block(_rand(1, 3, 8))
    with pytest.raises(
        ValueError, match="PlainKernel has no `attention_implementation` option"
    ):
        TransformerEncoderBlock(num_heads=2, intermediate_dim=8,
                                attention_kernel="plain",
                                attention_implementation="blockwise")
