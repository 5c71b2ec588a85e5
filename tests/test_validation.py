"""The shared argument checks: NaN and infinity are not positive floats.

`value <= 0` is False for NaN, so NaN (and infinity) used to pass
`check_positive_float`; a layer built with `scale=nan` or
`max_wavelength=inf` then returned NaN outputs with no error.
"""

import math
import re

import pytest

from keras_attention import layers
from keras_attention.utils import validation


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_positive_float_rejects_nan_and_infinity(bad):
    with pytest.raises(ValueError, match=re.escape(f"Received: x={bad!r}")):
        validation.check_positive_float(bad, "x")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_non_negative_float_rejects_nan_infinity_and_negatives(bad):
    with pytest.raises(ValueError, match=re.escape(f"Received: x={bad!r}")):
        validation.check_non_negative_float(bad, "x")


def test_good_values_pass_as_floats():
    assert validation.check_positive_float(2, "x") == 2.0
    assert validation.check_non_negative_float(0, "x") == 0.0
    assert validation.check_positive_float(None, "x", allow_none=True) is None


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: layers.ScaledDotProductAttention(scale=math.nan), "scale"),
        (lambda: layers.ScaledDotProductAttention(scale=math.inf), "scale"),
        (lambda: layers.RotaryEmbedding(max_wavelength=math.nan), "max_wavelength"),
        (lambda: layers.RotaryEmbedding(scaling_factor=math.inf), "scaling_factor"),
        (lambda: layers.SinusoidalPositionEncoding(max_wavelength=math.inf), "max_wavelength"),
    ],
)
def test_layers_reject_non_finite_floats(make, name):
    with pytest.raises(ValueError, match=f"argument `{name}`, expected a (finite )?positive float"):
        make()
