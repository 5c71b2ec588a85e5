"""DNC layer: harness, RNN options, invariants in use, mixed precision, learning."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import run_layer_test
from keras import ops

from keras_attention.layers import DNC
from keras_attention.layers import DNCCell

B, T, F, U, N, W, R, K, Y = 3, 6, 4, 8, 7, 5, 2, 2, 3
SMALL = dict(
    controller_units=U,
    memory_size=N,
    memory_width=W,
    num_read_heads=R,
    num_write_heads=K,
)
STATE_SIZES = [U, U, N * W, R * W, R * N, K * N, N, K * N, K * N * N]


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _np(x):
    return ops.convert_to_numpy(x)


def test_dnc_harness():
    run_layer_test(
        DNC,
        dict(SMALL, output_dim=Y, return_sequences=True),
        _x(B, T, F),
        expected_output_shape=(B, T, Y),
        expected_num_trainable_weights=7,
        expected_num_non_trainable_weights=0,
    )


def test_dnc_harness_weightings_and_state():
    kwargs = dict(
        SMALL, controller="dense", return_weightings=True, return_state=True
    )
    lead = (B,)
    run_layer_test(
        DNC,
        kwargs,
        _x(B, T, F),
        expected_output_shape=[
            lead + (U + R * W,),
            # dict values flatten in key order: link, read, usage, write
            [lead + (K, N, N), lead + (R, N), lead + (N,), lead + (K, N)],
            [(B, s) for s in STATE_SIZES[2:]],
        ],
        run_mixed_precision=False,
    )


def test_defaults_are_deepmind_repeat_copy():
    layer = DNC()
    assert (layer.controller_units, layer.memory_size, layer.memory_width) == (64, 16, 16)
    assert (layer.num_read_heads, layer.num_write_heads) == (4, 1)
    assert layer.controller == "lstm" and layer.clip_value == 20.0


def test_symbolic_shapes_with_weightings_and_sequences():
    layer = DNC(**SMALL, output_dim=Y, return_sequences=True, return_weightings=True)
    inputs = keras.Input((None, F))
    y, info = layer(inputs)
    assert y.shape == (None, None, Y)
    assert info["read_weightings"].shape == (None, None, R, N)
    assert info["write_weightings"].shape == (None, None, K, N)
    assert info["usage"].shape == (None, None, N)
    assert info["link"].shape == (None, None, K, N, N)
    ey, einfo = layer(_x(B, T, F))
    assert tuple(ey.shape) == (B, T, Y)
    assert {k: tuple(v.shape) for k, v in einfo.items()} == {
        "read_weightings": (B, T, R, N),
        "write_weightings": (B, T, K, N),
        "usage": (B, T, N),
        "link": (B, T, K, N, N),
    }


def test_layer_equals_rnn_of_cell_with_same_weights():
    x = _x(B, T, F)
    layer = DNC(**SMALL, output_dim=Y, return_sequences=True)
    got = _np(layer(x))
    cell = DNCCell(**SMALL, output_dim=Y)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    rnn.build((B, T, F))
    rnn.set_weights(layer.get_weights())
    np.testing.assert_allclose(got, _np(rnn(x)), atol=1e-5)


# ---------------------------------------------------------------------------
# Invariants in use, with all dimensions different (B=3, N=7, W=5, R=2, K=2).


@pytest.mark.parametrize("stddev", [0.05, 2.0], ids=["soft", "saturated"])
def test_invariants_over_a_sequence(stddev):
    layer = DNC(
        **SMALL,
        return_sequences=True,
        return_weightings=True,
        return_state=True,
        kernel_initializer=keras.initializers.RandomNormal(stddev=stddev, seed=1),
    )
    _, info, *states = layer(_x(B, 10, F, seed=2))
    eps = 1e-5
    for name in ("read_weightings", "write_weightings"):
        w = _np(info[name])
        assert np.all(w >= -eps) and np.all(w <= 1 + eps), name
        assert np.all(w.sum(-1) <= 1 + eps), name
    usage = _np(info["usage"])
    assert np.all(usage >= -eps) and np.all(usage <= 1 + eps)
    link = _np(info["link"])  # (B, T, K, N, N)
    assert np.all(np.diagonal(link, axis1=-2, axis2=-1) == 0)
    assert np.all(link >= -eps) and np.all(link <= 1 + eps)
    assert np.all(link.sum(-1) <= 1 + eps) and np.all(link.sum(-2) <= 1 + eps)
    precedence = _np(states[7]).reshape(B, K, N)
    assert np.all(precedence >= -eps) and np.all(precedence.sum(-1) <= 1 + eps)
    assert link.max() > 0  # the links did form


def test_gradients_finite_from_zero_memory():
    layer = DNC(**SMALL, output_dim=Y, return_sequences=True)
    x = tf.constant(_x(B, T, F))
    layer(x)
    for stddev in (0.05, 3.0):  # ordinary and saturated gates
        layer.set_weights(
            [
                np.random.default_rng(0).normal(0, stddev, w.shape).astype("float32")
                for w in layer.get_weights()
            ]
        )
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        grads = tape.gradient(loss, layer.trainable_weights + [x])
        for g in grads:
            assert g is not None and np.all(np.isfinite(g.numpy()))


# ---------------------------------------------------------------------------
# RNN options.


def test_masking_with_keras_mask():
    x = _x(B, T, F)
    padded = np.concatenate([x, np.zeros((B, 2, F), "float32")], axis=1)
    inputs = keras.Input((None, F))
    layer = DNC(**SMALL, output_dim=Y)
    model = keras.Model(inputs, layer(keras.layers.Masking(0.0)(inputs)))
    np.testing.assert_allclose(
        model.predict(padded, verbose=0), _np(layer(x)), atol=1e-5
    )
    seq = DNC(**SMALL, return_sequences=True)
    mask = np.ones((B, T), bool)
    assert np.all(_np(seq.compute_mask(x, mask)) == mask)
    assert DNC(**SMALL).compute_mask(x, mask) is None


def test_stateful_dnc_continues_the_sequence():
    x = _x(B, T, F)
    layer = DNC(**SMALL, output_dim=Y, return_sequences=True)
    want = _np(layer(x))
    stateful = DNC(**SMALL, output_dim=Y, return_sequences=True, stateful=True)
    stateful.build((B, T // 2, F))
    stateful.set_weights(layer.get_weights())
    got = np.concatenate([_np(stateful(x[:, :3])), _np(stateful(x[:, 3:]))], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    stateful.reset_state()
    np.testing.assert_allclose(_np(stateful(x[:, 3:])), _np(layer(x[:, 3:])), atol=1e-5)


def test_return_state_matches_initial_state_continuation():
    x = _x(B, T, F)
    layer = DNC(**SMALL, output_dim=Y, return_sequences=True, return_state=True)
    full, *_ = layer(x)
    _, *states = layer(x[:, :3])
    second, *_ = layer(x[:, 3:], initial_state=states)
    np.testing.assert_allclose(_np(second), _np(full)[:, 3:], atol=1e-5)


def test_mixed_precision_keeps_memory_in_float32():
    x = _x(B, 12, F)
    ref = DNC(**SMALL, output_dim=Y, return_sequences=True, return_weightings=True)
    want, want_info = ref(x)
    mixed = DNC(
        **SMALL, output_dim=Y, return_sequences=True, return_weightings=True,
        dtype="mixed_bfloat16",
    )
    mixed.build((B, 12, F))
    mixed.set_weights(ref.get_weights())
    got, got_info = mixed(x)
    assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
    # bfloat16 controller maths, float32 memory: close to the float32 run
    # (the weightings are rounded to bfloat16 only when returned).
    np.testing.assert_allclose(
        _np(ops.cast(got, "float32")), _np(want), atol=0.1, rtol=0.1
    )
    np.testing.assert_allclose(
        _np(ops.cast(got_info["usage"], "float32")), _np(want_info["usage"]), atol=0.05
    )


# ---------------------------------------------------------------------------
# Bad input.


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="Received: memory_size=0"):
        DNC(memory_size=0)
    with pytest.raises(ValueError, match="Received: num_read_heads=0"):
        DNC(num_read_heads=0)
    with pytest.raises(ValueError, match="Received: num_write_heads=0"):
        DNC(num_write_heads=0)
    with pytest.raises(ValueError, match="Received: controller='transformer'"):
        DNC(controller="transformer")


def test_wrong_input_rank_and_width():
    with pytest.raises(ValueError, match=r"expected a tensor of rank 3. Received: sequences.shape=\(3, 4\)"):
        DNC(**SMALL).build((B, F))
    layer = DNC(**SMALL)
    layer(_x(B, T, F))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 4"):
        layer(_x(B, T, F + 2))


# ---------------------------------------------------------------------------
# Learning: a tiny copy task, generated here with NumPy.


def _copy_batch(rng, batch, length, bits):
    """Input: `length` random bit vectors, a delimiter, then blanks; target:
    the same vectors after the delimiter (loss only there)."""
    steps = 2 * length + 1
    seq = rng.integers(0, 2, (batch, length, bits)).astype("float32")
    x = np.zeros((batch, steps, bits + 1), "float32")
    x[:, :length, :bits] = seq
    x[:, length, bits] = 1.0
    y = np.zeros((batch, steps, bits), "float32")
    y[:, length + 1 :] = seq
    weight = np.zeros((batch, steps), "float32")
    weight[:, length + 1 :] = 1.0
    return x, y, weight


def test_short_copy_training_lowers_the_loss():
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    bits, length = 4, 3
    inputs = keras.Input((2 * length + 1, bits + 1))
    outputs = DNC(
        controller_units=32, memory_size=8, memory_width=8, num_read_heads=1,
        output_dim=bits, return_sequences=True,
    )(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2, global_clipnorm=10.0),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        weighted_metrics=[],
        jit_compile=True,
    )
    x_eval, y_eval, w_eval = _copy_batch(np.random.default_rng(99), 128, length, bits)
    before = model.evaluate(x_eval, y_eval, sample_weight=w_eval, verbose=0)
    x, y, w = _copy_batch(rng, 32 * 150, length, bits)
    model.fit(x, y, sample_weight=w, batch_size=32, epochs=1, verbose=0)
    after = model.evaluate(x_eval, y_eval, sample_weight=w_eval, verbose=0)
    # Untrained ~ln 2 = 0.69 per bit; guessing the mean cannot go below it.
    assert before > 0.6
    assert after < 0.5, (before, after)
