"""Shared maths of the positional encodings, on `keras.ops`.

Pure functions used by the position layers: absolute positions with a
decoding offset, the sinusoidal table of Vaswani et al. (2017), the T5
relative-position buckets (Raffel et al. 2020) and the ALiBi head slopes
(Press et al. 2022). Each function is independent of any layer state.
"""

import math
import numbers

from keras import ops

from keras_attention.utils.validation import check_non_negative_int


def check_start_index(start_index):
    """Validate a Python `start_index`; tensors are passed through unchecked.

    `start_index` is the absolute position of the first token of the input:
    `0` for a full pass, the cache index when decoding. A Python (or NumPy)
    integer must be non-negative; a scalar integer tensor (e.g. the loop
    variable of a compiled decoding loop) cannot be checked statically.

    Args:
        start_index: int or scalar integer tensor.

    Returns:
        `start_index`, unchanged.

    Raises:
        ValueError: if `start_index` is a Python value that is not a
            non-negative integer.

    Example:

    ```python
    from keras_attention.layers.position.position_math import (
        check_start_index)
    check_start_index(3)  # 3
    ```
    """
    if isinstance(start_index, (numbers.Number, bool)):
        check_non_negative_int(start_index, "start_index")
    return start_index


def check_static_last_dim(shape, name):
    """The last axis of `shape` must be statically known.

    Args:
        shape: a static shape tuple.
        name: the argument name used in the error message.

    Returns:
        The size of the last axis, an int.

    Raises:
        ValueError: if the last axis is `None`.

    Example:

    ```python
    from keras_attention.layers.position.position_math import (
        check_static_last_dim)
    check_static_last_dim((None, 5, 8), "inputs")  # 8
    ```
    """
    if shape[-1] is None:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"tensor with a known last axis (the feature size). Received: "
            f"{name}.shape={tuple(shape)}"
        )
    return int(shape[-1])


def static_start_index(start_index):
    """The value of `start_index` when it is a Python integer, else `None`."""
    if isinstance(start_index, numbers.Integral) and not isinstance(
        start_index, bool
    ):
        return int(start_index)
    return None


def positions(length, start_index=0, dtype="float32"):
    """Absolute positions `start_index, ..., start_index + length - 1`.

    Args:
        length: int or scalar integer tensor, the number of positions.
        start_index: int or scalar integer tensor, the first position.
        dtype: dtype of the result.

    Returns:
        A `(length,)` tensor of `dtype`.

    Example:

    ```python
    from keras_attention.layers.position.position_math import positions
    positions(3, start_index=2)  # [2., 3., 4.]
    ```
    """
    steps = ops.arange(length, dtype="int32")  # (T,)
    return ops.cast(steps + ops.cast(start_index, "int32"), dtype)  # (T,)


def inverse_frequencies(dim, max_wavelength=10000.0):
    """Per-feature angular frequencies of the sinusoidal encodings.

    Feature `k` (pairs `2i`, `2i + 1` share a frequency) gets
    `1 / max_wavelength^(2i / dim)` with `2i = k - k mod 2`, so an odd `dim`
    simply ends with a lone sine feature.

    Args:
        dim: int, the feature size.
        max_wavelength: float, the longest wavelength (10000 in the paper).

    Returns:
        A float32 `(dim,)` tensor.

    Example:

    ```python
    from keras_attention.layers.position.position_math import (
        inverse_frequencies)
    inverse_frequencies(4, 10000.0)  # [1., 1., 0.01, 0.01]
    ```
    """
    features = ops.arange(dim, dtype="int32")  # (D,)
    even = ops.cast(features - ops.mod(features, 2), "float32")  # (D,) 2i
    exponent = even / float(dim)
    return ops.exp(-math.log(max_wavelength) * exponent)  # (D,)


