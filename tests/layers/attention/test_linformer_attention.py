"""LinformerAttention: harness, the paper's formula in NumPy (projection
along the sequence axis), identity projections == exact attention, the
default segment-sum projections (exact attention at full rank), padding,
short inputs and argument checks."""

import keras
import numpy as np
import pytest
from harness import run_layer_test

from keras_attention.layers import LinformerAttention
from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import RotaryEmbedding
from keras_attention.layers.attention.linformer_attention import SequencePooling

RNG = np.random.default_rng(0)
fn = keras.ops.convert_to_numpy


def _rand(*shape):
    return RNG.normal(size=shape).astype("float32")


def test_harness_cross_attention_inferred_length():
    # T=5 queries, S=7 keys; E and F sized (7, 3) from the build shape.
    run_layer_test(
        LinformerAttention,
        {"num_heads": 2, "key_dim": 4, "projection_dim": 3},
        {"query": _rand(2, 5, 8), "value": _rand(2, 7, 8)},
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=10,
        expected_num_non_trainable_weights=0,
    )


def test_harness_per_head_projections_short_input_dropout():
    # sequence_length=9 > S=6: the first 6 rows of E and F are used.
    run_layer_test(
        LinformerAttention,
        {
            "num_heads": 4,
            "key_dim": 4,
            "sequence_length": 9,
            "projection_dim": 4,
            "projection_sharing": "none",
            "num_key_value_heads": 2,
            "dropout": 0.1,
            "seed": 1,
            "rotary_embedding": RotaryEmbedding(),
        },
        {"query": _rand(2, 5, 8), "value": _rand(2, 6, 8)},
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=10,
    )


def test_harness_key_value_sharing():
    run_layer_test(
        LinformerAttention,
        {"num_heads": 2, "key_dim": 4, "projection_dim": 2,
         "projection_sharing": "key_value"},
        {"query": _rand(2, 6, 8), "value": _rand(2, 6, 8)},
        expected_output_shape=(2, 6, 8),
        expected_num_trainable_weights=9,
    )


