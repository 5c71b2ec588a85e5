"""Keras-style argument validation shared by every layer.

Each helper raises `ValueError` (wrong value) or `TypeError` (wrong type)
with the Keras wording: the argument, what was expected, what was received.
Nothing is clamped, rounded or coerced.
"""

import math
import numbers


def invalid_value(name, expected, value):
    """The `ValueError` every check raises: argument, expectation, value."""
    return ValueError(
        f"Received an invalid value for argument `{name}`, expected "
        f"{expected}. Received: {name}={value!r}"
    )



def is_int(value):
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """A Python or NumPy real number, not a bool (NaN and inf included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)



def check_positive_int(value, name, allow_none=False):
    """`value` must be an integer >= 1 (or `None` when `allow_none`)."""
    if value is None and allow_none:
        return value
    if not is_int(value) or value < 1:
        raise invalid_value(name, "a positive integer", value)
    return int(value)


def check_non_negative_int(value, name):
    """`value` must be an integer >= 0."""
    if not is_int(value) or value < 0:
        raise invalid_value(name, "a non-negative integer", value)
    return int(value)


def check_rate(value, name="dropout"):
    """`value` must be a real number in `[0, 1)`."""
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not 0 <= value < 1
    ):
        raise invalid_value(name, "a float in [0, 1)", value)
    return float(value)


def check_positive_float(value, name, allow_none=False):
    """`value` must be a finite real number > 0 (or `None` when `allow_none`)."""
    if value is None and allow_none:
        return value
    if not is_real(value) or not value > 0:  # `not >` also catches NaN
        raise invalid_value(name, "a positive float", value)
    if not math.isfinite(value):
        raise invalid_value(name, "a finite positive float", value)
    return float(value)


def check_non_negative_float(value, name):
    """`value` must be a finite real number >= 0."""
    if not is_real(value) or not value >= 0:  # `not >=` also catches NaN
        raise invalid_value(name, "a float >= 0", value)
    if not math.isfinite(value):
        raise invalid_value(name, "a finite float >= 0", value)
    return float(value)


def check_one_of(value, name, choices):
    """`value` must be one of `choices`."""
    if value not in choices:
        raise invalid_value(name, f"one of {sorted(choices)}", value)
    return value


def check_bool(value, name):
    """`value` must be a Python bool."""
    if not isinstance(value, bool):
        raise TypeError(
            f"Received an invalid type for argument `{name}`, expected a bool. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    return value


def check_divisible(value, name, divisor, divisor_name):
    """`value` must be divisible by `divisor`."""
    if value % divisor != 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"multiple of `{divisor_name}`={divisor}. Received: {name}={value}"
        )
    return value


def check_rank(shape, name, ranks):
    """Static `shape` must have one of the ranks in `ranks`."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if len(shape) not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"tensor of rank {expected}. Received: {name}.shape={tuple(shape)}"
        )
    return shape


def check_same_batch(**shapes):
    """Static batch sizes (axis 0) of the named shapes agree where known.

    `None` shapes and unknown batch sizes are skipped.
    """
    known = [
        (name, tuple(shape))
        for name, shape in shapes.items()
        if shape is not None and len(shape) and shape[0] is not None
    ]
    for name, shape in known[1:]:
        first, first_shape = known[0]
        if shape[0] != first_shape[0]:
            raise ValueError(
                f"Received incompatible arguments `{first}` and `{name}`, "
                "expected the same batch size (axis 0). Received: "
                f"{first}.shape={first_shape}, {name}.shape={shape}"
            )


def check_last_dim(shape, name, expected):
    """Static last axis of `shape` must equal `expected` (unknown is fine)."""
    if shape[-1] is not None and expected is not None and shape[-1] != expected:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected the "
            f"last axis to have size {expected}. Received: "
            f"{name}.shape={tuple(shape)}"
        )
    return shape
