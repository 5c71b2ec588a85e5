"""ScaledDotProductAttention: harness, NumPy reference, masks, errors."""

import keras
import numpy as np
import pytest
from attention_test_utils import np_attention
from harness import run_layer_test
from keras import ops

from keras_attention.layers import ScaledDotProductAttention


def _data(rng, b=2, t=3, s=5, d=4, dv=6):
    q = rng.standard_normal((b, t, d)).astype("float32")
    k = rng.standard_normal((b, s, d)).astype("float32")
    v = rng.standard_normal((b, s, dv)).astype("float32")
    return q, k, v


@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
def test_layer_contract():
    rng = np.random.default_rng(0)
    q, k, v = _data(rng)
    run_layer_test(
        ScaledDotProductAttention,
        {},
        {"query": q, "value": k},
        expected_output_shape=(2, 3, 4),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_layer_contract_scale_dropout_scores_key():
    rng = np.random.default_rng(1)
    q, k, v = _data(rng)
    run_layer_test(
        ScaledDotProductAttention,
        {"use_scale": True, "dropout": 0.1, "seed": 7},
        {"query": q, "value": v, "key": k},
        call_kwargs={"return_attention_scores": True, "use_causal_mask": True},
        expected_output_shape=[(2, 3, 6), (2, 3, 5)],
        expected_num_trainable_weights=1,
    )


def test_layer_contract_explicit_scale():
    rng = np.random.default_rng(2)
    q, k, v = _data(rng, t=4, s=2)
    run_layer_test(
        ScaledDotProductAttention,
        {"scale": 0.25},
        {"query": q, "value": v, "key": k},
        expected_output_shape=(2, 4, 6),
        run_training=False,
    )


def test_matches_formula_with_all_masks():
    rng = np.random.default_rng(3)
    q, k, v = _data(rng, t=4, s=5)
    query_mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    value_mask = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 1, 1]], bool)
    attention_mask = rng.random((2, 4, 5)) > 0.2
    layer = ScaledDotProductAttention()
    out, scores = layer(
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
    logits = np.einsum("btd,bsd->bts", q, k) / np.sqrt(4)
    ref_out, ref_w = np_attention(logits, mask, v)
    np.testing.assert_allclose(ops.convert_to_numpy(out), ref_out, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(scores), ref_w, atol=1e-5)
    # The padded query row outputs zeros.
    assert np.all(ops.convert_to_numpy(out)[0, 3] == 0)


def test_explicit_and_learned_scale():
    rng = np.random.default_rng(4)
    q, k, v = _data(rng)
    logits = np.einsum("btd,bsd->bts", q, k)
    out = ScaledDotProductAttention(scale=0.3)(q, v, key=k)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out), np_attention(0.3 * logits, True, v)[0], atol=1e-5
    )
    layer = ScaledDotProductAttention(use_scale=True)
    layer(q, v, key=k)
    layer.learned_scale.assign(2.0)
    out = layer(q, v, key=k)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out),
        np_attention(2.0 / np.sqrt(4) * logits, True, v)[0],
        atol=1e-5,
    )


def test_implicit_keras_masks_and_mask_propagation():
    tokens = np.array([[3, 5, 2, 0, 0], [4, 1, 1, 7, 0]])
    keep = tokens != 0
    embedding = keras.layers.Embedding(10, 4, mask_zero=True)
    x = embedding(tokens)
    layer = ScaledDotProductAttention()
    out = layer(x, x)  # masks read from x's implicit Keras mask
    explicit = layer(x, x, query_mask=keep, value_mask=keep)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out), ops.convert_to_numpy(explicit), atol=1e-6
    )
    x_np = ops.convert_to_numpy(x)
    logits = np.einsum("btd,bsd->bts", x_np, x_np) / 2.0
    ref, _ = np_attention(logits, keep[:, :, None] & keep[:, None, :], x_np)
    np.testing.assert_allclose(ops.convert_to_numpy(out), ref, atol=1e-5)
    # The output carries the query's mask downstream.
    np.testing.assert_array_equal(ops.convert_to_numpy(out._keras_mask), keep)

    # In a functional model, a downstream mask-aware layer sees that mask.
    inputs = keras.Input((5,), dtype="int32")
    h = embedding(inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(ScaledDotProductAttention()(h, h))
    model = keras.Model(inputs, pooled)
    expected = (ref * keep[:, :, None]).sum(1) / keep.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(tokens, verbose=0), expected, atol=1e-5)