def _numpy_linformer(layer, query, value, value_mask=None, query_mask=None):
    """Wang et al. 2020, eq. 7, per head, in float64."""
    q = fn(layer.query_dense(query)).astype("float64")  # (B, T, H, D)
    k = fn(layer.key_dense(value)).astype("float64")  # (B, S, K, D)
    v = fn(layer.value_dense(value)).astype("float64")
    s = value.shape[1]
    e = fn(layer.key_projection).astype("float64")
    f = e if layer.value_projection is None else fn(layer.value_projection)
    heads, kv = layer.num_heads, k.shape[2]
    out = np.zeros(q.shape[:3] + (v.shape[-1],))
    for b in range(q.shape[0]):
        for h in range(heads):
            kh, vh = k[b, :, h // (heads // kv)], v[b, :, h // (heads // kv)]
            if value_mask is not None:  # masked keys zeroed before projecting
                kh = kh * value_mask[b][:, None]
                vh = vh * value_mask[b][:, None]
            eh = e[h // (heads // kv)] if e.ndim == 3 else e
            fh = f[h // (heads // kv)] if f.ndim == 3 else f
            k_low = eh[:s].T @ kh  # (k, D): E^T K, along the sequence axis
            v_low = fh[:s].T @ vh  # (k, Dv)
            logits = q[b, :, h] @ k_low.T / np.sqrt(q.shape[-1])
            p = np.exp(logits - logits.max(-1, keepdims=True))
            out[b, :, h] = (p / p.sum(-1, keepdims=True)) @ v_low
            if query_mask is not None:
                out[b, :, h] *= query_mask[b][:, None]
    return fn(layer.output_dense(out.astype("float32")))


@pytest.mark.parametrize("sharing", ["none", "headwise", "key_value"])
@pytest.mark.parametrize("t,s,kv_heads", [(6, 8, None), (8, 5, 1), (7, 7, 2)])
def test_matches_numpy_reference(sharing, t, s, kv_heads):
    layer = LinformerAttention(num_heads=4, key_dim=4, sequence_length=8,
                               projection_dim=3, projection_sharing=sharing,
                               num_key_value_heads=kv_heads)
    query, value = _rand(2, t, 8), _rand(2, s, 8)
    value_mask = RNG.random((2, s)) > 0.3
    query_mask = RNG.random((2, t)) > 0.2
    out = fn(layer(query, value, value_mask=value_mask, query_mask=query_mask))
    expected = _numpy_linformer(layer, query, value, value_mask, query_mask)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_identity_projections_give_exact_attention():
    # With k = S and E = F = I the low-rank attention is exact attention.
    layer = LinformerAttention(num_heads=2, key_dim=4, projection_dim=6)
    x = _rand(2, 6, 8)
    layer(x, x)
    layer.key_projection.assign(np.eye(6, dtype="float32"))
    layer.value_projection.assign(np.eye(6, dtype="float32"))
    exact = MultiHeadAttention(num_heads=2, key_dim=4)
    exact(x, x)
    for name in ("query_dense", "key_dense", "value_dense", "output_dense"):
        getattr(exact, name).set_weights(getattr(layer, name).get_weights())
    np.testing.assert_allclose(fn(layer(x, x)), fn(exact(x, x)), atol=1e-5)


def test_default_full_rank_projections_are_exact_attention():
    # Regression: E and F used to start as Glorot-random (n, k) matrices, so
    # even at k = n every projected key/value was a random signed mixture of
    # all positions and the pair-matching classifier of
    # benchmarks/kernel_quality.py stayed at chance. The default
    # (segment pooling) start is the identity at k = n: exact attention.
    layer = LinformerAttention(num_heads=2, key_dim=4, projection_dim=6,
                               projection_sharing="none")
    x = _rand(2, 6, 8)
    out = fn(layer(x, x))
    np.testing.assert_array_equal(fn(layer.key_projection), np.eye(6)[None].repeat(2, 0))
    exact = MultiHeadAttention(num_heads=2, key_dim=4)
    exact(x, x)
    for name in ("query_dense", "key_dense", "value_dense", "output_dense"):
        getattr(exact, name).set_weights(getattr(layer, name).get_weights())
    np.testing.assert_allclose(out, fn(exact(x, x)), atol=1e-5)


def _exact_numpy(q, k, v):
    logits = q @ k.T / np.sqrt(q.shape[-1])
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def test_default_low_rank_projections_pool_segments():
    # k = 3 of S = 7 keys: segments {0, 1, 2}, {3, 4}, {5, 6} (s * 3 // 7),
    # each summed and divided by sqrt(segment size).
    layer = LinformerAttention(num_heads=1, key_dim=4, projection_dim=3,
                               projection_sharing="key_value")
    x = _rand(1, 7, 8)
    out = fn(layer(x, x))
    q = fn(layer.query_dense(x))[0, :, 0].astype("float64")  # (T, D)
    k = fn(layer.key_dense(x))[0, :, 0].astype("float64")  # (S, D)
    v = fn(layer.value_dense(x))[0, :, 0].astype("float64")
    segments = [[0, 1, 2], [3, 4], [5, 6]]
    k_low = np.stack([k[idx].sum(0) / np.sqrt(len(idx)) for idx in segments])
    v_low = np.stack([v[idx].sum(0) / np.sqrt(len(idx)) for idx in segments])
    expected = fn(layer.output_dense(
        _exact_numpy(q, k_low, v_low)[None, :, None].astype("float32")))
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_sequence_pooling_initializer():
    a, b = 1 / np.sqrt(3), 1 / np.sqrt(2)
    np.testing.assert_allclose(
        fn(SequencePooling()((5, 2))),
        [[a, 0], [a, 0], [a, 0], [0, b], [0, b]], rtol=1e-6)
    # Orthonormal columns: projecting keeps the scale of independent keys.
    e = fn(SequencePooling()((64, 16)))
    np.testing.assert_allclose(e.T @ e, np.eye(16), atol=1e-6)
    # k > n: distinct columns, the others start at zero.
    np.testing.assert_array_equal(
        fn(SequencePooling()((2, 4))), [[1, 0, 0, 0], [0, 0, 1, 0]])
    per_head = fn(SequencePooling()((3, 4, 4), dtype="float16"))
    assert per_head.dtype == np.float16
    np.testing.assert_array_equal(per_head, np.eye(4)[None].repeat(3, 0))
    with pytest.raises(ValueError, match="argument `shape`, expected at least 2"):
        SequencePooling()((4,))


def test_projection_initializer_argument_and_config():
    layer = LinformerAttention(num_heads=2, key_dim=4, projection_dim=6,
                               projection_initializer="glorot_uniform")
    x = _rand(1, 6, 8)
    layer(x, x)
    assert not np.allclose(fn(layer.key_projection), np.eye(6))
    assert not np.allclose(fn(layer.key_projection), fn(layer.value_projection))
    restored = LinformerAttention.from_config(layer.get_config())
    assert isinstance(restored.projection_initializer,
                      keras.initializers.GlorotUniform)
    default = LinformerAttention.from_config(
        LinformerAttention(num_heads=2, key_dim=4).get_config())
    assert isinstance(default.projection_initializer, SequencePooling)


def test_fixed_projections_are_not_trained():
    layer = LinformerAttention(num_heads=2, key_dim=4, projection_dim=3,
                               trainable_projections=False)
    x = _rand(2, 6, 8)
    layer(x, x)
    assert len(layer.trainable_weights) == 8  # the four kernels and biases
    assert {w.path for w in layer.non_trainable_weights} == {
        layer.key_projection.path, layer.value_projection.path}
    e = fn(layer.key_projection)
    inputs = keras.Input((6, 8))
    model = keras.Model(inputs, layer(inputs, inputs))
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.fit(x, np.ones((2, 6, 8), "float32"), epochs=2, verbose=0)
    np.testing.assert_array_equal(fn(layer.key_projection), e)
    restored = LinformerAttention.from_config(layer.get_config())
    assert restored.trainable_projections is False


def test_padded_keys_contribute_nothing():
    layer = LinformerAttention(num_heads=2, key_dim=4, sequence_length=8,
                               projection_dim=3)
    query, value = _rand(1, 4, 8), _rand(1, 8, 8)
    mask = np.array([[True] * 5 + [False] * 3])
    out = fn(layer(query, value, value_mask=mask))
    changed = value.copy()
    changed[0, 5:] = 50 * _rand(3, 8)
    np.testing.assert_allclose(fn(layer(query, changed, value_mask=mask)), out,
                               atol=1e-5)
    # ... which is the same as a short (5-key) input.
    np.testing.assert_allclose(fn(layer(query, value[:, :5])), out, atol=1e-5)


def test_fully_masked_rows_return_a_zero_context():
    layer = LinformerAttention(num_heads=2, key_dim=4, projection_dim=3,
                               bias_initializer="ones")
    x = _rand(2, 5, 8)
    out = fn(layer(x, x, value_mask=np.array([[False] * 5, [True] * 5]),
                   query_mask=np.array([[True] * 5, [True] * 3 + [False] * 2])))
    np.testing.assert_allclose(out[0], 1.0, atol=1e-6)  # no key at all
    np.testing.assert_allclose(out[1, 3:], 1.0, atol=1e-6)  # padded queries


def test_implicit_mask_from_embedding():
    ids = np.array([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]])
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 8, mask_zero=True)(inputs)
    layer = LinformerAttention(num_heads=2, key_dim=4, projection_dim=3)
    model = keras.Model(inputs, layer(x, x))
    embedded = fn(model.layers[1](ids))
    expected = fn(layer(embedded, embedded, value_mask=ids != 0,
                        query_mask=ids != 0))
    np.testing.assert_allclose(model.predict(ids, verbose=0), expected, atol=1e-5)


def test_dropout_only_in_training():
    layer = LinformerAttention(num_heads=2, key_dim=4, projection_dim=3,
                               dropout=0.5, seed=1)
    x = _rand(2, 6, 8)
    np.testing.assert_allclose(fn(layer(x, x)), fn(layer(x, x, training=False)))
    assert np.abs(fn(layer(x, x, training=True)) - fn(layer(x, x))).max() > 1e-3


def test_mixed_float16_close_to_float32():
    x = _rand(2, 8, 8)
    ref = LinformerAttention(num_heads=2, key_dim=4, projection_dim=4)
    ref_out = fn(ref(x, x))
    half = LinformerAttention(num_heads=2, key_dim=4, projection_dim=4,
                              dtype="mixed_float16")
    half(x, x)
    half.set_weights(ref.get_weights())
    out = half(x, x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    np.testing.assert_allclose(fn(keras.ops.cast(out, "float32")), ref_out, atol=2e-2)


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"sequence_length": 0}, "argument `sequence_length`, expected a positive"),
        ({"projection_dim": 0}, "argument `projection_dim`, expected a positive"),
        ({"projection_sharing": "all"}, "argument `projection_sharing`, expected one"),
        ({"projection_initializer": "nope"},
         "argument `projection_initializer`, expected 'pooling' or a Keras"),
        ({"projection_initializer": None},
         "argument `projection_initializer`, expected 'pooling' or a Keras"),
        ({"trainable_projections": "no"},
         "argument `trainable_projections`, expected a bool"),
    ],
)
def test_invalid_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LinformerAttention(num_heads=2, key_dim=4, **kwargs)


