"""MultiHeadAttention: the shared harness on several configurations, and every
argument check with its message.

Numerics are in test_multi_head_attention_numerics.py, the KV cache in
test_multi_head_attention_cache.py, mask properties in
test_multi_head_attention_masks.py.
"""

import re

import keras
import numpy as np
import pytest
from harness import run_layer_test

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import RotaryEmbedding

RNG = np.random.default_rng(0)


def _rand(*shape):
    return RNG.normal(size=shape).astype("float32")


# ---------------------------------------------------------------------------
# The harness: config round trip, symbolic == eager (T != S), compiled fit,
# .keras save/load, mixed precision.
# ---------------------------------------------------------------------------


def test_harness_self_attention_causal():
    run_layer_test(
        MultiHeadAttention,
        {"num_heads": 2, "key_dim": 4},
        {"query": _rand(2, 4, 8), "value": _rand(2, 4, 8)},
        call_kwargs={"use_causal_mask": True},
        expected_output_shape=(2, 4, 8),
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
    )


def test_harness_cross_attention_key_value_dims_output_shape():
    # T=3 queries, S=5 keys; key and value with different feature sizes.
    run_layer_test(
        MultiHeadAttention,
        {"num_heads": 2, "key_dim": 4, "value_dim": 3, "output_shape": 6},
        {"query": _rand(2, 3, 8), "value": _rand(2, 5, 6), "key": _rand(2, 5, 7)},
        expected_output_shape=(2, 3, 6),
        expected_num_trainable_weights=8,
    )


def test_harness_grouped_query_with_scores():
    run_layer_test(
        MultiHeadAttention,
        {"num_heads": 4, "key_dim": 4, "num_key_value_heads": 2},
        {"query": _rand(2, 3, 8), "value": _rand(2, 5, 8)},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=[(2, 3, 8), (2, 4, 3, 5)],
        expected_num_trainable_weights=8,
    )


def test_harness_attention_bias_multi_query_no_bias_dropout():
    # The compiled fit step runs the training path, dropout included.
    run_layer_test(
        MultiHeadAttention,
        {
            "num_heads": 2,
            "key_dim": 4,
            "num_key_value_heads": 1,
            "use_bias": False,
            "dropout": 0.2,
            "seed": 3,
        },
        {
            "query": _rand(2, 3, 8),
            "value": _rand(2, 5, 8),
            "attention_bias": _rand(2, 2, 3, 5),
        },
        expected_output_shape=(2, 3, 8),
        expected_num_trainable_weights=4,
    )


def test_rotary_config_round_trip_keeps_the_rotary_layer():
    layer = MultiHeadAttention(
        2, 4, rotary_embedding=RotaryEmbedding(max_wavelength=500, scaling_factor=2.0)
    )
    revived = MultiHeadAttention.from_config(layer.get_config())
    assert isinstance(revived.rotary_embedding, RotaryEmbedding)
    assert revived.rotary_embedding.max_wavelength == 500
    assert revived.rotary_embedding.scaling_factor == 2.0


def test_rotary_layer_is_copied_under_the_dtype_policy():
    rope = RotaryEmbedding()
    layer = MultiHeadAttention(2, 4, rotary_embedding=rope, dtype="mixed_bfloat16")
    assert layer.rotary_embedding is not rope
    assert layer.rotary_embedding.dtype_policy.name == "mixed_bfloat16"
    assert rope.dtype_policy.name == "float32"  # the caller's layer is untouched


def test_weights_have_keras_names_and_shapes():
    layer = MultiHeadAttention(4, 3, value_dim=5, num_key_value_heads=2)
    layer(_rand(1, 2, 8), _rand(1, 6, 7))
    names = [w.path.split("/", 1)[1] for w in layer.weights]
    assert names == [
        "query/kernel", "query/bias", "key/kernel", "key/bias",
        "value/kernel", "value/bias", "attention_output/kernel",
        "attention_output/bias",
    ]
    shapes = [tuple(w.shape) for w in layer.weights]
    assert shapes == [
        (8, 4, 3), (4, 3), (7, 2, 3), (2, 3), (7, 2, 5), (2, 5), (4, 5, 8), (8,)
    ]


