import math

import keras
import numpy as np
import pytest
from keras import ops

from backend_utils import compiled
from harness import run_layer_test
from keras_attention.layers import SinusoidalPositionEncoding


def test_harness():
    run_layer_test(
        SinusoidalPositionEncoding,
        {"max_wavelength": 10000},
        np.random.rand(2, 5, 6).astype("float32"),
        expected_output_shape=(2, 5, 6),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def reference(length, dim, start=0, max_wavelength=10000.0):
    """PE(pos, 2i) = sin(pos / w^(2i/d)), PE(pos, 2i+1) = cos(pos / w^(2i/d))."""
    table = np.zeros((length, dim))
    for p in range(length):
        for i in range(0, dim, 2):
            angle = (start + p) / max_wavelength ** (i / dim)
            table[p, i] = math.sin(angle)
            if i + 1 < dim:
                table[p, i + 1] = math.cos(angle)
    return table


@pytest.mark.parametrize("dim", [8, 5])
def test_equals_paper_formula(dim):
    x = np.random.rand(3, 11, dim).astype("float32")
    out = ops.convert_to_numpy(SinusoidalPositionEncoding()(x))
    assert out.shape == (3, 11, dim)
    for b in range(3):
        np.testing.assert_allclose(out[b], reference(11, dim), atol=1e-5)


def test_custom_wavelength_and_long_sequence():
    x = np.zeros((1, 300, 4), "float32")
    out = ops.convert_to_numpy(SinusoidalPositionEncoding(max_wavelength=50)(x))
    np.testing.assert_allclose(out[0], reference(300, 4, max_wavelength=50.0), atol=1e-4)


def test_start_index_int_and_tensor_shift_positions():
    layer = SinusoidalPositionEncoding()
    full = ops.convert_to_numpy(layer(np.zeros((1, 10, 6), "float32")))
    step = ops.convert_to_numpy(layer(np.zeros((1, 3, 6), "float32"), start_index=4))
    np.testing.assert_allclose(step, full[:, 4:7], atol=1e-6)
    tensor_step = layer(
        np.zeros((1, 1, 6), "float32"), start_index=ops.convert_to_tensor(7)
    )
    np.testing.assert_allclose(ops.convert_to_numpy(tensor_step), full[:, 7:8], atol=1e-6)


def test_start_index_tensor_inside_compiled_loop():
    layer = SinusoidalPositionEncoding()
    x = np.zeros((1, 1, 4), "float32")

    @compiled
    def total():
        return ops.fori_loop(
            0, 4, lambda i, acc: acc + layer(x, start_index=i), ops.zeros((1, 1, 4))
        )

    expected = reference(4, 4).sum(axis=0)
    np.testing.assert_allclose(ops.convert_to_numpy(total())[0, 0], expected, atol=1e-5)


def test_mask_passes_through():
    tokens = keras.Input((None,), dtype="int32")
    emb = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
    pe = SinusoidalPositionEncoding()(emb)
    summed = keras.layers.Add()([emb, pe])
    pooled = keras.layers.GlobalAveragePooling1D()(summed)
    model = keras.Model(tokens, [summed, pooled])
    data = np.array([[3, 4, 0, 0]])
    seq, pool = model(data)
    seq = ops.convert_to_numpy(seq)
    np.testing.assert_allclose(ops.convert_to_numpy(pool)[0], seq[0, :2].mean(0), atol=1e-6)


def test_mixed_precision_output_dtype():
    out = SinusoidalPositionEncoding(dtype="mixed_bfloat16")(np.zeros((1, 4, 6), "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"


def test_compute_output_shape():
    assert SinusoidalPositionEncoding().compute_output_shape((None, 7, 3)) == (None, 7, 3)


@pytest.mark.parametrize("bad", [0, -3.0, "big"])
def test_invalid_max_wavelength(bad):
    with pytest.raises(
        ValueError,
        match=r"argument `max_wavelength`, expected a positive float. "
        rf"Received: max_wavelength={bad!r}",
    ):
        SinusoidalPositionEncoding(max_wavelength=bad)


def test_invalid_rank():
    with pytest.raises(ValueError, match=r"`inputs`, expected a tensor of rank 3.*\(2, 5\)"):
        SinusoidalPositionEncoding()(np.zeros((2, 5), "float32"))


def test_unknown_feature_size():
    with pytest.raises(ValueError, match=r"`inputs`, expected a tensor with a known last axis"):
        SinusoidalPositionEncoding()(keras.Input((4, None)))


def test_negative_start_index():
    with pytest.raises(ValueError, match=r"`start_index`, expected a non-negative integer"):
        SinusoidalPositionEncoding()(np.zeros((1, 2, 4), "float32"), start_index=-1)
