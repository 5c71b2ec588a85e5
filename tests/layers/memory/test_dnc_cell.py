"""DNCCell: harness, RNN-cell contract, a NumPy reference step, bad input."""

import keras
import numpy as np
import pytest
from backend_utils import jax_rnn_masking_known_failure
from harness import run_layer_test
from keras import ops

from keras_attention.layers import DNCCell

B, F, U, N, W, R, K, Y = 3, 4, 6, 7, 5, 2, 2, 3
SMALL = dict(
    controller_units=U,
    memory_size=N,
    memory_width=W,
    num_read_heads=R,
    num_write_heads=K,
    output_dim=Y,
)
MEMORY_STATES = [N * W, R * W, R * N, K * N, N, K * N, K * N * N]


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def test_dnc_cell_harness():
    run_layer_test(
        DNCCell,
        SMALL,
        _x(B, F),
        expected_output_shape=[(B, Y), [(B, U), (B, U)] + [(B, s) for s in MEMORY_STATES]],
        expected_num_trainable_weights=7,  # LSTM 3 + interface 2 + output 2
        expected_num_non_trainable_weights=0,
    )


def test_dnc_cell_harness_dense_controller_with_weightings():
    kwargs = dict(SMALL, controller="dense", output_dim=None, return_weightings=True)
    size = U + R * W + R * N + K * N + N + K * N * N
    run_layer_test(
        DNCCell,
        kwargs,
        _x(B, F),
        expected_output_shape=[(B, size), [(B, s) for s in MEMORY_STATES]],
        expected_num_trainable_weights=4,  # dense 2 + interface 2
        run_training=False,  # the compiled fit step runs in the first test
        float32_outputs=(0,),  # with return_weightings the output is float32
    )


# ---------------------------------------------------------------------------
# The RNN-cell contract.


@pytest.mark.parametrize("controller", ["lstm", "dense"])
def test_state_and_output_sizes(controller):
    cell = DNCCell(**dict(SMALL, controller=controller))
    expected = ([U, U] if controller == "lstm" else []) + MEMORY_STATES
    assert cell.state_size == expected
    assert cell.output_size == Y
    assert DNCCell(**dict(SMALL, output_dim=None)).output_size == U + R * W
    init = cell.get_initial_state(batch_size=B)
    assert [tuple(s.shape) for s in init] == [(B, s) for s in expected]
    assert all(np.all(ops.convert_to_numpy(s) == 0) for s in init)
    out, states = cell(_x(B, F), init)
    assert tuple(out.shape) == (B, cell.output_size)
    assert [tuple(s.shape) for s in states] == [(B, s) for s in expected]
    # interface: R*W keys + R strengths + 3KW + 3K + R free + R(2K+1) modes
    assert cell.interface_size == R * W + R + 3 * K * W + 3 * K + R + R * (2 * K + 1)
    assert cell.interface_layer.kernel.shape == (U, cell.interface_size)


def test_return_weightings_split_output():
    cell = DNCCell(**dict(SMALL, return_weightings=True))
    rnn = keras.layers.RNN(cell, return_sequences=True)
    T = 4
    out = rnn(_x(B, T, F))
    assert tuple(out.shape) == (B, T, cell.output_size)
    parts = cell.split_output(out)
    assert tuple(parts["output"].shape) == (B, T, Y)
    assert tuple(parts["read_weightings"].shape) == (B, T, R, N)
    assert tuple(parts["write_weightings"].shape) == (B, T, K, N)
    assert tuple(parts["usage"].shape) == (B, T, N)
    assert tuple(parts["link"].shape) == (B, T, K, N, N)
    # The inspected weightings are the ones carried in the state.
    step_out, states = cell(_x(B, F), cell.get_initial_state(B))
    step = cell.split_output(step_out)
    np.testing.assert_allclose(
        ops.convert_to_numpy(step["usage"]), ops.convert_to_numpy(states[6]), atol=1e-6
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(step["link"]).reshape(B, -1),
        ops.convert_to_numpy(states[8]),
        atol=1e-6,
    )


def test_split_output_needs_return_weightings():
    cell = DNCCell(**SMALL)
    with pytest.raises(ValueError, match="needs a cell built with `return_weightings=True`"):
        cell.split_output(np.zeros((B, Y), "float32"))


def test_rnn_return_sequences_matches_last_output():
    cell = DNCCell(**SMALL)
    x = _x(B, 5, F)
    seq = keras.layers.RNN(cell, return_sequences=True)(x)
    last = keras.layers.RNN(cell)(x)  # same cell, same weights
    np.testing.assert_allclose(
        ops.convert_to_numpy(seq)[:, -1], ops.convert_to_numpy(last), atol=1e-6
    )


