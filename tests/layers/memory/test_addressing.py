"""NTM addressing maths against NumPy references of Graves et al. 2014.

Dimensions all differ so that a transposed axis cannot pass unnoticed:
B=3 batch, H=2 heads, N=7 slots, W=5 width, S=3 or 5 shift offsets.
"""

import numpy as np
import pytest
from backend_utils import gradients, to_numpy
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from keras import ops

from keras_attention.layers.memory import addressing

B, H, N, W = 3, 2, 7, 5


def _distribution(rng, shape, scale=1.0):
    logits = scale * rng.normal(size=shape)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype("float32")


def _inputs(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {
        "memory": (scale * rng.normal(size=(B, N, W))).astype("float32"),
        "previous": _distribution(rng, (B, H, N), scale=3.0),
        "keys": (scale * rng.normal(size=(B, H, W))).astype("float32"),
        "strengths": rng.uniform(0.1, 20.0, size=(B, H)).astype("float32"),
        "gates": rng.uniform(0, 1, size=(B, H)).astype("float32"),
        "shifts": _distribution(rng, (B, H, 3)),
        "gammas": rng.uniform(1.0, 20.0, size=(B, H)).astype("float32"),
    }


# ----------------------------------------------------------- NumPy references
def np_content(memory, keys, strengths, eps=1e-6):
    out = np.zeros((B, H, N))
    for b in range(B):
        for h in range(H):
            k = keys[b, h].astype("float64")
            logits = np.empty(N)
            for i in range(N):
                m = memory[b, i].astype("float64")
                denom = max(np.linalg.norm(k), eps) * max(np.linalg.norm(m), eps)
                logits[i] = strengths[b, h] * (k @ m) / denom
            e = np.exp(logits - logits.max())
            out[b, h] = e / e.sum()
    return out


def np_shift(w, s):
    """w~(i) = sum_j w(j) s(i - j), offsets -R..R stored at index offset + R."""
    radius = (s.shape[-1] - 1) // 2
    n = w.shape[-1]
    out = np.zeros_like(w, dtype="float64")
    for i in range(n):
        for j in range(n):
            for offset in range(-radius, radius + 1):
                if (i - j) % n == offset % n:
                    out[..., i] += w[..., j] * s[..., offset + radius]
    return out


def np_sharpen(w, gamma):
    p = w.astype("float64") ** gamma[..., None]
    return p / p.sum(-1, keepdims=True)


# ------------------------------------------------------------------- tests
def test_guarded_norm():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-8, 0.0]], "float32")
    np.testing.assert_allclose(
        to_numpy(addressing.guarded_norm(x, 1e-6), "float64"), [5.0, 1e-6, 1e-6], rtol=1e-6
    )


def test_cosine_similarity_matches_numpy_and_is_bounded():
    x = _inputs(0)
    sim = to_numpy(addressing.cosine_similarity(x["memory"], x["keys"]), "float64")
    assert sim.shape == (B, H, N)
    k, m = x["keys"].astype("float64"), x["memory"].astype("float64")
    expected = np.einsum("bhw,bnw->bhn", k, m) / (
        np.linalg.norm(k, axis=-1)[:, :, None] * np.linalg.norm(m, axis=-1)[:, None, :]
    )
    np.testing.assert_allclose(sim, expected, atol=1e-5)
    assert np.all(np.abs(sim) <= 1 + 1e-6)


def test_content_weighting_matches_numpy():
    x = _inputs(1)
    got = to_numpy(addressing.content_weighting(x["memory"], x["keys"], x["strengths"]), "float64")
    want = np_content(x["memory"], x["keys"], x["strengths"])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_content_weighting_zero_key_and_zero_rows_are_finite():
    x = _inputs(2)
    memory = x["memory"].copy()
    memory[:, 3] = 0.0  # an all-zero slot
    keys = x["keys"].copy()
    keys[0, 1] = 0.0  # an all-zero key
    got = to_numpy(addressing.content_weighting(memory, keys, x["strengths"]), "float64")
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[0, 1], np.full(N, 1 / N), atol=1e-6)  # no match -> uniform
    np.testing.assert_allclose(got, np_content(memory, keys, x["strengths"]), atol=1e-5)


def test_content_weighting_prefers_the_matching_row():
    x = _inputs(3)
    keys = x["memory"][:, [4, 1]]  # head 0 looks for slot 4, head 1 for slot 1
    got = to_numpy(
        addressing.content_weighting(x["memory"], keys, np.full((B, H), 50.0, "float32")), "float64"
    )
    np.testing.assert_array_equal(got.argmax(-1), np.tile([4, 1], (B, 1)))


