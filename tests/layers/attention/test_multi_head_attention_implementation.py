"""`MultiHeadAttention(attention_implementation=...)`: full, blockwise, fused.

Every implementation computes the same attention: with the same weights,
the outputs (and, for the blockwise kernel and its custom gradient, the
weight gradients) equal those of the `"full"` path, for implicit and
explicit masks, causal masks, biases, grouped heads, rotary embeddings,
cross-attention with T != S and KV-cache decoding.
"""

import keras
import numpy as np
import pytest
from keras import ops

from backend_utils import gradients
from harness import run_layer_test

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import RotaryEmbedding
from keras_attention.layers.attention import multi_head_attention as mha_module

BACKEND = keras.backend.backend()
RNG = np.random.default_rng(0)


def _rand(*shape):
    return RNG.normal(size=shape).astype("float32")


def _pair(implementation, **kwargs):
    """A full-path layer and one with `implementation`, same weights."""
    kwargs = {"num_heads": 4, "key_dim": 4, **kwargs}
    full = MultiHeadAttention(attention_implementation="full", **kwargs)
    other = MultiHeadAttention(attention_implementation=implementation, **kwargs)
    return full, other


def _build_same(full, other, query, value):
    full(query, value)
    other(query, value)
    other.set_weights(full.get_weights())


def test_harness_blockwise_causal_grouped():
    run_layer_test(
        MultiHeadAttention,
        {
            "num_heads": 4,
            "key_dim": 4,
            "num_key_value_heads": 2,
            "attention_implementation": "blockwise",
        },
        {"query": _rand(2, 3, 8), "value": _rand(2, 5, 8)},
        call_kwargs={"use_causal_mask": True},
        expected_output_shape=(2, 3, 8),
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
    )


def test_harness_fused_self_attention():
    run_layer_test(
        MultiHeadAttention,
        {"num_heads": 2, "key_dim": 4, "attention_implementation": "fused"},
        {"query": _rand(2, 4, 8), "value": _rand(2, 4, 8)},
        call_kwargs={"use_causal_mask": True},
        expected_output_shape=(2, 4, 8),
        expected_num_trainable_weights=8,
    )


def _masks(t, s):
    query_mask = np.ones((2, t), bool)
    query_mask[1, -1] = False  # a padded query row
    value_mask = np.ones((2, s), bool)
    value_mask[0, :2] = False  # with causal: row 0 of batch 0 sees nothing
    attention_mask = RNG.random((2, t, s)) > 0.2
    return query_mask, value_mask, attention_mask


CASES = {
    "plain": {},
    "causal": {"use_causal_mask": True},
    "implicit_masks": "masks",
    "masks_and_causal": "masks+causal",
    "bias": "bias",
}


@pytest.mark.parametrize("implementation", ["blockwise", "fused"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("t,s", [(5, 5), (3, 6)])
def test_outputs_equal_the_full_path(implementation, case, t, s):
    full, other = _pair(implementation, num_key_value_heads=2)
    query, value = _rand(2, t, 8), _rand(2, s, 8)
    _build_same(full, other, query, value)
    kwargs = CASES[case]
    if kwargs in ("masks", "masks+causal"):
        query_mask, value_mask, attention_mask = _masks(t, s)
        kwargs = {
            "query_mask": query_mask,
            "value_mask": value_mask,
            "attention_mask": attention_mask,
            "use_causal_mask": kwargs == "masks+causal",
        }
    elif kwargs == "bias":
        kwargs = {"attention_bias": _rand(1, 4, t, s)}
    got = other(query, value, **kwargs)
    want = full(query, value, **kwargs)
    np.testing.assert_allclose(
        ops.convert_to_numpy(got), ops.convert_to_numpy(want), atol=1e-5
    )


@pytest.mark.parametrize("implementation", ["blockwise", "fused"])
def test_rotary_and_long_sequence_with_several_blocks(implementation):
    # 1100 > 1024 (the default block): two query and two key blocks.
    full, other = _pair(
        implementation, num_heads=2, rotary_embedding=RotaryEmbedding()
    )
    x = _rand(1, 1100, 8)
    _build_same(full, other, x, x)
    padding = np.ones((1, 1100), bool)
    padding[0, 1050:] = False
    kwargs = dict(query_mask=padding, value_mask=padding, use_causal_mask=True)
    np.testing.assert_allclose(
        ops.convert_to_numpy(other(x, x, **kwargs)),
        ops.convert_to_numpy(full(x, x, **kwargs)),
        atol=1e-5,
    )


@pytest.mark.parametrize("implementation", ["blockwise", "fused"])
def test_cached_decoding_equals_the_full_causal_pass(implementation):
    full, other = _pair(implementation, num_key_value_heads=1)
    x = _rand(2, 6, 8)
    _build_same(full, other, x, x)
    want = ops.convert_to_numpy(full(x, x, use_causal_mask=True))
    cache = other.get_initial_cache(batch_size=2, max_length=6)
    steps = []
    for i in range(6):
        step, cache = other(x[:, i : i + 1], x[:, i : i + 1], use_causal_mask=True,
                            cache=cache, cache_index=i)
        steps.append(ops.convert_to_numpy(step))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), want, atol=1e-5)


def test_blockwise_weight_gradients_equal_the_full_path():
    full, other = _pair("blockwise", num_key_value_heads=2)
    query, value = _rand(2, 5, 8), _rand(2, 7, 8)
    _build_same(full, other, query, value)
    _, value_mask, _ = _masks(5, 7)
    bias = _rand(1, 4, 5, 7)

    def grads(layer):
        def loss(bias):
            out = layer(query, value, value_mask=value_mask, attention_bias=bias,
                        use_causal_mask=True)
            return ops.sum(out * ops.sin(out))

        return gradients(loss, [bias], layer.trainable_variables)

    for g, w in zip(grads(other), grads(full)):
        np.testing.assert_allclose(g, w, atol=1e-4)


