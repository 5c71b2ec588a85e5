import keras
import numpy as np
import pytest
from keras import ops

from backend_utils import compiled
from harness import run_layer_test
from keras_attention.layers import RotaryEmbedding


def test_harness():
    run_layer_test(
        RotaryEmbedding,
        {"max_wavelength": 10000, "scaling_factor": 2.0},
        np.random.rand(2, 5, 3, 4).astype("float32"),
        expected_output_shape=(2, 5, 3, 4),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def rotation_matrix(position, dim, max_wavelength=10000.0):
    """RoFormer's block-diagonal R(position) (eq. 15): 2x2 rotations per pair."""
    matrix = np.zeros((dim, dim))
    for i in range(dim // 2):
        angle = position * max_wavelength ** (-2 * i / dim)
        c, s = np.cos(angle), np.sin(angle)
        matrix[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, -s], [s, c]]
    return matrix


def reference(x, start=0, max_wavelength=10000.0, scaling_factor=1.0):
    """Rotate `(B, T, ..., D)` features of position `t` by R(start + t)."""
    out = np.zeros(x.shape)
    for t in range(x.shape[1]):
        r = rotation_matrix((start + t) / scaling_factor, x.shape[-1], max_wavelength)
        out[:, t] = x[:, t] @ r.T
    return out


@pytest.mark.parametrize(
    "shape,kwargs,start",
    [
        ((2, 6, 3, 8), {}, 0),
        ((2, 6, 8), {}, 5),
        ((1, 4, 2, 2, 6), {"max_wavelength": 100, "scaling_factor": 4.0}, 3),
    ],
)
def test_equals_roformer_rotation(shape, kwargs, start):
    x = np.random.rand(*shape).astype("float32")
    out = ops.convert_to_numpy(RotaryEmbedding(**kwargs)(x, start_index=start))
    expected = reference(
        x.astype("float64"),
        start,
        kwargs.get("max_wavelength", 10000.0),
        kwargs.get("scaling_factor", 1.0),
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_dot_products_depend_only_on_relative_position():
    dim, length = 8, 12
    q = np.random.randn(dim).astype("float32")
    k = np.random.randn(dim).astype("float32")
    layer = RotaryEmbedding()
    # The same q (and k) at every position, (B, T, H, D) = (1, T, 1, D).
    q_rot = ops.convert_to_numpy(layer(np.tile(q, (1, length, 1, 1))))[0, :, 0]
    k_rot = ops.convert_to_numpy(layer(np.tile(k, (1, length, 1, 1))))[0, :, 0]
    scores = q_rot @ k_rot.T  # (T, T), scores[m, n] = <R(m) q, R(n) k>
    for m in range(length):
        for n in range(length):
            # Equals q^T R(n - m) k: a function of n - m only.
            expected = q @ rotation_matrix(n - m, dim) @ k
            np.testing.assert_allclose(scores[m, n], expected, atol=1e-4)
    for c in range(1, 4):
        np.testing.assert_allclose(
            scores[: length - c, : length - c], scores[c:, c:], atol=1e-4
        )
    # The scores do change with the relative position (not a constant).
    assert np.ptp(scores[0]) > 1e-2


def test_rotation_preserves_norms_and_position_zero():
    x = np.random.randn(2, 5, 2, 6).astype("float32")
    out = ops.convert_to_numpy(RotaryEmbedding()(x))
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(out[:, 0], x[:, 0], atol=1e-7)


def test_tensor_start_index_in_compiled_decoding_loop_matches_full_pass():
    x = np.random.rand(2, 6, 2, 4).astype("float32")
    layer = RotaryEmbedding()
    full = ops.convert_to_numpy(layer(x))

    @compiled
    def decode():
        def body(i, acc):
            step = ops.slice(x, [0, i, 0, 0], [2, 1, 2, 4])  # (B, 1, H, D)
            rotated = layer(step, start_index=i)
            return i + 1, ops.slice_update(acc, [0, i, 0, 0], rotated)

        _, out = ops.while_loop(lambda i, acc: i < 6, body, (0, ops.zeros_like(x)))
        return out

    np.testing.assert_allclose(ops.convert_to_numpy(decode()), full, atol=1e-6)


def test_mixed_precision_keeps_shape_and_dtype():
    x = np.random.rand(1, 3, 2, 4).astype("float32")
    out = RotaryEmbedding(dtype="mixed_bfloat16")(x, start_index=100)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.cast(out, "float32")),
        reference(x.astype("float64"), 100),
        atol=3e-2,
    )


def test_mask_passes_through():
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True)(ids)
    y = RotaryEmbedding()(x)
    pooled = keras.layers.GlobalAveragePooling1D()(y)
    model = keras.Model(ids, [y, pooled])
    seq, pool = [ops.convert_to_numpy(t) for t in model(np.array([[2, 3, 0]]))]
    np.testing.assert_allclose(pool[0], seq[0, :2].mean(0), atol=1e-6)


@pytest.mark.parametrize("name", ["max_wavelength", "scaling_factor"])
@pytest.mark.parametrize("bad", [0, -1.5])
def test_invalid_floats(name, bad):
    with pytest.raises(
        ValueError, match=rf"`{name}`, expected a positive float. Received: {name}={bad!r}"
    ):
        RotaryEmbedding(**{name: bad})


def test_odd_feature_size():
    with pytest.raises(ValueError, match=r"expected an even feature size.*\(1, 3, 2, 5\)"):
        RotaryEmbedding()(np.zeros((1, 3, 2, 5), "float32"))
    with pytest.raises(ValueError, match=r"expected an even feature size"):
        RotaryEmbedding()(keras.Input((3, 5)))


def test_invalid_rank_and_unknown_features():
    with pytest.raises(ValueError, match=r"`inputs`, expected a tensor of rank >= 3"):
        RotaryEmbedding()(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match=r"`inputs`, expected a tensor with a known last axis"):
        RotaryEmbedding()(keras.Input((3, None)))


def test_negative_start_index():
    with pytest.raises(ValueError, match=r"`start_index`, expected a non-negative integer"):
        RotaryEmbedding()(np.zeros((1, 3, 4), "float32"), start_index=-2)
