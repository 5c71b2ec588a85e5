"""TransformerTranslatorHyperModel: search space, builds, offline searches."""

import importlib.util
import pathlib

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf

from keras_attention.training import MaskedSparseCategoricalCrossentropy
from keras_attention.training import TransformerSchedule
from keras_attention.tuning import TransformerTranslatorHyperModel

_spec = importlib.util.spec_from_file_location(
    "tuner_checks", pathlib.Path(__file__).parent / "tuner_checks.py"
)
tuner_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tuner_checks)

VOCAB, TARGET_VOCAB, LENGTH = 24, 20, 8


def _small(**overrides):
    space = dict(
        vocabulary_size=VOCAB, sequence_length=LENGTH, target_vocabulary_size=TARGET_VOCAB,
        num_layers=[1, 2], num_heads=[2, 4], key_dim=[4, 8], intermediate_multiplier=[2, 4],
        dropout=(0.0, 0.2), norm_first=[False, True],
        position_encoding=["sinusoidal", "learned"],
        position_scheme=[None, "rotary", "relative", "alibi"],
        learning_rate=(1e-3, 1e-2), warmup_steps=[2, 10], label_smoothing=0.1,
    )
    space.update(overrides)
    return TransformerTranslatorHyperModel(**space)


def test_default_trial_and_recipe():
    hp = keras_tuner.HyperParameters()
    model = _small().build(hp)
    assert hp.values["position_scheme"] == "none" and hp.values["num_layers"] == 1
    args = model.arguments
    assert args["target_vocabulary_size"] == TARGET_VOCAB
    assert (args["hidden_dim"], args["intermediate_dim"], args["position_scheme"]) == (8, 16, None)
    assert isinstance(model.loss, MaskedSparseCategoricalCrossentropy)
    assert model.loss.label_smoothing == 0.1 and model.loss.pad_id == 0
    assert isinstance(model.optimizer._learning_rate, TransformerSchedule)
    assert (model.optimizer.beta_2, model.optimizer.epsilon) == (0.98, 1e-9)
    logits = model({"source_ids": np.array([[3, 4, 0]]), "target_ids": np.array([[1, 5]])})
    assert tuple(logits.shape) == (1, 2, TARGET_VOCAB)


def test_sampled_values_reach_the_model():
    hypermodel = _small()
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values.update(num_heads=4, key_dim=4, num_layers=2, intermediate_multiplier=4,
                     norm_first=True, position_encoding="learned", position_scheme="rotary",
                     learning_rate=2e-3, warmup_steps=10)
    model = hypermodel.build(hp)
    args = model.arguments
    assert (args["hidden_dim"], args["num_heads"], args["intermediate_dim"]) == (16, 4, 64)
    assert args["num_layers"] == 2 and args["num_decoder_layers"] is None  # same depth
    assert args["norm_first"] and args["position_scheme"] == "rotary"
    assert args["position_encoding"] == "learned"
    names = {layer.name for layer in model.layers}
    assert {"encoder_block_1", "decoder_block_1", "decoder_final_norm"} <= names
    np.testing.assert_allclose(float(model.optimizer._learning_rate(9)), 2e-3, rtol=1e-5)


