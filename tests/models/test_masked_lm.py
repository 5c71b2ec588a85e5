import os
import sys

import keras
import numpy as np
import pytest

import keras_attention as ka
from keras_attention.training import MaskedSparseCategoricalCrossentropy

sys.path.insert(0, os.path.dirname(__file__))
import model_test_utils as utils  # noqa: E402

SMALL = dict(
    vocabulary_size=21, sequence_length=10, num_layers=2, hidden_dim=16,
    num_heads=2, intermediate_dim=24, dropout=0.0,
)
MASK = 1


def small_model(**kwargs):
    return ka.models.masked_lm(**{**SMALL, **kwargs})


def test_structure_and_tied_head():
    model = small_model()
    ids = np.array([[3, 4, 5, 0]])
    logits = keras.ops.convert_to_numpy(model(ids))
    assert logits.shape == (1, 4, 21)
    # The head reuses the embedding table: logits = norm(dense(h)) @ E^T.
    x = model.get_layer("embedding")(ids)
    for i in range(2):
        x = model.get_layer(f"encoder_block_{i}")(x, padding_mask=ids != 0)
    h = model.get_layer("mlm_norm")(model.get_layer("mlm_dense")(x))
    table = keras.ops.convert_to_numpy(model.get_layer("embedding").token_embedding.embeddings)
    np.testing.assert_allclose(logits, keras.ops.convert_to_numpy(h) @ table.T, atol=1e-5)


def test_bidirectional_and_padding_masked():
    model = small_model()
    ids = np.array([[3, 4, 5, 6]])
    logits = keras.ops.convert_to_numpy(model(ids))
    padded = keras.ops.convert_to_numpy(model(np.pad(ids, ((0, 0), (0, 3)))))
    np.testing.assert_allclose(padded[:, :4], logits, atol=1e-5)
    # Bidirectional: a later token changes the logits of the first position.
    later = keras.ops.convert_to_numpy(model(np.array([[3, 4, 5, 9]])))
    assert np.abs(later[0, 0] - logits[0, 0]).max() > 1e-4


def test_config_and_save_load_and_training_continue():
    model = small_model(activation="swiglu")
    utils.check_config_round_trip(model)
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 21, (6, 8))
    inputs, labels, weights = ka.models.mlm_mask_tokens(ids, 21, MASK, seed=0, selection_rate=0.5)
    utils.check_save_load_and_train(
        model, inputs, labels, MaskedSparseCategoricalCrossentropy(from_logits=True),
        sample_weight=weights,
    )


def test_short_training_run_lowers_the_masked_loss():
    # Sequences are arithmetic progressions: a masked token is predictable
    # from its neighbours.
    rng = np.random.default_rng(4)
    starts = rng.integers(2, 10, 64)
    ids = (starts[:, None] + np.arange(8)[None, :]) % 19 + 2
    inputs, labels, weights = ka.models.mlm_mask_tokens(
        ids, 21, MASK, selection_rate=0.3, seed=1
    )
    model = small_model()
    utils.loss_falls(
        model, inputs, labels, MaskedSparseCategoricalCrossentropy(from_logits=True),
        steps=40, factor=0.7, sample_weight=weights,
    )


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="argument `hidden_dim`"):
        small_model(hidden_dim=17)
    with pytest.raises(ValueError, match="argument `dropout`"):
        small_model(dropout=-0.1)


def test_xla_fit_and_mixed_float16():
    rng = np.random.default_rng(5)
    ids = rng.integers(2, 21, (4, 8))
    inputs, labels, weights = ka.models.mlm_mask_tokens(ids, 21, MASK, seed=0, selection_rate=0.5)
    utils.check_xla_fit_and_mixed_precision(
        lambda: small_model(num_layers=1), inputs, labels,
        MaskedSparseCategoricalCrossentropy(from_logits=True), sample_weight=weights,
    )
