"""NTM layer: Keras contract (harness), equivalence with keras.layers.RNN,
masking, stateful use, weightings for inspection, mixed precision, errors."""

import keras
import numpy as np
import pytest
from backend_utils import to_numpy
from harness import run_layer_test
from keras import ops

from keras_attention.layers import NTM
from keras_attention.layers import NTMCell

# All sizes differ: batch, time, input, controller, slots, width, reads, output.
B, T, I, U, N, W, R, O = 3, 5, 6, 16, 7, 4, 2, 3
SMALL = dict(controller_units=U, memory_size=N, memory_width=W, num_read_heads=R, output_dim=O)


def _x(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


def test_harness_sequences():
    run_layer_test(
        NTM,
        {**SMALL, "return_sequences": True},
        _x((B, T, I)),
        expected_output_shape=(B, T, O),
        expected_num_trainable_weights=9,
        expected_num_non_trainable_weights=0,
        jit_compile=True,
    )


def test_harness_weightings_and_states():
    # Last output, weightings of every step, final states (memory in float32).
    run_layer_test(
        NTM,
        {**SMALL, "controller": "dense", "return_weightings": True, "return_state": True},
        _x((B, T, I)),
        expected_output_shape=((B, O), (B, T, R, N), (B, T, 1, N), (B, N * W), (B, R * W), (B, (R + 1) * N)),
        float32_outputs=(1, 2, 3, 4, 5),
        run_training=False,
    )


def _same_weights(source, target):
    target.set_weights(source.get_weights())


def test_equals_keras_rnn_over_the_cell():
    x = _x((B, T, I), seed=1)
    ntm = NTM(**SMALL, return_sequences=True)
    y = to_numpy(ntm(x), "float32")
    rnn = keras.layers.RNN(NTMCell(**SMALL), return_sequences=True)
    rnn(x)
    _same_weights(ntm, rnn)
    np.testing.assert_allclose(to_numpy(rnn(x), "float32"), y, atol=1e-6)


def test_weightings_are_distributions_and_match_the_states():
    x = _x((B, T, I), seed=2)
    ntm = NTM(**SMALL, num_write_heads=2, return_sequences=True, return_weightings=True, return_state=True)
    y, reads, writes, *states = ntm(x)
    reads, writes = to_numpy(reads, "float32"), to_numpy(writes, "float32")
    assert reads.shape == (B, T, R, N) and writes.shape == (B, T, 2, N)
    for w in (reads, writes):
        assert np.all(w >= 0) and np.all(w <= 1 + 1e-6)
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    last = to_numpy(states[-1], "float32").reshape(B, R + 2, N)
    np.testing.assert_allclose(last[:, :R], reads[:, -1], atol=1e-6)
    np.testing.assert_allclose(last[:, R:], writes[:, -1], atol=1e-6)
    # The outputs are those of the same layer without weightings.
    plain = NTM(**SMALL, num_write_heads=2, return_sequences=True)
    plain(x)
    _same_weights(ntm, plain)
    np.testing.assert_allclose(to_numpy(plain(x), "float32"), to_numpy(y, "float32"), atol=1e-6)


def test_implicit_keras_mask():
    x = _x((B, T, I), seed=3)
    lengths = [5, 3, 1]
    for b, length in enumerate(lengths):
        x[b, length:] = 0.0
    inputs = keras.Input((T, I))
    outputs = NTM(**SMALL, return_sequences=True)(keras.layers.Masking(0.0)(inputs))
    model = keras.Model(inputs, outputs)
    y = to_numpy(model(x), "float32")
    assert model.layers[-1].compute_mask(inputs, ops.ones((1, T), "bool")) is not None
    single = NTM(**SMALL, return_sequences=True)
    single(x[:1])
    _same_weights(model.layers[-1], single)
    for b, length in enumerate(lengths):
        want = to_numpy(single(x[b : b + 1, :length]), "float32")[0]
        np.testing.assert_allclose(y[b, :length], want, atol=1e-5)
        np.testing.assert_allclose(y[b, length:], np.repeat(want[-1:], T - length, 0), atol=1e-5)


def test_mask_with_go_backwards_and_states():
    # Trailing padding read backwards: the padded steps come first, output
    # zeros (no previous output yet) and leave the initial states alone; the
    # rest is the short sequence read backwards. Compiled (predict), so the
    # backend's own loop runs.
    x = _x((B, T, I), seed=6)
    lengths = [5, 3, 1]
    mask = np.arange(T)[None, :] < np.array(lengths)[:, None]  # (B, T)
    x = np.where(mask[..., None], x, 0.0).astype("float32")
    options = dict(SMALL, return_sequences=True, return_state=True, go_backwards=True)
    inputs = keras.Input((T, I))
    layer = NTM(**options)
    model = keras.Model(inputs, layer(keras.layers.Masking(0.0)(inputs)))
    outputs, *states = model.predict(x, verbose=0)
    single = NTM(**options)
    single(x[:1])
    _same_weights(layer, single)
    for b, length in enumerate(lengths):
        want, *want_states = single(x[b : b + 1, :length])
        np.testing.assert_allclose(outputs[b, : T - length], 0.0, atol=1e-7)
        np.testing.assert_allclose(
            outputs[b, T - length :], to_numpy(want, "float32")[0], atol=1e-5
        )
        for got, expected in zip(states, want_states):
            np.testing.assert_allclose(got[b], to_numpy(expected, "float32")[0], atol=1e-5)


def test_stateful_continues_and_reset_restores_initial_memory():
    x = _x((B, 2 * T, I), seed=4)
    full = NTM(**SMALL, return_sequences=True)
    expected = to_numpy(full(x), "float32")
    stateful = NTM(**SMALL, return_sequences=True, stateful=True)
    stateful(x[:, :1])
    _same_weights(full, stateful)
    stateful.reset_state()
    got = np.concatenate(
        [to_numpy(stateful(x[:, :T]), "float32"), to_numpy(stateful(x[:, T:]), "float32")], 1
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # reset_state gives the cell's initial state (memory 1e-6, weightings on
    # slot 0), not the zeros of keras.layers.RNN.reset_state.
    stateful.reset_state()
    initial = stateful.cell.get_initial_state(B)
    for variable, want in zip(stateful.states, initial):
        np.testing.assert_allclose(
            to_numpy(variable, "float32"), to_numpy(want, "float32"), atol=1e-7
        )
    np.testing.assert_allclose(to_numpy(stateful(x[:, :T]), "float32"), expected[:, :T], atol=1e-5)


def test_mixed_precision_keeps_memory_float32():
    x = _x((B, T, I), seed=5)
    reference = NTM(**SMALL, return_sequences=True)
    want = to_numpy(reference(x), "float32")
    keras.config.set_dtype_policy("mixed_bfloat16")
    ntm = NTM(**SMALL, return_sequences=True, return_state=True)
    y, *states = ntm(x)
    _same_weights(reference, ntm)
    y, *states = ntm(x)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    dtypes = [keras.backend.standardize_dtype(s.dtype) for s in states]
    assert dtypes == ["bfloat16", "bfloat16", "float32", "float32", "float32"]
    np.testing.assert_allclose(to_numpy(y, "float32"), want, atol=0.1)


def test_go_backwards_equals_reversed_input():
    x = _x((B, T, I), seed=6)
    forward = NTM(**SMALL)
    y = to_numpy(forward(x[:, ::-1]), "float32")
    backward = NTM(**SMALL, go_backwards=True)
    backward(x)
    _same_weights(forward, backward)
    np.testing.assert_allclose(to_numpy(backward(x), "float32"), y, atol=1e-6)


def test_symbolic_shapes_when_time_is_unknown():
    inputs = keras.Input((None, I))
    y, reads, writes = NTM(**SMALL, return_sequences=True, return_weightings=True)(inputs)
    assert tuple(y.shape) == (None, None, O)
    assert tuple(reads.shape) == (None, None, R, N)
    assert tuple(writes.shape) == (None, None, 1, N)
    assert keras.backend.standardize_dtype(reads.dtype) == "float32"


def test_constructor_arguments_are_public_attributes():
    ntm = NTM(**SMALL, shift_range=2, controller="dense", clip_value=5.0, seed=7)
    assert (ntm.controller_units, ntm.memory_size, ntm.memory_width) == (U, N, W)
    assert (ntm.shift_range, ntm.controller, ntm.clip_value, ntm.seed) == (2, "dense", 5.0, 7)
    assert ntm.get_config()["shift_range"] == 2


def test_invalid_arguments_and_inputs():
    with pytest.raises(ValueError, match="`memory_size`, expected a positive integer. Received: memory_size=0"):
        NTM(memory_size=0)
    with pytest.raises(ValueError, match=r"shift_range.*Received: shift_range=8"):
        NTM(memory_size=8, shift_range=8)
    with pytest.raises(ValueError, match="`num_read_heads`, expected a positive integer"):
        NTM(num_read_heads=0)
    with pytest.raises(ValueError, match="`sequences`, expected a tensor of rank 3"):
        NTM(**SMALL)(_x((B, I)))
    with pytest.raises(ValueError, match="`sequences`, expected a known last axis"):
        NTM(**SMALL).build((B, T, None))
    ntm = NTM(**SMALL)
    ntm(_x((B, T, I)))
    with pytest.raises(ValueError, match="expected the last axis to have size 6"):
        ntm(_x((B, T, I + 2)))