def sinusoidal_encoding(length, dim, start_index=0, max_wavelength=10000.0):
    """The sinusoidal position table of Vaswani et al. (2017), eq. (5).

    `PE(pos, 2i) = sin(pos / max_wavelength^(2i / dim))` and
    `PE(pos, 2i + 1) = cos(pos / max_wavelength^(2i / dim))`, interleaved as
    in the paper, for `pos = start_index, ..., start_index + length - 1`.
    Computed in float32.

    Args:
        length: int or scalar integer tensor, T.
        dim: int, D (odd sizes end with a sine feature).
        start_index: int or scalar integer tensor, the first position.
        max_wavelength: float, the base of the geometric wavelengths.

    Returns:
        A float32 `(T, D)` tensor.

    Example:

    ```python
    from keras_attention.layers.position.position_math import (
        sinusoidal_encoding)
    sinusoidal_encoding(2, 4)  # [[0, 1, 0, 1], [sin 1, cos 1, sin .01, cos .01]]
    ```
    """
    pos = positions(length, start_index)  # (T,)
    angles = pos[:, None] * inverse_frequencies(dim, max_wavelength)[None, :]  # (T, D)
    is_even = ops.equal(ops.mod(ops.arange(dim, dtype="int32"), 2), 0)  # (D,)
    return ops.where(is_even[None, :], ops.sin(angles), ops.cos(angles))  # (T, D)


def t5_relative_position_bucket(
    relative_position, bidirectional=True, num_buckets=32, max_distance=128
):
    """Map relative positions to T5 buckets (Raffel et al. 2020, sec. 2.1).

    `relative_position = key_position - query_position`. Let `n =
    -relative_position` (how far the key lies in the past).

    - Bidirectional: half of the buckets hold keys in the future
      (`n < 0`, offset by `num_buckets / 2`), half keys in the past or
      present, and `n <- |n|`; each half then has `B = num_buckets / 2`
      buckets. Causal: `n <- max(n, 0)` (future keys share bucket 0) and
      `B = num_buckets`.
    - With `E = B / 2` exact buckets, distances `n < E` get their own bucket
      `n`; larger distances are binned logarithmically up to
      `max_distance`, beyond which they share the last bucket:

      `bucket(n) = min(B - 1, E + floor(log(n / E) / log(max_distance / E)
      * (B - E)))`.

    Computed in float32, in the order written above, as in the published
    Mesh TensorFlow implementation.

    Args:
        relative_position: integer tensor of any shape.
        bidirectional: bool, whether keys may lie after the query.
        num_buckets: int, total number of buckets (even and >= 4 when
            bidirectional, >= 2 when causal).
        max_distance: int, distances from here on share the last bucket;
            must exceed the number of exact buckets `E`.

    Returns:
        An int32 tensor of buckets in `[0, num_buckets)`, shaped like
        `relative_position`.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers.position.position_math import (
        t5_relative_position_bucket)
    t5_relative_position_bucket(np.array([-1, 0, 1]))  # [1, 0, 17]
    ```
    """
    n = -ops.cast(relative_position, "int32")
    if bidirectional:
        num_buckets = num_buckets // 2
        offset = ops.cast(ops.less(n, 0), "int32") * num_buckets
        n = ops.abs(n)
    else:
        offset = ops.zeros_like(n)
        n = ops.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = ops.less(n, max_exact)
    # Distances below `max_exact` take the other branch; clamping them keeps
    # the logarithm finite (no -inf cast to int).
    n_large = ops.cast(ops.maximum(n, max_exact), "float32")
    scaled = (
        ops.log(n_large / float(max_exact))
        / math.log(max_distance / max_exact)
        * float(num_buckets - max_exact)
    )
    large = max_exact + ops.cast(ops.floor(scaled), "int32")
    large = ops.minimum(large, num_buckets - 1)
    return offset + ops.where(is_small, n, large)


def alibi_slopes(num_heads):
    """Head slopes of ALiBi (Press et al. 2022, sec. 3).

    For `n` heads, `n` a power of two, the slopes are the geometric sequence
    `2^(-8/n), 2^(-16/n), ..., 2^(-8)`. Otherwise, with `p` the largest power
    of two below `n`, the slopes are those of `p` heads followed by the first
    `n - p` of every other slope of the `2p` sequence (`2^(-8/(2p)),
    2^(-3 * 8/(2p)), ...`).

    Args:
        num_heads: int, the number of heads.

    Returns:
        A list of `num_heads` Python floats.

    Example:

    ```python
    from keras_attention.layers.position.position_math import alibi_slopes
    alibi_slopes(4)  # [0.25, 0.0625, 0.015625, 0.00390625]
    ```
    """

    def geometric(n):
        return [2.0 ** (-8.0 * (k + 1) / n) for k in range(n)]

    if num_heads & (num_heads - 1) == 0:
        return geometric(num_heads)
    closest = 2 ** int(math.floor(math.log2(num_heads)))
    extra = geometric(2 * closest)[0::2][: num_heads - closest]
    return geometric(closest) + extra