def test_key_strength_and_sharpening_exponent():
    x = np.array([-30.0, -1.0, 0.0, 2.0, 30.0], "float32")
    beta = to_numpy(addressing.key_strength(x), "float64")
    gamma = to_numpy(addressing.sharpening_exponent(x), "float64")
    np.testing.assert_allclose(beta, np.log1p(np.exp(x.astype("float64"))), rtol=1e-5, atol=1e-12)
    assert np.all(beta > 0)
    np.testing.assert_allclose(gamma, 1 + np.log1p(np.exp(x.astype("float64"))), rtol=1e-5)
    assert np.all(gamma >= 1)


def test_interpolate_matches_numpy_and_keeps_a_distribution():
    x = _inputs(4)
    rng = np.random.default_rng(4)
    content = _distribution(rng, (B, H, N))
    got = to_numpy(addressing.interpolate(content, x["previous"], x["gates"]), "float64")
    g = x["gates"][:, :, None]
    np.testing.assert_allclose(got, g * content + (1 - g) * x["previous"], atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)
    # Gate 1 keeps the content weighting, gate 0 the previous weighting.
    ones, zeros = np.ones((B, H), "float32"), np.zeros((B, H), "float32")
    np.testing.assert_allclose(
        to_numpy(addressing.interpolate(content, x["previous"], ones), "float64"),
        content,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        to_numpy(addressing.interpolate(content, x["previous"], zeros), "float64"),
        x["previous"],
        atol=1e-7,
    )


@pytest.mark.parametrize("num_offsets", [1, 3, 5])
def test_circular_shift_matches_numpy(num_offsets):
    rng = np.random.default_rng(num_offsets)
    w = _distribution(rng, (B, H, N))
    s = _distribution(rng, (B, H, num_offsets))
    got = to_numpy(addressing.circular_shift(w, s), "float64")
    np.testing.assert_allclose(got, np_shift(w, s), atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)


def test_circular_shift_wraps_around():
    w = np.zeros((B, H, N), "float32")
    w[:, 0, N - 1] = 1.0  # head 0 focused on the last slot
    w[:, 1, 0] = 1.0  # head 1 focused on the first slot
    s = np.zeros((B, H, 3), "float32")
    s[:, 0, 2] = 1.0  # offset +1
    s[:, 1, 0] = 1.0  # offset -1
    got = to_numpy(addressing.circular_shift(w, s), "float64")
    np.testing.assert_array_equal(got[:, 0].argmax(-1), 0)  # last -> first
    np.testing.assert_array_equal(got[:, 1].argmax(-1), N - 1)  # first -> last
    np.testing.assert_allclose(got.max(-1), 1.0)
    # Shifting by +1 N times is the identity.
    plus_one = np.zeros((B, H, 3), "float32")
    plus_one[..., 2] = 1.0
    rng = np.random.default_rng(0)
    start = _distribution(rng, (B, H, N))
    rolled = start
    for _ in range(N):
        rolled = addressing.circular_shift(rolled, plus_one)
    np.testing.assert_allclose(to_numpy(rolled, "float64"), start, atol=1e-6)


def test_sharpen_matches_numpy_and_keeps_a_distribution():
    x = _inputs(5)
    rng = np.random.default_rng(5)
    w = _distribution(rng, (B, H, N))
    got = to_numpy(addressing.sharpen(w, x["gammas"]), "float64")
    np.testing.assert_allclose(got, np_sharpen(w, x["gammas"]), atol=1e-4)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)
    # gamma = 1 is (almost exactly) the identity; larger gamma raises the peak.
    ident = to_numpy(addressing.sharpen(w, np.ones((B, H), "float32")), "float64")
    np.testing.assert_allclose(ident, w, atol=1e-5)
    assert np.all(got.max(-1) >= w.max(-1) - 1e-6)


def test_sharpen_does_not_underflow():
    # (1/128)^21 is below float32's range: the naive w^g / sum(w^g) is 0/0.
    w = np.full((1, 1, 128), 1 / 128, "float32")
    got = to_numpy(addressing.sharpen(w, np.full((1, 1), 21.0, "float32")), "float64")
    np.testing.assert_allclose(got, 1 / 128, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-6, 1.0, 30.0]))