def test_keys_longer_than_sequence_length():
    with pytest.raises(ValueError, match="expected at most sequence_length=4 keys"):
        LinformerAttention(num_heads=2, key_dim=4, sequence_length=4)(
            _rand(1, 3, 8), _rand(1, 6, 8))
    layer = LinformerAttention(num_heads=2, key_dim=4, projection_dim=2)
    layer(_rand(1, 3, 8), _rand(1, 5, 8))  # built for 5 keys
    with pytest.raises(ValueError, match="expected at most sequence_length=5 keys"):
        layer(_rand(1, 3, 8), _rand(1, 6, 8))


def test_unknown_length_needs_sequence_length():
    x = keras.Input((None, 8))
    with pytest.raises(ValueError, match="expected a static key length"):
        LinformerAttention(num_heads=2, key_dim=4)(x, x)
    # With sequence_length, variable lengths are fine.
    y = LinformerAttention(num_heads=2, key_dim=4, sequence_length=10,
                           projection_dim=3)(x, x)
    assert tuple(y.shape) == (None, None, 8)


@pytest.mark.parametrize("symbolic", [False, True])
def test_unsupported_call_arguments(symbolic):
    layer = LinformerAttention(num_heads=2, key_dim=4, projection_dim=2)
    if symbolic:
        x = keras.Input((3, 8))
        mask, bias = keras.Input((3, 3), dtype="bool"), keras.Input((2, 3, 3))
    else:
        x = _rand(1, 3, 8)
        mask, bias = np.ones((1, 3, 3), bool), np.zeros((1, 2, 3, 3), "float32")
    with pytest.raises(ValueError, match="argument `use_causal_mask`, expected False"):
        layer(x, x, use_causal_mask=True)
    with pytest.raises(ValueError, match="argument `attention_mask`, expected None"):
        layer(x, x, attention_mask=mask)
    with pytest.raises(ValueError, match="argument `attention_bias`, expected None"):
        layer(x, x, attention_bias=bias)
    with pytest.raises(ValueError, match="argument `return_attention_scores`"):
        layer(x, x, return_attention_scores=True)


def test_cache_is_rejected():
    layer = LinformerAttention(num_heads=2, key_dim=4, projection_dim=2)
    x = _rand(1, 3, 8)
    cache = (np.zeros((1, 3, 2, 4), "float32"),) * 2
    with pytest.raises(ValueError, match=r"argument `cache`, expected None \(no KV"):
        layer(x, x, cache=cache, cache_index=0)
    with pytest.raises(ValueError, match="a KV cache, so `get_initial_cache`"):
        layer.get_initial_cache(batch_size=1, max_length=3)
    with pytest.raises(ValueError, match="so `compute_cross_attention_cache`"):
        layer.compute_cross_attention_cache(x)
