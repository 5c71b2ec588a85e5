"""MemoryHyperModel (NTM / DNC): search space, builds, offline searches."""

import importlib.util
import pathlib

import keras
import keras_tuner
import numpy as np
import pytest

from keras_attention.data import copy_task
from keras_attention.layers import DNC
from keras_attention.layers import NTM
from keras_attention.tuning import MemoryHyperModel

_spec = importlib.util.spec_from_file_location(
    "tuner_checks", pathlib.Path(__file__).parent / "tuner_checks.py"
)
tuner_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tuner_checks)

BITS = 4


def _small(**overrides):
    space = dict(input_dim=BITS + 1, output_dim=BITS, cell=["ntm", "dnc"],
                 controller_units=[8, 16], memory_size=[4, 8], memory_width=[3, 5],
                 num_read_heads=[1, 2], num_write_heads=[1, 2],
                 learning_rate=(1e-3, 1e-2), global_clipnorm=50.0)
    space.update(overrides)
    return MemoryHyperModel(**space)


def test_default_trial_is_an_ntm_with_first_choices():
    hp = keras_tuner.HyperParameters()
    model = _small().build(hp)
    assert hp.values == {"cell": "ntm", "controller_units": 8, "memory_size": 4,
                         "memory_width": 3, "num_read_heads": 1, "num_write_heads": 1,
                         "learning_rate": 1e-3}
    layer = model.get_layer("ntm")
    assert isinstance(layer, NTM) and layer.return_sequences
    assert (layer.controller_units, layer.memory_size, layer.memory_width) == (8, 4, 3)
    assert model.optimizer.global_clipnorm == 50.0
    y = model(np.zeros((2, 5, BITS + 1), "float32"))
    assert tuple(y.shape) == (2, 5, BITS)


def test_sampled_dnc():
    hypermodel = _small()
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values.update(cell="dnc", controller_units=16, memory_size=8, memory_width=5,
                     num_read_heads=2, num_write_heads=2, learning_rate=4e-3)
    model = hypermodel.build(hp)
    layer = model.get_layer("dnc")
    assert isinstance(layer, DNC)
    assert (layer.cell.memory_size, layer.cell.memory_width) == (8, 5)
    assert (layer.cell.num_read_heads, layer.cell.num_write_heads) == (2, 2)
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 4e-3, rtol=1e-6)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"cell": "lstm"}, r"argument `cell`, expected one of \['dnc', 'ntm'\], or a "
         r"non-empty list of them\. Received: cell='lstm'"),
        ({"memory_size": [8, 0]}, r"argument `memory_size`, expected a positive integer"),
        ({"num_read_heads": []}, r"argument `num_read_heads`, expected a positive integer"),
        ({"learning_rate": -1e-3}, r"argument `learning_rate`, expected a number in \[0.0, "
         r"1.0\] above 0"),
        ({"global_clipnorm": 0.0}, r"argument `global_clipnorm`, expected a positive float"),
        ({"input_dim": 0}, r"argument `input_dim`, expected a positive integer"),
    ],
)
def test_invalid_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        _small(**overrides)


@pytest.mark.parametrize("kind", ["random", "hyperband"])
def test_offline_search_and_best_model_reload(kind, tmp_path):
    keras.utils.set_random_seed(0)
    hypermodel = _small(controller_units=8, memory_width=3, num_read_heads=1,
                        num_write_heads=1)
    objective = keras_tuner.Objective("val_bit_errors_per_sequence", direction="min")
    tuner = tuner_checks.make_tuner(kind, hypermodel, objective, tmp_path / "search")
    train = copy_task(batch_size=8, num_bits=BITS, min_length=2, max_length=3,
                      num_batches=4, seed=0)
    validation = copy_task(batch_size=8, num_bits=BITS, min_length=2, max_length=3,
                           num_batches=2, seed=1)
    fit_kwargs = {"epochs": 2} if kind == "random" else {}
    best_trial, logs = tuner_checks.search_and_reload(
        tuner, train, validation, tmp_path, **fit_kwargs
    )
    assert 0.0 <= logs["bit_errors_per_sequence"] <= BITS * 3
    assert best_trial.hyperparameters.values["cell"] in ("ntm", "dnc")
