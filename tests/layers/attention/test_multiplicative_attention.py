"""MultiplicativeAttention (Luong): harness, each score's formula, errors."""

import keras
import numpy as np
import pytest
from attention_test_utils import np_attention
from backend_utils import to_numpy
from harness import run_layer_test

from keras_attention.layers import MultiplicativeAttention


def luong_logits(score, q, k, kernel=None, score_vector=None):
    """Luong et al. (2015) eq. 8 and the location score, looped per (t, s)."""
    batch, t, s = q.shape[0], q.shape[1], k.shape[1]
    out = np.zeros((batch, t, s))
    for i in range(batch):
        for a in range(t):
            if score == "location":
                out[i, a] = (q[i, a] @ kernel)[:s]  # a_t = softmax(W_a h_t)
                continue
            for c in range(s):
                h_t, h_s = q[i, a].astype("float64"), k[i, c].astype("float64")
                if score == "dot":
                    out[i, a, c] = h_t @ h_s
                elif score == "general":
                    out[i, a, c] = h_t @ kernel @ h_s
                else:  # concat: v_a^T tanh(W_a [h_t; h_s])
                    out[i, a, c] = score_vector @ np.tanh(
                        np.concatenate([h_t, h_s]) @ kernel
                    )
    return out


def _data(rng, b=2, t=3, s=5, dq=4, dk=4, dv=6):
    q = rng.standard_normal((b, t, dq)).astype("float32")
    k = rng.standard_normal((b, s, dk)).astype("float32")
    v = rng.standard_normal((b, s, dv)).astype("float32")
    return q, k, v


@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
@pytest.mark.parametrize(
    "init_kwargs,call_kwargs,weights,dk",
    [
        ({"score": "dot"}, {}, 0, 4),
        ({"score": "general", "use_scale": True}, {"return_attention_scores": True}, 2, 5),
        ({"score": "concat", "units": 3, "dropout": 0.1, "seed": 2}, {"use_causal_mask": True}, 2, 5),
        ({"score": "location", "sequence_length": 8}, {"return_attention_scores": True}, 1, 5),
    ],
)
def test_layer_contract(init_kwargs, call_kwargs, weights, dk):
    q, k, v = _data(np.random.default_rng(0), dk=dk)
    expected = (2, 3, 6)
    if call_kwargs.get("return_attention_scores"):
        expected = [(2, 3, 6), (2, 3, 5)]
    run_layer_test(
        MultiplicativeAttention,
        init_kwargs,
        {"query": q, "value": v, "key": k},
        call_kwargs=call_kwargs,
        expected_output_shape=expected,
        expected_num_trainable_weights=weights,
    )


@pytest.mark.parametrize("score", ["dot", "general", "concat", "location"])
def test_matches_luong_formula_with_masks(score):
    rng = np.random.default_rng(1)
    q, k, v = _data(rng, dq=4, dk=4 if score == "dot" else 3)
    layer = MultiplicativeAttention(score=score, units=6, sequence_length=7)
    layer(q, v, key=k)  # build
    kernel = to_numpy(layer.kernel) if score != "dot" else None
    vec = to_numpy(layer.score_vector) if score == "concat" else None
    if score == "general":
        assert kernel.shape == (4, 3)
    if score == "concat":
        assert kernel.shape == (7, 6) and vec.shape == (6,)
    if score == "location":
        assert kernel.shape == (4, 7)
    query_mask = np.array([[1, 1, 1], [1, 0, 1]], bool)
    value_mask = np.array([[1, 1, 0, 1, 1], [0, 1, 1, 1, 1]], bool)
    out, scores = layer(
        q,
        v,
        key=k,
        query_mask=query_mask,
        value_mask=value_mask,
        use_causal_mask=True,
        return_attention_scores=True,
    )
    tri = np.arange(5)[None, :] <= np.arange(3)[:, None]
    mask = query_mask[:, :, None] & value_mask[:, None, :] & tri
    ref_out, ref_w = np_attention(luong_logits(score, q, k, kernel, vec), mask, v)
    np.testing.assert_allclose(to_numpy(scores), ref_w, atol=1e-5)
    np.testing.assert_allclose(to_numpy(out), ref_out, atol=1e-5)
    assert np.all(to_numpy(out)[1, 1] == 0)  # padded query row


def test_dot_equals_keras_attention():
    rng = np.random.default_rng(2)
    q, k, v = _data(rng)
    value_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    ours = MultiplicativeAttention("dot")(q, v, key=k, value_mask=value_mask)
    peer = keras.layers.Attention()([q, v, k], mask=[None, value_mask])
    np.testing.assert_allclose(to_numpy(ours), to_numpy(peer), atol=1e-5)


