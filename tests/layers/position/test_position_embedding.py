import keras
import numpy as np
import pytest
from keras import ops

from backend_utils import gradients
from harness import run_layer_test
from keras_attention.layers import PositionEmbedding


def test_harness():
    run_layer_test(
        PositionEmbedding,
        {"sequence_length": 9, "initializer": keras.initializers.RandomNormal(seed=1)},
        np.random.rand(2, 5, 6).astype("float32"),
        expected_output_shape=(2, 5, 6),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )


def _layer_with_table(sequence_length, dim):
    layer = PositionEmbedding(sequence_length)
    layer.build((None, None, dim))
    table = np.random.rand(sequence_length, dim).astype("float32")
    layer.embeddings.assign(table)
    return layer, table


def test_returns_table_rows_broadcast_over_batch():
    layer, table = _layer_with_table(8, 3)
    assert tuple(layer.embeddings.shape) == (8, 3)
    out = ops.convert_to_numpy(layer(np.zeros((2, 5, 3), "float32")))
    np.testing.assert_array_equal(out, np.broadcast_to(table[:5], (2, 5, 3)))


def test_full_table_length_is_allowed():
    layer, table = _layer_with_table(4, 2)
    out = ops.convert_to_numpy(layer(np.zeros((1, 4, 2), "float32")))
    np.testing.assert_array_equal(out[0], table)


def test_start_index_int_and_tensor():
    layer, table = _layer_with_table(8, 3)
    x = np.zeros((2, 2, 3), "float32")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(x, start_index=5)), np.broadcast_to(table[5:7], (2, 2, 3))
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(x, start_index=ops.convert_to_tensor(3))),
        np.broadcast_to(table[3:5], (2, 2, 3)),
    )


def test_gradient_reaches_only_used_rows():
    layer, _ = _layer_with_table(6, 2)
    [grad] = gradients(
        lambda: ops.sum(layer(np.zeros((1, 2, 2), "float32"), start_index=3)),
        variables=[layer.embeddings],
    )
    expected = np.zeros((6, 2))
    expected[3:5] = 1.0
    np.testing.assert_array_equal(grad, expected)


def test_mask_passes_through():
    tokens = keras.Input((None,), dtype="int32")
    emb = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
    pos = PositionEmbedding(6)(emb)
    pooled = keras.layers.GlobalAveragePooling1D()(pos)
    model = keras.Model(tokens, [pos, pooled])
    seq, pool = model(np.array([[3, 0, 0, 0]]))
    np.testing.assert_allclose(
        ops.convert_to_numpy(pool)[0], ops.convert_to_numpy(seq)[0, 0], atol=1e-6
    )


def test_mixed_precision_table_float32_output_compute_dtype():
    layer = PositionEmbedding(4, dtype="mixed_float16")
    out = layer(np.zeros((1, 3, 2), "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert keras.backend.standardize_dtype(layer.embeddings.dtype) == "float32"


@pytest.mark.parametrize("bad", [0, -2, 3.0, None])
def test_invalid_sequence_length(bad):
    with pytest.raises(
        ValueError,
        match=rf"argument `sequence_length`, expected a positive integer. "
        rf"Received: sequence_length={bad!r}",
    ):
        PositionEmbedding(bad)


def test_sequence_longer_than_table_raises_in_build():
    with pytest.raises(
        ValueError,
        match=r"argument `sequence_length`, expected at least start_index \+ "
        r"sequence length = 0 \+ 5 = 5 positions. Received: sequence_length=4",
    ):
        PositionEmbedding(4)(np.zeros((1, 5, 2), "float32"))


def test_symbolic_sequence_longer_than_table_raises():
    with pytest.raises(ValueError, match=r"Received: sequence_length=4"):
        PositionEmbedding(4)(keras.Input((5, 2)))


def test_positions_past_table_with_start_index_raise():
    layer = PositionEmbedding(6)
    layer(np.zeros((1, 3, 2), "float32"))
    with pytest.raises(
        ValueError,
        match=r"argument `sequence_length`, expected at least start_index \+ "
        r"sequence length = 4 \+ 3 = 7 positions. Received: sequence_length=6",
    ):
        layer(np.zeros((1, 3, 2), "float32"), start_index=4)


def test_negative_start_index():
    with pytest.raises(ValueError, match=r"`start_index`, expected a non-negative integer"):
        PositionEmbedding(6)(np.zeros((1, 3, 2), "float32"), start_index=-1)


def test_invalid_rank():
    with pytest.raises(ValueError, match=r"`inputs`, expected a tensor of rank 3"):
        PositionEmbedding(6)(np.zeros((1, 3), "float32"))


def test_unknown_feature_size():
    with pytest.raises(ValueError, match=r"`inputs`, expected a tensor with a known last axis"):
        PositionEmbedding(6)(keras.Input((3, None)))