@jax_rnn_masking_known_failure()
def test_rnn_masking_skips_padded_steps():
    cell = DNCCell(**SMALL)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    x = _x(B, 4, F)
    pad = np.zeros((B, 3, F), "float32")
    padded = np.concatenate([pad, x], axis=1)  # 3 leading padded steps
    mask = np.concatenate([np.zeros((B, 3), bool), np.ones((B, 4), bool)], axis=1)
    want = ops.convert_to_numpy(rnn(x))
    got = ops.convert_to_numpy(rnn(padded, mask=mask))
    np.testing.assert_allclose(got[:, 3:], want, atol=1e-5)
    # Trailing padding: masked steps repeat the last output.
    tail = np.concatenate([x, pad], axis=1)
    tail_mask = mask[:, ::-1]
    got_tail = ops.convert_to_numpy(rnn(tail, mask=tail_mask))
    np.testing.assert_allclose(got_tail[:, :4], want, atol=1e-5)
    for t in range(4, 7):
        np.testing.assert_allclose(got_tail[:, t], want[:, -1], atol=1e-5)


def test_rnn_stateful_continues_the_sequence():
    x = _x(B, 6, F)
    cell = DNCCell(**SMALL)
    full = keras.layers.RNN(cell, return_sequences=True)
    want = ops.convert_to_numpy(full(x))
    stateful = keras.layers.RNN(cell, return_sequences=True, stateful=True)
    first = ops.convert_to_numpy(stateful(x[:, :3]))
    second = ops.convert_to_numpy(stateful(x[:, 3:]))
    np.testing.assert_allclose(np.concatenate([first, second], 1), want, atol=1e-5)
    stateful.reset_state()
    fresh = ops.convert_to_numpy(stateful(x[:, 3:]))
    np.testing.assert_allclose(
        fresh, ops.convert_to_numpy(full(x[:, 3:])), atol=1e-5
    )


def test_states_keep_their_dtype_under_mixed_precision():
    cell = DNCCell(**SMALL, dtype="mixed_float16")
    states32 = [ops.zeros((B, s), "float32") for s in cell.state_size]
    out, states = cell(_x(B, F), states32)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert all(keras.backend.standardize_dtype(s.dtype) == "float32" for s in states)
    states16 = [ops.zeros((B, s), "float16") for s in cell.state_size]
    _, states = cell(_x(B, F), states16)
    assert all(keras.backend.standardize_dtype(s.dtype) == "float16" for s in states)


# ---------------------------------------------------------------------------
# One cell step against an independent NumPy DNC step (feed-forward controller,
# two write heads), written from the paper's Methods.


def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_content(mem, key, beta, eps):
    sim = mem @ key / np.maximum(np.linalg.norm(mem, axis=1) * np.linalg.norm(key), eps)
    return _np_softmax(beta * sim)


def _np_allocation(u):
    phi = np.argsort(u, kind="stable")
    a = np.zeros_like(u)
    running = 1.0
    for j in phi:
        a[j] = (1 - u[j]) * running
        running *= u[j]
    return a


