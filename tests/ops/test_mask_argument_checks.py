"""`causal_mask` and `masked_softmax` reject bad arguments by name.

`causal_mask(-2)` used to fail in the backend's range op, `causal_mask(2.5)`
in a tensor conversion, `offset=-5` returned an all-False mask, and a mask
that cannot broadcast to the logits failed in the backend's select.
"""

import re

import numpy as np
import pytest
from backend_utils import to_numpy

from keras_attention.ops import causal_mask
from keras_attention.ops import masked_softmax


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(query_length=-2), "query_length"),
        (dict(query_length=2.5), "query_length"),
        (dict(query_length=True), "query_length"),
        (dict(query_length=3, key_length=-1), "key_length"),
        (dict(query_length=3, key_length=4, offset=-5), "offset"),
        (dict(query_length=3, offset=1.0), "offset"),
    ],
)
def test_causal_mask_rejects_bad_sizes(kwargs, name):
    with pytest.raises(
        ValueError,
        match=re.escape(f"`{name}`, expected a non-negative int or a scalar integer tensor"),
    ):
        causal_mask(**kwargs)


def test_causal_mask_takes_ints_and_integer_tensors():
    import keras

    by_int = to_numpy(causal_mask(2, 4, offset=2))
    by_tensor = to_numpy(
        causal_mask(keras.ops.convert_to_tensor(2), 4, offset=keras.ops.convert_to_tensor(2))
    )
    expected = np.arange(4)[None, :] <= np.arange(2)[:, None] + 2  # j <= i + offset
    np.testing.assert_array_equal(by_int, expected)
    np.testing.assert_array_equal(by_tensor, expected)


@pytest.mark.parametrize("name", ["mask", "bias"])
def test_masked_softmax_rejects_a_mask_or_bias_that_cannot_broadcast(name):
    logits = np.zeros((2, 3), "float32")
    other = np.ones((4,), bool if name == "mask" else "float32")
    with pytest.raises(
        ValueError,
        match=re.escape(f"`{name}`, expected shapes that broadcast together. "
                        "Received: shapes [(2, 3), (4,)]"),
    ):
        masked_softmax(logits, **{name: other})
