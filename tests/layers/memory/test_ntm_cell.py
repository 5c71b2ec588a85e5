"""NTMCell: Keras contract, a NumPy reference step, the RNN-cell contract,
parameter count, and argument validation."""

import keras
import numpy as np
import pytest
from backend_utils import jax_rnn_masking_known_failure
from harness import run_layer_test
from keras import ops

from keras_attention.layers import NTMCell

# All sizes differ: batch, input, controller, slots, width, read heads, output.
B, I, U, N, W, R, O = 3, 6, 16, 7, 5, 2, 4


def _x(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


def test_harness_single_step():
    # Called without states the cell runs one step from its initial state
    # and returns (output, [h, c, memory, reads, weightings]).
    run_layer_test(
        NTMCell,
        {
            "controller_units": U,
            "memory_size": N,
            "memory_width": W,
            "num_read_heads": R,
            "output_dim": O,
        },
        _x((B, I)),
        expected_output_shape=((B, O), (B, U), (B, U), (B, N * W), (B, R * W), (B, (R + 1) * N)),
        # LSTM kernel/recurrent/bias, heads kernel/bias, output kernel/bias,
        # initial read vectors, initial weighting logits.
        expected_num_trainable_weights=9,
        expected_num_non_trainable_weights=0,
        float32_outputs=(3, 4, 5),  # memory, reads, weightings stay float32
        jit_compile=False,  # the NTM layer's harness test covers XLA
    )


# ------------------------------------------------------------ NumPy reference
def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(x))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_step(cell, x, states, clip):
    """One NTM step from Graves et al. 2014, written independently."""
    w_ = {v.path.split("/")[-2] + "/" + v.name: np.asarray(v.numpy(), "float64") for v in cell.weights}
    h, c, memory, reads, weightings = [np.asarray(s, "float64") for s in states]
    n, width, heads, k = cell.memory_size, cell.memory_width, cell.num_heads, cell.num_write_heads
    r, shifts = cell.num_read_heads, 2 * cell.shift_range + 1
    memory = memory.reshape(-1, n, width)
    previous = weightings.reshape(-1, heads, n)
    # LSTM controller on [x, r_{t-1}] (gate order i, f, c, o).
    z = (
        np.concatenate([x, reads], -1) @ w_["controller/kernel"]
        + h @ w_["controller/recurrent_kernel"]
        + w_["controller/bias"]
    )
    zi, zf, zc, zo = np.split(z, 4, axis=-1)
    c = _sigmoid(zf) * c + _sigmoid(zi) * np.tanh(zc)
    h = _sigmoid(zo) * np.tanh(c)
    hidden = np.clip(h, -clip, clip)
    params = np.clip(hidden @ w_["head_parameters/kernel"] + w_["head_parameters/bias"], -clip, clip)
    a = width + shifts + 3
    addr = params[:, : heads * a].reshape(-1, heads, a)
    key = np.tanh(addr[..., :width])
    beta = _softplus(addr[..., width])
    gate = _sigmoid(addr[..., width + 1])
    shift = _softmax(addr[..., width + 2 : width + 2 + shifts])
    gamma = 1 + _softplus(addr[..., -1])
    rest = params[:, heads * a :]
    erase = _sigmoid(rest[:, : k * width]).reshape(-1, k, width)
    add = np.tanh(rest[:, k * width :]).reshape(-1, k, width)
    # Addressing, head by head.
    new_w = np.zeros_like(previous)
    for b in range(previous.shape[0]):
        for j in range(heads):
            cos = np.array(
                [
                    key[b, j] @ memory[b, i]
                    / (max(np.linalg.norm(key[b, j]), 1e-6) * max(np.linalg.norm(memory[b, i]), 1e-6))
                    for i in range(n)
                ]
            )
            wc = _softmax(beta[b, j] * cos)
            wg = gate[b, j] * wc + (1 - gate[b, j]) * previous[b, j]
            ws = np.array(
                [
                    sum(wg[(i - o) % n] * shift[b, j, o + cell.shift_range] for o in range(-cell.shift_range, cell.shift_range + 1))
                    for i in range(n)
                ]
            )
            p = (ws + 1e-6) ** gamma[b, j]
            new_w[b, j] = p / p.sum()
    new_reads = np.einsum("brn,bnw->brw", new_w[:, :r], memory).reshape(-1, r * width)
    ww = new_w[:, r:]
    keep = np.prod(1 - ww[..., None] * erase[:, :, None, :], axis=1)
    new_memory = memory * keep + np.einsum("bkn,bkw->bnw", ww, add)
    features = np.concatenate([hidden, new_reads], -1)
    y = np.clip(features @ w_["output_projection/kernel"] + w_["output_projection/bias"], -clip, clip)
    return y, [h, c, new_memory.reshape(-1, n * width), new_reads, new_w.reshape(-1, heads * n)]


