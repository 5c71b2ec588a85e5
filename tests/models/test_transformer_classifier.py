import os
import sys

import keras
import numpy as np
import pytest

import keras_attention as ka
from keras_attention.models.model_parts import FirstTokenPooling
from harness import run_layer_test

sys.path.insert(0, os.path.dirname(__file__))
import model_test_utils as utils  # noqa: E402

SMALL = dict(
    vocabulary_size=17, sequence_length=10, num_classes=3, num_layers=2,
    hidden_dim=16, num_heads=2, intermediate_dim=24, dropout=0.0,
)


def small_model(**kwargs):
    return ka.models.transformer_classifier(**{**SMALL, **kwargs})


def test_first_token_pooling_layer_contract():
    run_layer_test(
        FirstTokenPooling, {}, np.random.rand(2, 5, 4).astype("float32"),
        expected_output_shape=(2, 4), expected_num_trainable_weights=0,
        run_training=False,
    )
    x = np.arange(24.0, dtype="float32").reshape(2, 3, 4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(FirstTokenPooling()(x)), x[:, 0])


@pytest.mark.parametrize("pooling", ["cls", "mean", "attention"])
def test_padding_does_not_change_the_prediction(pooling):
    # The mask must reach every encoder block and the pooling: appending pads
    # changes nothing, and changing a real token changes the logits.
    model = small_model(pooling=pooling)
    ids = np.array([[1, 5, 6, 7]])
    logits = keras.ops.convert_to_numpy(model(ids))
    assert logits.shape == (1, 3)
    padded = keras.ops.convert_to_numpy(model(np.pad(ids, ((0, 0), (0, 4)))))
    np.testing.assert_allclose(padded, logits, atol=1e-5)
    other = keras.ops.convert_to_numpy(model(np.array([[1, 5, 6, 8]])))
    assert np.abs(other - logits).max() > 1e-4


def test_mean_pooling_averages_real_positions_only():
    model = small_model(pooling="mean")
    ids = np.array([[1, 5, 6, 0, 0]])
    x = model.get_layer("embedding")(ids)
    for i in range(2):
        x = model.get_layer(f"encoder_block_{i}")(x, padding_mask=ids != 0)
    pooled = keras.ops.convert_to_numpy(x)[0, :3].mean(axis=0)
    dense = model.get_layer("classifier")
    expected = pooled @ keras.ops.convert_to_numpy(dense.kernel) + keras.ops.convert_to_numpy(dense.bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(ids))[0], expected, atol=1e-5)


def test_config_and_save_load_and_training_continue():
    model = small_model(pooling="attention", norm_first=True)
    utils.check_config_round_trip(model)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 17, (6, 7))
    ids[:, 5:] = 0
    labels = rng.integers(0, 3, 6)
    utils.check_save_load_and_train(
        model, ids, labels, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )


def test_short_training_run_lowers_the_loss():
    # Label = whether token 2 occurs: needs attention over the sequence.
    rng = np.random.default_rng(3)
    ids = rng.integers(3, 17, (64, 8))
    labels = rng.integers(0, 2, 64)
    ids[labels == 1, rng.integers(1, 8, int(labels.sum()))] = 2
    ids[:, 0] = 1
    model = small_model(num_classes=2, pooling="cls")
    utils.loss_falls(
        model, ids, labels, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps=40, factor=0.6,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pooling="max"), "pooling"),
        (dict(num_classes=0), "num_classes"),
        (dict(hidden_dim=18, num_heads=4), "hidden_dim"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=f"Received an invalid value for argument `{match}`"):
        small_model(**kwargs)


def test_xla_fit_and_mixed_float16():
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 17, (4, 7))
    ids[:, 5:] = 0
    labels = rng.integers(0, 3, 4)
    utils.check_xla_fit_and_mixed_precision(
        lambda: small_model(num_layers=1), ids, labels,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
