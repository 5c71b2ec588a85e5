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
    vocabulary_size=23, sequence_length=12, num_layers=2, hidden_dim=16,
    num_heads=2, intermediate_dim=24, dropout=0.0,
)


def small_model(**kwargs):
    return ka.models.causal_lm(**{**SMALL, **kwargs})


def manual_forward(model, ids, use_mask):
    """The model's layers called by hand, with or without the padding mask."""
    mask = ids != 0 if use_mask else np.ones(ids.shape, bool)
    x = model.get_layer("embedding")(ids)
    for i in range(model.arguments["num_layers"]):
        x = model.get_layer(f"decoder_block_{i}")(x, decoder_padding_mask=mask)
    x = model.get_layer("decoder_final_norm")(x)
    return keras.ops.convert_to_numpy(
        model.get_layer("embedding").token_embedding(x, reverse=True)
    )


def test_structure_and_names():
    model = small_model()
    assert [i.name for i in model.inputs] == ["token_ids"]
    logits = model(np.array([[3, 4, 5, 0, 0]]))
    assert tuple(logits.shape) == (1, 5, 23)
    names = {layer.name for layer in model.layers}
    assert {"embedding", "decoder_block_0", "decoder_block_1", "decoder_final_norm"} <= names
    # No cross-attention in a decoder-only block.
    assert model.get_layer("decoder_block_0").cross_attention is None


def test_tied_output_embedding_has_no_extra_weights():
    tied = small_model()
    untied = small_model(tie_output_embedding=False)
    extra = untied.count_params() - tied.count_params()
    assert extra == 16 * 23 + 23  # the Dense "lm_head" kernel and bias
    np.testing.assert_allclose(
        manual_forward(tied, np.array([[3, 4, 5]]), True),
        keras.ops.convert_to_numpy(tied(np.array([[3, 4, 5]]))),
        atol=1e-5,
    )


def test_padding_mask_reaches_every_block():
    # Left padding makes the mask matter for a causal model: real tokens
    # would otherwise attend to the pad positions before them.
    model = small_model()
    ids = np.array([[0, 0, 7, 8, 9], [4, 5, 6, 7, 8]])
    logits = keras.ops.convert_to_numpy(model(ids))
    np.testing.assert_allclose(logits, manual_forward(model, ids, True), atol=1e-5)
    unmasked = manual_forward(model, ids, False)
    assert np.abs(logits[0, 2:] - unmasked[0, 2:]).max() > 1e-3
    np.testing.assert_allclose(logits[1], unmasked[1], atol=1e-5)


def test_config_and_save_load_and_training_continue():
    model = small_model(position_scheme="rotary")
    utils.check_config_round_trip(model)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 23, (4, 9))
    ids[1, 6:] = 0
    utils.check_save_load_and_train(
        model, ids[:, :-1], ids[:, 1:], MaskedSparseCategoricalCrossentropy(from_logits=True)
    )


def test_mixed_precision_builds_and_runs():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = small_model()
    logits = model(np.array([[3, 4, 5, 0]]))
    assert all(layer.compute_dtype == "bfloat16" for layer in model.layers[1:])
    assert all(w.dtype == "float32" for w in model.weights)
    assert np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(logits, "float32"))).all()


def test_short_training_run_lowers_the_loss():
    # A tiny corpus of three repeated sentences: next-token loss must fall.
    rng = np.random.default_rng(1)
    sentences = rng.integers(1, 23, (3, 11))
    ids = sentences[rng.integers(0, 3, 24)]
    model = small_model()
    utils.loss_falls(
        model, ids[:, :-1], ids[:, 1:],
        MaskedSparseCategoricalCrossentropy(from_logits=True), steps=40, factor=0.5,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden_dim=15, num_heads=2), "hidden_dim"),
        (dict(num_heads=0), "num_heads"),
        (dict(num_layers=0), "num_layers"),
        (dict(vocabulary_size=0), "vocabulary_size"),
        (dict(dropout=1.0), "dropout"),
        (dict(position_encoding="rope"), "position_encoding"),
        (dict(position_scheme="sinusoidal"), "position_scheme"),
        (dict(normalization="batch_norm"), "normalization"),
        (dict(num_key_value_heads=3, num_heads=2), "num_heads"),
        (dict(activation=keras.activations.relu), "activation"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=f"Received an invalid value for argument `{match}`"):
        small_model(**kwargs)


def test_invalid_bool_raises_type_error():
    with pytest.raises(TypeError, match="tie_output_embedding"):
        small_model(tie_output_embedding=1)


def test_xla_fit_and_mixed_float16():
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 23, (4, 9))
    ids[1, 6:] = 0
    utils.check_xla_fit_and_mixed_precision(
        lambda: small_model(num_layers=1), ids[:, :-1], ids[:, 1:],
        MaskedSparseCategoricalCrossentropy(from_logits=True),
    )