def test_output_keeps_the_query_mask():
    emb = keras.layers.Embedding(10, 8, mask_zero=True)
    x = emb(np.array([[1, 2, 0], [3, 0, 0]]))
    out = MultiHeadAttention(2, 4)(x, x)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(out._keras_mask),
        [[True, True, False], [True, False, False]],
    )


def test_symbolic_with_masked_inputs_keeps_mask():
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
    y = MultiHeadAttention(2, 4)(x, x)
    assert y._keras_mask is not None


# ---------------------------------------------------------------------------
# Argument checks: every raise, with its message.
# ---------------------------------------------------------------------------

_MSG = "Received an invalid value for argument `{}`, expected {}. Received: {}"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"num_heads": 0, "key_dim": 4},
            _MSG.format("num_heads", "a positive integer", "num_heads=0"),
        ),
        (
            {"num_heads": 2.0, "key_dim": 4},
            _MSG.format("num_heads", "a positive integer", "num_heads=2.0"),
        ),
        (
            {"num_heads": 2, "key_dim": 0},
            _MSG.format("key_dim", "a positive integer", "key_dim=0"),
        ),
        (
            {"num_heads": 2, "key_dim": -3},
            _MSG.format("key_dim", "a positive integer", "key_dim=-3"),
        ),
        (
            {"num_heads": 2, "key_dim": 4, "value_dim": 0},
            _MSG.format("value_dim", "a positive integer", "value_dim=0"),
        ),
        (
            {"num_heads": 2, "key_dim": 4, "dropout": 1.0},
            _MSG.format("dropout", "a float in [0, 1)", "dropout=1.0"),
        ),
        (
            {"num_heads": 2, "key_dim": 4, "dropout": -0.1},
            _MSG.format("dropout", "a float in [0, 1)", "dropout=-0.1"),
        ),
        (
            {"num_heads": 4, "key_dim": 4, "num_key_value_heads": 3},
            _MSG.format(
                "num_key_value_heads",
                "a divisor of `num_heads`=4",
                "num_key_value_heads=3",
            ),
        ),
        (
            {"num_heads": 4, "key_dim": 4, "num_key_value_heads": 8},
            _MSG.format(
                "num_key_value_heads",
                "a divisor of `num_heads`=4",
                "num_key_value_heads=8",
            ),
        ),
        (
            {"num_heads": 4, "key_dim": 4, "num_key_value_heads": 0},
            _MSG.format(
                "num_key_value_heads", "a positive integer", "num_key_value_heads=0"
            ),
        ),
        (
            {"num_heads": 2, "key_dim": 4, "output_shape": 0},
            _MSG.format(
                "output_shape",
                "None, a positive integer or a non-empty tuple of positive "
                "integers",
                "output_shape=0",
            ),
        ),
        (
            {"num_heads": 2, "key_dim": 4, "output_shape": (4, 0)},
            _MSG.format(
                "output_shape",
                "None, a positive integer or a non-empty tuple of positive "
                "integers",
                "output_shape=(4, 0)",
            ),
        ),
        (
            {"num_heads": 2, "key_dim": 4, "seed": "7"},
            _MSG.format("seed", "an integer or None", "seed='7'"),
        ),
        (
            {"num_heads": 2, "key_dim": 4, "rotary_embedding": "rope"},
            _MSG.format(
                "rotary_embedding",
                "None, a Keras layer or its serialized config",
                "rotary_embedding='rope'",
            ),
        ),
    ],
)
def test_invalid_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        MultiHeadAttention(**kwargs)


def test_use_bias_must_be_a_bool():
    with pytest.raises(TypeError, match="argument `use_bias`, expected a bool"):
        MultiHeadAttention(2, 4, use_bias="yes")


def test_rotary_layer_with_weights_is_rejected():
    dense = keras.layers.Dense(3)
    dense.build((None, 4))
    with pytest.raises(
        ValueError,
        match=r"argument `rotary_embedding`, expected a layer without weights .*"
        r"Received: rotary_embedding=dense\w* with 2 weights",
    ):
        MultiHeadAttention(2, 4, rotary_embedding=dense)