def test_learned_scale_multiplies_scores():
    rng = np.random.default_rng(3)
    q, k, v = _data(rng)
    layer = MultiplicativeAttention("dot", use_scale=True)
    layer(q, v, key=k)
    layer.learned_scale.assign(0.5)
    out = layer(q, v, key=k)
    ref, _ = np_attention(0.5 * luong_logits("dot", q, k), True, v)
    np.testing.assert_allclose(to_numpy(out), ref, atol=1e-5)


def test_location_weights_ignore_key_content_and_slice_to_key_length():
    rng = np.random.default_rng(4)
    q, k, v = _data(rng, s=3)
    layer = MultiplicativeAttention("location", sequence_length=6)
    _, scores = layer(q, v, key=k, return_attention_scores=True)
    _, other = layer(q, v, key=100 * k[:, ::-1], return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(scores), to_numpy(other), atol=1e-6)
    assert tuple(scores.shape) == (2, 3, 3)
    # Shorter keys use the first columns of W_a (softmax over them only).
    _, longer = layer(q, v[:, :2], key=k[:, :2], return_attention_scores=True)
    logits = np.einsum("btd,dl->btl", q, to_numpy(layer.kernel))
    np.testing.assert_allclose(
        to_numpy(longer), np_attention(logits[..., :2], True, v[:, :2])[1], atol=1e-5
    )


def test_concat_units_default_to_key_size():
    q, k, v = _data(np.random.default_rng(5), dk=5)
    layer = MultiplicativeAttention("concat")
    layer(q, v, key=k)
    assert tuple(layer.kernel.shape) == (9, 5)


def test_symbolic_scores_shape_when_t_differs_from_s():
    for score in ("dot", "location"):
        out, scores = MultiplicativeAttention(score, sequence_length=9)(
            keras.Input((2, 4)), keras.Input((6, 4)), return_attention_scores=True
        )
        assert tuple(out.shape) == (None, 2, 4)
        assert tuple(scores.shape) == (None, 2, 6)


def test_dropout_only_in_training():
    q, k, v = _data(np.random.default_rng(6))
    layer = MultiplicativeAttention("dot", dropout=0.5, seed=4)
    plain = MultiplicativeAttention("dot")(q, v, key=k)
    np.testing.assert_allclose(to_numpy(layer(q, v, key=k)), to_numpy(plain), atol=1e-6)
    assert not np.allclose(to_numpy(layer(q, v, key=k, training=True)), to_numpy(plain))


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"score": "bilinear"}, r"argument `score`, expected one of \['concat', 'dot', 'general', 'location'\]. Received: score='bilinear'"),
        ({"score": "concat", "units": 0}, r"argument `units`, expected a positive integer. Received: units=0"),
        ({"score": "location", "sequence_length": -3}, r"argument `sequence_length`, expected a positive integer. Received: sequence_length=-3"),
        ({"score": "location"}, r"argument `sequence_length`, expected a positive integer \(the maximum key length\) when `score='location'`. Received: sequence_length=None"),
        ({"dropout": 2.0}, r"argument `dropout`, expected a float in \[0, 1\). Received: dropout=2.0"),
        ({"seed": "a"}, r"argument `seed`, expected an integer or None. Received: seed='a'"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        MultiplicativeAttention(**kwargs)


def test_bad_use_scale_type():
    with pytest.raises(TypeError, match=r"argument `use_scale`, expected a bool. Received: use_scale=None"):
        MultiplicativeAttention(use_scale=None)


def test_location_key_longer_than_sequence_length():
    q, k, v = _data(np.random.default_rng(7), s=5)
    pattern = (
        r"argument `key`, expected a key length <= sequence_length=4 for "
        r"`score='location'`. Received: key.shape=\(2, 5, 4\)"
    )
    with pytest.raises(ValueError, match=pattern):  # at build
        MultiplicativeAttention("location", sequence_length=4)(q, v, key=k)
    layer = MultiplicativeAttention("location", sequence_length=4)
    layer(q, v[:, :4], key=k[:, :4])
    with pytest.raises(ValueError, match=pattern):  # after build
        layer(q, v, key=k)


def test_bad_shapes():
    q, k, v = _data(np.random.default_rng(8), dk=3)
    with pytest.raises(ValueError, match=r"`query` and `key`, expected the same feature size \(last axis\) for `score='dot'`. Received: query.shape=\(2, 3, 4\), key.shape=\(2, 5, 3\)"):
        MultiplicativeAttention("dot")(q, v, key=k)
    with pytest.raises(ValueError, match=r"argument `query`, expected a tensor of rank 3. Received: query.shape=\(3, 4\)"):
        MultiplicativeAttention("general")(q[0], v, key=k)
    with pytest.raises(ValueError, match=r"`key` and `value`, expected the same length \(axis 1\)"):
        MultiplicativeAttention("general")(q, v[:, :2], key=k)