def test_dropout_only_in_training():
    rng = np.random.default_rng(5)
    q, k, v = _data(rng)
    plain = ScaledDotProductAttention()(q, v, key=k)
    layer = ScaledDotProductAttention(dropout=0.5, seed=3)
    inference = layer(q, v, key=k, training=False)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(inference), ops.convert_to_numpy(plain)
    )
    out, scores = layer(q, v, key=k, training=True, return_attention_scores=True)
    assert not np.allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(plain))
    # Scores are returned before dropout.
    _, plain_scores = ScaledDotProductAttention()(
        q, v, key=k, return_attention_scores=True
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(scores), ops.convert_to_numpy(plain_scores), atol=1e-6
    )


def test_symbolic_scores_shape_when_t_differs_from_s():
    q = keras.Input((3, 4))
    v = keras.Input((7, 4))
    out, scores = ScaledDotProductAttention()(q, v, return_attention_scores=True)
    assert tuple(out.shape) == (None, 3, 4)
    assert tuple(scores.shape) == (None, 3, 7)


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"scale": 0.0}, r"argument `scale`, expected a positive float. Received: scale=0.0"),
        ({"scale": -1}, r"argument `scale`, expected a positive float. Received: scale=-1"),
        ({"dropout": 1.0}, r"argument `dropout`, expected a float in \[0, 1\). Received: dropout=1.0"),
        ({"dropout": -0.5}, r"argument `dropout`, expected a float in \[0, 1\). Received: dropout=-0.5"),
        ({"seed": "1"}, r"argument `seed`, expected an integer or None. Received: seed='1'"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ScaledDotProductAttention(**kwargs)


def test_bad_use_scale_type():
    with pytest.raises(TypeError, match=r"argument `use_scale`, expected a bool. Received: use_scale='yes'"):
        ScaledDotProductAttention(use_scale="yes")


def test_bad_shapes():
    rng = np.random.default_rng(6)
    q, k, v = _data(rng)
    with pytest.raises(ValueError, match=r"argument `query`, expected a tensor of rank 3. Received: query.shape=\(2, 3\)"):
        ScaledDotProductAttention()(q[..., 0], v)
    with pytest.raises(ValueError, match=r"argument `value`, expected a tensor of rank 3. Received: value.shape=\(2, 5, 6, 1\)"):
        ScaledDotProductAttention()(q, v[..., None])
    with pytest.raises(ValueError, match=r"`query` and `key`, expected the same feature size \(last axis\). Received: query.shape=\(2, 3, 4\), key.shape=\(2, 5, 6\)"):
        ScaledDotProductAttention()(q, v)
    with pytest.raises(ValueError, match=r"`key` and `value`, expected the same length \(axis 1\). Received: key.shape=\(2, 4, 4\), value.shape=\(2, 5, 6\)"):
        ScaledDotProductAttention()(q, v, key=k[:, :4])
    with pytest.raises(ValueError, match=r"argument `attention_mask`, expected key_length=5 on axis -1"):
        ScaledDotProductAttention()(q, k, attention_mask=np.ones((2, 3, 4), bool))


def test_numpy_integer_seed_is_stored_as_int():
    layer = ScaledDotProductAttention(dropout=0.1, seed=np.int64(3))
    assert layer.seed == 3 and type(layer.get_config()["seed"]) is int