def test_inputs_must_be_rank_3():
    layer = MultiHeadAttention(2, 4)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "argument `query`, expected a tensor of rank 3. "
            "Received: query.shape=(2, 8)"
        ),
    ):
        layer(_rand(2, 8), _rand(2, 5, 8))


def test_unknown_feature_dimension_is_rejected():
    layer = MultiHeadAttention(2, 4)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "argument `value`, expected a known last (feature) dimension. "
            "Received: value.shape=(None, 5, None)"
        ),
    ):
        layer.build((None, 3, 8), (None, 5, None))


def test_key_and_value_lengths_must_agree():
    layer = MultiHeadAttention(2, 4)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Received incompatible arguments `key` and `value`, expected the "
            "same length (axis 1). Received: key.shape=(2, 4, 8), "
            "value.shape=(2, 5, 8)"
        ),
    ):
        layer(_rand(2, 3, 8), _rand(2, 5, 8), key=_rand(2, 4, 8))


def test_feature_size_must_match_the_built_projections():
    layer = MultiHeadAttention(2, 4)
    layer(_rand(2, 3, 8), _rand(2, 5, 6))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "argument `value`, expected the last axis to have size 6. "
            "Received: value.shape=(2, 5, 8)"
        ),
    ):
        layer(_rand(2, 3, 8), _rand(2, 5, 8))


@pytest.mark.parametrize(
    "mask_shape, message",
    [
        (
            (2, 5),
            "argument `attention_mask`, expected a boolean tensor of shape "
            "(batch, query_length, key_length) or (batch, heads, query_length, "
            "key_length). Received: attention_mask.shape=(2, 5)",
        ),
        (
            (2, 4, 5),
            "argument `attention_mask`, expected query_length=3 on axis -2. "
            "Received: attention_mask.shape=(2, 4, 5)",
        ),
        (
            (2, 3, 6),
            "argument `attention_mask`, expected key_length=5 on axis -1. "
            "Received: attention_mask.shape=(2, 3, 6)",
        ),
        (
            (2, 3, 3, 5),
            "argument `attention_mask`, expected num_heads=2 or 1 on axis 1. "
            "Received: attention_mask.shape=(2, 3, 3, 5)",
        ),
    ],
)
def test_attention_mask_shape_or_rank_mismatch(mask_shape, message):
    layer = MultiHeadAttention(2, 4)
    with pytest.raises(ValueError, match=re.escape(message)):
        layer(_rand(2, 3, 8), _rand(2, 5, 8), attention_mask=np.ones(mask_shape, bool))


def test_implicit_mask_length_mismatch():
    layer = MultiHeadAttention(2, 4)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "argument `value_mask`, expected key_length=5 on axis 1. "
            "Received: value_mask.shape=(2, 4)"
        ),
    ):
        layer(_rand(2, 3, 8), _rand(2, 5, 8), value_mask=np.ones((2, 4), bool))


_BIAS_MSG = (
    "Received an invalid value for argument `attention_bias`, expected a "
    "float tensor of shape (batch=2 or 1, num_heads=2 or 1, query_length=3 or "
    "1, key_length=5 or 1). Received: attention_bias.shape={}"
)


@pytest.mark.parametrize(
    "bias_shape", [(2, 3, 5), (1, 3, 3, 5), (1, 2, 4, 5), (1, 2, 3, 4), (3, 2, 3, 5)]
)
def test_attention_bias_shape_mismatch(bias_shape):
    layer = MultiHeadAttention(2, 4)
    with pytest.raises(ValueError, match=re.escape(_BIAS_MSG.format(bias_shape))):
        layer(_rand(2, 3, 8), _rand(2, 5, 8), attention_bias=_rand(*bias_shape))


def test_symbolic_call_checks_like_eager():
    layer = MultiHeadAttention(2, 4)
    query, value = keras.Input((3, 8)), keras.Input((5, 8))
    with pytest.raises(
        ValueError, match=re.escape(_BIAS_MSG.format((1, 2, 3, 4)).replace("batch=2", "batch=None"))
    ):
        layer(query, value, attention_bias=keras.Input((2, 3, 4), batch_size=1))
