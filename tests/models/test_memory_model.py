import os
import sys

import keras
import numpy as np
import pytest

import keras_attention as ka

sys.path.insert(0, os.path.dirname(__file__))
import model_test_utils as utils  # noqa: E402

SMALL = dict(input_dim=6, output_dim=4, controller_units=16, memory_size=8, memory_width=5)


def copy_task(rng, n, bits=4, length=3):
    """Graves et al.'s copy task: bits, a delimiter, then recall them."""
    steps = 2 * length + 1
    x = np.zeros((n, steps, bits + 2), "float32")
    y = np.zeros((n, steps, bits), "float32")
    data = rng.integers(0, 2, (n, length, bits)).astype("float32")
    x[:, :length, :bits] = data
    x[:, length, bits] = 1.0  # delimiter
    y[:, length + 1:] = data
    return x, y


@pytest.mark.parametrize("memory", ["ntm", "dnc"])
def test_structure_and_memory_layer(memory):
    model = ka.models.memory_model(memory=memory, **SMALL)
    assert [i.name for i in model.inputs] == ["inputs"]
    assert tuple(model(np.zeros((2, 7, 6), "float32")).shape) == (2, 7, 4)
    layer = model.get_layer("memory")
    assert isinstance(layer, ka.layers.NTM if memory == "ntm" else ka.layers.DNC)
    assert layer.return_sequences


@pytest.mark.parametrize("memory", ["ntm", "dnc"])
def test_config_and_save_load_and_training_continue(memory):
    model = ka.models.memory_model(memory=memory, **SMALL)
    utils.check_config_round_trip(model)
    x, y = copy_task(np.random.default_rng(0), 4)
    utils.check_save_load_and_train(
        model, x, y, keras.losses.BinaryCrossentropy(from_logits=True)
    )


def test_short_copy_training_lowers_the_loss():
    x, y = copy_task(np.random.default_rng(1), 64)
    model = ka.models.memory_model(**SMALL)
    utils.loss_falls(
        model, x, y, keras.losses.BinaryCrossentropy(from_logits=True),
        steps=40, factor=0.9, lr=1e-2,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(memory="lstm"), "memory"),
        (dict(input_dim=0), "input_dim"),
        (dict(memory_size=0), "memory_size"),
        (dict(clip_value=-1.0), "clip_value"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=f"Received an invalid value for argument `{match}`"):
        ka.models.memory_model(**{**SMALL, **kwargs})