@pytest.mark.parametrize("clip", [20.0, 0.3])
def test_two_steps_match_numpy_reference(clip):
    cell = NTMCell(U, N, W, num_read_heads=R, num_write_heads=2, shift_range=2, output_dim=O, clip_value=clip)
    x = _x((2, B, I), seed=1)
    cell.build((None, I))
    # Non-trivial weights everywhere (default biases are zero).
    rng = np.random.default_rng(2)
    for v in cell.weights:
        v.assign(v.numpy() + rng.normal(0, 0.3, v.shape).astype("float32"))
    states = [ops.convert_to_numpy(s) for s in cell.get_initial_state(B)]
    np_states = states
    for t in range(2):
        y, states = cell(x[t], states)
        states = [ops.convert_to_numpy(s) for s in states]
        y_np, np_states = _np_step(cell, x[t], np_states, clip)
        np.testing.assert_allclose(ops.convert_to_numpy(y), y_np, atol=2e-4)
        for got, want in zip(states, np_states):
            np.testing.assert_allclose(got, want, atol=2e-4)
        np_states = states  # continue from the same point


# ---------------------------------------------------------------- contract
def test_state_size_output_size_and_initial_state():
    cell = NTMCell(U, N, W, num_read_heads=R, output_dim=O)
    assert cell.state_size == [U, U, N * W, R * W, (R + 1) * N]
    assert cell.output_size == O
    cell.build((None, I))
    states = cell.get_initial_state(batch_size=B)
    assert [tuple(s.shape) for s in states] == [(B, s) for s in cell.state_size]
    assert [keras.backend.standardize_dtype(s.dtype) for s in states] == ["float32"] * 5
    h, c, memory, reads, weightings = [ops.convert_to_numpy(s) for s in states]
    np.testing.assert_array_equal(h, 0)
    np.testing.assert_array_equal(c, 0)
    np.testing.assert_allclose(memory, 1e-6)
    np.testing.assert_array_equal(reads, 0)
    weightings = weightings.reshape(B, R + 1, N)
    np.testing.assert_allclose(weightings.sum(-1), 1.0, atol=1e-6)
    assert np.all(weightings[..., 0] > 0.99)  # every head starts on slot 0

    dense = NTMCell(U, N, W, controller="dense", return_weightings=True)
    assert dense.state_size == [N * W, W, 2 * N]
    assert dense.output_size == U + W + 2 * N


@pytest.mark.parametrize("shift_range", [0, 1, 2])
def test_heads_start_with_a_forward_shift_bias(shift_range):
    # Every head's +1 shift logit starts 1 above the others (see NTMCell's
    # docstring: a symmetric start let a copy run's write head settle on
    # one slot); everything else keeps the bias initializer's zeros.
    cell = NTMCell(U, N, W, num_read_heads=R, num_write_heads=2, shift_range=shift_range)
    cell.build((None, I))
    bias = ops.convert_to_numpy(cell.head_parameters.bias)
    a = W + (2 * shift_range + 1) + 3
    want = np.zeros_like(bias)
    if shift_range:
        for head in range(R + 2):
            want[head * a + W + 2 + shift_range + 1] = 1.0  # offsets -s..+s
    np.testing.assert_array_equal(bias, want)
    if shift_range == 1:
        shifts = _softmax(bias[W + 2 : W + 5])
        np.testing.assert_allclose(shifts, [0.2119, 0.2119, 0.5761], atol=1e-4)


