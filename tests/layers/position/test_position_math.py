"""Tests of the shared position maths: T5 buckets, ALiBi slopes, sinusoids."""

import inspect
import math

import numpy as np
import pytest
from keras import ops

import api_inventory
from keras_attention.layers.position import position_math
from keras_attention.layers.position.position_math import alibi_slopes
from keras_attention.layers.position.position_math import check_start_index
from keras_attention.layers.position.position_math import check_static_last_dim
from keras_attention.layers.position.position_math import positions
from keras_attention.layers.position.position_math import sinusoidal_encoding
from keras_attention.layers.position.position_math import (
    t5_relative_position_bucket,
)


def reference_t5_bucket(relative_position, bidirectional, num_buckets, max_distance):
    """One relative position -> bucket, scalar code from the T5 description.

    Mesh TensorFlow's `_relative_position_bucket` logic: half the buckets per
    direction when bidirectional, exact buckets for small distances, log-
    spaced buckets up to `max_distance`, float32 arithmetic.
    """
    f32 = np.float32
    bucket = 0
    n = -relative_position
    if bidirectional:
        num_buckets //= 2
        if n < 0:
            bucket += num_buckets
        n = abs(n)
    else:
        n = max(n, 0)
    max_exact = num_buckets // 2
    if n < max_exact:
        return bucket + n
    log_ratio = np.log(f32(n) / f32(max_exact)) / f32(math.log(max_distance / max_exact))
    large = max_exact + int(log_ratio * f32(num_buckets - max_exact))
    return bucket + min(large, num_buckets - 1)


@pytest.mark.parametrize(
    "bidirectional,num_buckets,max_distance",
    [(True, 32, 128), (False, 32, 128), (True, 8, 20), (False, 2, 5), (False, 7, 40)],
)
def test_t5_buckets_match_the_published_bucketing(
    bidirectional, num_buckets, max_distance
):
    relative = np.arange(-400, 401)
    got = ops.convert_to_numpy(
        t5_relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    )
    want = [
        reference_t5_bucket(int(r), bidirectional, num_buckets, max_distance)
        for r in relative
    ]
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 0 and got.max() == num_buckets - 1


# Hand-derived with num_buckets=32, max_distance=128 (key - query positions).
# Bidirectional: 16 buckets per side, 8 exact; e.g. distance 12 in the past:
# 8 + floor(ln(12/8) / ln(128/8) * 8) = 8 + floor(1.17) = 9; future keys add 16.
BIDIRECTIONAL_CASES = {
    0: 0, -1: 1, -7: 7, -8: 8, -12: 9, -20: 10, -100: 15, -127: 15, -1000: 15,
    1: 17, 7: 23, 8: 24, 20: 26, 1000: 31,
}
# Causal: 32 buckets, 16 exact, all future keys in bucket 0; e.g. distance 64:
# 16 + floor(ln(64/16) / ln(128/16) * 16) = 16 + floor(10.67) = 26.
CAUSAL_CASES = {
    5: 0, 1: 0, 0: 0, -5: 5, -15: 15, -16: 16, -20: 17, -64: 26, -127: 31,
    -128: 31, -500: 31,
}


@pytest.mark.parametrize(
    "bidirectional,cases", [(True, BIDIRECTIONAL_CASES), (False, CAUSAL_CASES)]
)
def test_t5_buckets_hand_derived(bidirectional, cases):
    relative = np.array(list(cases))
    got = ops.convert_to_numpy(
        t5_relative_position_bucket(relative, bidirectional, 32, 128)
    )
    np.testing.assert_array_equal(got, list(cases.values()))


def test_alibi_slopes_8_heads():
    # Power of two: 2^(-8/8 * k) = 1/2, 1/4, ..., 1/256.
    np.testing.assert_allclose(
        alibi_slopes(8), [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]
    )


def test_alibi_slopes_12_heads():
    # 8 heads' slopes, then every other slope of the 16-head sequence
    # 2^(-0.5 k): k = 1, 3, 5, 7.
    expected = [2.0**-k for k in range(1, 9)] + [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5]
    np.testing.assert_allclose(alibi_slopes(12), expected)


def test_alibi_slopes_other_counts():
    # 6 heads: 4 heads' slopes 2^-2, 2^-4, 2^-6, 2^-8, then 2^-1, 2^-3.
    np.testing.assert_allclose(
        alibi_slopes(6), [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]
    )
    np.testing.assert_allclose(alibi_slopes(1), [2.0**-8])
    np.testing.assert_allclose(alibi_slopes(2), [2.0**-4, 2.0**-8])


def reference_sinusoid(length, dim, start=0, max_wavelength=10000.0):
    table = np.zeros((length, dim))
    for p in range(length):
        pos = start + p
        for k in range(dim):
            two_i = k - k % 2
            angle = pos / max_wavelength ** (two_i / dim)
            table[p, k] = math.sin(angle) if k % 2 == 0 else math.cos(angle)
    return table


@pytest.mark.parametrize("dim", [6, 7, 1])
def test_sinusoidal_encoding_formula(dim):
    got = ops.convert_to_numpy(sinusoidal_encoding(9, dim, start_index=4))
    np.testing.assert_allclose(got, reference_sinusoid(9, dim, start=4), atol=2e-5)


def test_positions_with_tensor_start():
    got = positions(3, ops.convert_to_tensor(5), dtype="int32")
    np.testing.assert_array_equal(ops.convert_to_numpy(got), [5, 6, 7])


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_check_start_index_rejects(bad):
    with pytest.raises(
        ValueError,
        match=r"argument `start_index`, expected a non-negative integer. "
        rf"Received: start_index={bad!r}",
    ):
        check_start_index(bad)


def test_check_start_index_accepts_ints_and_tensors():
    assert check_start_index(np.int64(3)) == 3
    tensor = ops.convert_to_tensor(2)
    assert check_start_index(tensor) is tensor


def test_check_static_last_dim():
    with pytest.raises(ValueError, match=r"known last axis.*inputs.shape=\(2, 3, None\)"):
        check_static_last_dim((2, 3, None), "inputs")


def test_module_docstring_examples_run():
    functions = [
        f for _, f in inspect.getmembers(position_math, inspect.isfunction)
        if f.__module__ == position_math.__name__
    ]
    ran = 0
    for function in functions:
        for block in api_inventory.example_blocks(function.__doc__):
            exec(compile(block, function.__name__, "exec"), {})
            ran += 1
    assert ran >= 6