def _count_calls(monkeypatch):
    calls = {"blockwise": 0, "fused": 0}
    blockwise = mha_module.blockwise_attention
    fused = keras.ops.dot_product_attention

    def counting_blockwise(*args, **kwargs):
        calls["blockwise"] += 1
        return blockwise(*args, **kwargs)

    def counting_fused(*args, **kwargs):
        calls["fused"] += 1
        return fused(*args, **kwargs)

    monkeypatch.setattr(mha_module, "blockwise_attention", counting_blockwise)
    monkeypatch.setattr(keras.ops, "dot_product_attention", counting_fused)
    return calls


@pytest.mark.parametrize(
    "implementation,dropout,training,scores,expected",
    [
        ("full", 0.0, False, False, None),
        ("blockwise", 0.0, True, False, "blockwise"),
        ("fused", 0.0, True, False, "fused"),
        ("blockwise", 0.0, False, True, None),  # scores need the full path
        ("fused", 0.0, False, True, None),
        ("auto", 0.0, False, False, "backend"),
        ("auto", 0.5, True, False, None),  # dropout in training: full path
        ("auto", 0.5, False, False, "backend"),
    ],
)
def test_which_kernel_runs(monkeypatch, implementation, dropout, training,
                           scores, expected):
    calls = _count_calls(monkeypatch)
    layer = MultiHeadAttention(num_heads=2, key_dim=4, dropout=dropout,
                               attention_implementation=implementation)
    x = _rand(1, 3, 8)
    result = layer(x, x, training=training, return_attention_scores=scores)
    if scores:
        assert tuple(result[1].shape) == (1, 2, 3, 3)
    if expected == "backend":
        expected = "fused" if BACKEND in ("jax", "torch") else None
    assert calls == {
        "blockwise": int(expected == "blockwise"),
        "fused": int(expected == "fused"),
    }


def test_fused_zeroes_fully_masked_rows_like_the_full_path():
    full, fused = _pair("fused", num_heads=2)
    x = _rand(1, 3, 8)
    _build_same(full, fused, x, x)
    value_mask = np.array([[False, True, True]])
    # Causal + the first key masked: query 0 sees nothing.
    got = ops.convert_to_numpy(fused(x, x, value_mask=value_mask,
                                     use_causal_mask=True))
    want = ops.convert_to_numpy(full(x, x, value_mask=value_mask,
                                     use_causal_mask=True))
    np.testing.assert_allclose(got, want, atol=1e-5)
    bias = ops.convert_to_numpy(full.output_dense.bias)
    np.testing.assert_allclose(got[0, 0], bias, atol=1e-6)


def test_config_holds_the_implementation_and_subclasses_may_omit_it():
    layer = MultiHeadAttention(num_heads=2, key_dim=4,
                               attention_implementation="blockwise")
    config = layer.get_config()
    assert config["attention_implementation"] == "blockwise"
    assert MultiHeadAttention.from_config(config).attention_implementation == (
        "blockwise"
    )

    class CustomAttention(MultiHeadAttention):
        def __init__(self, num_heads, key_dim, **kwargs):
            super().__init__(num_heads=num_heads, key_dim=key_dim, **kwargs)

    assert "attention_implementation" not in CustomAttention(2, 4).get_config()


def test_unknown_implementation_is_rejected():
    with pytest.raises(
        ValueError, match="argument `attention_implementation`, expected one of"
    ):
        MultiHeadAttention(num_heads=2, key_dim=4, attention_implementation="flash")


@pytest.mark.parametrize("implementation", ["blockwise", "fused"])
def test_dropout_is_rejected_where_no_weights_are_dropped(implementation):
    with pytest.raises(
        ValueError,
        match="incompatible arguments `attention_implementation` and `dropout`",
    ):
        MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.1,
                           attention_implementation=implementation)



def _assert_same_as_full(implementation, call_kwargs=None, **kwargs):
    """`implementation` and the full path, same weights, give one output."""
    full, other = _pair(implementation, **kwargs)
    query, value = _rand(2, 3, 8), _rand(2, 5, 8)
    _build_same(full, other, query, value)
    call_kwargs = call_kwargs or {}
    np.testing.assert_allclose(
        ops.convert_to_numpy(other(query, value, **call_kwargs)),
        ops.convert_to_numpy(full(query, value, **call_kwargs)),
        atol=1e-5,
    )


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_auto_with_value_dim_unlike_key_dim_equals_the_full_path(monkeypatch, kv_heads):
    # The backend kernels of keras.ops.dot_product_attention need Dv == D
    # (JAX's raises, Keras' fallback reshapes with D): "auto" must not pick
    # them then, on any backend.
    calls = _count_calls(monkeypatch)
    _assert_same_as_full("auto", {"use_causal_mask": True}, value_dim=3,
                         num_key_value_heads=kv_heads)
    assert calls["fused"] == 0


@pytest.mark.parametrize("kv_heads", [2, 1], ids=["gqa", "mqa"])
def test_fused_grouped_heads_equal_the_full_path(kv_heads):
    _assert_same_as_full("fused", num_key_value_heads=kv_heads)


def test_fused_with_value_dim_unlike_key_dim():
    if BACKEND == "tensorflow":
        # Keras' TensorFlow kernel takes Dv != D: same result as "full".
        _assert_same_as_full("fused", value_dim=3)
    else:
        with pytest.raises(ValueError, match="value_dim=3, key_dim=4"):
            MultiHeadAttention(num_heads=4, key_dim=4, value_dim=3,
                               attention_implementation="fused")