def test_memory_initialisations():
    learned = NTMCell(U, N, W, memory_init="learned")
    learned.build((None, I))
    assert learned.initial_memory.shape == (N, W)
    learned.initial_memory.assign(_x((N, W)))
    memory = ops.convert_to_numpy(learned.get_initial_state(B)[2])
    np.testing.assert_allclose(memory, np.tile(_x((N, W)).reshape(1, -1), (B, 1)))

    random_cell = NTMCell(U, N, W, memory_init="random", seed=3)
    random_cell.build((None, I))
    first = ops.convert_to_numpy(random_cell.get_initial_state(B)[2])
    second = ops.convert_to_numpy(random_cell.get_initial_state(B)[2])
    assert not np.allclose(first, second)  # a fresh draw per sequence
    assert 0.3 < first.std() < 0.6 and np.abs(first).max() <= 1.0 + 1e-6  # truncated at 2 sigma
    again = NTMCell(U, N, W, memory_init="random", seed=3)
    again.build((None, I))
    np.testing.assert_allclose(ops.convert_to_numpy(again.get_initial_state(B)[2]), first)


@jax_rnn_masking_known_failure()
def test_in_keras_rnn_with_sequences_masking_and_state():
    x = _x((B, 5, I), seed=4)
    cell = NTMCell(U, N, W, num_read_heads=R, output_dim=O)
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    outputs, *states = rnn(x)
    assert tuple(outputs.shape) == (B, 5, O)
    assert [tuple(s.shape) for s in states] == [(B, s) for s in cell.state_size]

    # Masked steps keep the states and repeat the previous output.
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
    masked, *masked_states = [ops.convert_to_numpy(t) for t in rnn(x, mask=mask)]
    for b, length in enumerate(mask.sum(1)):
        short, *short_states = [ops.convert_to_numpy(t) for t in rnn(x[b : b + 1, :length])]
        np.testing.assert_allclose(masked[b, :length], short[0], atol=1e-5)
        np.testing.assert_allclose(masked[b, length:], np.repeat(short[:, -1], 5 - length, 0), atol=1e-5)
        for got, want in zip(masked_states, short_states):
            np.testing.assert_allclose(got[b], want[0], atol=1e-5)


