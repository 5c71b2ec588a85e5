"""NTM and DNC: call arguments checked by name; full-precision weightings.

Found by an audit: a sixth initial state was silently dropped (`zip`
truncated), wrong-shaped states failed inside a backend reshape, a stateful
NTM called with another batch size failed in a concat, `NTM.get_initial_state`
before build raised an `AttributeError`, RNN flags like
`return_sequences="no"` were used by truthiness, `DNCCell.split_output`
failed on a functional output of unknown batch and length, and the NTM's
returned weightings went through the float16/bfloat16 compute dtype.
"""

import re

import keras
import numpy as np
import pytest
from backend_utils import to_numpy

from keras_attention.layers import DNC
from keras_attention.layers import NTM
from keras_attention.layers import DNCCell

SIZES = dict(controller_units=4, memory_size=5, memory_width=3, output_dim=2)
LAYERS = {"ntm": NTM, "dnc": DNC}


def _x(*shape):
    return np.random.default_rng(0).uniform(-1, 1, shape).astype("float32")


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_initial_state_count_is_checked(name):
    layer = LAYERS[name](**SIZES)
    x = _x(2, 4, 3)
    layer(x)
    states = layer.get_initial_state(2)
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"`initial_state`, expected {len(states)} tensors of shapes (2, "
        ) + r".*" + re.escape(f"Received: {len(states) + 1} tensors"),
    ):
        layer(x, initial_state=[*states, states[-1]])


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("bad", ["width", "batch"])
def test_initial_state_shapes_are_checked(name, bad):
    layer = LAYERS[name](**SIZES)
    x = _x(2, 4, 3)
    layer(x)
    states = [to_numpy(s) for s in layer.get_initial_state(2)]
    size = states[-1].shape[1]
    states[-1] = np.zeros((2, size + 1) if bad == "width" else (3, size), "float32")
    index = len(states) - 1
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"expected initial_state[{index}] of shape (2, {size}). "
            f"Received: initial_state[{index}].shape={states[-1].shape}"
        ),
    ):
        layer(x, initial_state=states)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_stateful_layer_keeps_its_batch_size(name):
    layer = LAYERS[name](**SIZES, stateful=True)
    layer(_x(2, 4, 3))
    with pytest.raises(
        ValueError, match=f"A stateful {name.upper()} needs the batch size it was built with"
    ):
        layer(_x(3, 4, 3))


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize(
    "flag", ["return_sequences", "return_state", "go_backwards", "stateful", "unroll"]
)
def test_rnn_flags_must_be_bools(name, flag):
    with pytest.raises(
        TypeError, match=re.escape(f"`{flag}`, expected a bool. Received: {flag}='no'")
    ):
        LAYERS[name](**SIZES, **{flag: "no"})


def test_ntm_initial_state_before_build_is_a_clear_error():
    with pytest.raises(ValueError, match="Call the layer or `build\\(sequences_shape\\)` first"):
        NTM(**SIZES).get_initial_state(2)


def test_dnc_split_output_of_a_functional_rnn():
    cell = DNCCell(**SIZES, num_read_heads=2, return_weightings=True)
    inputs = keras.Input((None, 3))
    outputs = keras.layers.RNN(cell, return_sequences=True)(inputs)
    parts = cell.split_output(outputs)
    assert parts["read_weightings"].shape == (None, None, 2, 5)
    assert parts["link"].shape == (None, None, 1, 5, 5)
    model = keras.Model(inputs, [outputs, parts["read_weightings"], parts["link"]])
    flat, reads, link = model.predict(_x(2, 4, 3), verbose=0)
    start = cell._base_output_size  # reads come first after the output
    np.testing.assert_array_equal(reads, flat[..., start:start + 10].reshape(2, 4, 2, 5))
    np.testing.assert_array_equal(link, flat[..., -25:].reshape(2, 4, 1, 5, 5))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_ntm_weightings_keep_float32_precision(policy):
    layer = NTM(**SIZES, return_weightings=True, return_state=True, dtype=policy)
    output, reads, writes, *states = layer(_x(2, 6, 3))
    assert keras.backend.standardize_dtype(output.dtype) == policy.split("_")[1]
    last = np.concatenate([to_numpy(reads)[:, -1], to_numpy(writes)[:, -1]], axis=1)
    # The final state holds the last step's weightings in float32: equal.
    np.testing.assert_array_equal(last.reshape(2, -1), to_numpy(states[-1]))