def test_address_gives_distributions(seed, scale):
    x = _inputs(seed, scale)
    w = to_numpy(addressing.address(**x), "float64")
    assert w.shape == (B, H, N)
    assert np.all(np.isfinite(w))
    assert np.all(w >= 0) and np.all(w <= 1 + 1e-6)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)


def test_address_matches_numpy_pipeline():
    x = _inputs(6)
    content = np_content(x["memory"], x["keys"], x["strengths"])
    g = x["gates"][:, :, None]
    gated = g * content + (1 - g) * x["previous"]
    want = np_sharpen(np_shift(gated, x["shifts"]), x["gammas"])
    np.testing.assert_allclose(to_numpy(addressing.address(**x), "float64"), want, atol=1e-4)


def test_read_memory_matches_numpy():
    x = _inputs(7)
    got = to_numpy(addressing.read_memory(x["memory"], x["previous"]), "float64")
    want = np.einsum("bhn,bnw->bhw", x["previous"], x["memory"])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_write_memory_matches_numpy_for_two_write_heads():
    x = _inputs(8)
    rng = np.random.default_rng(8)
    erase = rng.uniform(0, 1, (B, H, W)).astype("float32")
    add = rng.normal(size=(B, H, W)).astype("float32")
    got = to_numpy(addressing.write_memory(x["memory"], x["previous"], erase, add), "float64")
    want = x["memory"].astype("float64").copy()
    for b in range(B):
        for i in range(N):
            keep = np.ones(W)
            for h in range(H):
                keep *= 1 - x["previous"][b, h, i] * erase[b, h]
            want[b, i] = want[b, i] * keep + sum(x["previous"][b, h, i] * add[b, h] for h in range(H))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_write_with_a_sharp_weighting_replaces_one_row():
    x = _inputs(9)
    w = np.zeros((B, 1, N), "float32")
    w[:, 0, 2] = 1.0
    add = np.arange(B * W, dtype="float32").reshape(B, 1, W)
    got = to_numpy(
        addressing.write_memory(x["memory"], w, np.ones((B, 1, W), "float32"), add), "float64"
    )
    np.testing.assert_allclose(got[:, 2], add[:, 0], atol=1e-6)
    untouched = [i for i in range(N) if i != 2]
    np.testing.assert_allclose(got[:, untouched], x["memory"][:, untouched], atol=1e-6)


def test_gradients_finite_with_constant_memory_and_zero_keys():
    x = _inputs(10)
    x["memory"] = np.full((B, N, W), 1e-6, "float32")  # the default initialisation
    x["keys"] = np.zeros((B, H, W), "float32")  # e.g. a zero controller output
    erase = np.full((B, H, W), 0.5, "float32")
    add = np.ones((B, H, W), "float32")

    def loss(*values):
        tensors = dict(zip(x, values))
        w = addressing.address(**tensors)
        read = addressing.read_memory(tensors["memory"], w)
        new_memory = addressing.write_memory(tensors["memory"], w, erase, add)
        w2 = addressing.address(new_memory, w, tensors["keys"] + 0.1, *values[3:])
        return ops.sum(read) + ops.sum(w2 * ops.arange(N, dtype="float32"))

    grads = dict(zip(x, gradients(loss, list(x.values()))))
    for name, grad in grads.items():
        assert grad is not None, name
        assert np.all(np.isfinite(grad)), name


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_halving_product_equals_the_product_and_its_gradient(n, axis):
    shape = [3, 4, 2]
    shape[axis] = n
    x = np.random.default_rng(n).uniform(0.5, 1.5, shape).astype("float32")
    x[(0,) * len(shape)] = 0.0  # a zero: the gradient may not divide by x
    got = ops.convert_to_numpy(addressing.halving_product(x, axis))
    np.testing.assert_allclose(got, np.prod(x, axis=axis), rtol=1e-6)
    (grad,) = gradients(lambda t: ops.sum(addressing.halving_product(t, axis)), [x])
    # d/dx_i prod_j x_j = prod_{j != i} x_j, by leaving each entry out.
    moved = np.moveaxis(x, axis, 0)
    expected = np.stack([
        np.prod(np.delete(moved, i, axis=0), axis=0) for i in range(n)
    ])
    np.testing.assert_allclose(grad, np.moveaxis(expected, 0, axis), rtol=1e-5)


def test_halving_product_needs_a_static_axis():
    import keras

    with pytest.raises(ValueError, match="static length >= 1 along axis 1"):
        addressing.halving_product(keras.KerasTensor((2, None)), axis=1)