def test_stateful_keras_rnn_continues_the_sequence():
    x = _x((B, 6, I), seed=5)
    cell = NTMCell(U, N, W, output_dim=O)
    full = keras.layers.RNN(cell, return_sequences=True)
    expected = ops.convert_to_numpy(full(x))
    stateful = keras.layers.RNN(cell, return_sequences=True, stateful=True)
    first = stateful(x[:, :4])
    second = stateful(x[:, 4:])
    got = np.concatenate([ops.convert_to_numpy(first), ops.convert_to_numpy(second)], 1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_plain_keras_rnn_under_mixed_precision():
    # keras.layers.RNN casts every state to the compute dtype; the cell
    # returns each new state in the dtype it received, so the loop runs
    # (the NTM layer is the one that keeps the memory in float32).
    x = _x((B, 4, I), seed=6)
    reference = keras.layers.RNN(NTMCell(U, N, W, output_dim=O), return_sequences=True)
    want = ops.convert_to_numpy(reference(x))
    rnn = keras.layers.RNN(
        NTMCell(U, N, W, output_dim=O, dtype="mixed_float16"), return_sequences=True, return_state=True,
        dtype="mixed_float16",
    )
    rnn(x)
    rnn.set_weights(reference.get_weights())
    y, *states = rnn(x)
    assert [keras.backend.standardize_dtype(t.dtype) for t in (y, *states)] == ["float16"] * 6
    np.testing.assert_allclose(ops.convert_to_numpy(ops.cast(y, "float32")), want, atol=0.05)


# -------------------------------------------------------------------- size
def _lstm_ntm_params(i, u, n, w, r, k, shift_range, o, learned_memory=False):
    """Hand count: LSTM on [x, reads]; one dense layer for all head
    parameters (key w, strength, gate, 2s+1 shifts, gamma per head; erase and
    add w each per write head); output on [h, reads]; initial reads and
    weighting logits."""
    lstm = 4 * (u * (i + r * w) + u * u + u)
    per_head = w + 1 + 1 + (2 * shift_range + 1) + 1
    heads = (u + 1) * ((r + k) * per_head + k * 2 * w)
    output = (u + r * w + 1) * o
    initial = r * w + (r + k) * n + (n * w if learned_memory else 0)
    return lstm + heads + output + initial


def test_parameter_count_of_the_paper_copy_setting():
    # Graves et al. 2014, table 3: LSTM-100, 1 read + 1 write head, memory
    # 128 x 20, 8-bit copy: they report 67,561 (see NTMCell's docstring).
    for input_dim, expected in ((9, 62_536), (10, 62_936)):
        cell = NTMCell(100, 128, 20, output_dim=8)
        cell.build((None, input_dim))
        assert cell.count_params() == expected
        assert expected == _lstm_ntm_params(input_dim, 100, 128, 20, 1, 1, 1, 8)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_read_heads=2, num_write_heads=3, shift_range=2),
        dict(memory_init="learned"),
    ],
)
def test_parameter_count_formula(kwargs):
    cell = NTMCell(U, N, W, output_dim=O, **kwargs)
    cell.build((None, I))
    expected = _lstm_ntm_params(
        I, U, N, W, kwargs.get("num_read_heads", 1), kwargs.get("num_write_heads", 1),
        kwargs.get("shift_range", 1), O, kwargs.get("memory_init") == "learned",
    )
    assert cell.count_params() == expected


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(memory_size=0), "`memory_size`, expected a positive integer. Received: memory_size=0"),
        (dict(memory_width=-2), "`memory_width`, expected a positive integer"),
        (dict(controller_units=0), "`controller_units`, expected a positive integer"),
        (dict(num_read_heads=0), "`num_read_heads`, expected a positive integer. Received: num_read_heads=0"),
        (dict(num_write_heads=0), "`num_write_heads`, expected a positive integer"),
        (dict(memory_size=5, shift_range=5), r"2 \* shift_range \+ 1 <= memory_size.*memory_size=5.*Received: shift_range=5"),
        (dict(memory_size=5, shift_range=3), r"shift_range.*Received: shift_range=3"),
        (dict(shift_range=-1), "`shift_range`, expected a non-negative integer"),
        (dict(controller="gru"), r"`controller`, expected one of \['dense', 'lstm'\]"),
        (dict(memory_init="zeros"), r"`memory_init`, expected one of"),
        (dict(clip_value=0), "`clip_value`, expected a positive float"),
        (dict(output_dim=0), "`output_dim`, expected a positive integer"),
        (dict(epsilon=0.0), "`epsilon`, expected a positive float"),
        (dict(seed=-1), "`seed`, expected a non-negative integer"),
    ],
)
def test_invalid_arguments(kwargs, match):
    args = dict(controller_units=U, memory_size=N, memory_width=W)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        NTMCell(**args)


def test_invalid_return_weightings_type():
    with pytest.raises(TypeError, match="`return_weightings`, expected a bool"):
        NTMCell(U, N, W, return_weightings=1)


def test_wrong_input_width_and_rank():
    cell = NTMCell(U, N, W)
    cell(_x((B, I)))
    with pytest.raises(ValueError, match=r"`inputs`, expected the last axis to have size 6"):
        cell(_x((B, I + 1)))
    with pytest.raises(ValueError, match="`inputs`, expected a tensor of rank 2"):
        NTMCell(U, N, W).build((B, 4, I))
    with pytest.raises(ValueError, match="`inputs`, expected a known last axis"):
        NTMCell(U, N, W).build((B, None))