def test_decoder_kernel_and_its_options_are_searched():
    hypermodel = _small(
        position_scheme=[None, "rotary"], attention_kernel="dot_product",
        decoder_attention_kernel=["dot_product", "local", "big_bird"],
        decoder_attention_kernel_options={"local": {"window_size": [1, 2]},
                                          "big_bird": {"block_size": 2}})
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert model.arguments["decoder_attention_kernel"] == "dot_product"
    assert model.arguments["decoder_attention_kernel_options"] is None
    space = {h.name: h for h in hp.space}
    assert space["decoder_attention_kernel"].values == ["dot_product", "local", "big_bird"]
    assert space["decoder_local_window_size"].values == [1, 2]
    assert [c.values for c in space["decoder_local_window_size"].conditions] == [["local"]]
    oracle = {name: space[name].default if hasattr(space[name], "default")
              else space[name].value for name in space}
    for kernel, value, options in [
            ("local", {"decoder_local_window_size": 2}, {"window_size": 2}),
            ("big_bird", {}, {"block_size": 2, "sequence_length": LENGTH})]:
        hp.values.update({**oracle, "decoder_attention_kernel": kernel, **value})
        model = hypermodel.build(hp)
        assert model.arguments["decoder_attention_kernel"] == kernel
        assert model.arguments["decoder_attention_kernel_options"] == options
        assert model.get_layer("decoder_block_0").self_attention.__class__.__name__ == {
            "local": "LocalAttention", "big_bird": "BigBirdAttention"}[kernel]
        logits = model({"source_ids": np.array([[3, 4, 0]]), "target_ids": np.array([[1, 5]])})
        assert tuple(logits.shape) == (1, 2, TARGET_VOCAB)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"label_smoothing": 1.0}, r"argument `label_smoothing`, expected a float in \[0, 1\)"),
        ({"target_vocabulary_size": 0}, r"argument `target_vocabulary_size`, expected a "
         r"positive integer"),
        ({"warmup_steps": [10, -1]}, r"argument `warmup_steps`, expected a positive integer"),
        ({"intermediate_multiplier": 1.5}, r"argument `intermediate_multiplier`, expected a "
         r"positive integer"),
        ({"decoder_attention_kernel": "linformer"}, r"argument `decoder_attention_kernel`, "
         r"expected one of \['big_bird', 'dot_product', 'local', 'performer'\]"),
        ({"decoder_attention_kernel": ["dot_product", "performer"]},
         r"incompatible arguments `decoder_attention_kernel` and `position_scheme`: the "
         r"'performer' kernel takes no additive attention bias, so not the schemes "
         r"\['relative', 'alibi'\]"),
        ({"decoder_attention_kernel": "local",
          "decoder_attention_kernel_options": {"local": {"window_size": [2, 0]}}},
         r"argument `decoder_attention_kernel_options` for attention_kernel='local'"),
        ({"decoder_attention_kernel": "local",
          "decoder_attention_kernel_options": {"performer": {"num_random_features": 8}}},
         r"argument `decoder_attention_kernel_options`, expected keys among the searched "
         r"decoder_attention_kernel choices \['local'\]"),
    ],
)
def test_invalid_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        _small(**overrides)


def _data(seed, n=32):
    """Reverse the source: next-token labels, uneven padding."""
    rng = np.random.default_rng(seed)
    source = np.zeros((n, LENGTH), "int32")
    target = np.zeros((n, LENGTH), "int32")
    for i in range(n):
        length = int(rng.integers(2, LENGTH - 1))
        tokens = rng.integers(3, TARGET_VOCAB, length)
        source[i, :length] = tokens
        target[i, 0] = 1
        target[i, 1 : length + 1] = tokens[::-1]
    labels = np.zeros_like(target)
    labels[:, :-1] = target[:, 1:]
    x = {"source_ids": source, "target_ids": target}
    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(8)


@pytest.mark.parametrize("kind", ["random", "hyperband"])
def test_offline_search_and_best_model_reload(kind, tmp_path):
    keras.utils.set_random_seed(0)
    hypermodel = _small(num_layers=1, num_heads=2, key_dim=[4, 8], intermediate_multiplier=2,
                        norm_first=[False, True], position_scheme=[None, "alibi"])
    tuner = tuner_checks.make_tuner(kind, hypermodel, "val_loss", tmp_path / "search")
    fit_kwargs = {"epochs": 2} if kind == "random" else {}
    best_trial, logs = tuner_checks.search_and_reload(
        tuner, _data(0), _data(1), tmp_path, **fit_kwargs
    )
    assert np.isfinite(logs["loss"]) and 0.0 <= logs["masked_accuracy"] <= 1.0
    values = best_trial.hyperparameters.values
    assert set(values) >= {"key_dim", "norm_first", "attention_kernel"}
    # The scheme of the best trial's kernel: `position_scheme`, or the
    # conditional one of the kernels without an attention bias.
    assert any(name.startswith("position_scheme") for name in values)
