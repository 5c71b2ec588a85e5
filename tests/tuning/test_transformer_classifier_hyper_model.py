"""TransformerClassifierHyperModel: search space, builds, offline searches."""

import importlib.util
import pathlib

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf

from keras_attention.training import TransformerSchedule
from keras_attention.tuning import TransformerClassifierHyperModel

_spec = importlib.util.spec_from_file_location(
    "tuner_checks", pathlib.Path(__file__).parent / "tuner_checks.py"
)
tuner_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tuner_checks)

VOCAB, LENGTH, CLASSES = 30, 10, 3


def _small(**overrides):
    space = dict(
        vocabulary_size=VOCAB, sequence_length=LENGTH, num_classes=CLASSES,
        num_layers=[1, 2], num_heads=[2, 4], key_dim=[4, 8],
        intermediate_multiplier=[2, 4], dropout=(0.0, 0.2),
        norm_first=[False, True], position_encoding=["learned", "sinusoidal"],
        position_scheme=[None, "rotary", "relative", "alibi"],
        learning_rate=(1e-3, 1e-2), warmup_steps=[2, 10],
        pooling=["cls", "mean", "attention"],
    )
    space.update(overrides)
    return TransformerClassifierHyperModel(**space)


def test_default_trial_builds_first_choices():
    hp = keras_tuner.HyperParameters()
    model = _small().build(hp)
    assert hp.values == {
        "num_heads": 2, "key_dim": 4, "num_layers": 1, "intermediate_multiplier": 2,
        "dropout": 0.0, "norm_first": False, "position_encoding": "learned",
        "position_scheme": "none", "attention_kernel": "dot_product",
        "learning_rate": 1e-3, "warmup_steps": 2, "pooling": "cls",
    }
    args = model.arguments
    assert (args["hidden_dim"], args["num_heads"], args["intermediate_dim"]) == (8, 2, 16)
    assert args["position_scheme"] is None and args["num_classes"] == CLASSES


def test_sampled_values_reach_the_model_and_the_schedule():
    hypermodel = _small()
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values.update(num_heads=4, key_dim=8, num_layers=2, intermediate_multiplier=4,
                     dropout=0.15, norm_first=True, position_encoding="sinusoidal",
                     position_scheme="alibi", learning_rate=5e-3, warmup_steps=10,
                     pooling="attention")
    model = hypermodel.build(hp)
    args = model.arguments
    assert args["hidden_dim"] == 32 and args["intermediate_dim"] == 128
    assert args["num_layers"] == 2 and args["dropout"] == 0.15
    assert args["norm_first"] is True and args["position_scheme"] == "alibi"
    assert args["position_encoding"] == "sinusoidal" and args["pooling"] == "attention"
    assert model.get_layer("pooling").__class__.__name__ == "AttentionPooling"
    # Adam + TransformerSchedule peaking at the sampled learning rate after
    # the sampled warm-up.
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, TransformerSchedule)
    assert (schedule.hidden_dim, schedule.warmup_steps) == (32, 10)
    peak = float(schedule(9))
    np.testing.assert_allclose(peak, 5e-3, rtol=1e-5)
    assert float(schedule(4)) < peak and float(schedule(30)) < peak
    assert model.optimizer.beta_2 == 0.98


def test_performer_trial_with_dropout_builds():
    # The default space pairs "performer" with a dropout range: the trial
    # builds, with the dropout on the residuals only (Performer forms no
    # attention weights to drop).
    hypermodel = _small(attention_kernel=["dot_product", "performer"])
    hp = keras_tuner.HyperParameters()
    hp.Fixed("attention_kernel", "performer")
    hp.Fixed("dropout", 0.15)
    model = hypermodel.build(hp)
    block = model.get_layer("encoder_block_0")
    assert model.arguments["dropout"] == 0.15
    assert block.self_attention.__class__.__name__ == "PerformerAttention"
    assert block.self_attention.dropout == 0.0
    assert block.self_attention_dropout.rate == 0.15


def test_search_space_types():
    hp = keras_tuner.HyperParameters()
    _small(num_layers=1).build(hp)
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds["num_layers"] == "Fixed" and kinds["num_heads"] == "Choice"
    assert kinds["dropout"] == "Float" and kinds["learning_rate"] == "Float"
    assert kinds["norm_first"] == "Boolean"
    (learning_rate,) = [p for p in hp.space if p.name == "learning_rate"]
    assert learning_rate.sampling == "log"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_heads": [2, 0]}, r"argument `num_heads`, expected a positive integer, or "
         r"a non-empty list of them\. Received: num_heads=\[2, 0\]"),
        ({"key_dim": []}, r"argument `key_dim`, expected a positive integer"),
        ({"dropout": (0.3, 0.1)}, r"argument `dropout`, expected a number in \[0.0, 1.0\), "
         r"or a \(low, high\) tuple of them with low < high\. Received: dropout=\(0.3, 0.1\)"),
        ({"dropout": 1.0}, r"argument `dropout`, expected a number in \[0.0, 1.0\)"),
        ({"learning_rate": (0.0, 0.1)}, r"argument `learning_rate`, expected a number in "
         r"\[0.0, 1.0\] above 0"),
        ({"norm_first": [True, "yes"]}, r"argument `norm_first`, expected a bool"),
        ({"position_scheme": ["rope"]}, r"argument `position_scheme`, expected one of "
         r"\['None', 'alibi', 'none', 'relative', 'rotary'\]"),
        ({"position_encoding": "rotary"}, r"argument `position_encoding`, expected one of "
         r"\['learned', 'sinusoidal'\]"),
        ({"pooling": ["max"]}, r"argument `pooling`, expected one of \['attention', 'cls', 'mean'\]"),
        ({"attention_kernel": ["flash"]}, r"argument `attention_kernel`, expected one of "
         r"\[.*'dot_product'.*\], or a non-empty list of them\. "
         r"Received: attention_kernel=\['flash'\]"),
        ({"num_classes": 0}, r"argument `num_classes`, expected a positive integer"),
    ],
)
def test_invalid_search_space(overrides, message):
    with pytest.raises(ValueError, match=message):
        _small(**overrides)


def _data(seed, n=32):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    ids = rng.integers(3, VOCAB, (n, LENGTH))
    ids[:, 1] = labels + 3  # the class is readable from token 1
    ids[:, 0] = 2
    for i in range(n):
        ids[i, 4 + i % 6:] = 0
    return tf.data.Dataset.from_tensor_slices((ids.astype("int32"), labels.astype("int32"))).batch(8)


@pytest.mark.parametrize("kind", ["random", "hyperband"])
def test_offline_search_and_best_model_reload(kind, tmp_path):
    keras.utils.set_random_seed(0)
    hypermodel = _small(num_layers=1, num_heads=2, key_dim=[4, 8], intermediate_multiplier=2,
                        position_scheme=[None, "rotary"], pooling=["cls", "mean"])
    tuner = tuner_checks.make_tuner(kind, hypermodel, "val_accuracy", tmp_path / "search")
    fit_kwargs = {"epochs": 2} if kind == "random" else {}
    best_trial, logs = tuner_checks.search_and_reload(
        tuner, _data(0), _data(1), tmp_path, **fit_kwargs
    )
    assert 0.0 <= logs["accuracy"] <= 1.0
    assert set(best_trial.hyperparameters.values) >= {"key_dim", "position_scheme", "pooling"}