def _np_step(x, st, w, clip, eps):
    """One DNC step for one batch element; `st` is a dict of float64 arrays."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    oneplus = lambda z: 1 + np.log1p(np.exp(z))  # noqa: E731
    chi = np.concatenate([x, st["reads"].reshape(-1)])
    h = np.clip(np.tanh(chi @ w["ck"] + w["cb"]), -clip, clip)
    xi = h @ w["ik"] + w["ib"]
    cut, pos = {}, 0
    for name, size in [
        ("rk", R * W), ("rb", R), ("wk", K * W), ("wb", K), ("e", K * W),
        ("v", K * W), ("f", R), ("ga", K), ("gw", K), ("pi", R * (2 * K + 1)),
    ]:
        cut[name] = xi[pos : pos + size]
        pos += size
    rk, rb = cut["rk"].reshape(R, W), oneplus(cut["rb"])
    wk, wb = cut["wk"].reshape(K, W), oneplus(cut["wb"])
    e, v = sig(cut["e"]).reshape(K, W), cut["v"].reshape(K, W)
    f, ga, gw = sig(cut["f"]), sig(cut["ga"]), sig(cut["gw"])
    pi = _np_softmax(cut["pi"].reshape(R, 2 * K + 1))

    # u_t = (u + w - u w) psi, several heads: w = 1 - prod(1 - w_k)
    w_prev = 1 - np.prod(1 - st["ww"], axis=0)
    psi = np.prod([1 - f[i] * st["rw"][i] for i in range(R)], axis=0)
    u = (st["u"] + w_prev - st["u"] * w_prev) * psi
    mem = st["mem"]
    usage, ww = u.copy(), np.zeros((K, N))
    for k in range(K):
        a = _np_allocation(usage)
        usage = usage + (1 - usage) * ga[k] * gw[k] * a
        c = _np_content(mem, wk[k], wb[k], eps)
        ww[k] = gw[k] * (ga[k] * a + (1 - ga[k]) * c)
    keep = np.prod([1 - np.outer(ww[k], e[k]) for k in range(K)], axis=0)
    mem = mem * keep + sum(np.outer(ww[k], v[k]) for k in range(K))
    link, prec = np.zeros_like(st["link"]), np.zeros_like(st["prec"])
    for k in range(K):
        for i in range(N):
            for j in range(N):
                if i != j:
                    link[k, i, j] = (1 - ww[k, i] - ww[k, j]) * st["link"][k, i, j] + (
                        ww[k, i] * st["prec"][k, j]
                    )
        prec[k] = (1 - ww[k].sum()) * st["prec"][k] + ww[k]
    rw = np.zeros((R, N))
    for i in range(R):
        c = _np_content(mem, rk[i], rb[i], eps)
        rw[i] = pi[i, K] * c
        for k in range(K):
            rw[i] += pi[i, k] * (link[k].T @ st["rw"][i])  # backward
            rw[i] += pi[i, K + 1 + k] * (link[k] @ st["rw"][i])  # forward
    reads = rw @ mem
    y = np.concatenate([h, reads.reshape(-1)]) @ w["ok"] + w["ob"]
    y = np.clip(y, -clip, clip)
    new = dict(mem=mem, reads=reads, rw=rw, ww=ww, u=u, prec=prec, link=link)
    return y, new


def test_cell_steps_equal_numpy_reference():
    clip, eps = 0.5, 1e-6  # a small clip so clipping is exercised
    cell = DNCCell(
        **dict(SMALL, controller="dense", clip_value=clip, epsilon=eps),
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.7, seed=3),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=4),
    )
    T = 4
    x = _x(B, T, F, seed=5)
    states = cell.get_initial_state(B)
    outs = []
    for t in range(T):
        out, states = cell(x[:, t], states)
        outs.append(ops.convert_to_numpy(out))
    final = [ops.convert_to_numpy(s) for s in states]
    to64 = lambda v: ops.convert_to_numpy(v).astype("float64")  # noqa: E731
    w = dict(
        ck=to64(cell.controller_layer.kernel), cb=to64(cell.controller_layer.bias),
        ik=to64(cell.interface_layer.kernel), ib=to64(cell.interface_layer.bias),
        ok=to64(cell.output_layer.kernel), ob=to64(cell.output_layer.bias),
    )
    assert np.any(np.abs(np.stack(outs)) == clip)  # clipping happened somewhere
    for b in range(B):
        st = dict(
            mem=np.zeros((N, W)), reads=np.zeros((R, W)), rw=np.zeros((R, N)),
            ww=np.zeros((K, N)), u=np.zeros(N), prec=np.zeros((K, N)),
            link=np.zeros((K, N, N)),
        )
        for t in range(T):
            y, st = _np_step(x[b, t].astype("float64"), st, w, clip, eps)
            np.testing.assert_allclose(outs[t][b], y, rtol=1e-4, atol=1e-4)
        names = ["mem", "reads", "rw", "ww", "u", "prec", "link"]
        for got, name in zip(final, names):
            np.testing.assert_allclose(
                got[b], st[name].reshape(-1), rtol=1e-4, atol=1e-4, err_msg=name
            )


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(memory_size=0), "`memory_size`, expected a positive integer. Received: memory_size=0"),
        (dict(memory_width=-2), "`memory_width`, expected a positive integer"),
        (dict(num_read_heads=0), "`num_read_heads`, expected a positive integer. Received: num_read_heads=0"),
        (dict(num_write_heads=0), "`num_write_heads`, expected a positive integer. Received: num_write_heads=0"),
        (dict(controller_units=0), "`controller_units`, expected a positive integer"),
        (dict(controller="gru"), r"`controller`, expected one of \['dense', 'lstm'\]. Received: controller='gru'"),
        (dict(output_dim=0), "`output_dim`, expected a positive integer"),
        (dict(clip_value=0.0), "`clip_value`, expected a positive float"),
        (dict(epsilon=-1e-6), "`epsilon`, expected a positive float"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DNCCell(**kwargs)


def test_return_weightings_must_be_bool():
    with pytest.raises(TypeError, match="`return_weightings`, expected a bool"):
        DNCCell(return_weightings=1)


def test_wrong_input_width_after_build():
    cell = DNCCell(**SMALL)
    cell(_x(B, F))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 4"):
        cell(_x(B, F + 1))


def test_wrong_input_rank_and_unknown_width():
    with pytest.raises(ValueError, match=r"expected a tensor of rank 2. Received: inputs.shape=\(3, 2, 4\)"):
        DNCCell(**SMALL).build((3, 2, 4))
    with pytest.raises(ValueError, match="expected a known last axis"):
        DNCCell(**SMALL).build((3, None))
